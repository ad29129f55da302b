import dgram from 'node:dgram';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult, Progress } from '@modelcontextprotocol/sdk/types.js';
import { CaptureReader, decodePacket, newL4Packet, type RawPacket } from '@kubeshark-mcp/capture';
import { canCaptureLive, waitFor } from '@kubeshark-mcp/testkit';
import { DEFAULT_LIVE_OPTIONS, PacketStore, SnapshotStore, WorkerEngine, clusterMapSource, startWorkerServer, type RunningWorkerServer } from '@kubeshark-mcp/worker';
import { buildHub, validateConfig, DEFAULT_CONFIG, type Hub } from '../src';

/**
 * capture_traffic end to end: two workers (nodes a and b, in process, each with its own tcpdump
 * on lo) behind a hub on port 0, the official SDK client over HTTP. The capture runs on both
 * nodes under one id, progress notifications arrive while it runs, the packets the test sent
 * come back through export_pcap snapshot=<id>, and cancelling the request stops it on both
 * workers. get_status shows a targeted worker's targeting.
 *
 * Needs tcpdump and root (CI has both, .ci/run); elsewhere the suite is skipped with the reason printed.
 */

const canCapture = canCaptureLive('capture_traffic tests');
const suite = canCapture ? describe : describe.skip;

const TMP = mkdtempSync(path.join(tmpdir(), 'hub-capture-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));

interface Worker {
  engine: WorkerEngine;
  server: RunningWorkerServer;
}

async function startWorker(node: string, setup?: (engine: WorkerEngine, server: RunningWorkerServer) => Promise<void>): Promise<Worker> {
  const dir = path.join(TMP, node);
  const engine = new WorkerEngine(node, 'test', PacketStore.open({ dir: path.join(dir, 'ring') }), new SnapshotStore(path.join(dir, 'snapshots')));
  const server = await startWorkerServer(engine, '127.0.0.1', 0);
  engine.configureCaptures({ ...DEFAULT_LIVE_OPTIONS, interface: 'lo', excludeTcpPorts: [server.port] });
  await setup?.(engine, server);
  return { engine, server };
}

async function startHub(workers: Worker[]): Promise<{ hub: Hub; client: Client }> {
  const exportDir = path.join(TMP, `exports-${workers.map((w) => w.engine.node).join('-')}`);
  mkdirSync(exportDir);
  const hub = await buildHub(validateConfig({ ...DEFAULT_CONFIG, host: '127.0.0.1', port: 0, workers: workers.map((w) => w.server.address), workerDeadlineMs: 5000, exportDir }), { logger: false });
  await hub.app.listen({ host: '127.0.0.1', port: 0 });
  const client = new Client({ name: 'capture-traffic', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${(hub.app.server.address() as { port: number }).port}/mcp`)));
  return { hub, client };
}

async function stopAll(hub: Hub | undefined, client: Client | undefined, workers: Worker[]): Promise<void> {
  await client?.close().catch(() => undefined);
  await hub?.app.close();
  for (const w of workers) {
    await w.engine.close();
    await w.server.close();
  }
}

async function sendUdp(port: number, payloads: string[]): Promise<void> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  for (const p of payloads) await new Promise<void>((resolve, reject) => s.send(Buffer.from(p), port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
  await new Promise<void>((r) => s.close(r));
}

/** UDP payloads to `port` in a capture file. */
function payloadsIn(file: Buffer, port: number): string[] {
  const out: string[] = [];
  const l4 = newL4Packet();
  const r = new CaptureReader((p: RawPacket) => {
    if (decodePacket(p, l4) === 0 && l4.protocol === 17 && l4.dstPort === port) out.push(p.buf.subarray(l4.payloadOff, l4.payloadOff + l4.payloadLen).toString());
  });
  r.push(file);
  r.end();
  return out;
}

interface CaptureOut {
  capture_id: string;
  state: string;
  packets: number;
  captures: { node: string; state: string; packets: number; snapshot?: string; filter: string }[];
  nodes: { node: string; state: string }[];
}

suite('capture_traffic through the hub', () => {
  const workers: Worker[] = [];
  let hub: Hub | undefined;
  let client: Client | undefined;
  let receiver: dgram.Socket;
  let port: number;

  beforeAll(async () => {
    receiver = dgram.createSocket('udp4');
    receiver.on('message', () => undefined);
    await new Promise<void>((r) => receiver.bind(0, '127.0.0.1', r));
    port = receiver.address().port;
    workers.push(await startWorker('node-a'), await startWorker('node-b'));
    ({ hub, client } = await startHub(workers));
  });

  afterAll(async () => {
    await stopAll(hub, client, workers);
    receiver?.close();
  });

  test('runs on every node under one id, with progress, and its packets export from the snapshot of that id', async () => {
    const tools = (await client!.listTools()).tools;
    expect(tools.find((t) => t.name === 'capture_traffic')!.annotations).toMatchObject({ readOnlyHint: false, destructiveHint: false });
    const updates: Progress[] = [];
    const sent = Array.from({ length: 5 }, (_, i) => `hub-capture-${i}`);
    const running = client!.callTool({ name: 'capture_traffic', arguments: { bpf: `udp port ${port}`, duration_s: 3 } }, undefined, {
      onprogress: (p) => updates.push(p),
      timeout: 30_000,
    }) as Promise<CallToolResult>;
    // Both workers listen once the first progress arrives (the hub reports right after the starts).
    await waitFor('the first progress', async () => (updates.length > 0 ? true : undefined));
    await sendUdp(port, sent);
    const r = await running;
    expect(r.isError).toBeFalsy();
    const out = r.structuredContent as unknown as CaptureOut;
    expect(out.capture_id).toMatch(/^cap-\d{8}T\d{6}Z-[0-9a-f]{6}$/);
    expect(out.state).toBe('complete');
    expect(out.captures.map((c) => [c.node, c.state, c.packets, c.snapshot])).toEqual([
      ['node-a', 'done', 5, out.capture_id],
      ['node-b', 'done', 5, out.capture_id],
    ]);
    expect(out.packets).toBe(10);
    for (const w of workers) expect(w.engine.captures!.get(out.capture_id)).toMatchObject({ state: 'done', packets: 5 });
    // Progress: seconds of the 3 s duration, increasing, at least one while it ran and the counts at the end.
    const values = updates.map((u) => u.progress);
    expect(values).toEqual([...new Set(values)].sort((a, b) => a - b));
    expect(updates.every((u) => u.total === 3)).toBe(true);
    expect(updates.length).toBeGreaterThanOrEqual(2);
    expect(updates[updates.length - 1]!.message).toBe('10 packets, ' + String(out.captures.reduce((n, c) => n + (c as { bytes?: number }).bytes!, 0)) + ' bytes captured; 0 nodes still capturing');

    const exported = (await client!.callTool({ name: 'export_pcap', arguments: { snapshot: out.capture_id } })) as CallToolResult;
    expect(exported.isError).toBeFalsy();
    const file = Buffer.from(await (await fetch((exported.structuredContent as { url: string }).url)).arrayBuffer());
    // Both nodes saw every datagram on lo: merged in time order, each twice.
    expect(payloadsIn(file, port)).toEqual(sent.flatMap((p) => [p, p]));
  });

  test('a filter tcpdump rejects is an error naming bpf, and nothing keeps running', async () => {
    const r = (await client!.callTool({ name: 'capture_traffic', arguments: { bpf: 'udp prt 1', duration_s: 2 } })) as CallToolResult;
    expect(r.isError).toBe(true);
    expect(r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n')).toMatch(/\(argument "bpf"\): .*the capture filter is invalid/);
    for (const w of workers) expect(w.engine.captures!.list().filter((c) => c.state === 'running')).toEqual([]);
  });

  test('cancelling the request stops the capture on every worker', async () => {
    const abort = new AbortController();
    let progressed = 0;
    const running = client!.callTool({ name: 'capture_traffic', arguments: { bpf: `udp port ${port}`, duration_s: 120 } }, undefined, {
      signal: abort.signal,
      onprogress: () => progressed++,
      timeout: 30_000,
    });
    await waitFor('the capture to run on both workers', async () => (progressed > 0 && workers.every((w) => w.engine.captures!.list().some((c) => c.state === 'running')) ? true : undefined));
    const id = workers[0]!.engine.captures!.list().find((c) => c.state === 'running')!.id;
    expect(workers[1]!.engine.captures!.get(id)?.state).toBe('running');
    await sendUdp(port, ['before-cancel']);
    abort.abort();
    await expect(running).rejects.toThrow();
    const ended = await waitFor('both workers to stop it', async () => {
      const infos = workers.map((w) => w.engine.captures!.get(id)!);
      return infos.every((c) => c.state !== 'running') ? infos : undefined;
    });
    for (const c of ended) {
      expect(c.state).toBe('stopped');
      expect(c.snapshot).toBe(id);
      expect(c.endedAtUs - c.startedAtUs).toBeLessThan(60e6);
    }
  });
});

suite('get_status through the hub reports a worker targeting', () => {
  let worker: Worker;
  let hub: Hub | undefined;
  let client: Client | undefined;

  beforeAll(async () => {
    const map = path.join(TMP, 'map.json');
    const pod = (name: string, namespace: string, ip: string) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace, uid: `uid-${name}`, creationTimestamp: '2020-01-01T00:00:00Z' },
      spec: { nodeName: 'node-t', containers: [{ name: 'main', image: 'x' }] },
      status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], startTime: '2020-01-01T00:00:00Z' },
    });
    writeFileSync(map, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [pod('web-1', 'shop', '127.0.0.41'), pod('db-0', 'data', '127.0.0.42')] }));
    worker = await startWorker('node-t', async (engine, server) => {
      engine.kube = clusterMapSource([map]);
      await engine.startTargetedLive({ ...DEFAULT_LIVE_OPTIONS, interface: 'lo', excludeTcpPorts: [server.port] }, { namespaces: ['shop'], excludeNamespaces: [] });
    });
    ({ hub, client } = await startHub([worker]));
  });

  afterAll(() => stopAll(hub, client, worker ? [worker] : []));

  test('namespaces, pods, addresses and the filter', async () => {
    const r = (await client!.callTool({ name: 'get_status', arguments: {} })) as CallToolResult;
    const w = (r.structuredContent as { workers: { targeting?: Record<string, unknown> }[] }).workers[0]!;
    expect(w.targeting).toMatchObject({
      namespaces: ['shop'],
      excluded_namespaces: [],
      pod_regex: '',
      pods: 1,
      pod_ips: 1,
      scope: 'node',
      mode: 'hosts',
      filter: `(host 127.0.0.41) and not (tcp port ${worker.server.port})`,
      updates: 0,
    });
    const text = r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
    expect(text).toContain('targeting namespaces shop: 1 pod (1 address on this node); other traffic is not captured');
  });
});
