import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { createWorkerClient, type WorkerClient } from '@kubeshark-mcp/proto';
import { GOLDEN_DIR, capturePath, grpcUnary } from '@kubeshark-mcp/testkit';
import { endpointOf } from '../src/api-stats';
import { compileKfl, entryRecord } from '../src/kfl-record';
import { WorkerEngine, entryDetail, startWorkerServer, type RunningWorkerServer, type StoredEntry } from '../src';

/** L7 entries through a real gRPC server, checked against tshark's HTTP and DNS views of the captures. */

const HTTP_CAPTURES = ['zeek/http_pipelined-requests.pcap', 'zeek/http_1000-requests-one-dropped-response.pcap.gz'];
const DNS_CAPTURE = 'suricata-verify/dns-udp-google.com-a-aaaa-mx.pcap';

interface WireEntry {
  id: string;
  node: string;
  timestamp_us: number;
  elapsed_time_us: number;
  protocol: string;
  src: { ip: string; port: number };
  dst: { ip: string; port: number };
  method: string;
  path: string;
  status_code: number;
  flow_id: string;
  json: string;
  url?: string;
  error?: string;
  failure?: string;
}

function psv(capture: string, file: string): Record<string, string>[] {
  const [head, ...rows] = readFileSync(path.join(GOLDEN_DIR, capture, file), 'utf8').trim().split('\n');
  const cols = head!.split('|');
  return rows.map((r) => Object.fromEntries(r.split('|').map((v, i) => [cols[i]!, v])));
}

/** tshark's requests of a capture, in time order: "METHOD uri status" (status 0 when unanswered). */
function tsharkRequests(capture: string): { key: string; ts: number }[] {
  const rows = psv(capture, 'http.psv');
  const status = new Map(rows.filter((r) => r['http.response.code']).map((r) => [r['http.request_in'], Number(r['http.response.code'])]));
  return rows
    .filter((r) => r['http.request.method'])
    .map((r) => ({ key: `${r['http.request.method']} ${r['http.request.uri']} ${status.get(r['frame.number']) ?? 0}`, ts: Math.round(Number(r['frame.time_epoch']) * 1e6) }));
}

let server: RunningWorkerServer;
let client: WorkerClient;
const engine = new WorkerEngine('node-e', 'test');
const unary = <Res>(method: string, req: object): Promise<Res> => grpcUnary<Res>(client, method, req, 10_000);

function stream(req: object): Promise<{ entries: WireEntry[]; cursors: string[] }> {
  return new Promise((resolve, reject) => {
    const entries: WireEntry[] = [];
    const cursors: string[] = [];
    const call = client.StreamEntries(req);
    call.on('data', (f: { entry?: WireEntry; cursor: string }) => {
      if (f.entry) {
        entries.push(f.entry);
        cursors.push(f.cursor);
      }
    });
    call.on('error', reject);
    call.on('end', () => resolve({ entries, cursors }));
  });
}

beforeAll(async () => {
  await engine.replay([...HTTP_CAPTURES, DNS_CAPTURE].map(capturePath));
  server = await startWorkerServer(engine, '127.0.0.1', 0);
  client = createWorkerClient(server.address);
}, 60_000);

afterAll(async () => {
  client.close();
  await server.close();
});

test('StreamEntries returns every request tshark lists, in timestamp order', async () => {
  const { entries } = await stream({});
  const ts = entries.map((e) => e.timestamp_us);
  expect([...ts].sort((a, b) => a - b)).toEqual(ts);
  const http = entries.filter((e) => e.protocol === 'http');
  const expected = HTTP_CAPTURES.flatMap(tsharkRequests).sort((a, b) => a.ts - b.ts);
  expect(http).toHaveLength(expected.length);
  expect(http.map((e) => `${e.method} ${e.path} ${e.status_code}`)).toEqual(expected.map((e) => e.key));
  expect(http.map((e) => e.timestamp_us)).toEqual(expected.map((e) => e.ts));
  // The one dropped response: its request is an entry without a status and with an error.
  const unanswered = http.filter((e) => e.status_code === 0);
  expect(unanswered).toHaveLength(1);
  expect(JSON.parse(unanswered[0]!.json).error).toBe('pair-not-found');

  const dns = entries.filter((e) => e.protocol === 'dns');
  const queries = psv(DNS_CAPTURE, 'dns.psv').filter((r) => r['dns.flags.response'] === '0');
  expect(dns.map((e) => e.path)).toEqual(queries.map((q) => q['dns.qry.name']));
  for (const e of dns) {
    expect(e.dst.port).toBe(53);
    expect(e.id).toMatch(/^node-e\/\d+\/\d+$/);
    expect(e.flow_id).toBe(e.id.replace(/\/\d+$/, ''));
  }
  for (const e of http) expect(e.dst.port).toBe(80);
});

/** StreamEntries with batch: the frames as they come (entries and cursors per frame). */
function batches(req: object): Promise<{ entries: WireEntry[]; cursors: string[] }[]> {
  return new Promise((resolve, reject) => {
    const frames: { entries: WireEntry[]; cursors: string[] }[] = [];
    const call = client.StreamEntries({ ...req, batch: true });
    call.on('data', (f: { entry?: WireEntry; batch?: { entries: WireEntry[]; cursors: string[] } }) => {
      if (f.entry) reject(new Error('a single-entry frame in a batched stream'));
      if (f.batch) frames.push(f.batch);
    });
    call.on('error', reject);
    call.on('end', () => resolve(frames));
  });
}

test('batch: the same entries and cursors as one frame each, in frames of at most 256 entries; full records close a batch by size', async () => {
  const one = await stream({});
  const frames = await batches({});
  expect(one.entries.length).toBeGreaterThan(1000);
  // Batched summaries carry no JSON: url, error and failure, all a summary adds, are fields.
  const batched = frames.flatMap((f) => f.entries);
  for (const e of batched) expect(e.json).toBe('');
  const withFields = one.entries.map((e) => {
    const j = JSON.parse(e.json) as { url: string; error?: string; failure?: string };
    return { ...e, json: '', url: j.url, error: j.error ?? '', failure: j.failure ?? '' };
  });
  expect(batched).toEqual(withFields);
  expect(batched.filter((e) => e.error === 'pair-not-found')).toHaveLength(1);
  expect(frames.flatMap((f) => f.cursors)).toEqual(one.cursors);
  for (const f of frames) {
    expect(f.entries.length).toBe(f.cursors.length);
    expect(f.entries.length).toBeLessThanOrEqual(256);
  }
  expect(frames.length).toBe(Math.ceil(one.entries.length / 256));
  // A page of 51, as the hub asks: one message.
  const page = await batches({ limit: 51 });
  expect(page).toHaveLength(1);
  expect(page[0]!.entries).toEqual(withFields.slice(0, 51));
  // Full records: the same as unbatched, and no frame carries much more than 512 KiB of JSON.
  const full = await stream({ full: true });
  const fullFrames = await batches({ full: true });
  expect(fullFrames.flatMap((f) => f.entries)).toEqual(full.entries);
  for (const f of fullFrames) expect(f.entries.slice(0, -1).reduce((n, e) => n + e.json.length, 0)).toBeLessThan(512 * 1024);
});

test('paging with limit and cursor returns every entry once, and since/until select by time', async () => {
  const all = (await stream({})).entries;
  const seen: string[] = [];
  let cursor = '';
  for (let page = 0; page < 1000; page++) {
    const { entries, cursors } = await stream({ limit: 97, cursor });
    seen.push(...entries.map((e) => e.id));
    if (entries.length < 97) break;
    cursor = cursors[cursors.length - 1]!;
  }
  expect(seen).toEqual(all.map((e) => e.id));
  expect(new Set(seen).size).toBe(seen.length);

  const mid = all[Math.floor(all.length / 2)]!.timestamp_us;
  const after = await stream({ since_us: mid });
  expect(after.entries).toEqual(all.filter((e) => e.timestamp_us >= mid));
  const before = await stream({ until_us: mid });
  expect(before.entries).toEqual(all.filter((e) => e.timestamp_us <= mid));

  const bad = await stream({ cursor: 'nonsense' }).catch((e: grpc.ServiceError) => e);
  expect((bad as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
});

test('follow answers UNIMPLEMENTED with a message', async () => {
  const err = await stream({ follow: true }).catch((e: grpc.ServiceError) => e);
  expect((err as grpc.ServiceError).code).toBe(grpc.status.UNIMPLEMENTED);
  expect((err as grpc.ServiceError).details).toMatch(/not implemented yet/);
});

test('a KFL filter selects entries on the worker, pages with limit and cursor, and counts with CountEntries', async () => {
  const all = (await stream({})).entries;
  // tshark: one request of the 1000 never got its response.
  const unanswered = await stream({ kfl: 'http && status_code == 0' });
  expect(unanswered.entries.map((e) => e.method + ' ' + e.path)).toEqual(HTTP_CAPTURES.flatMap(tsharkRequests).filter((r) => r.key.endsWith(' 0')).map((r) => r.key.replace(/ 0$/, '')));
  expect(JSON.parse(unanswered.entries[0]!.json).error).toBe('pair-not-found');
  const names = psv(DNS_CAPTURE, 'dns.psv').filter((r) => r['dns.flags.response'] === '0').map((r) => r['dns.qry.name']);
  const google = await stream({ kfl: 'dns && "google.com" in dns_questions' });
  expect(google.entries.map((e) => e.path)).toEqual(names.filter((n) => n === 'google.com'));
  // Paging a filtered stream: every match once, in order.
  const filter = 'http && dst.port == 80 && method == "GET"';
  const expected = all.filter((e) => e.protocol === 'http' && e.dst.port === 80 && e.method === 'GET').map((e) => e.id);
  const seen: string[] = [];
  let cursor = '';
  for (let page = 0; page < 100; page++) {
    const { entries, cursors } = await stream({ kfl: filter, limit: 333, cursor });
    seen.push(...entries.map((e) => e.id));
    if (entries.length < 333) break;
    cursor = cursors[cursors.length - 1]!;
  }
  expect(seen).toEqual(expected);
  const count = await unary<{ node: string; scanned: number; matched: number; errors: number }>('CountEntries', { kfl: filter });
  expect(count).toMatchObject({ node: 'node-e', scanned: all.length, matched: expected.length, errors: 0 });
  const bad = await stream({ kfl: 'http && respone.status == 500' }).catch((e: grpc.ServiceError) => e);
  expect((bad as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
  expect((bad as grpc.ServiceError).metadata.get('x-argument')).toEqual(['kfl']);
  expect((bad as grpc.ServiceError).details).toMatch(/unknown field "respone.status" at 1:9; did you mean "status_code"\?/);
  const stats = await unary<{ entries: number }>('GetApiStats', { kfl: 'dns' });
  expect(stats.entries).toBe(names.length);
});

test('GetEntry returns the full record of an HTTP and a DNS entry, NOT_FOUND for a bad id', async () => {
  const { entries } = await stream({});
  const h = entries.find((e) => e.protocol === 'http' && e.status_code === 200)!;
  const got = await unary<WireEntry>('GetEntry', { id: h.id });
  expect(got.id).toBe(h.id);
  const rec = JSON.parse(got.json);
  expect(rec.request.headers.some(([n]: [string, string]) => n.toLowerCase() === 'host')).toBe(true);
  expect(rec.response.headers.length).toBeGreaterThan(0);
  expect(typeof rec.response.body_size).toBe('number');
  expect(rec.method).toBe(h.method);

  const d = entries.find((e) => e.protocol === 'dns')!;
  const dns = JSON.parse((await unary<WireEntry>('GetEntry', { id: d.id })).json);
  expect(dns.dns_questions[0].name).toBe('google.com');
  expect(dns.dns_answers.length).toBeGreaterThan(0);

  for (const id of ['node-e/999999/0', 'nonsense', '']) {
    const err = await unary('GetEntry', { id }).catch((e: grpc.ServiceError) => e);
    expect((err as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);
  }
});

test('GetStatus and GetDataBoundaries report the entries', async () => {
  const { entries } = await stream({});
  const status = await unary<{ entries_stored: number; entries_evicted: number }>('GetStatus', {});
  expect(status.entries_stored).toBe(entries.length);
  expect(status.entries_evicted).toBe(0);
  const b = await unary<{ entries: { oldest_us: number; newest_us: number } }>('GetDataBoundaries', {});
  expect(b.entries.oldest_us).toBe(entries[0]!.timestamp_us);
  expect(b.entries.newest_us).toBe(entries[entries.length - 1]!.timestamp_us);
});

test('the entry store is a ring: the oldest entries go first and are counted', async () => {
  const small = new WorkerEngine('node-s', 'test', undefined, undefined, {}, 100);
  await small.replay([capturePath(HTTP_CAPTURES[1]!)]);
  expect(small.entries!.size).toBe(100);
  expect(small.entries!.evicted).toBe(900);
  const kept = small.entries!.query({}).entries.map((e) => e.entry.timestamp);
  const expected = tsharkRequests(HTTP_CAPTURES[1]!).map((r) => r.ts).sort((a, b) => a - b).slice(-100);
  expect(kept).toEqual(expected);
});

test('analyze --entries prints the API calls of a capture', async () => {
  const cli = path.join(__dirname, '..', 'dist', 'cli.js');
  const { stdout } = await promisify(execFile)(process.execPath, [cli, 'analyze', capturePath('zeek/http_get.pcap'), '--entries', '--node', 'n1']);
  const lines = stdout.trim().split('\n').map((l) => JSON.parse(l));
  const expected = tsharkRequests('zeek/http_get.pcap');
  expect(lines.map((e) => `${e.method} ${e.path} ${e.status_code}`)).toEqual(expected.map((e) => e.key));
  expect(lines[0]).toMatchObject({ id: 'n1/0/0', node: 'n1', protocol: 'http', flow_id: 'n1/0', src: { port: 59856 }, dst: { ip: '192.150.187.43', port: 80 } });
  expect(lines[0].timestamp).toBe(expected[0]!.ts);
});

interface WireStatsGroup {
  service: string;
  protocol: string;
  method: string;
  endpoint: string;
  requests: number;
  failures: number;
  unanswered: number;
  statuses: { status_code: number; count: number }[];
  latency: { count: number; p50_us: number; p90_us: number; p99_us: number; sketch: Buffer };
  first_us: number;
  last_us: number;
}

test('GetApiStats counts requests, statuses and unanswered calls per endpoint as tshark sees them; latency is nearest-rank over the answered calls', async () => {
  const res = await unary<{ node: string; groups: WireStatsGroup[]; entries: number }>('GetApiStats', {});
  const { entries } = await stream({});
  expect(res.node).toBe('node-e');
  expect(res.entries).toBe(entries.length);
  expect(res.groups.reduce((n, g) => n + g.requests, 0)).toBe(entries.length);

  // tshark's requests per (method, uri): count, status multiset, unanswered. These URIs carry no
  // identifier-like segments, so the endpoint is the URI itself.
  const expected = new Map<string, { requests: number; unanswered: number; statuses: Map<number, number> }>();
  for (const r of HTTP_CAPTURES.flatMap(tsharkRequests)) {
    const [method, uri, status] = r.key.split(' ') as [string, string, string];
    const k = `http ${method} ${uri}`;
    const x = expected.get(k) ?? { requests: 0, unanswered: 0, statuses: new Map() };
    x.requests++;
    if (status === '0') x.unanswered++;
    x.statuses.set(Number(status), (x.statuses.get(Number(status)) ?? 0) + 1);
    expected.set(k, x);
  }
  for (const q of psv(DNS_CAPTURE, 'dns.psv').filter((r) => r['dns.flags.response'] === '0')) {
    const k = `dns QUERY ${q['dns.qry.name']}`;
    const x = expected.get(k) ?? { requests: 0, unanswered: 0, statuses: new Map([[0, 0]]) };
    x.requests++;
    x.statuses.set(0, x.statuses.get(0)! + 1);
    expected.set(k, x);
  }
  const got = new Map<string, { requests: number; unanswered: number; statuses: Map<number, number> }>();
  for (const g of res.groups) {
    const k = `${g.protocol} ${g.method} ${g.endpoint}`;
    const x = got.get(k) ?? { requests: 0, unanswered: 0, statuses: new Map() };
    x.requests += g.requests;
    x.unanswered += g.unanswered;
    for (const s of g.statuses) x.statuses.set(s.status_code, (x.statuses.get(s.status_code) ?? 0) + s.count);
    got.set(k, x);
  }
  expect(got).toEqual(expected);

  // The 1000-request connection: latency over the 999 answered calls, nearest rank.
  const big = res.groups.find((g) => g.requests === 1000)!;
  expect(big).toMatchObject({ protocol: 'http', method: 'GET', endpoint: '/', unanswered: 1, failures: 0, service: '[::1]:80' });
  const elapsed = entries
    .filter((e) => e.protocol === 'http' && e.status_code !== 0 && `[${e.dst.ip}]:${e.dst.port}` === big.service)
    .map((e) => e.elapsed_time_us)
    .sort((a, b) => a - b);
  expect(elapsed).toHaveLength(999);
  const rank = (p: number): number => elapsed[Math.ceil((p / 100) * elapsed.length) - 1]!;
  expect(big.latency).toMatchObject({ count: 999, p50_us: rank(50), p90_us: rank(90), p99_us: rank(99) });
  expect(big.latency.sketch.length).toBeGreaterThan(0);

  const onlyDns = await unary<{ groups: WireStatsGroup[]; entries: number }>('GetApiStats', { protocol: 'dns' });
  expect(onlyDns.groups.every((g) => g.protocol === 'dns')).toBe(true);
  expect(onlyDns.entries).toBe(entries.filter((e) => e.protocol === 'dns').length);
  const window = await unary<{ entries: number }>('GetApiStats', { since_us: entries[10]!.timestamp_us, until_us: entries[20]!.timestamp_us });
  expect(window.entries).toBe(entries.filter((e) => e.timestamp_us >= entries[10]!.timestamp_us && e.timestamp_us <= entries[20]!.timestamp_us).length);
  const bad = await unary('GetApiStats', { since_us: 10, until_us: 5 }).catch((e: grpc.ServiceError) => e);
  expect((bad as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
});

test('endpoints group identifier-like path segments and drop the query', () => {
  const e = (protocol: string, path: string): Parameters<typeof endpointOf>[0] =>
    ({ protocol, path, stream: 0, index: 0, timestamp: 0, elapsed_time: 0, method: 'GET', url: '', status_code: 0, request: null, response: null });
  expect(endpointOf(e('http', '/users/12345/orders?page=2'))).toBe('/users/:id/orders');
  expect(endpointOf(e('http', '/users/6f1c2a9e-3b7d-4c1a-9e2f-0a1b2c3d4e5f'))).toBe('/users/:id');
  expect(endpointOf(e('http', '/blobs/deadbeefcafe0123'))).toBe('/blobs/:id');
  expect(endpointOf(e('http', '/api/v2/checkout#top'))).toBe('/api/v2/checkout');
  expect(endpointOf(e('http', '/static/app.css'))).toBe('/static/app.css');
  expect(endpointOf(e('http', '/'))).toBe('/');
  expect(endpointOf(e('redis', 'session:123'))).toBe('');
  expect(endpointOf(e('dns', 'example.com'))).toBe('example.com');
});

test('gRPC over HTTP/2 is detected by its preface and stored with its service, method, status and messages (tshark view: http2-frames.psv)', async () => {
  const capture = 'grpc-go-book/grpc_Unary.pcapng';
  const frames = readFileSync(path.join(GOLDEN_DIR, capture, 'http2-frames.psv'), 'utf8').trim().split('\n').slice(1).map((l) => l.split('|'));
  // The request HEADERS frames tshark decoded: one per call.
  const requests = frames.filter((f) => f[9]!.includes('":method"')).map((f) => JSON.parse(f[9]!) as [string, string][]);
  expect(requests.length).toBeGreaterThan(0);
  const e = new WorkerEngine('node-g', 'test');
  await e.replay([capturePath(capture)]);
  const stored = e.entries!.query({}).entries;
  const grpcEntries = stored.filter((s) => s.entry.protocol === 'grpc');
  expect(grpcEntries.map((s) => s.entry.path)).toEqual(requests.map((h) => h.find(([k]) => k === ':path')![1]));
  const detail = entryDetail(grpcEntries[0]!) as Record<string, unknown>;
  expect(detail).toMatchObject({ protocol: 'grpc', method: 'POST', grpc_service: 'greet.GreetService', grpc_method: 'Greet', grpc_status: 0, version: 'HTTP/2', http2_stream_id: 1 });
  const status = frames.find((f) => f[9]!.includes('"grpc-status"'))!;
  expect(String((JSON.parse(status[9]!) as [string, string][]).find(([k]) => k === 'grpc-status')![1])).toBe(String(detail.grpc_status));
  expect((detail.request as { headers: [string, string][] }).headers).toEqual(expect.arrayContaining([['authorization', 'aDummyToken']]));
  expect(detail.failure).toBeUndefined();
});

test('Redis, PostgreSQL, Kafka and AMQP are claimed by content and stored with their KFL fields', async () => {
  const captures: Record<string, string> = { redis: 'zeek/redis_pipelining-example.pcap', postgresql: 'ndpi/pgsql.pcap', kafka: 'ndpi/kafka.pcapng', amqp: 'ndpi/amqp.pcap' };
  const e = new WorkerEngine('node-m', 'test');
  await e.replay(Object.values(captures).map(capturePath));
  const stored = e.entries!.query({}).entries;
  for (const [protocol, capture] of Object.entries(captures)) {
    const got = stored.filter((s) => s.entry.protocol === protocol);
    expect({ protocol, some: got.length > 0 }).toEqual({ protocol, some: true });
    // Every entry of a protocol came from that protocol's capture: the router claimed nothing else.
    const golden = psv(capture, `${protocol}.psv`);
    expect(golden.length).toBeGreaterThan(0);
  }
  const count = (kfl: string): number => {
    const f = compileKfl(kfl)!;
    return stored.filter((s) => f.matches(entryRecord(s))).length;
  };
  // Hand-checkable selections: each protocol's flag equals its stored entries, and fields reach the filters.
  for (const protocol of Object.keys(captures)) expect(count(protocol)).toBe(stored.filter((s) => s.entry.protocol === protocol).length);
  expect(count('redis && redis_command == "SET"')).toBe(stored.filter((s) => s.entry.protocol === 'redis' && s.entry.method === 'SET').length);
  // The capture's SQL is lower case: a case-insensitive RE2 match finds what method (the upper-cased first keyword) says.
  expect(count('postgresql && method == "SELECT"')).toBeGreaterThan(0);
  expect(count('postgresql && postgresql_query.matches("(?i)^\\\\s*select\\\\b")')).toBe(count('postgresql && method == "SELECT"'));
  expect(count('kafka && kafka_api_key_name == "METADATA"')).toBeGreaterThan(0);
  expect(count('amqp && amqp_method == "basic.publish"')).toBeGreaterThan(0);
  expect(count('http || dns || grpc')).toBe(0);
});

test('MySQL and MongoDB are claimed by content; WebSocket frames after an HTTP upgrade become ws entries after the 101 exchange', async () => {
  const e = new WorkerEngine('node-w', 'test');
  await e.replay(['ndpi/mysql.pcapng', 'ndpi/mongodb.pcap', 'suricata-verify/basic_websockets.pcap'].map(capturePath));
  const stored = e.entries!.query({}).entries;
  const by = (p: string): StoredEntry[] => stored.filter((s) => s.entry.protocol === p);
  expect(by('mysql').length).toBeGreaterThan(0);
  expect(by('mongodb').length).toBeGreaterThan(0);
  // tshark: the WebSocket frames of the capture (websocket.psv), one message each (no fragments there).
  const frames = psv('suricata-verify/basic_websockets.pcap', 'websocket.psv');
  const ws = by('ws');
  expect(ws.length).toBe(frames.length);
  const upgrade = by('http');
  expect(upgrade.map((s) => s.entry.status_code)).toEqual([101]);
  // One connection: the HTTP exchange is index 0, the messages follow it, with ids unique on the node.
  expect(new Set(stored.map((s) => s.id)).size).toBe(stored.length);
  expect(ws.every((s) => s.flow_id === upgrade[0]!.flow_id && s.entry.index > 0 && s.entry.path === '/service')).toBe(true);
  const f = compileKfl('ws && ws_opcode == "text"')!;
  expect(stored.filter((s) => f.matches(entryRecord(s))).length).toBe(ws.filter((s) => (s.entry as { ws_opcode?: string }).ws_opcode === 'text').length);
});

test('GetApiStats by_client: one group per client and server endpoint, the client named in src', async () => {
  const { entries } = await stream({});
  const res = await unary<{ groups: { src: { ip: string } | null; service: string; requests: number }[]; entries: number }>('GetApiStats', { by_client: true });
  const expected = new Map<string, number>();
  for (const e of entries) expected.set(`${e.src.ip} ${e.protocol}`, (expected.get(`${e.src.ip} ${e.protocol}`) ?? 0) + 1);
  const got = new Map<string, number>();
  for (const g of res.groups) {
    const protocol = (g as unknown as { protocol: string }).protocol;
    got.set(`${g.src!.ip} ${protocol}`, (got.get(`${g.src!.ip} ${protocol}`) ?? 0) + g.requests);
  }
  expect(got).toEqual(expected);
  const plain = await unary<{ groups: { src: unknown }[] }>('GetApiStats', {});
  expect(plain.groups.every((g) => g.src === null)).toBe(true);
});

test('the body size limit is configurable: bodies beyond it are stored truncated, sizes stay whole', async () => {
  const small = new WorkerEngine('node-b', 'test', undefined, undefined, {}, 1000, { maxBodySize: 64 });
  await small.replay([capturePath('zeek/http_get.pcap')]);
  const s = small.entries!.query({}).entries.find((x) => x.entry.protocol === 'http')!;
  const res = s.entry.response!;
  expect(res.body!.length).toBe(64);
  expect(res.truncated).toBe(true);
  expect(res.body_size).toBeGreaterThan(64);
});
