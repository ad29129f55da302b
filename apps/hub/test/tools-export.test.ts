import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult, Progress } from '@modelcontextprotocol/sdk/types.js';
import { CaptureReader, type RawPacket } from '@kubeshark-mcp/capture';
import { TrafficSourceError, isoMicros } from '@kubeshark-mcp/mcp-core';
import { GOLDEN_DIR, capturePath, formatEpoch, loadFrames, loadGolden, startWorkerProcess, type GoldenFrame, waitFor } from '@kubeshark-mcp/testkit';
import { buildHub, validateConfig, DEFAULT_CONFIG, type Hub, type HubConfig } from '../src';

/**
 * The status, boundary, export and snapshot tools end to end: the worker bin in its own process
 * replaying fixture captures into its packet ring, hubs on port 0 over real gRPC, the official
 * MCP SDK client over real HTTP, and downloads fetched over HTTP. Expected packets come from
 * tshark's per-frame reading of the same captures (fixtures/golden/<capture>/frames.tsv:
 * timestamp, lengths and the MD5 of the captured bytes).
 */

const CAPTURES = ['zeek/http_get.pcap', 'ndpi/http_ipv6.pcap', 'grpc-go-book/grpc_Unary.pcapng', 'ndpi/pgsql.pcap'];
const NODE = 'node-x';

/** Rows of a tshark golden .psv of a capture ([] when it has none). */
function psvRows(capture: string, file: string): Record<string, string>[] {
  const f = path.join(GOLDEN_DIR, capture, file);
  if (!existsSync(f)) return [];
  const [head, ...rows] = readFileSync(f, 'utf8').trim().split('\n');
  const cols = head!.split('|');
  return rows.map((r) => Object.fromEntries(r.split('|').map((v, i) => [cols[i]!, v])));
}

const epochUs = (t: string): number => Math.round(Number(t) * 1e6);

/**
 * Request times (us) of the calls tshark lists in the captures, which span the worker's entries
 * window: HTTP requests, HTTP/2 request HEADERS frames, and PostgreSQL frontend messages (the
 * capture's first one is a startup, an entry of its own).
 */
const REQUEST_US = CAPTURES.flatMap((c) => {
  const http = psvRows(c, 'http.psv').filter((r) => r['http.request.method']).map((r) => epochUs(r['frame.time_epoch']!));
  const h2 = psvRows(c, 'http2-frames.psv').filter((r) => r.headers!.includes('":method"')).map((r) => epochUs(r.time!));
  const frames = existsSync(path.join(GOLDEN_DIR, c, 'frames.tsv')) ? new Map(loadFrames(c).map((f) => [f.frame, f.timeEpoch])) : new Map<number, string>();
  const pg = psvRows(c, 'postgresql.psv').filter((r) => r['pgsql.frontend'] === '1').map((r) => epochUs(frames.get(Number(r['frame.number']))!));
  return [...http, ...h2, ...pg];
});

const TMP = mkdtempSync(path.join(tmpdir(), 'hub-tools-'));
const DATA_DIR = path.join(TMP, 'worker');
const EXPORTS = path.join(TMP, 'exports');
const EXPORTS_SMALL = path.join(TMP, 'exports-small');
for (const d of [EXPORTS, EXPORTS_SMALL]) mkdirSync(d);

/** Every frame, in the order the worker replays (and stores) them. */
const ALL: GoldenFrame[] = CAPTURES.flatMap((c) => loadFrames(c));

const us = (epoch: string): number => {
  const [s, frac] = epoch.split('.') as [string, string];
  return Number(s) * 1e6 + Math.floor(Number(frac.padEnd(9, '0')) / 1000);
};

interface Seen {
  timeEpoch: string;
  len: number;
  capLen: number;
  md5: string;
}

/** Reads a downloaded capture with our reader; compared with tshark's reading of the source. */
function parse(file: Buffer): Seen[] {
  const out: Seen[] = [];
  const r = new CaptureReader((p: RawPacket) =>
    out.push({
      timeEpoch: formatEpoch({ sec: p.tsSec, nsec: p.tsNsec }),
      len: p.origLen,
      capLen: p.capLen,
      md5: createHash('md5').update(p.buf.subarray(p.offset, p.offset + p.capLen)).digest('hex'),
    }),
  );
  r.push(file);
  r.end();
  return out;
}

const expected = (frames: GoldenFrame[]): Seen[] => frames.map((f) => ({ timeEpoch: f.timeEpoch, len: f.len, capLen: f.capLen, md5: f.md5 }));

let worker: ChildProcess;
let workerAddress: string;
const hubs: Hub[] = [];
const clients: Client[] = [];
let hub: Hub;
let client: Client;

async function startWorker(): Promise<string> {
  const started = await startWorkerProcess(['--listen', '127.0.0.1:0', '--node', NODE, '--data-dir', DATA_DIR, ...CAPTURES.flatMap((c) => ['--capture', capturePath(c)])]);
  worker = started.proc;
  return started.address;
}

async function startHub(overrides: Partial<HubConfig>): Promise<{ hub: Hub; client: Client }> {
  const h = await buildHub(validateConfig({ ...DEFAULT_CONFIG, host: '127.0.0.1', port: 0, workers: [workerAddress], workerDeadlineMs: 5000, ...overrides }), { logger: false });
  hubs.push(h);
  await h.app.listen({ host: '127.0.0.1', port: 0 });
  const port = (h.app.server.address() as { port: number }).port;
  const c = new Client({ name: 'tools-export', version: '1.0.0' });
  await c.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`)));
  clients.push(c);
  return { hub: h, client: c };
}


async function call(name: string, args: Record<string, unknown> = {}, c = client): Promise<CallToolResult> {
  return (await c.callTool({ name, arguments: args })) as CallToolResult;
}

const text = (r: CallToolResult): string => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');

interface ExportOut {
  url: string;
  name: string;
  mime_type: string;
  bytes: number;
  packets: number;
  format: string;
  expires_at: string;
  nodes: { node: string; state: string }[];
}

/** Calls export_pcap, checks the result's shape and downloads the file it links to. */
async function exportAndDownload(args: Record<string, unknown>, c = client): Promise<{ out: ExportOut; file: Buffer; res: Response; result: CallToolResult }> {
  const result = await call('export_pcap', args, c);
  expect(text(result)).not.toMatch(/failed/);
  expect(result.isError).toBeFalsy();
  const out = result.structuredContent as unknown as ExportOut;
  const link = result.content.find((x) => x.type === 'resource_link');
  expect(link).toEqual({ type: 'resource_link', uri: out.url, name: out.name, mimeType: out.mime_type, size: out.bytes, description: expect.any(String) });
  const res = await fetch(out.url);
  expect(res.status).toBe(200);
  const file = Buffer.from(await res.arrayBuffer());
  expect(file.length).toBe(out.bytes);
  return { out, file, res, result };
}

beforeAll(async () => {
  workerAddress = await startWorker();
  ({ hub, client } = await startHub({ exportDir: EXPORTS }));
  await waitFor('the worker to replay every capture', async () => {
    const r = await call('get_status');
    const sources = (r.structuredContent as { workers: { sources?: { state: string }[] }[] }).workers[0]?.sources ?? [];
    return sources.length === CAPTURES.length && sources.every((s) => s.state === 'done') ? true : undefined;
  });
}, 30_000);

afterAll(async () => {
  for (const c of clients) await c.close().catch(() => undefined);
  for (const h of hubs) await h.app.close();
  if (worker && worker.exitCode === null) {
    const exited = new Promise((r) => worker.once('exit', r));
    worker.kill('SIGKILL');
    await exited;
  }
  rmSync(TMP, { recursive: true, force: true });
});

test('tools/list offers the catalogue with the documented annotations', async () => {
  const { tools } = await client.listTools();
  const byName = new Map(tools.map((t) => [t.name, t]));
  expect([...byName.keys()]).toEqual([
    'list_l4_flows',
    'get_l4_flow_summary',
    'get_service_map',
    'list_api_calls',
    'get_api_call',
    'get_api_stats',
    'apply_filter',
    'list_workloads',
    'list_ips',
    'get_status',
    'get_data_boundaries',
    'export_pcap',
    'create_snapshot',
    'list_snapshots',
    'get_snapshot',
    'delete_snapshot',
    'capture_traffic',
  ]);
  for (const name of ['get_service_map', 'list_api_calls', 'get_api_call', 'get_api_stats', 'apply_filter', 'list_workloads', 'list_ips', 'get_status', 'get_data_boundaries', 'export_pcap', 'list_snapshots', 'get_snapshot']) {
    expect(byName.get(name)!.annotations).toMatchObject({ readOnlyHint: true, openWorldHint: false });
  }
  expect(byName.get('create_snapshot')!.annotations).toMatchObject({ readOnlyHint: false, destructiveHint: false });
  expect(byName.get('delete_snapshot')!.annotations).toMatchObject({ readOnlyHint: false, destructiveHint: true });
  expect(Object.keys(byName.get('export_pcap')!.inputSchema.properties ?? {}).sort()).toEqual(['end', 'flow_ids', 'format', 'ips', 'kfl', 'l4proto', 'ports', 'snapshot', 'start']);
  expect(byName.get('get_data_boundaries')!.description).toMatch(/null until L7/);
});

describe('get_status and get_data_boundaries', () => {
  const times = ALL.map((f) => us(f.timeEpoch));
  const oldest = Math.min(...times);
  const newest = Math.max(...times);

  test('get_status reports the worker, each replayed file and the counters tshark agrees with', async () => {
    const r = await call('get_status');
    expect(r.isError).toBeFalsy();
    const s = r.structuredContent as {
      workers: {
        node: string;
        address: string;
        state: string;
        version: string;
        started_at: string;
        packets_seen: number;
        flows_tracked: number;
        sources: { kind: string; name: string; state: string; packets: number }[];
        boundaries: { flows: { oldest: string; newest: string }; packets: { oldest: string; newest: string }; entries: { oldest: string; newest: string } | null };
      }[];
      nodes: unknown[];
    };
    expect(s.nodes).toEqual([{ node: NODE, state: 'ok' }]);
    expect(s.workers).toHaveLength(1);
    const w = s.workers[0]!;
    expect(w).toMatchObject({ node: NODE, address: workerAddress, state: 'connected', version: expect.any(String), started_at: expect.stringMatching(/Z$/) });
    expect(w.sources).toEqual(
      CAPTURES.map((c) => ({ kind: 'file', name: capturePath(c), state: 'done', packets: loadGolden(c).frames, bytes: expect.any(Number) })),
    );
    expect(w.packets_seen).toBe(ALL.length);
    expect(w.flows_tracked).toBe(CAPTURES.reduce((n, c) => n + loadGolden(c).tcp.length + loadGolden(c).udp.length, 0));
    expect(w.boundaries.flows).toMatchObject({ oldest: isoMicros(oldest), newest: isoMicros(newest) });
    expect(w.boundaries.packets).toMatchObject({ oldest: isoMicros(oldest), newest: isoMicros(newest) });
    expect(w.boundaries.entries).toMatchObject({ oldest: isoMicros(Math.min(...REQUEST_US)), newest: isoMicros(Math.max(...REQUEST_US)) });
    const lines = (r.content[0] as { text: string }).text.split('\n');
    expect(lines[0]).toBe(`1 worker (nodes: ${NODE})`);
    expect(lines[1]).toContain(`${NODE} connected`);
    expect(lines[1]).toContain(`${ALL.length} packets seen`);
    expect(lines.filter((l) => l.startsWith('  file '))).toHaveLength(CAPTURES.length);
    expect(lines.join('\n').length).toBeLessThan(2000);
  });

  test('get_data_boundaries gives the flow, packet and API call windows as RFC 3339 and Unix ms', async () => {
    const r = await call('get_data_boundaries');
    expect(r.isError).toBeFalsy();
    const win = (from: number, to: number) => ({ oldest: isoMicros(from), newest: isoMicros(to), oldest_ms: Math.floor(from / 1000), newest_ms: Math.ceil(to / 1000) });
    const window = win(oldest, newest);
    expect(REQUEST_US.length).toBeGreaterThan(0);
    expect(r.structuredContent).toEqual({
      boundaries: [{ node: NODE, flows: window, packets: window, entries: win(Math.min(...REQUEST_US), Math.max(...REQUEST_US)) }],
      nodes: [{ node: NODE, state: 'ok' }],
    });
    expect(text(r)).not.toContain('API calls not captured');
  });

  test('the Unix ms window, used as start/end, exports every packet', async () => {
    const b = (await call('get_data_boundaries')).structuredContent as { boundaries: { packets: { oldest_ms: number; newest_ms: number } }[] };
    const { out } = await exportAndDownload({ start: b.boundaries[0]!.packets.oldest_ms, end: b.boundaries[0]!.packets.newest_ms });
    expect(out.packets).toBe(ALL.length);
  });
});

describe('export_pcap', () => {
  test('a time window (RFC 3339 with microseconds) downloads exactly the packets tshark stamps inside it', async () => {
    const frames = loadFrames('grpc-go-book/grpc_Unary.pcapng');
    const since = us(frames[1000]!.timeEpoch);
    const until = us(frames[3000]!.timeEpoch);
    const { out, file, res, result } = await exportAndDownload({ start: isoMicros(since), end: isoMicros(until) });
    const want = ALL.filter((f) => us(f.timeEpoch) >= since && us(f.timeEpoch) <= until);
    expect(want.length).toBeGreaterThan(1000);
    expect(parse(file)).toEqual(expected(want));
    expect(out).toMatchObject({ packets: want.length, format: 'pcapng', mime_type: 'application/x-pcapng', nodes: [{ node: NODE, state: 'ok' }] });
    expect(out.name).toMatch(/^kubeshark-node-x-\d{8}T\d{6}Z\.pcapng$/);
    expect(out.url).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:\\d+/downloads/[A-Za-z0-9_-]{32}/${out.name.replace(/\./g, '\\.')}$`));
    expect(Date.parse(out.expires_at) - Date.now()).toBeGreaterThan(59 * 60 * 1000);
    expect(res.headers.get('content-type')).toBe('application/x-pcapng');
    expect(res.headers.get('content-disposition')).toBe(`attachment; filename="${out.name}"`);
    expect(text(result)).toContain(`Exported ${want.length} packets`);
    // The text rendering and the link; the JSON is in structuredContent (no JSON text block for a client on 2025-11-25).
    expect(result.content.map((c) => c.type)).toEqual(['text', 'resource_link']);
  });

  test('format pcap from a Unix ms window: nanosecond classic pcap, its own media type', async () => {
    const frames = loadFrames('zeek/http_get.pcap');
    const start = Math.floor(us(frames[0]!.timeEpoch) / 1000);
    const end = Math.ceil(us(frames[frames.length - 1]!.timeEpoch) / 1000);
    const { out, file, res } = await exportAndDownload({ start, end, format: 'pcap' });
    expect(file.readUInt32LE(0)).toBe(0xa1b23c4d);
    expect(parse(file)).toEqual(expected(ALL.filter((f) => us(f.timeEpoch) >= start * 1000 && us(f.timeEpoch) <= end * 1000)));
    expect(parse(file)).toEqual(expected(frames));
    expect(out).toMatchObject({ format: 'pcap', mime_type: 'application/vnd.tcpdump.pcap', packets: frames.length });
    expect(res.headers.get('content-type')).toBe('application/vnd.tcpdump.pcap');
    expect(out.name).toMatch(/\.pcap$/);
  });

  test('a flow id from list_l4_flows downloads the packets of its tshark conversation', async () => {
    const frames = loadFrames('ndpi/http_ipv6.pcap');
    const flows = (await call('list_l4_flows', { ip: '2a03:b0c0:3:d0::70:1001', order_by: 'oldest', limit: 5 })).structuredContent as {
      flows: { id: string; first_seen: string; client_to_server: { packets: number }; server_to_client: { packets: number } }[];
    };
    const flow = flows.flows[0]!;
    const { out, file } = await exportAndDownload({ flow_ids: [flow.id] });
    const stream = frames.find((f) => isoMicros(us(f.timeEpoch)) === flow.first_seen && f.tcpStream !== undefined)!.tcpStream;
    const want = frames.filter((f) => f.tcpStream === stream);
    expect(parse(file)).toEqual(expected(want));
    expect(out.packets).toBe(flow.client_to_server.packets + flow.server_to_client.packets);
  });

  test('ips, ports and l4proto filters', async () => {
    const pgsql = loadFrames('ndpi/pgsql.pcap');
    const byPort = await exportAndDownload({ ports: [5432], l4proto: 'tcp' });
    expect(parse(byPort.file)).toEqual(expected(pgsql.filter((f) => f.tcpStream !== undefined)));
    const byIp = await exportAndDownload({ ips: ['192.150.187.43'] });
    expect(parse(byIp.file)).toEqual(expected(loadFrames('zeek/http_get.pcap')));
  });

  test('an export matching nothing is an empty, valid file and says so', async () => {
    const { out, file, result } = await exportAndDownload({ ports: [9] });
    expect(out.packets).toBe(0);
    expect(parse(file)).toEqual([]);
    expect(text(result)).toMatch(/No packets matched.*get_data_boundaries/s);
  });

  test('progress notifications carry the bytes received so far when the client sends a progress token', async () => {
    const updates: Progress[] = [];
    const result = (await client.callTool({ name: 'export_pcap', arguments: {} }, undefined, { onprogress: (p) => updates.push(p) })) as CallToolResult;
    expect(result.isError).toBeFalsy();
    const out = result.structuredContent as unknown as ExportOut;
    expect(out.packets).toBe(ALL.length);
    expect(updates.length).toBeGreaterThanOrEqual(1);
    const values = updates.map((u) => u.progress);
    expect(values).toEqual([...values].sort((a, b) => a - b));
    expect(new Set(values).size).toBe(values.length);
    expect(values[values.length - 1]).toBe(out.bytes);
    expect(updates[updates.length - 1]!.message).toBe(`${ALL.length} packets, ${out.bytes} bytes`);
  });

  test('an unknown token, a wrong file name and an expired link give 404; expiry deletes the file', async () => {
    const base = new URL(((await call('export_pcap', { ports: [5432] })).structuredContent as unknown as ExportOut).url);
    expect((await fetch(new URL('/downloads/not-a-token/x.pcapng', base))).status).toBe(404);
    expect((await fetch(new URL(base.pathname.replace(/[^/]+$/, 'other.pcapng'), base))).status).toBe(404);

    const short = await startHub({ exportDir: EXPORTS_SMALL, exportTtlMs: 1000 });
    const { out } = await exportAndDownload({ ports: [5432] }, short.client);
    expect(short.hub.downloads.count()).toBe(1);
    const files = (): string[] => readdirSync(short.hub.downloads.dir);
    expect(files()).toHaveLength(1);
    await waitFor('the link to expire', async () => ((await fetch(out.url)).status === 404 ? true : undefined), 5000);
    expect(files()).toEqual([]);
    expect(short.hub.downloads.count()).toBe(0);
  });

  test('an export beyond the size limit is refused with the limit named, and nothing is left behind', async () => {
    const small = await startHub({ exportDir: EXPORTS_SMALL, exportMaxBytes: 100_000 });
    const r = await call('export_pcap', {}, small.client);
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/\[resource_exhausted\].*limit of 100000 bytes.*narrow/);
    await waitFor('the partial file to go', async () => (readdirSync(small.hub.downloads.dir).length === 0 ? true : undefined), 2000);
    // A smaller export through the same hub still works.
    const ok = await exportAndDownload({ ports: [5432] }, small.client);
    expect(ok.out.packets).toBe(loadFrames('ndpi/pgsql.pcap').filter((f) => f.tcpStream !== undefined).length);
  });

  test('cancelling stops the gRPC stream and deletes the partial file', async () => {
    const abort = new AbortController();
    let chunks = 0;
    const err = await hub.source.exportPcap!({ format: 'pcapng' }, { signal: abort.signal }, () => {
      chunks++;
      abort.abort();
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrafficSourceError);
    expect((err as TrafficSourceError).code).toBe('cancelled');
    expect(chunks).toBe(1);
    await waitFor('the partial file to go', async () => (readdirSync(hub.downloads.dir).some((f) => f.endsWith('.part')) ? undefined : true), 2000);
    // Every file left is a finished download, one per live link.
    expect(readdirSync(hub.downloads.dir)).toHaveLength(hub.downloads.count());
  });

  test('cancelling over MCP (notifications/cancelled) ends the call on the client', async () => {
    const abort = new AbortController();
    const p = client.callTool({ name: 'export_pcap', arguments: {} }, undefined, { signal: abort.signal, onprogress: () => abort.abort() });
    await expect(p).rejects.toThrow(/abort/i);
    // Whether the cancel or the last chunk arrived first, no partial file stays behind.
    await waitFor('partial files to go', async () => (readdirSync(hub.downloads.dir).some((f) => f.endsWith('.part')) ? undefined : true), 2000);
    // The session still serves requests afterwards.
    expect((await call('get_data_boundaries')).isError).toBeFalsy();
  });

  test('bad arguments come back as isError naming the argument', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ports: [0] }, /"ports\.0" must be >= 1/],
      [{ ips: ['10.0.0.300'] }, /"ips\.0" must be an IPv4 or IPv6 address/],
      [{ format: 'erf' }, /"format" must be one of "pcapng", "pcap"/],
      [{ flow_ids: [] }, /"flow_ids" must NOT have fewer than 1 items/],
      [{ flow_ids: ['other-node/3'] }, /\(argument "flow_ids"\).*not a flow of node node-x/],
      [{ format: 'pcap' }, /\(argument "format"\).*more than one link type/],
      [{ start: '2024-05-01T15:00:00Z', end: '2024-05-01T14:00:00Z' }, /\(argument "end"\)/],
      [{ snapshot: 'no-such-snapshot' }, /\[not_found\] \(argument "snapshot"\)/],
    ];
    for (const [args, message] of cases) {
      const r = await call('export_pcap', args);
      expect(r.isError).toBe(true);
      expect(text(r)).toMatch(message);
    }
  });
});

describe('snapshots', () => {
  const frames = loadFrames('ndpi/http_ipv6.pcap');
  const since = us(frames[0]!.timeEpoch);
  const until = us(frames[frames.length - 1]!.timeEpoch);

  interface SnapshotOut {
    name: string;
    node: string;
    start?: string;
    end?: string;
    created_at: string;
    packets: number;
    bytes: number;
    flows: number;
    state: string;
  }

  test('create, list, get, export from and delete a snapshot', async () => {
    const created = await call('create_snapshot', { name: 'incident-1', start: isoMicros(since), end: isoMicros(until) });
    expect(created.isError).toBeFalsy();
    const snap = (created.structuredContent as { snapshot: SnapshotOut }).snapshot;
    const want = ALL.filter((f) => us(f.timeEpoch) >= since && us(f.timeEpoch) <= until);
    expect(snap).toEqual({
      name: 'incident-1',
      node: NODE,
      start: isoMicros(since),
      end: isoMicros(until),
      created_at: expect.stringMatching(/Z$/),
      packets: want.length,
      bytes: expect.any(Number),
      flows: loadGolden('ndpi/http_ipv6.pcap').tcp.length + loadGolden('ndpi/http_ipv6.pcap').udp.length,
      state: 'complete',
    });
    expect(text(created)).toContain('Created snapshot incident-1 on node-x');

    const list = await call('list_snapshots');
    expect(list.structuredContent).toEqual({ snapshots: [snap], total: 1, nodes: [{ node: NODE, state: 'ok' }] });
    const got = await call('get_snapshot', { name: 'incident-1' });
    expect((got.structuredContent as { snapshot: SnapshotOut }).snapshot).toEqual(snap);

    const { out, file } = await exportAndDownload({ snapshot: 'incident-1' });
    expect(parse(file)).toEqual(expected(want));
    expect(out.name).toBe('kubeshark-node-x-incident-1.pcapng');
    expect(out.bytes).toBe(snap.bytes);
    // Filters apply within the snapshot too.
    const https = await exportAndDownload({ snapshot: 'incident-1', ports: [443], l4proto: 'tcp' });
    expect(parse(https.file)).toEqual(expected(frames.filter((f) => f.tcpStream !== undefined)));

    const dup = await call('create_snapshot', { name: 'incident-1' });
    expect(dup.isError).toBe(true);
    expect(text(dup)).toMatch(/\[already_exists\] \(argument "name"\).*already exists/);

    const deleted = await call('delete_snapshot', { name: 'incident-1' });
    expect(deleted.structuredContent).toEqual({ deleted: 'incident-1', nodes: [{ node: NODE, state: 'ok' }] });
    for (const name of ['get_snapshot', 'delete_snapshot']) {
      const gone = await call(name, { name: 'incident-1' });
      expect(gone.isError).toBe(true);
      expect(text(gone)).toMatch(/\[not_found\] \(argument "name"\).*incident-1/);
    }
    expect((await call('list_snapshots')).structuredContent).toMatchObject({ snapshots: [], total: 0 });
  });

  test('an unbounded snapshot takes every stored packet', async () => {
    const r = await call('create_snapshot', { name: 'everything' });
    const snap = (r.structuredContent as { snapshot: SnapshotOut }).snapshot;
    expect(snap.packets).toBe(ALL.length);
    expect(snap).not.toHaveProperty('start');
    expect(snap).not.toHaveProperty('end');
    expect((await call('delete_snapshot', { name: 'everything' })).isError).toBeFalsy();
  });

  test('a bad snapshot name comes back as isError naming "name"', async () => {
    for (const [tool, args] of [
      ['create_snapshot', { name: '../etc' }],
      ['create_snapshot', { name: 'x'.repeat(65) }],
      ['get_snapshot', { name: '' }],
      ['delete_snapshot', { name: '.hidden' }],
      ['create_snapshot', {}],
    ] as const) {
      const r = await call(tool, args);
      expect(r.isError).toBe(true);
      expect(text(r)).toMatch(/"name"/);
    }
  });
});
