import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { GOLDEN_DIR, capturePath, loadGolden, startWorkerProcess, type Golden, waitFor } from '@kubeshark-mcp/testkit';
import { buildHub, validateConfig, DEFAULT_CONFIG, type Hub } from '../src';

/**
 * End to end: the worker bin in its own process replaying its embedded demo captures, the hub
 * on port 0 talking real gRPC to it, and the official MCP SDK client over real HTTP. Expected
 * values come from tshark's view of the same captures (fixtures/golden).
 */

const WORKER_DIR = path.dirname(require.resolve('@kubeshark-mcp/worker/package.json'));
const DEMO_DIR = path.join(WORKER_DIR, 'demo');
/** The descriptor set of the greet service the demo's gRPC capture calls (fixtures/protos/greet.proto). */
const GREET_DESCRIPTORS = path.join(GOLDEN_DIR, '..', 'protos', 'greet.binpb');

interface Started {
  proc: ChildProcess;
  address: string;
}

const DATA_DIR = mkdtempSync(path.join(tmpdir(), 'hub-e2e-'));

function startWorker(listen = '127.0.0.1:0'): Promise<Started> {
  return startWorkerProcess(['--listen', listen, '--node', 'node-e2e', '--data-dir', DATA_DIR, '--grpc-descriptor-set', GREET_DESCRIPTORS]);
}

function stopWorker(w: Started): Promise<void> {
  return new Promise((resolve) => {
    if (w.proc.exitCode !== null) return resolve();
    w.proc.once('exit', () => resolve());
    w.proc.kill('SIGKILL');
  });
}


/** The demo folder also holds the demo's cluster map: only the captures are replayed. */
const demoFiles = readdirSync(DEMO_DIR)
  .filter((f) => /\.(pcap|pcapng)(\.gz)?$/.test(f))
  .sort();
/** Demo captures are copies of fixtures named "<origin>_<file>". */
const goldens: Golden[] = demoFiles.map((f) => loadGolden(f.replace('_', '/')));

let worker: Started;
let hub: Hub;
let url: URL;
let client: Client;

beforeAll(async () => {
  worker = await startWorker();
  hub = await buildHub(validateConfig({ ...DEFAULT_CONFIG, host: '127.0.0.1', port: 0, workers: [worker.address], workerDeadlineMs: 2000 }), { logger: false });
  await hub.app.listen({ host: '127.0.0.1', port: 0 });
  const port = (hub.app.server.address() as { port: number }).port;
  url = new URL(`http://127.0.0.1:${port}/mcp`);
  // The worker answers while it replays; wait until every demo capture is in.
  await waitFor('the worker to finish replaying', async () => {
    const res = await fetch(new URL('/healthz', url));
    const body = (await res.json()) as { workers: { sources?: { state: string }[] }[] };
    const sources = body.workers[0]?.sources ?? [];
    return sources.length === demoFiles.length && sources.every((s) => s.state === 'done') ? true : undefined;
  });
  client = new Client({ name: 'e2e', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(url));
});

afterAll(async () => {
  await client?.close();
  await hub?.app.close();
  if (worker) await stopWorker(worker);
  rmSync(DATA_DIR, { recursive: true, force: true });
});

type Dir = { packets: number; bytes: number; payload_bytes: number };
interface FlowOut {
  protocol: string;
  client: { ip: string; port: number };
  server: { ip: string; port: number };
  client_to_server: Dir;
  server_to_client: Dir;
  tcp_handshake_server_us?: number;
  tcp_handshake_p50_us?: number;
  tcp_handshake_p90_us?: number;
  tcp_handshake_p99_us?: number;
}

/** tshark's conversations, direction-free: "ip:port <> ip:port" -> what each end sent, and iRTT. */
function tsharkFlows(): Map<string, { sent: Record<string, Dir>; irttUs?: number }> {
  const out = new Map<string, { sent: Record<string, Dir>; irttUs?: number }>();
  for (const g of goldens) {
    const irtt = new Map(g.handshakes.filter((h) => h.irttS).map((h) => [h.stream, Math.round(Number(h.irttS) * 1e9) / 1000]));
    for (const [proto, list] of [['tcp', g.tcp], ['udp', g.udp]] as const) {
      for (const s of list) {
        const key = `${proto} ${[s.a, s.b].sort().join(' <> ')}`;
        out.set(key, {
          sent: { [s.a]: { packets: s.abFrames, bytes: s.abBytes, payload_bytes: s.abPayload }, [s.b]: { packets: s.baFrames, bytes: s.baBytes, payload_bytes: s.baPayload } },
          ...(proto === 'tcp' && irtt.has(s.stream) ? { irttUs: irtt.get(s.stream)! } : {}),
        });
      }
    }
  }
  return out;
}

function ourFlows(flows: FlowOut[]): Map<string, { sent: Record<string, Dir>; irttUs?: number }> {
  return new Map(
    flows.map((f) => {
      const c = `${f.client.ip}:${f.client.port}`;
      const s = `${f.server.ip}:${f.server.port}`;
      return [
        `${f.protocol} ${[c, s].sort().join(' <> ')}`,
        { sent: { [c]: f.client_to_server, [s]: f.server_to_client }, ...(f.tcp_handshake_server_us !== undefined ? { irttUs: f.tcp_handshake_server_us } : {}) },
      ];
    }),
  );
}

const strip = (m: Map<string, { sent: Record<string, Dir>; irttUs?: number }>) =>
  new Map([...m].map(([k, v]) => [k, { irttUs: v.irttUs, sent: Object.fromEntries(Object.entries(v.sent).map(([e, d]) => [e, { packets: d.packets, bytes: d.bytes, payload_bytes: d.payload_bytes }])) }]));

/** Nearest-rank percentile, the definition the tools document. */
const nearestRank = (values: number[], p: number): number => {
  const v = [...values].sort((a, b) => a - b);
  return v[Math.max(0, Math.ceil((p / 100) * v.length) - 1)]!;
};

test('the demo captures are the fixture captures the goldens describe', () => {
  const sha = (f: string): string => createHash('sha256').update(readFileSync(f)).digest('hex');
  for (const f of demoFiles) expect(sha(path.join(DEMO_DIR, f))).toBe(sha(capturePath(f.replace('_', '/'))));
});

test('tools/list offers both L4 tools with schemas and read-only annotations', async () => {
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name);
  expect(names).toEqual(expect.arrayContaining(['list_l4_flows', 'get_l4_flow_summary']));
  for (const t of tools) expect(t.outputSchema).toBeDefined();
  for (const t of tools.filter((x) => x.name.endsWith('l4_flows') || x.name.endsWith('flow_summary'))) expect(t.annotations?.readOnlyHint).toBe(true);
});

test('list_l4_flows returns every flow with the counters and handshake tshark reports', async () => {
  // limit 1000 asks for everything; the output budget (8,000 tokens by default) cuts each page
  // and the cursor brings the rest.
  const expected = tsharkFlows();
  const flows: FlowOut[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const res = (await client.callTool({ name: 'list_l4_flows', arguments: { limit: 1000, ...(cursor ? { cursor } : {}) } })) as CallToolResult;
    expect(res.isError).toBeFalsy();
    const sc = res.structuredContent as { flows: FlowOut[]; total: number; returned: number; truncated: boolean; nextCursor?: string; hint?: string; nodes: { node: string; state: string }[] };
    expect(sc.total).toBe(expected.size);
    expect(sc.nodes).toEqual([{ node: 'node-e2e', state: 'ok' }]);
    expect(sc.truncated).toBe(sc.nextCursor !== undefined);
    if (sc.truncated) expect(sc.hint).toMatch(/output budget/);
    const chars = res.content.reduce((n, c) => n + (c.type === 'text' ? c.text.length : 0), 0);
    expect(chars).toBeLessThanOrEqual(8000 * 4);
    expect(res.content[0]).toMatchObject({ type: 'text', text: expect.stringMatching(/^\d+ of \d+ flows/) });
    flows.push(...sc.flows);
    cursor = sc.nextCursor;
    pages++;
  } while (cursor && pages < 100);
  expect(cursor).toBeUndefined();
  expect(flows).toHaveLength(expected.size);
  expect(strip(ourFlows(flows))).toEqual(strip(expected));
  for (const f of flows.filter((x) => x.tcp_handshake_server_us !== undefined)) {
    expect([f.tcp_handshake_p50_us, f.tcp_handshake_p90_us, f.tcp_handshake_p99_us]).toEqual([f.tcp_handshake_server_us, f.tcp_handshake_server_us, f.tcp_handshake_server_us]);
  }
});

test('paging list_l4_flows with limit 5 returns every flow exactly once, as tshark sees them', async () => {
  const expected = tsharkFlows();
  for (const order_by of ['bytes', 'recent'] as const) {
    const flows: (FlowOut & { id: string })[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const res = (await client.callTool({ name: 'list_l4_flows', arguments: { limit: 5, order_by, ...(cursor ? { cursor } : {}) } })) as CallToolResult;
      expect(res.isError).toBeFalsy();
      const sc = res.structuredContent as { flows: (FlowOut & { id: string })[]; total: number; offset: number; returned: number; nextCursor?: string };
      expect(sc.total).toBe(expected.size);
      expect(sc.offset).toBe(flows.length);
      expect(sc.returned).toBe(Math.min(5, expected.size - flows.length));
      flows.push(...sc.flows);
      cursor = sc.nextCursor;
      if (cursor) expect((res.content[0] as { text: string }).text).toContain(cursor);
      pages++;
    } while (cursor && pages < 1000);
    expect(pages).toBe(Math.ceil(expected.size / 5));
    expect(new Set(flows.map((f) => f.id)).size).toBe(flows.length);
    expect(flows).toHaveLength(expected.size);
    expect(strip(ourFlows(flows))).toEqual(strip(expected));
  }
});

test('prompts are served over HTTP: list and get with arguments', async () => {
  const { prompts } = await client.listPrompts();
  expect(prompts.map((p) => p.name)).toEqual(['investigate_failed_request', 'find_errors', 'latency_analysis', 'network_health', 'security_audit', 'show_topology', 'compare_traffic', 'debug_connection', 'trace_request']);
  const r = await client.getPrompt({ name: 'debug_connection', arguments: { endpoint: '141.142.228.5:59856' } });
  expect((r.messages[0]!.content as { text: string }).text).toContain('list_l4_flows {"ip":"141.142.228.5","port":59856');
  await expect(client.getPrompt({ name: 'debug_connection', arguments: {} })).rejects.toMatchObject({ code: -32602 });
});

test('a bad cursor is a JSON-RPC invalid-params error', async () => {
  await expect(client.callTool({ name: 'list_l4_flows', arguments: { cursor: 'bogus' } })).rejects.toMatchObject({ code: -32602 });
});

test('list_l4_flows with a limit says it is truncated and how to narrow', async () => {
  const res = (await client.callTool({ name: 'list_l4_flows', arguments: { limit: 2, l4proto: 'tcp' } })) as CallToolResult;
  const sc = res.structuredContent as { flows: FlowOut[]; total: number; returned: number; truncated: boolean };
  expect(sc.returned).toBe(2);
  expect(sc.total).toBe(goldens.reduce((n, g) => n + g.tcp.length, 0));
  expect(sc.truncated).toBe(true);
  expect((res.content[0] as { text: string }).text).toMatch(/narrow/);
});

test('aggregate=ip_pair gives per-pair handshake percentiles equal to those of tshark initial RTTs', async () => {
  const res = (await client.callTool({ name: 'list_l4_flows', arguments: { aggregate: 'ip_pair', limit: 1000 } })) as CallToolResult;
  const groups = (res.structuredContent as { groups: { client: { ip: string }; server: { ip: string }; flows: number; tcp_handshakes: number; tcp_handshake_p50_us?: number; tcp_handshake_p90_us?: number; tcp_handshake_p99_us?: number }[] }).groups;
  // tshark's initial RTTs grouped by address pair (the client is the SYN sender: tshark's "a").
  const irtts = new Map<string, number[]>();
  const flowsPerPair = new Map<string, number>();
  for (const g of goldens) {
    const irtt = new Map(g.handshakes.filter((h) => h.irttS).map((h) => [h.stream, Math.round(Number(h.irttS) * 1e9) / 1000]));
    for (const s of [...g.tcp, ...g.udp]) {
      const ip = (e: string): string => e.slice(0, e.lastIndexOf(':'));
      const pair = [ip(s.a), ip(s.b)].sort().join(' <> ');
      flowsPerPair.set(pair, (flowsPerPair.get(pair) ?? 0) + 1);
    }
    for (const s of g.tcp) {
      if (!irtt.has(s.stream)) continue;
      const key = `${s.a.slice(0, s.a.lastIndexOf(':'))} -> ${s.b.slice(0, s.b.lastIndexOf(':'))}`;
      irtts.set(key, [...(irtts.get(key) ?? []), irtt.get(s.stream)!]);
    }
  }
  expect(groups.reduce((n, g) => n + g.flows, 0)).toBe(tsharkFlows().size);
  let checked = 0;
  for (const g of groups) {
    const values = irtts.get(`${g.client.ip} -> ${g.server.ip}`) ?? [];
    expect(g.tcp_handshakes).toBe(values.length);
    if (values.length === 0) continue;
    expect([g.tcp_handshake_p50_us, g.tcp_handshake_p90_us, g.tcp_handshake_p99_us]).toEqual([nearestRank(values, 50), nearestRank(values, 90), nearestRank(values, 99)]);
    checked++;
  }
  expect(checked).toBeGreaterThanOrEqual(3);
});

test('get_l4_flow_summary totals and handshake percentiles match tshark', async () => {
  const res = (await client.callTool({ name: 'get_l4_flow_summary', arguments: {} })) as CallToolResult;
  expect(res.isError).toBeFalsy();
  const s = res.structuredContent as {
    total_flows: number;
    total_packets: number;
    total_bytes: number;
    tcp: { flows: number; packets: number; bytes: number };
    udp: { flows: number; packets: number; bytes: number };
    top_by_bytes: { ip: string }[];
    tcp_handshakes: number;
    tcp_handshake_p50_us: number;
    tcp_handshake_p99_us: number;
    nodes: unknown[];
  };
  const sum = (list: Golden['tcp'], f: (x: Golden['tcp'][number]) => number): number => list.reduce((n, x) => n + f(x), 0);
  const tcp = goldens.flatMap((g) => g.tcp);
  const udp = goldens.flatMap((g) => g.udp);
  expect(s.tcp).toEqual({ flows: tcp.length, packets: sum(tcp, (x) => x.abFrames + x.baFrames), bytes: sum(tcp, (x) => x.abBytes + x.baBytes) });
  expect(s.udp).toEqual({ flows: udp.length, packets: sum(udp, (x) => x.abFrames + x.baFrames), bytes: sum(udp, (x) => x.abBytes + x.baBytes) });
  expect(s.total_flows).toBe(tcp.length + udp.length);
  expect(s.total_bytes).toBe(s.tcp.bytes + s.udp.bytes);
  const all = goldens.flatMap((g) => g.handshakes.filter((h) => h.irttS).map((h) => Math.round(Number(h.irttS) * 1e9) / 1000));
  expect(s.tcp_handshakes).toBe(all.length);
  expect(s.tcp_handshake_p50_us).toBe(nearestRank(all, 50));
  expect(s.tcp_handshake_p99_us).toBe(nearestRank(all, 99));
  // Top talker by bytes: the address with the most bytes sent + received in tshark's conversations.
  const perIp = new Map<string, number>();
  for (const x of [...tcp, ...udp]) {
    const ip = (e: string): string => e.slice(0, e.lastIndexOf(':'));
    perIp.set(ip(x.a), (perIp.get(ip(x.a)) ?? 0) + x.abBytes + x.baBytes);
    if (ip(x.b) !== ip(x.a)) perIp.set(ip(x.b), (perIp.get(ip(x.b)) ?? 0) + x.abBytes + x.baBytes);
  }
  const top = [...perIp].sort((a, b) => b[1] - a[1])[0]![0];
  expect(s.top_by_bytes[0]!.ip).toBe(top);
});

interface ApiCallOut {
  id: string;
  timestamp: string;
  protocol: string;
  src: { ip: string; port: number };
  dst: { ip: string; port: number };
  method: string;
  path: string;
  url: string;
  status_code: number;
}

/** A tshark .psv golden as rows of named fields. */
function psv(capture: string, file: string): Record<string, string>[] {
  const [head, ...rows] = readFileSync(path.join(GOLDEN_DIR, capture, file), 'utf8').trim().split('\n');
  const names = head!.split('|');
  return rows.map((r) => Object.fromEntries(r.split('|').map((v, i) => [names[i]!, v])));
}

/** Every page of list_api_calls with these arguments. */
async function allApiCalls(args: Record<string, unknown>): Promise<ApiCallOut[]> {
  const out: ApiCallOut[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 1000; page++) {
    const r = (await client.callTool({ name: 'list_api_calls', arguments: { ...args, ...(cursor ? { cursor } : {}) } })) as CallToolResult;
    expect(r.isError).toBeFalsy();
    const s = r.structuredContent as { calls: ApiCallOut[]; returned: number; truncated: boolean; nextCursor?: string; nodes: unknown[] };
    expect(s.nodes).toEqual([{ node: 'node-e2e', state: 'ok' }]);
    expect(s.returned).toBe(s.calls.length);
    out.push(...s.calls);
    cursor = s.nextCursor;
    if (!cursor) return out;
  }
  throw new Error('list_api_calls kept paging');
}

test('list_api_calls returns the HTTP GET of zeek http_get with tshark host, uri and status', async () => {
  const req = psv('zeek/http_get.pcap', 'http.psv').find((r) => r['http.request.method'] === 'GET')!;
  const res = psv('zeek/http_get.pcap', 'http.psv').find((r) => r['http.response.code'])!;
  const http = await allApiCalls({ protocol: 'http' });
  expect(http.every((c) => c.protocol === 'http')).toBe(true);
  const get = http.find((c) => c.path === req['http.request.uri'] && c.url.includes(req['http.host']!));
  expect(get).toBeDefined();
  expect(get).toMatchObject({ method: 'GET', status_code: Number(res['http.response.code']), dst: { port: 80 } });
  // Timestamp order, and the request time as tshark has it (to the microsecond).
  const sec = Number(req['frame.time_epoch']!.split('.')[0]);
  expect(get!.timestamp).toBe(`${new Date(sec * 1000).toISOString().slice(0, 19)}.${req['frame.time_epoch']!.split('.')[1]!.slice(0, 6)}Z`);
  expect(http.map((c) => c.timestamp)).toEqual([...http.map((c) => c.timestamp)].sort());

  const detail = (await client.callTool({ name: 'get_api_call', arguments: { id: get!.id } })) as CallToolResult;
  expect(detail.isError).toBeFalsy();
  const call = (detail.structuredContent as { call: { id: string; request: { headers: [string, string][] }; response: { headers: [string, string][] } } }).call;
  expect(call.id).toBe(get!.id);
  expect(call.request.headers).toEqual(expect.arrayContaining([[expect.stringMatching(/^host$/i), req['http.host']]]));
  expect(call.response.headers.find(([n]) => /^content-type$/i.test(n))?.[1]).toBe(res['http.content_type']);
  expect((detail.content[0] as { text: string }).text).toMatch(new RegExp(`Host: ${req['http.host']!.replace(/\./g, '\\.')}`, 'i'));
});

test('get_api_call decodes the gRPC messages of the demo call with the worker descriptor set, as tshark decodes them', async () => {
  const golden = JSON.parse(readFileSync(path.join(GOLDEN_DIR, 'grpc-go-book/grpc_Unary.pcapng', 'grpc-messages.json'), 'utf8')) as { direction: string; fields: [string, string, string, string][] }[];
  const text = (direction: string): string => Buffer.from(golden.find((g) => g.direction === direction)!.fields[0]![3], 'hex').toString('utf8');
  const grpcCalls = await allApiCalls({ protocol: 'grpc' });
  const greet = grpcCalls.find((c) => c.path === '/greet.GreetService/Greet');
  expect(greet).toBeDefined();
  const detail = (await client.callTool({ name: 'get_api_call', arguments: { id: greet!.id } })) as CallToolResult;
  expect(detail.isError).toBeFalsy();
  type Side = { grpc_message_type: string; grpc_messages: { size: number; json?: Record<string, unknown>; error?: string }[] };
  const call = (detail.structuredContent as { call: { request: Side; response: Side } }).call;
  expect(call.request.grpc_message_type).toBe('greet.GreetRequest');
  expect(call.request.grpc_messages).toEqual([{ size: 9, json: { firstName: text('request') } }]);
  expect(call.response.grpc_messages).toEqual([{ size: 15, json: { result: text('response') } }]);
  expect((detail.content[0] as { text: string }).text).toContain(`grpc message 1 greet.GreetResponse: {"result":"${text('response')}"}`);
});

test('list_api_calls returns the DNS queries of the dns-udp capture, filtered and paged by the hub', async () => {
  const queries = psv('suricata-verify/dns-udp-google.com-a-aaaa-mx.pcap', 'dns.psv').filter((r) => r['dns.flags.response'] === '0');
  const dns = await allApiCalls({ protocol: 'dns', limit: 1 });
  expect(dns.every((c) => c.protocol === 'dns')).toBe(true);
  const names = dns.map((c) => c.path.replace(/\.$/, ''));
  for (const q of queries) expect(names).toContain(q['dns.qry.name']);
  expect(dns.filter((c) => c.path.replace(/\.$/, '') === 'google.com')).toHaveLength(queries.filter((q) => q['dns.qry.name'] === 'google.com').length);
  // Unfiltered paging sees every call once, the HTTP and DNS ones among them.
  const all = await allApiCalls({ limit: 3 });
  expect(new Set(all.map((c) => c.id)).size).toBe(all.length);
  const ids = new Set(all.map((c) => c.id));
  for (const c of dns) expect(ids.has(c.id)).toBe(true);
  expect(all.length).toBeGreaterThanOrEqual(dns.length + 1);
});

interface StatsOut {
  service: string;
  protocol: string;
  method: string;
  endpoint: string;
  requests: number;
  failures: number;
  error_rate: number;
  unanswered: number;
  statuses: { status_code: number; count: number }[];
  latency_p50_us: number;
  latency_p99_us: number;
}

test('get_api_stats counts the demo captures\' HTTP requests and DNS queries per endpoint as tshark lists them, paged and ordered', async () => {
  const first = (await client.callTool({ name: 'get_api_stats', arguments: {} })) as CallToolResult;
  expect(first.isError).toBeFalsy();
  const s = first.structuredContent as { groups: StatsOut[]; total_groups: number; entries: number; truncated: boolean; nodes: unknown[] };
  expect(s.nodes).toEqual([{ node: 'node-e2e', state: 'ok' }]);
  expect(s.truncated).toBe(false);
  expect(s.groups).toHaveLength(s.total_groups);
  const calls = await allApiCalls({});
  expect(s.entries).toBe(calls.length);
  expect(s.groups.reduce((n, g) => n + g.requests, 0)).toBe(calls.length);
  // Default order: most requests first.
  expect(s.groups.map((g) => g.requests)).toEqual([...s.groups.map((g) => g.requests)].sort((a, b) => b - a));

  // tshark: requests per (method, uri) over the demo captures with HTTP, queries per name, gRPC
  // calls per path (request HEADERS frames); the KFL filter keeps those three protocols.
  const expected = new Map<string, number>();
  for (const f of demoFiles) {
    const capture = f.replace('_', '/');
    for (const h of (() => {
      try {
        return psv(capture, 'http2-frames.psv');
      } catch {
        return [];
      }
    })()) {
      if (!h.headers!.includes('":method"')) continue;
      const fields = new Map(JSON.parse(h.headers!) as [string, string][]);
      const k = `grpc ${fields.get(':method')} ${fields.get(':path')}`;
      expected.set(k, (expected.get(k) ?? 0) + 1);
    }
    for (const file of ['http.psv', 'dns.psv']) {
      let rows: Record<string, string>[];
      try {
        rows = psv(capture, file);
      } catch {
        continue;
      }
      for (const r of rows) {
        const k = file === 'http.psv' ? (r['http.request.method'] ? `http ${r['http.request.method']} ${r['http.request.uri']!.split('?')[0]}` : '') : r['dns.flags.response'] === '0' ? `dns QUERY ${r['dns.qry.name']}` : '';
        if (k) expected.set(k, (expected.get(k) ?? 0) + 1);
      }
    }
  }
  const filtered = (await client.callTool({ name: 'get_api_stats', arguments: { kfl: 'http || dns || grpc', limit: 500 } })) as CallToolResult;
  expect(filtered.isError).toBeFalsy();
  const got = new Map<string, number>();
  for (const g of (filtered.structuredContent as { groups: StatsOut[] }).groups) got.set(`${g.protocol} ${g.method} ${g.endpoint.replace(/\.$/, '')}`, (got.get(`${g.protocol} ${g.method} ${g.endpoint.replace(/\.$/, '')}`) ?? 0) + g.requests);
  expect(got).toEqual(expected);
  for (const g of s.groups) {
    expect(g.error_rate).toBeCloseTo(g.failures / g.requests, 4);
    expect(g.latency_p50_us).toBeLessThanOrEqual(g.latency_p99_us);
  }

  // One group per page, by p99: the same groups, each once, in descending p99.
  const paged: StatsOut[] = [];
  let cursor: string | undefined;
  for (let i = 0; i < 100; i++) {
    const r = (await client.callTool({ name: 'get_api_stats', arguments: { order_by: 'p99', limit: 1, ...(cursor ? { cursor } : {}) } })) as CallToolResult;
    const page = r.structuredContent as { groups: StatsOut[]; nextCursor?: string };
    paged.push(...page.groups);
    cursor = page.nextCursor;
    if (!cursor) break;
  }
  expect(paged).toHaveLength(s.groups.length);
  expect(paged.map((g) => g.latency_p99_us)).toEqual([...paged.map((g) => g.latency_p99_us)].sort((a, b) => b - a));
  expect(new Set(paged.map((g) => `${g.service} ${g.protocol} ${g.method} ${g.endpoint}`)).size).toBe(paged.length);

  const dns = (await client.callTool({ name: 'get_api_stats', arguments: { protocol: 'dns' } })) as CallToolResult;
  expect((dns.structuredContent as { groups: StatsOut[] }).groups.every((g) => g.protocol === 'dns')).toBe(true);
  const bad = (await client.callTool({ name: 'get_api_stats', arguments: { order_by: 'speed' } })) as CallToolResult;
  expect(bad.isError).toBe(true);
  expect((bad.content[0] as { text: string }).text).toMatch(/"order_by"/);
});

test('KFL end to end: apply_filter counts and lists what tshark shows, list_api_calls filters on the worker, a bad filter teaches', async () => {
  const queries = psv('suricata-verify/dns-udp-google.com-a-aaaa-mx.pcap', 'dns.psv').filter((r) => r['dns.flags.response'] === '0' && r['dns.qry.name'] === 'google.com');
  const applied = (await client.callTool({ name: 'apply_filter', arguments: { kfl: 'dns && "google.com" in dns_questions', limit: 100 } })) as CallToolResult;
  expect(applied.isError).toBeFalsy();
  const a = applied.structuredContent as { matched: number; counts: { node: string; matched: number }[]; calls: ApiCallOut[]; normalized: string };
  expect(a.matched).toBe(queries.length);
  expect(a.counts).toEqual([expect.objectContaining({ node: 'node-e2e', matched: queries.length })]);
  expect(a.calls.map((c) => c.path.replace(/\.$/, ''))).toEqual(queries.map(() => 'google.com'));

  const greet = psv('grpc-go-book/grpc_Unary.pcapng', 'http2-frames.psv').filter((r) => r.headers!.includes('"/greet.GreetService/Greet"'));
  const grpc = await allApiCalls({ kfl: 'grpc && grpc_method == "Greet" && grpc_status == 0' });
  expect(grpc.map((c) => `${c.method} ${c.path}`)).toEqual(greet.map(() => 'POST /greet.GreetService/Greet'));
  // A legacy name works, with a note saying the KFL2 name.
  const legacy = (await client.callTool({ name: 'list_api_calls', arguments: { kfl: 'http && response.status == 200' } })) as CallToolResult;
  expect(legacy.isError).toBeFalsy();
  expect((legacy.structuredContent as { filter: { notes: string[] } }).filter.notes.join(' ')).toContain('status_code');
  expect((legacy.structuredContent as { calls: ApiCallOut[] }).calls.every((c) => c.protocol === 'http' && c.status_code === 200)).toBe(true);

  const bad = (await client.callTool({ name: 'list_api_calls', arguments: { kfl: 'http && respone.status == 200' } })) as CallToolResult;
  expect(bad.isError).toBe(true);
  expect((bad.content[0] as { text: string }).text).toMatch(/"kfl".*unknown field "respone.status" at 1:9; did you mean "status_code"\?/);
});

test('list_api_calls format=full carries each call\'s headers from the worker', async () => {
  const req = psv('zeek/http_get.pcap', 'http.psv').find((r) => r['http.request.method'] === 'GET')!;
  const r = (await client.callTool({ name: 'list_api_calls', arguments: { format: 'full', kfl: `http && path == ${JSON.stringify(req['http.request.uri'])}` } })) as CallToolResult;
  expect(r.isError).toBeFalsy();
  const calls = (r.structuredContent as { calls: { request: { headers: [string, string][] } | null; response: { headers: [string, string][] } | null }[] }).calls;
  expect(calls).toHaveLength(1);
  expect(calls[0]!.request!.headers).toEqual(expect.arrayContaining([[expect.stringMatching(/^host$/i), req['http.host']]]));
  expect(calls[0]!.response!.headers.length).toBeGreaterThan(0);
});

test('the flow resource template reads one flow by the id list_l4_flows gives, from the worker that has it', async () => {
  const page = (await client.callTool({ name: 'list_l4_flows', arguments: { limit: 3, order_by: 'bytes' } })) as CallToolResult;
  const flows = (page.structuredContent as { flows: { id: string; client: { ip: string }; server: { port: number }; totals: { bytes: number } }[] }).flows;
  for (const f of flows) {
    const r = await client.readResource({ uri: `kubeshark://flows/${encodeURIComponent(f.id)}` });
    const got = JSON.parse((r.contents[0] as { text: string }).text) as { flow: typeof f };
    expect(got.flow).toMatchObject({ id: f.id, client: { ip: f.client.ip }, server: { port: f.server.port }, totals: { bytes: f.totals.bytes } });
  }
  await expect(client.readResource({ uri: 'kubeshark://flows/node-e2e/999999' })).rejects.toThrow(/not found/i);
});

test('get_api_call with an unknown id is isError naming "id"', async () => {
  const r = (await client.callTool({ name: 'get_api_call', arguments: { id: 'node-e2e/no-such/0' } })) as CallToolResult;
  expect(r.isError).toBe(true);
  expect((r.content[0] as { text: string }).text).toMatch(/"id"/);
});

test('invalid arguments come back as isError naming the field', async () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ limit: 0 }, /"limit" must be >= 1/],
    [{ ip: '10.0.0.300' }, /"ip" must be an IPv4 or IPv6 address/],
    [{ l4proto: 'icmp' }, /"l4proto" must be one of "tcp", "udp"/],
    [{ colour: 'red' }, /unknown argument "colour"/],
    [{ start: 'yesterday' }, /"start" must be an RFC 3339 time/],
    [{ start: '2024-05-01T15:00:00Z', end: '2024-05-01T14:00:00Z' }, /"end" is before "start"/],
  ];
  for (const [args, message] of cases) {
    const res = (await client.callTool({ name: 'list_l4_flows', arguments: args })) as CallToolResult;
    expect(res.isError).toBe(true);
    expect((res.content[0] as { text: string }).text).toMatch(message);
  }
});

test('a dead worker gives a clear unavailable error within the deadline; a restarted one is used again', async () => {
  const port = worker.address.split(':').pop()!;
  await stopWorker(worker);
  const t0 = Date.now();
  const res = (await client.callTool({ name: 'get_l4_flow_summary', arguments: {} })) as CallToolResult;
  expect(Date.now() - t0).toBeLessThan(5000);
  expect(res.isError).toBe(true);
  expect((res.content[0] as { text: string }).text).toMatch(/\[(unavailable|deadline_exceeded)\].*worker/);
  expect((await fetch(new URL('/readyz', url))).status).toBe(503);

  worker = await startWorker(`127.0.0.1:${port}`);
  const again = await waitFor('the hub to reach the restarted worker', async () => {
    const r = (await client.callTool({ name: 'get_l4_flow_summary', arguments: {} })) as CallToolResult;
    return r.isError ? undefined : r;
  });
  expect((again.structuredContent as { nodes: unknown[] }).nodes).toEqual([{ node: 'node-e2e', state: 'ok' }]);
  expect((await fetch(new URL('/readyz', url))).status).toBe(200);
});
