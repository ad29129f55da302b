import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createWorkerClient, type Flow, type WorkerClient, type WorkerStatus } from '@kubeshark-mcp/proto';
import { canCaptureLive, grpcUnary, waitFor } from '@kubeshark-mcp/testkit';
import { DEFAULT_LIVE_OPTIONS, WorkerEngine, startWorkerServer, type LiveCapture, type RunningWorkerServer } from '../src';

/**
 * Live capture for real: tcpdump on the loopback interface, a real HTTP server and client on
 * 127.0.0.1, and the flows read back over gRPC. The expectation comes from the sockets
 * themselves: the client ports they used and the bytes the server read and wrote.
 *
 * Needs tcpdump and the right to capture (root, or NET_RAW/NET_ADMIN). CI installs tcpdump and
 * runs as root (.ci/run); elsewhere the suite is skipped with the reason printed.
 */

const canCapture = canCaptureLive('live capture tests');
const suite = canCapture ? describe : describe.skip;

suite('live capture with tcpdump on loopback', () => {
  let engine: WorkerEngine;
  let server: RunningWorkerServer;
  let client: WorkerClient;
  let web: http.Server;
  let webPort: number;
  let live: LiveCapture;
  const serverSockets: { remotePort: number; read: number; written: number }[] = [];

  const unary = <Res>(method: string, req: object): Promise<Res> => grpcUnary<Res>(client, method, req, 5000);

  const get = (path: string): Promise<number> =>
    new Promise((resolve, reject) => {
      // agent: false -> one TCP connection per request, so each request is one flow.
      const req = http.get({ host: '127.0.0.1', port: webPort, path, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve((req.socket as { localPort: number }).localPort));
      });
      req.on('error', reject);
    });

  beforeAll(async () => {
    web = http.createServer((req, res) => res.end(`hello ${req.url} ${'x'.repeat(2000)}`));
    web.on('connection', (socket) => {
      const remotePort = socket.remotePort!; // gone once the socket is closed
      socket.on('close', () => serverSockets.push({ remotePort, read: socket.bytesRead, written: socket.bytesWritten }));
    });
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
    webPort = (web.address() as AddressInfo).port;
    engine = new WorkerEngine('live-node', 'test');
    server = await startWorkerServer(engine, '127.0.0.1', 0);
    client = createWorkerClient(server.address);
    live = await engine.startLive({ ...DEFAULT_LIVE_OPTIONS, interface: 'lo', bpf: `tcp port ${webPort}`, excludeTcpPorts: [server.port], statsIntervalMs: 500, restartMinMs: 200 });
  });

  afterAll(async () => {
    client?.close();
    await engine?.close();
    await server?.close();
    await new Promise((r) => web?.close(r));
  });

  test('HTTP connections show up as flows with the sockets bytes and a handshake time', async () => {
    const ports: number[] = [];
    for (let i = 0; i < 5; i++) ports.push(await get(`/req/${i}`));
    const flows = await waitFor('5 closed flows', async () => {
      const res = await unary<{ flows: Flow[] }>('ListFlows', { port: webPort, limit: 100 });
      const closed = res.flows.filter((f) => f.state === 'closed' && ports.includes(f.client!.port));
      return closed.length === 5 ? closed : undefined;
    });
    // The server side counted what crossed each connection; wait until all sockets closed.
    await waitFor('server sockets to close', async () => (serverSockets.length >= 5 ? true : undefined));
    for (const f of flows) {
      const sock = serverSockets.find((s) => s.remotePort === f.client!.port)!;
      expect(f.client!.ip).toBe('127.0.0.1');
      expect(f.server).toMatchObject({ ip: '127.0.0.1', port: webPort });
      expect(f.protocol).toBe('TCP');
      expect(f.client_to_server!.payload_bytes).toBe(sock.read);
      expect(f.server_to_client!.payload_bytes).toBe(sock.written);
      expect(f.tcp_handshake_server_us).toBeGreaterThan(0);
      expect(f.tcp_handshake_server_us).toBeLessThan(1_000_000);
      expect(f.tcp_handshake_client_us).toBeLessThanOrEqual(f.tcp_handshake_server_us!);
      expect(f.syn_count).toBe(2);
    }
  });

  test('status reports the interface, the filter and tcpdump counters', async () => {
    const status = await waitFor('tcpdump counters', async () => {
      const s = await unary<WorkerStatus>('GetStatus', {});
      const src = s.sources.find((x) => x.kind === 'interface');
      return src && src.received_by_filter > 0 ? src : undefined;
    });
    expect(status).toMatchObject({ name: 'lo', state: 'capturing', filter: `(tcp port ${webPort}) and not (tcp port ${server.port})` });
    expect(status.received_by_filter).toBeGreaterThanOrEqual(status.packets > 0 ? 1 : 0);
    expect(status.kernel_drops).toBe(0);
  });

  test('when tcpdump dies it is restarted, and the time without capture is recorded as a gap', async () => {
    const before = live.status().restarts;
    const killed = spawnSync('pkill', ['-KILL', '-f', `tcpdump -i lo .*tcp port ${webPort}`]);
    expect(killed.status).toBe(0);
    await waitFor('the restart', async () => (live.status().restarts > before && live.status().state === 'capturing' ? true : undefined));
    const port = await get('/after-restart');
    const flow = await waitFor('the flow after the restart', async () => {
      const res = await unary<{ flows: Flow[] }>('ListFlows', { port: webPort, limit: 100 });
      return res.flows.find((f) => f.client!.port === port && f.state === 'closed');
    });
    expect(flow.tcp_handshake_server_us).toBeGreaterThan(0);
    const gaps = live.status().gaps;
    expect(gaps.length).toBeGreaterThanOrEqual(1);
    const gap = gaps[gaps.length - 1]!;
    expect(gap.toUs).toBeGreaterThanOrEqual(gap.fromUs);
    expect(gap.reason).toMatch(/tcpdump exited/);
  });
});

test('configuration errors stop live capture with a message saying how to fix them', async () => {
  const engine = new WorkerEngine('n', 'test');
  await expect(engine.startLive({ ...DEFAULT_LIVE_OPTIONS, interface: 'lo', tcpdumpPath: '/nonexistent/tcpdump' })).rejects.toThrow(/tcpdump not found.*apt-get install tcpdump/);
  if (canCapture) {
    await expect(engine.startLive({ ...DEFAULT_LIVE_OPTIONS, interface: 'lo', bpf: 'tcp prt 80' })).rejects.toThrow(/capture filter is invalid/);
    await expect(engine.startLive({ ...DEFAULT_LIVE_OPTIONS, interface: 'no-such-if0' })).rejects.toThrow(/cannot capture on interface "no-such-if0"/);
    // tcpdump without the right to capture: run it as nobody through a wrapper.
    const dir = mkdtempSync(path.join(tmpdir(), 'tcpdump-nobody-'));
    const wrapper = path.join(dir, 'tcpdump');
    writeFileSync(wrapper, '#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups tcpdump "$@"\n', { mode: 0o755 });
    await expect(engine.startLive({ ...DEFAULT_LIVE_OPTIONS, interface: 'lo', tcpdumpPath: wrapper })).rejects.toThrow(/may not capture on lo.*Run the worker as root/);
    rmSync(dir, { recursive: true, force: true });
  }
  await engine.close();
  expect(engine.sources().every((s) => s.state === 'failed')).toBe(true);
});
