import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { CaptureReader, RttSketch, pcapngInterface, pcapngPacketSize, pcapngSectionHeader, writePcapngPacket, type RawPacket } from '@kubeshark-mcp/capture';
import { createWorkerClient, workerServiceDefinition, type WorkerClient } from '@kubeshark-mcp/proto';
import { TrafficSourceError } from '@kubeshark-mcp/mcp-core';
import { capturePath, grpcUnary, waitFor } from '@kubeshark-mcp/testkit';
import { PacketStore, SnapshotStore, WorkerEngine, startWorkerServer, type RunningWorkerServer } from '@kubeshark-mcp/worker';
import { buildHub, validateConfig, DEFAULT_CONFIG, type Hub } from '../src';

/**
 * Three in-process workers (real gRPC on 127.0.0.1, port 0) behind one hub, read through the
 * official MCP SDK client over HTTP. Every worker replays the same HTTP capture shifted in time
 * by a different offset, so their API calls interleave and their IP pairs coincide, plus
 * captures of its own, so some flow groups exist on one node only. Expected answers come from
 * asking each worker directly over gRPC and combining by hand.
 */

const NODES = ['node-a', 'node-b', 'node-c'] as const;
const SHARED = 'zeek/http_http-body-match.pcap';
/**
 * Shifts that interleave the shared capture's requests (a burst a few to 50 us apart) across
 * nodes; node-a and node-b are not shifted against each other, so their calls tie exactly and
 * the merge's tie-break (node name) is exercised too.
 */
const SHIFT_US = [0, 0, 23];
const OWN: Record<(typeof NODES)[number], string[]> = {
  'node-a': ['ndpi/http_ipv6.pcap'],
  'node-b': ['zeek/redis_pubsub.pcap', 'suricata-verify/dns-udp-google.com-a-aaaa-mx.pcap'],
  'node-c': ['ndpi/mongodb.pcap'],
};
const DEADLINE_MS = 3000;

const TMP = mkdtempSync(path.join(tmpdir(), 'hub-multi-'));

/** Rewrites a capture as pcapng with every timestamp moved by `shiftUs`. */
function shifted(capture: string, shiftUs: number): string {
  const parts: Buffer[] = [pcapngSectionHeader('multi-worker test')];
  const ifaces = new Map<number, number>();
  const r = new CaptureReader((p: RawPacket) => {
    let id = ifaces.get(p.linkType);
    if (id === undefined) {
      id = ifaces.size;
      ifaces.set(p.linkType, id);
      parts.push(pcapngInterface(p.linkType));
    }
    const ns = p.tsNsec + shiftUs * 1000;
    const b = Buffer.alloc(pcapngPacketSize(p.capLen));
    writePcapngPacket(b, 0, id, p.tsSec + Math.floor(ns / 1e9), ns % 1e9, p.buf.subarray(p.offset, p.offset + p.capLen), p.origLen);
    parts.push(b);
  });
  r.push(readFileSync(capturePath(capture)));
  r.end();
  const out = path.join(TMP, `shifted-${shiftUs}-${path.basename(capture)}.pcapng`);
  writeFileSync(out, Buffer.concat(parts));
  return out;
}

/** Files sorted by the time of their first packet. */
function byFirstPacket(files: string[]): string[] {
  const first = (file: string): number => {
    let t = Infinity;
    const r = new CaptureReader((p) => {
      if (t === Infinity) t = p.tsSec * 1e9 + p.tsNsec;
    });
    r.push(readFileSync(file));
    return t;
  };
  return files.map((f) => [first(f), f] as const).sort((a, b) => a[0] - b[0]).map(([, f]) => f);
}

interface TestWorker {
  node: string;
  engine: WorkerEngine;
  server: RunningWorkerServer;
  port: number;
  client: WorkerClient;
}

async function startWorker(node: string, files: string[]): Promise<TestWorker> {
  const dir = path.join(TMP, node);
  const engine = new WorkerEngine(node, 'test', PacketStore.open({ dir: path.join(dir, 'ring') }), new SnapshotStore(path.join(dir, 'snapshots')));
  await engine.replay(files);
  const server = await startWorkerServer(engine, '127.0.0.1', 0);
  return { node, engine, server, port: server.port, client: createWorkerClient(server.address) };
}

interface WireEntry {
  id: string;
  node: string;
  timestamp_us: number;
  protocol: string;
}

function streamAll(client: WorkerClient): Promise<WireEntry[]> {
  return new Promise((resolve, reject) => {
    const out: WireEntry[] = [];
    const call = client.StreamEntries({ kfl: '', since_us: 0, until_us: 0, limit: 0, cursor: '', follow: false });
    call.on('data', (f: { entry?: WireEntry }) => f.entry && out.push(f.entry));
    call.on('error', reject);
    call.on('end', () => resolve(out));
  });
}

interface WireFlow {
  id: string;
  node: string;
  client: { ip: string };
  server: { ip: string };
  tcp_handshake_server_us?: number;
}

const workers: TestWorker[] = [];
let hub: Hub;
let client: Client;
let url: URL;

beforeAll(async () => {
  // Files in time order, so each worker's packet store (and export) is in time order as a live
  // capture's is.
  for (const [i, node] of NODES.entries()) workers.push(await startWorker(node, byFirstPacket([shifted(SHARED, SHIFT_US[i]!), ...OWN[node].map(capturePath)])));
  hub = await buildHub(
    validateConfig({ ...DEFAULT_CONFIG, host: '127.0.0.1', port: 0, workers: workers.map((w) => `127.0.0.1:${w.port}`), workerDeadlineMs: DEADLINE_MS, exportDir: TMP }),
    { logger: false },
  );
  await hub.app.listen({ host: '127.0.0.1', port: 0 });
  url = new URL(`http://127.0.0.1:${(hub.app.server.address() as { port: number }).port}/mcp`);
  client = new Client({ name: 'multi-worker', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(url));
}, 60_000);

afterAll(async () => {
  await client?.close();
  await hub?.app.close();
  for (const w of workers) {
    w.client.close();
    await w.server.close(0);
    await w.engine.close();
  }
  rmSync(TMP, { recursive: true, force: true });
});

async function call(name: string, args: Record<string, unknown> = {}): Promise<CallToolResult> {
  return (await client.callTool({ name, arguments: args })) as CallToolResult;
}
const text = (r: CallToolResult): string => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
const structured = <T>(r: CallToolResult): T => {
  if (r.isError) throw new Error(text(r));
  return r.structuredContent as T;
};
const ALL_OK = NODES.map((node) => ({ node, state: 'ok' }));

/** Every flow a worker holds, asked directly. */
async function workerFlows(w: TestWorker): Promise<{ flows: WireFlow[]; total: number }> {
  return grpcUnary(w.client, 'ListFlows', { limit: 10_000, aggregate: 'AGGREGATE_NONE', order_by: 'bytes' });
}

/** Nearest-rank percentile, the definition the tools document. */
const nearestRank = (values: number[], p: number): number => {
  const v = [...values].sort((a, b) => a - b);
  return v[Math.max(0, Math.ceil((p / 100) * v.length) - 1)]!;
};

describe('fan-out and merge over three workers', () => {
  test('list_l4_flows pages through the flows of all three nodes exactly once, ordered by bytes', async () => {
    const own = await Promise.all(workers.map(workerFlows));
    const expected = own.flatMap((o) => o.flows.map((f) => f.id)).sort();
    for (const limit of [7, 1000]) {
      const seen: { id: string; node: string; totals: { bytes: number } }[] = [];
      let cursor: string | undefined;
      do {
        const out = structured<{ flows: typeof seen; total: number; nextCursor?: string; nodes: unknown }>(await call('list_l4_flows', { limit, ...(cursor ? { cursor } : {}) }));
        expect(out.total).toBe(own.reduce((n, o) => n + o.total, 0));
        expect(out.nodes).toEqual(ALL_OK);
        seen.push(...out.flows);
        cursor = out.nextCursor;
      } while (cursor);
      expect(seen.map((f) => f.id).sort()).toEqual(expected);
      expect(new Set(seen.map((f) => f.node))).toEqual(new Set(NODES));
      for (let i = 1; i < seen.length; i++) expect(seen[i - 1]!.totals.bytes).toBeGreaterThanOrEqual(seen[i]!.totals.bytes);
    }
  });

  test('list_api_calls pages, limit 1 to 7, equal the time-sorted union of the workers\' own StreamEntries', async () => {
    const own = await Promise.all(workers.map((w) => streamAll(w.client)));
    // Ties across nodes break by node name; within a node the worker's own order stands.
    const union = own.flatMap((entries, wi) => entries.map((e, i) => ({ ...e, wi, i }))).sort((a, b) => a.timestamp_us - b.timestamp_us || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0) || a.i - b.i);
    // The shifted copies really interleave: consecutive calls come from different nodes.
    const switches = union.filter((e, i) => i > 0 && union[i - 1]!.node !== e.node).length;
    expect(switches).toBeGreaterThan(10);
    for (const protocol of [undefined, 'dns', 'http'] as const) {
      const want = union.filter((e) => !protocol || e.protocol === protocol).map((e) => e.id);
      expect(want.length).toBeGreaterThan(0);
      for (let limit = 1; limit <= 7; limit++) {
        const got: string[] = [];
        let cursor: string | undefined;
        let pages = 0;
        do {
          const args = cursor ? { cursor, limit } : { limit, ...(protocol ? { protocol } : {}) };
          const out = structured<{ calls: { id: string }[]; nextCursor?: string; nodes: unknown }>(await call('list_api_calls', args));
          expect(out.nodes).toEqual(ALL_OK);
          got.push(...out.calls.map((c) => c.id));
          cursor = out.nextCursor;
          expect(++pages).toBeLessThan(want.length + 2);
        } while (cursor);
        expect(got).toEqual(want);
      }
    }
  }, 120_000);

  test('get_api_call routes by the node in the id; an unknown id is isError naming "id"', async () => {
    for (const w of workers) {
      const [first] = await streamAll(w.client);
      const out = structured<{ call: { id: string }; nodes: unknown }>(await call('get_api_call', { id: first!.id }));
      expect(out.call.id).toBe(first!.id);
      expect(out.nodes).toEqual([{ node: w.node, state: 'ok' }]);
    }
    for (const id of ['node-b/no-such/0', 'node-z/1/0']) {
      const r = await call('get_api_call', { id });
      expect(r.isError).toBe(true);
      expect(text(r)).toMatch(/\[not_found\].*"id"/);
    }
  });

  test('handshake percentiles: the summary\'s equal those of a sketch of every flow, one-node groups are exact, shared groups add up', async () => {
    const own = await Promise.all(workers.map(workerFlows));
    const values = own.flatMap((o) => o.flows.flatMap((f) => (f.tcp_handshake_server_us !== undefined ? [f.tcp_handshake_server_us] : [])));
    expect(values.length).toBeGreaterThan(20);
    const sketch = new RttSketch();
    for (const v of values) sketch.add(v);
    const s = structured<{ tcp_handshakes: number; tcp_handshake_p50_us: number; tcp_handshake_p90_us: number; tcp_handshake_p99_us: number; total_flows: number; nodes: unknown }>(await call('get_l4_flow_summary'));
    expect(s.nodes).toEqual(ALL_OK);
    expect(s.total_flows).toBe(own.reduce((n, o) => n + o.total, 0));
    expect(s.tcp_handshakes).toBe(values.length);
    for (const [p, got] of [[50, s.tcp_handshake_p50_us], [90, s.tcp_handshake_p90_us], [99, s.tcp_handshake_p99_us]] as const) {
      expect(got).toBeCloseTo(sketch.quantile(p / 100)!, 6);
      // And within the sketch's 1 % of the exact nearest-rank percentile over all flows.
      expect(Math.abs(got - nearestRank(values, p))).toBeLessThanOrEqual(0.01 * nearestRank(values, p) + 1e-9);
    }

    interface GroupOut {
      key: string;
      flows: number;
      tcp_handshakes: number;
      tcp_handshake_p50_us?: number;
      tcp_handshake_p99_us?: number;
    }
    const groups = structured<{ groups: GroupOut[]; total: number }>(await call('list_l4_flows', { aggregate: 'ip_pair', limit: 1000 })).groups;
    const byPair = new Map<string, { nodes: Set<string>; hs: number[]; flows: number }>();
    for (const f of own.flatMap((o) => o.flows)) {
      const key = `${f.client.ip} -> ${f.server.ip}`;
      const g = byPair.get(key) ?? { nodes: new Set(), hs: [], flows: 0 };
      g.nodes.add(f.node);
      g.flows++;
      if (f.tcp_handshake_server_us !== undefined) g.hs.push(f.tcp_handshake_server_us);
      byPair.set(key, g);
    }
    expect(groups.map((g) => g.key).sort()).toEqual([...byPair.keys()].sort());
    let single = 0;
    let shared = 0;
    for (const g of groups) {
      const want = byPair.get(g.key)!;
      expect(g.flows).toBe(want.flows);
      expect(g.tcp_handshakes).toBe(want.hs.length);
      if (want.hs.length === 0) continue;
      if (want.nodes.size === 1) {
        single++;
        expect(g.tcp_handshake_p50_us).toBe(nearestRank(want.hs, 50));
        expect(g.tcp_handshake_p99_us).toBe(nearestRank(want.hs, 99));
      } else {
        shared++;
        expect(want.nodes.size).toBe(3);
        expect(Math.abs(g.tcp_handshake_p50_us! - nearestRank(want.hs, 50))).toBeLessThanOrEqual(0.01 * nearestRank(want.hs, 50));
      }
    }
    expect(single).toBeGreaterThan(0);
    expect(shared).toBeGreaterThan(0);
  });

  test('get_api_stats adds the nodes\' requests per endpoint', async () => {
    const own = await Promise.all(workers.map((w) => grpcUnary<{ entries: number; groups: { service: string; method: string; endpoint: string; requests: number }[] }>(w.client, 'GetApiStats', {})));
    const want = new Map<string, number>();
    for (const g of own.flatMap((o) => o.groups)) {
      const k = `${g.service} ${g.method} ${g.endpoint}`;
      want.set(k, (want.get(k) ?? 0) + g.requests);
    }
    const out = structured<{ groups: { service: string; method: string; endpoint: string; requests: number }[]; nextCursor?: string; nodes: unknown }>(await call('get_api_stats', { limit: 500 }));
    expect(out.nodes).toEqual(ALL_OK);
    expect(out.nextCursor).toBeUndefined();
    expect(new Map(out.groups.map((g) => [`${g.service} ${g.method} ${g.endpoint}`, g.requests]))).toEqual(want);
    // The shared capture's endpoints were served on all three nodes.
    expect(Math.max(...out.groups.map((g) => g.requests))).toBeGreaterThanOrEqual(3);
  });

  test('export_pcap merges the three nodes into one pcapng in time order, one interface per node', async () => {
    const out = structured<{ url: string; packets: number; nodes: unknown }>(await call('export_pcap', {}));
    expect(out.nodes).toEqual(ALL_OK);
    const file = Buffer.from(await (await fetch(out.url)).arrayBuffer());
    const names = interfaceNames(file);
    // One interface per node and link type, named after the node.
    expect(new Set(names.map((n) => n.split('/')[0]))).toEqual(new Set(NODES));
    const merged = packetsOf(file);
    expect(merged.length).toBe(out.packets);
    for (let i = 1; i < merged.length; i++) expect(merged[i - 1]!.ts <= merged[i]!.ts).toBe(true);
    // Per node, the packets are exactly the worker's own export, in its order.
    for (const w of workers) {
      const alone = packetsOf(await exportDirect(w.client));
      expect(merged.filter((p) => names[p.iface]!.split('/')[0] === w.node).map((p) => `${p.ts} ${p.md5}`)).toEqual(alone.map((p) => `${p.ts} ${p.md5}`));
    }
  });

  test('snapshots: created on every node, listed with their node, got from each, exported merged, deleted everywhere', async () => {
    const created = structured<{ snapshot: { node: string }; snapshots: { node: string; packets: number }[]; nodes: unknown }>(await call('create_snapshot', { name: 'multi-1' }));
    expect(created.nodes).toEqual(ALL_OK);
    expect(created.snapshots.map((s) => s.node)).toEqual([...NODES]);
    const listed = structured<{ snapshots: { name: string; node: string }[]; total: number }>(await call('list_snapshots'));
    expect(listed.snapshots.map((s) => `${s.name}@${s.node}`)).toEqual(NODES.map((n) => `multi-1@${n}`));
    const got = structured<{ snapshots: { node: string }[] }>(await call('get_snapshot', { name: 'multi-1' }));
    expect(got.snapshots.map((s) => s.node)).toEqual([...NODES]);
    const exported = structured<{ packets: number }>(await call('export_pcap', { snapshot: 'multi-1' }));
    expect(exported.packets).toBe(created.snapshots.reduce((n, s) => n + s.packets, 0));
    const deleted = structured<{ nodes: unknown }>(await call('delete_snapshot', { name: 'multi-1' }));
    expect(deleted.nodes).toEqual(ALL_OK);
    const gone = await call('get_snapshot', { name: 'multi-1' });
    expect(gone.isError).toBe(true);
    expect(text(gone)).toMatch(/\[not_found\] \(argument "name"\)/);
  });

  test('export_pcap of flow ids goes to their nodes only; a snapshot one node holds exports from it alone', async () => {
    const c = (await workerFlows(workers[2]!)).flows[0]!;
    const one = structured<{ url: string; packets: number; nodes: unknown }>(await call('export_pcap', { flow_ids: [c.id] }));
    expect(one.nodes).toEqual([{ node: 'node-c', state: 'ok' }]);
    const direct = packetsOf(await exportDirect(workers[2]!.client, { flow_ids: [c.id] }));
    expect(packetsOf(Buffer.from(await (await fetch(one.url)).arrayBuffer())).map((p) => p.md5)).toEqual(direct.map((p) => p.md5));
    expect(one.packets).toBe(direct.length);

    const unknown = await call('export_pcap', { flow_ids: ['node-z/1'] });
    expect(unknown.isError).toBe(true);
    expect(text(unknown)).toMatch(/\(argument "flow_ids"\).*no worker is node node-z/);

    await grpcUnary(workers[0]!.client, 'CreateSnapshot', { name: 'only-a' });
    try {
      const listed = structured<{ snapshots: { node: string }[] }>(await call('list_snapshots'));
      expect(listed.snapshots.map((s) => s.node)).toEqual(['node-a']);
      const got = structured<{ snapshot: { node: string }; nodes: unknown }>(await call('get_snapshot', { name: 'only-a' }));
      expect(got.snapshot.node).toBe('node-a');
      const out = structured<{ nodes: unknown; packets: number }>(await call('export_pcap', { snapshot: 'only-a' }));
      expect(out.nodes).toEqual([{ node: 'node-a', state: 'ok' }]);
      expect(out.packets).toBe(packetsOf(await exportDirect(workers[0]!.client, { snapshot: 'only-a' })).length);
    } finally {
      expect(structured<{ nodes: unknown }>(await call('delete_snapshot', { name: 'only-a' })).nodes).toEqual(ALL_OK);
    }
    const none = await call('export_pcap', { snapshot: 'only-a' });
    expect(text(none)).toMatch(/\[not_found\] \(argument "snapshot"\)/);
  });

  test('the same error from every worker is reported once, with its field; a forged cursor is refused', async () => {
    const ctx = { signal: new AbortController().signal };
    const err = await hub.source.listFlows({ aggregate: 'none', order_by: 'speed' as 'bytes', limit: 5 }, ctx).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrafficSourceError);
    expect(err).toMatchObject({ code: 'invalid_argument', field: 'order_by' });
    expect((err as Error).message).toBe('order_by must be one of bytes, packets, recent, oldest (got "speed")');
    const bad = await hub.source.listApiCalls!({ limit: 1, after: 'not-a-cursor' }, ctx).catch((e: unknown) => e);
    expect(bad).toMatchObject({ code: 'invalid_argument', field: 'after' });
  });

  test('a killed worker: answers arrive within the deadline, name it unavailable and hold the others\' data; restarted, it is covered again', async () => {
    const b = workers[1]!;
    const others = await Promise.all([workers[0]!, workers[2]!].map(workerFlows));
    await b.server.close(0);
    for (const tool of ['get_l4_flow_summary', 'list_api_calls', 'list_l4_flows', 'get_api_stats'] as const) {
      const t0 = Date.now();
      const out = structured<{ nodes: { node: string; state: string; message?: string }[]; total_flows?: number; calls?: { node: string }[] }>(await call(tool));
      expect(Date.now() - t0).toBeLessThan(DEADLINE_MS + 5000);
      expect(out.nodes.find((n) => n.node === 'node-b')).toMatchObject({ state: 'unavailable', message: expect.any(String) });
      expect(out.nodes.filter((n) => n.state === 'ok').map((n) => n.node)).toEqual(['node-a', 'node-c']);
      if (out.total_flows !== undefined) expect(out.total_flows).toBe(others[0]!.total + others[1]!.total);
      if (out.calls) {
        expect(out.calls.length).toBeGreaterThan(0);
        expect(out.calls.every((c) => c.node !== 'node-b')).toBe(true);
      }
    }
    const health = (await (await fetch(new URL('/healthz', url))).json()) as { workers: { node?: string; state: string; error?: string }[] };
    expect(health.workers.find((w) => w.node === 'node-b')).toMatchObject({ state: 'unavailable', error: expect.stringMatching(/unavailable/) });
    expect(health.workers.filter((w) => w.state === 'connected')).toHaveLength(2);
    expect((await fetch(new URL('/readyz', url))).status).toBe(200);

    b.server = await startWorkerServer(b.engine, '127.0.0.1', b.port);
    const again = await waitFor('the hub to reach the restarted worker', async () => {
      const r = structured<{ nodes: { state: string }[]; total_flows: number }>(await call('get_l4_flow_summary'));
      return r.nodes.every((n) => n.state === 'ok') ? r : undefined;
    });
    expect(again.nodes).toEqual(ALL_OK);
    expect(again.total_flows).toBe(others[0]!.total + others[1]!.total + (await workerFlows(b)).total);
  }, 60_000);
});

/** A gRPC server that accepts every Worker call and never answers: a hung worker. */
async function startHungWorker(): Promise<{ address: string; stop: () => void }> {
  const server = new grpc.Server();
  const never = (): void => undefined;
  const handlers = Object.fromEntries(Object.keys(workerServiceDefinition()).map((k) => [k, never]));
  server.addService(workerServiceDefinition(), handlers);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  return { address: `127.0.0.1:${port}`, stop: () => server.forceShutdown() };
}

describe('a hung worker and the export limits over several workers', () => {
  let h: Hub;
  let c: Client;
  let hung: { address: string; stop: () => void };
  const exportDir = path.join(TMP, 'exports-small');

  beforeAll(async () => {
    mkdirSync(exportDir);
    hung = await startHungWorker();
    h = await buildHub(
      validateConfig({
        ...DEFAULT_CONFIG,
        host: '127.0.0.1',
        port: 0,
        workers: [...workers.map((w) => `127.0.0.1:${w.port}`), hung.address],
        workerDeadlineMs: 1000,
        exportDir,
      }),
      { logger: false },
    );
    await h.app.listen({ host: '127.0.0.1', port: 0 });
    c = new Client({ name: 'hung', version: '1' });
    await c.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${(h.app.server.address() as { port: number }).port}/mcp`)));
  });

  afterAll(async () => {
    await c?.close();
    await h?.app.close();
    hung?.stop();
  });

  test('a worker that never answers costs one deadline: the answer is partial and says why', async () => {
    for (const tool of ['get_l4_flow_summary', 'list_api_calls', 'list_snapshots'] as const) {
      const t0 = Date.now();
      const r = (await c.callTool({ name: tool, arguments: {} })) as CallToolResult;
      expect(Date.now() - t0).toBeLessThan(1000 + 4000);
      const out = structured<{ nodes: { node: string; state: string; message?: string }[] }>(r);
      expect(out.nodes).toEqual([...ALL_OK, { node: hung.address, state: 'unavailable', message: 'no answer within the deadline (1000 ms)' }]);
    }
  });

  test('a merged export fails when one worker stays silent, and leaves nothing behind', async () => {
    const r = (await c.callTool({ name: 'export_pcap', arguments: {} })) as CallToolResult;
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(new RegExp(`\\[deadline_exceeded\\].*${hung.address.replace(/\./g, '\\.')} sent nothing for 1000 ms`));
    await waitFor('the partial file to go', async () => (readdirSync(h.downloads.dir).length === 0 ? true : undefined), 3000);
  });

  test('a merged export beyond the size limit is refused and leaves nothing behind; cancelling stops every stream', async () => {
    const small = await buildHub(validateConfig({ ...DEFAULT_CONFIG, host: '127.0.0.1', port: 0, workers: workers.map((w) => `127.0.0.1:${w.port}`), exportDir, exportMaxBytes: 20_000 }), { logger: false });
    try {
      const err = await small.source.exportPcap!({ format: 'pcapng' }, { signal: new AbortController().signal }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TrafficSourceError);
      expect((err as TrafficSourceError).code).toBe('resource_exhausted');
      expect((err as Error).message).toMatch(/limit of 20000 bytes/);
      await waitFor('the partial file to go', async () => (readdirSync(small.downloads.dir).length === 0 ? true : undefined), 3000);
    } finally {
      await small.app.close();
    }

    const abort = new AbortController();
    const err = await hub.source.exportPcap!({ format: 'pcapng' }, { signal: abort.signal }, () => abort.abort()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrafficSourceError);
    expect((err as TrafficSourceError).code).toBe('cancelled');
    await waitFor('no partial file', async () => (readdirSync(hub.downloads.dir).some((f) => f.endsWith('.part')) ? undefined : true), 3000);
  });

  test('a merged classic pcap export needs one link type', async () => {
    const r = await call('export_pcap', { format: 'pcap' });
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/\(argument "format"\).*more than one link type/);
  });
});

describe('when no worker answers', () => {
  test('a call fails naming every worker, within the deadline; /readyz is 503', async () => {
    const dead = await Promise.all([0, 1].map(async () => {
      const w = await startWorkerServer(new WorkerEngine('gone', 'test'), '127.0.0.1', 0);
      await w.close(0);
      return w.address;
    }));
    const h = await buildHub(validateConfig({ ...DEFAULT_CONFIG, host: '127.0.0.1', port: 0, workers: dead, workerDeadlineMs: 1000 }), { logger: false });
    try {
      await h.app.listen({ host: '127.0.0.1', port: 0 });
      const base = `http://127.0.0.1:${(h.app.server.address() as { port: number }).port}`;
      const c = new Client({ name: 'dead', version: '1' });
      await c.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`)));
      const t0 = Date.now();
      const r = (await c.callTool({ name: 'get_l4_flow_summary', arguments: {} })) as CallToolResult;
      expect(Date.now() - t0).toBeLessThan(6000);
      expect(r.isError).toBe(true);
      expect(text(r)).toMatch(/\[(unavailable|deadline_exceeded)\]/);
      expect(text(r)).toMatch(/no worker could answer: /);
      for (const a of dead) expect(text(r)).toContain(a);
      expect((await fetch(`${base}/readyz`)).status).toBe(503);
      await c.close();
    } finally {
      await h.app.close();
    }
  });
});

/** if_name of every interface of a pcapng file, by interface id. */
function interfaceNames(file: Buffer): string[] {
  const names: string[] = [];
  for (let at = 0; at + 12 <= file.length; ) {
    const type = file.readUInt32LE(at);
    const len = file.readUInt32LE(at + 4);
    if (type === 1) {
      let name = '';
      for (let o = at + 16; o + 4 <= at + len - 4; ) {
        const code = file.readUInt16LE(o);
        const l = file.readUInt16LE(o + 2);
        if (code === 0) break;
        if (code === 2) name = file.toString('utf8', o + 4, o + 4 + l);
        o += 4 + ((l + 3) & ~3);
      }
      names.push(name);
    }
    at += len;
  }
  return names;
}

function packetsOf(file: Buffer): { ts: string; md5: string; iface: number }[] {
  const out: { ts: string; md5: string; iface: number }[] = [];
  const r = new CaptureReader((p) =>
    out.push({
      ts: `${String(p.tsSec).padStart(12, '0')}.${String(p.tsNsec).padStart(9, '0')}`,
      md5: createHash('md5').update(p.buf.subarray(p.offset, p.offset + p.capLen)).digest('hex'),
      iface: p.interfaceId,
    }),
  );
  r.push(file);
  r.end();
  return out;
}

function exportDirect(c: WorkerClient, req: object = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    const s = c.ExportPcap({ format: 'pcapng', ...req }, { deadline: Date.now() + 10_000 } as grpc.CallOptions);
    s.on('data', (chunk: { data: Buffer }) => parts.push(Buffer.from(chunk.data)));
    s.on('error', reject);
    s.on('end', () => resolve(Buffer.concat(parts)));
  });
}
