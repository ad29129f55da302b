import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { decodePacket, newL4Packet, readCaptureStream } from '@kubeshark-mcp/capture';
import { createWorkerClient, type CaptureInfo, type Flow, type WorkerClient } from '@kubeshark-mcp/proto';
import { canCaptureLive, grpcUnary, waitFor } from '@kubeshark-mcp/testkit';
import { DEFAULT_LIVE_OPTIONS, PacketStore, SnapshotStore, WorkerEngine, clusterMapSource, startWorkerServer, type RunningWorkerServer } from '../src';

/**
 * Targeted captures for real: tcpdump on the loopback interface, UDP datagrams sent to loopback
 * addresses that a generated cluster map gives to pods, read back over gRPC (ListCaptures) and
 * exported from the snapshot each capture leaves (ExportPcap snapshot=<id>). The expectation is
 * what the test itself sent: which datagrams, to where, with which payloads.
 *
 * Needs tcpdump and the right to capture (root); CI has both (.ci/run), elsewhere the live part is
 * skipped with the reason printed. The refusals that need no tcpdump always run.
 */

const canCapture = canCaptureLive('targeted capture tests');
const suite = canCapture ? describe : describe.skip;

const NODE = 'cap-node';
// Loopback addresses the cluster map hands to pods; the kernel routes all of 127/8 to lo.
const WEB_IP = '127.0.0.21';
const DB_IP = '127.0.0.22';
const OTHER_NODE_IP = '127.0.0.23';

const pod = (name: string, namespace: string, ip: string, node: string) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace, uid: `uid-${name}`, creationTimestamp: '2020-01-01T00:00:00Z', labels: { app: name } },
  spec: { nodeName: node, containers: [{ name: 'main', image: 'x' }] },
  status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], startTime: '2020-01-01T00:00:00Z' },
});

const tmp = mkdtempSync(path.join(tmpdir(), 'worker-capture-'));
const mapFile = path.join(tmp, 'map.json');
writeFileSync(
  mapFile,
  JSON.stringify({
    apiVersion: 'v1',
    kind: 'List',
    items: [pod('web-1', 'shop', WEB_IP, NODE), pod('db-0', 'data', DB_IP, NODE), pod('web-2', 'shop', OTHER_NODE_IP, 'elsewhere')],
  }),
);

interface Sent {
  dst: string;
  port: number;
  payload: string;
}

/** Binds a UDP receiver on ip:0 and returns it with its port. */
async function receiver(ip: string): Promise<{ socket: dgram.Socket; port: number }> {
  const socket = dgram.createSocket('udp4');
  socket.on('message', () => undefined);
  await new Promise<void>((r) => socket.bind(0, ip, r));
  return { socket, port: socket.address().port };
}

/** Sends datagrams one by one (each is one packet on lo) and returns what was sent. */
async function send(dst: string, port: number, payloads: string[]): Promise<Sent[]> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  for (const p of payloads) await new Promise<void>((resolve, reject) => s.send(Buffer.from(p), port, dst, (err) => (err ? reject(err) : resolve())));
  await new Promise<void>((r) => s.close(r));
  return payloads.map((payload) => ({ dst, port, payload }));
}

/** The UDP packets of a capture file as (dst, port, payload). */
async function udpPackets(file: Buffer): Promise<Sent[]> {
  const out: Sent[] = [];
  const l4 = newL4Packet();
  const res = await readCaptureStream(Readable.from([file]), (p) => {
    if (decodePacket(p, l4) !== 0 || l4.protocol !== 17) return;
    const dst = [...p.buf.subarray(l4.dstOff, l4.dstOff + 4)].join('.');
    out.push({ dst, port: l4.dstPort, payload: p.buf.subarray(l4.payloadOff, l4.payloadOff + l4.payloadLen).toString() });
  });
  if (res.error) throw res.error;
  return out;
}

function exportCapture(client: WorkerClient, snapshot: string): Promise<{ file: Buffer; total: number }> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let total = -1;
    const call = client.ExportPcap({ snapshot, format: 'pcapng' });
    call.on('data', (c: { data: Buffer; done: boolean; total_packets: number }) => {
      parts.push(c.data);
      if (c.done) total = c.total_packets;
    });
    call.on('error', reject);
    call.on('end', () => resolve({ file: Buffer.concat(parts), total }));
  });
}

const payloads = (tag: string, n: number, size = 0): string[] => Array.from({ length: n }, (_, i) => `${tag}-${i}`.padEnd(size, '.'));

suite('targeted captures with tcpdump on loopback', () => {
  let engine: WorkerEngine;
  let server: RunningWorkerServer;
  let client: WorkerClient;
  const sockets: dgram.Socket[] = [];
  const unary = <Res>(method: string, req: object): Promise<Res> => grpcUnary<Res>(client, method, req, 10_000);
  const listed = async (id: string): Promise<CaptureInfo | undefined> => (await unary<{ captures: CaptureInfo[] }>('ListCaptures', {})).captures.find((c) => c.id === id);
  const ended = (id: string, ms = 15_000): Promise<CaptureInfo> => waitFor(`capture ${id} to end`, async () => ((c) => (c && c.state !== 'running' ? c : undefined))(await listed(id)), ms);
  const bind = async (ip: string): Promise<number> => {
    const r = await receiver(ip);
    sockets.push(r.socket);
    return r.port;
  };

  beforeAll(async () => {
    const data = path.join(tmp, 'data');
    engine = new WorkerEngine(NODE, 'test', PacketStore.open({ dir: path.join(data, 'ring') }), new SnapshotStore(path.join(data, 'snapshots')));
    engine.kube = clusterMapSource([mapFile]);
    server = await startWorkerServer(engine, '127.0.0.1', 0);
    client = createWorkerClient(server.address);
    engine.configureCaptures({ ...DEFAULT_LIVE_OPTIONS, interface: 'lo', excludeTcpPorts: [server.port] });
  });

  afterAll(async () => {
    client?.close();
    await engine?.close();
    await server?.close();
    for (const s of sockets) s.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('a BPF capture takes exactly the matching datagrams, ends at its duration, and its packets export from the snapshot named by its id', async () => {
    const port = await bind('127.0.0.1');
    const otherPort = await bind('127.0.0.1');
    const started = await unary<CaptureInfo>('StartCapture', { id: 'cap-bpf', bpf: `udp port ${port}`, duration_s: 2 });
    expect(started).toMatchObject({ id: 'cap-bpf', state: 'running', node: NODE, interface: 'lo', duration_s: 2 });
    expect(started.filter).toBe(`(udp port ${port}) and not (tcp port ${server.port})`);
    const sent = await send('127.0.0.1', port, payloads('bpf', 5));
    await send('127.0.0.1', otherPort, payloads('not-me', 3));
    const info = await ended('cap-bpf');
    expect(info.state).toBe('done');
    expect(info.packets).toBe(5);
    expect(info.snapshot).toBe('cap-bpf');
    expect((info.ended_at_us - info.started_at_us) / 1e6).toBeGreaterThanOrEqual(1.9);
    expect((info.ended_at_us - info.started_at_us) / 1e6).toBeLessThan(6);
    const { file, total } = await exportCapture(client, 'cap-bpf');
    expect(total).toBe(5);
    expect(file.length).toBe(info.bytes);
    expect(await udpPackets(file)).toEqual(sent);
    // The capture fed the worker's flows (it has no live capture of its own).
    const flows = await unary<{ flows: Flow[] }>('ListFlows', { port, limit: 10 });
    expect(flows.flows.map((f) => f.client_to_server!.packets)).toEqual([5]);
  });

  test('a pod regex captures the traffic of the matching pod on this node only; StopCapture ends it early', async () => {
    const webPort = await bind(WEB_IP);
    const dbPort = await bind(DB_IP);
    const started = await unary<CaptureInfo>('StartCapture', { id: 'cap-web', pod_regex: '^web-', duration_s: 60 });
    // web-2 matches too, but runs on another node.
    expect(started).toMatchObject({ state: 'running', pod_ips: 1 });
    expect(started.filter).toBe(`(host ${WEB_IP}) and not (tcp port ${server.port})`);
    const sent = await send(WEB_IP, webPort, payloads('web', 4));
    await send(DB_IP, dbPort, payloads('db', 4));
    await waitFor('4 packets', async () => ((c) => (c && c.packets >= 4 ? c : undefined))(await listed('cap-web')));
    const stopped = await unary<CaptureInfo>('StopCapture', { id: 'cap-web' });
    expect(stopped).toMatchObject({ state: 'stopped', packets: 4, snapshot: 'cap-web' });
    expect(stopped.ended_at_us - stopped.started_at_us).toBeLessThan(30e6);
    expect(await udpPackets((await exportCapture(client, 'cap-web')).file)).toEqual(sent);
    // Stopping again answers with the capture as it ended.
    expect(await unary<CaptureInfo>('StopCapture', { id: 'cap-web' })).toMatchObject({ state: 'stopped', packets: 4 });
  });

  test('the byte budget stops a capture before its file outgrows it', async () => {
    const port = await bind('127.0.0.1');
    await unary<CaptureInfo>('StartCapture', { id: 'cap-limit', bpf: `udp port ${port}`, duration_s: 60, max_bytes: 4096 });
    await send('127.0.0.1', port, payloads('big', 20, 500));
    const info = await ended('cap-limit');
    expect(info.state).toBe('limit');
    expect(info.bytes).toBeLessThanOrEqual(4096);
    // Each datagram is a ~600-byte pcapng block: the budget holds a handful, not 20.
    expect(info.packets).toBeGreaterThanOrEqual(4);
    expect(info.packets).toBeLessThan(20);
    const { file } = await exportCapture(client, 'cap-limit');
    expect(file.length).toBe(info.bytes);
    expect((await udpPackets(file)).map((p) => p.payload)).toEqual(payloads('big', info.packets, 500));
  });

  test('a namespace without pods on this node ends at once and says why; ListCaptures lists every capture with its state', async () => {
    const info = await unary<CaptureInfo>('StartCapture', { id: 'cap-empty', namespaces: ['nowhere'] });
    expect(info).toMatchObject({ state: 'done', packets: 0, pod_ips: 0, snapshot: '' });
    expect(info.note).toMatch(/no pod in nowhere runs on node cap-node/);
    const all = (await unary<{ captures: CaptureInfo[] }>('ListCaptures', {})).captures;
    expect(Object.fromEntries(all.map((c) => [c.id, c.state]))).toEqual({ 'cap-bpf': 'done', 'cap-web': 'stopped', 'cap-limit': 'limit', 'cap-empty': 'done' });
    for (const c of all) expect(c.started_at_us).toBeGreaterThan(0);
  });

  test('bad requests are refused naming the argument', async () => {
    const err = (p: Promise<unknown>) => p.then(() => undefined, (e: grpc.ServiceError) => ({ code: e.code, details: e.details, field: e.metadata?.get('x-argument')[0] }));
    expect(await err(unary('StartCapture', { bpf: 'udp prt 1', duration_s: 1 }))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, field: 'bpf', details: expect.stringMatching(/capture filter is invalid/) });
    expect(await err(unary('StartCapture', { id: 'cap-bpf', duration_s: 1 }))).toMatchObject({ code: grpc.status.ALREADY_EXISTS });
    expect(await err(unary('StartCapture', { id: '../x' }))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, field: 'id' });
    expect(await err(unary('StartCapture', { pod_regex: '(' }))).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, field: 'pod_regex' });
    expect(await err(unary('StopCapture', { id: 'nope' }))).toMatchObject({ code: grpc.status.NOT_FOUND });
  });
});

describe('targeted captures a worker cannot run', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
  const setup = async (tcpdumpPath: string): Promise<{ engine: WorkerEngine; server: RunningWorkerServer; client: WorkerClient }> => {
    const dir = mkdtempSync(path.join(tmpdir(), 'worker-capture-refused-'));
    dirs.push(dir);
    const engine = new WorkerEngine('n', 'test', undefined, new SnapshotStore(path.join(dir, 'snapshots')));
    engine.configureCaptures({ ...DEFAULT_LIVE_OPTIONS, interface: 'lo', tcpdumpPath });
    const server = await startWorkerServer(engine, '127.0.0.1', 0);
    return { engine, server, client: createWorkerClient(server.address) };
  };
  const failure = (client: WorkerClient, req: object) =>
    grpcUnary(client, 'StartCapture', req).then(
      () => undefined,
      (e: grpc.ServiceError) => ({ code: e.code, details: e.details }),
    );

  test('without tcpdump, without the right to capture, without a Kubernetes source for namespaces, and without a data directory, with a clear reason', async () => {
    const { engine, server, client } = await setup('/nonexistent/tcpdump');
    try {
      expect(await failure(client, { bpf: 'udp', duration_s: 1 })).toEqual({ code: grpc.status.FAILED_PRECONDITION, details: expect.stringMatching(/tcpdump not found.*apt-get install tcpdump/) });
      expect(await failure(client, { namespaces: ['shop'] })).toEqual({ code: grpc.status.FAILED_PRECONDITION, details: expect.stringMatching(/need a Kubernetes source/) });
      expect((await grpcUnary<{ captures: CaptureInfo[] }>(client, 'ListCaptures', {})).captures).toEqual([]);
    } finally {
      client.close();
      await engine.close();
      await server.close();
    }
    if (canCapture) {
      // tcpdump without the right to capture: run it as nobody through a wrapper.
      const dir = mkdtempSync(path.join(tmpdir(), 'tcpdump-nobody-'));
      dirs.push(dir);
      const wrapper = path.join(dir, 'tcpdump');
      writeFileSync(wrapper, '#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups tcpdump "$@"\n', { mode: 0o755 });
      const nobody = await setup(wrapper);
      try {
        expect(await failure(nobody.client, { bpf: 'udp', duration_s: 1 })).toEqual({ code: grpc.status.FAILED_PRECONDITION, details: expect.stringMatching(/may not capture on lo.*Run the worker as root/) });
        expect((await grpcUnary<{ captures: CaptureInfo[] }>(nobody.client, 'ListCaptures', {})).captures).toEqual([]);
      } finally {
        nobody.client.close();
        await nobody.engine.close();
        await nobody.server.close();
      }
    }
    const bare = new WorkerEngine('n', 'test');
    const bareServer = await startWorkerServer(bare, '127.0.0.1', 0);
    const bareClient = createWorkerClient(bareServer.address);
    try {
      expect(await failure(bareClient, { bpf: 'udp' })).toEqual({ code: grpc.status.FAILED_PRECONDITION, details: expect.stringMatching(/data directory/) });
    } finally {
      bareClient.close();
      await bareServer.close();
    }
  });
});
