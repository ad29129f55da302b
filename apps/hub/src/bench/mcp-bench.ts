/**
 * MCP tool-call bench: latency (p50, p99) and calls per second of `list_l4_flows` and
 * `list_api_calls` through the hub and a worker (official SDK client -> Streamable HTTP -> hub
 * -> gRPC -> worker), next to a bare SDK server answering a trivial tool, measured the same way
 * in the same run.
 *
 *   node apps/hub/dist/bench/mcp-bench.js   (`npm run bench` at the root runs it first; `node --cpu-prof` profiles every process)
 *
 * The worker's entry store holds MCP_BENCH_ENTRIES API calls (default 1,000,000: the HTTP call
 * of a real capture, copied with shifted timestamps and rotating paths and statuses) and its
 * flow table MCP_BENCH_FLOWS UDP conversations (default 10,000, built packet by packet through
 * the flow tracker). The worker, the hub and the bare server each run in a child process of
 * their own (this script with `--serve`, with the Node flags `npm start` gives hub and worker:
 * SERVER_NODE_FLAGS), the clients in this one, all on loopback; each call
 * asks for a page of 50 calls or flows. Latency: MCP_BENCH_CALLS sequential calls (default 2,000) on one session
 * after a warm-up. Throughput: MCP_BENCH_CLIENTS concurrent clients (default 8), each with its
 * own session, calling for MCP_BENCH_SECONDS (default 6, in MCP_BENCH_ROUNDS rounds of turns, default 3).
 *
 * Targets (issue 6): p50 under 5 ms for a page of 50 calls from 1,000,000 stored entries, and at
 * least half the bare server's calls per second. For context the bare server also answers
 * `page_tool` with a list_api_calls page recorded from the hub in the same run: the same bytes
 * on the wire and in the client, none of the hub's work. Prints a table and one
 * `BENCH_MCP {json}` line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { RawPacket } from '@kubeshark-mcp/capture';
import { capturePath } from '@kubeshark-mcp/testkit';
import { WorkerEngine, startWorkerServer, type StoredEntry } from '@kubeshark-mcp/worker';
import { buildHub, validateConfig, DEFAULT_CONFIG, SERVER_NODE_FLAGS } from '../index';

const ENTRIES = Number(process.env.MCP_BENCH_ENTRIES ?? 1_000_000);
const FLOWS = Number(process.env.MCP_BENCH_FLOWS ?? 10_000);
const CALLS = Number(process.env.MCP_BENCH_CALLS ?? 2_000);
const CLIENTS = Number(process.env.MCP_BENCH_CLIENTS ?? 8);
const SECONDS = Number(process.env.MCP_BENCH_SECONDS ?? 6);
/** Throughput rounds: each row runs SECONDS / ROUNDS at a time, the rows taking turns. */
const ROUNDS = Math.max(1, Number(process.env.MCP_BENCH_ROUNDS ?? 3));
/** Comma-separated tools to measure besides the bare server (default both); for profiling one of them. */
const ONLY = (process.env.MCP_BENCH_TOOLS ?? '').split(',').filter(Boolean);
const PAGE = 50;
const WARMUP = 200;
const P50_TARGET_MS = 5;
const RATE_TARGET = 0.5;

interface Call {
  name: string;
  arguments: Record<string, unknown>;
  /** Throws unless the result is what the bench expects (a full page, no error). */
  check: (r: CallToolResult) => void;
}

interface Row {
  server: string;
  tool: string;
  p50_ms: number;
  p99_ms: number;
  mean_ms: number;
  calls_per_s: number;
  /** CPU ms per call in each process during the throughput phase (client = this process; null off Linux). */
  cpu_ms_per_call: CpuPerCall;
}

const fmt = (n: number, digits = 2): string => n.toFixed(digits);
const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i < 2 || i === head.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return `${line(head)}\n${line(head.map((_, i) => '-'.repeat(widths[i]!)))}\n${rows.map(line).join('\n')}\n`;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** One UDP datagram (Ethernet, IPv4) of conversation `i`, from the client or back. */
function udpPacket(i: number, reply: boolean, tsSec: number, frame: number): RawPacket {
  const payload = 64;
  const buf = Buffer.alloc(14 + 20 + 8 + payload);
  buf.writeUInt16BE(0x0800, 12);
  const ip = 14;
  buf[ip] = 0x45;
  buf.writeUInt16BE(20 + 8 + payload, ip + 2);
  buf[ip + 8] = 64;
  buf[ip + 9] = 17;
  const client = ((10 << 24) | (1 << 16) | ((i >> 8) & 0xff) << 8 | (i & 0xff)) >>> 0;
  const server = ((10 << 24) | (2 << 16) | (((i >> 16) & 0xff) << 8) | ((i % 50) + 1)) >>> 0;
  const clientPort = 20_000 + (i % 40_000);
  buf.writeUInt32BE(reply ? server : client, ip + 12);
  buf.writeUInt32BE(reply ? client : server, ip + 16);
  const udp = ip + 20;
  buf.writeUInt16BE(reply ? 9000 : clientPort, udp);
  buf.writeUInt16BE(reply ? clientPort : 9000, udp + 2);
  buf.writeUInt16BE(8 + payload, udp + 4);
  return { buf, offset: 0, capLen: buf.length, origLen: buf.length, tsSec, tsNsec: reply ? 500_000 : 0, linkType: 1, interfaceId: 0, frame };
}

const PATHS = ['/api/orders', '/api/cart', '/api/users/42', '/healthz', '/api/payments'];

/** Fills the worker: the capture's real HTTP call copied `ENTRIES` times, and `FLOWS` UDP conversations. */
async function fillWorker(engine: WorkerEngine): Promise<void> {
  await engine.replay([capturePath('zeek/http_get.pcap')]);
  const store = engine.entries;
  if (!store) throw new Error('the worker was built without an entry store');
  const template: StoredEntry | undefined = store.query({ limit: 1 }).entries[0];
  if (!template || template.entry.protocol !== 'http') throw new Error('zeek/http_get.pcap gave no HTTP call');
  const base = template.entry.timestamp + 1_000_000;
  const t0 = performance.now();
  for (let i = 0; i < ENTRIES; i++) {
    const entry = { ...template.entry, timestamp: base + i * 1000, path: PATHS[i % PATHS.length]!, status_code: i % 20 === 0 ? 500 : 200 };
    store.add({ id: `${template.node}/${template.flow_id.split('/').pop()}/b${i}`, node: template.node, flow_id: template.flow_id, src: template.src, dst: template.dst, entry });
  }
  const tEntries = performance.now() - t0;
  const t1 = performance.now();
  const firstSec = Math.floor(base / 1e6);
  for (let i = 0; i < FLOWS; i++) {
    const ts = firstSec + Math.floor(i / 100);
    engine.tracker.onPacket(udpPacket(i, false, ts, 1_000_000 + 2 * i));
    engine.tracker.onPacket(udpPacket(i, true, ts, 1_000_001 + 2 * i));
  }
  const tFlows = performance.now() - t1;
  process.stdout.write(`worker filled: ${fmtInt(store.size)} API calls in ${fmt(tEntries / 1000, 1)} s, ${fmtInt(FLOWS)} synthetic UDP flows in ${fmt(tFlows / 1000, 1)} s; heap ${fmtInt(process.memoryUsage().heapUsed / 1048576)} MiB\n`);
}

/** The bare reference: one trivial tool on the SDK's McpServer behind its Streamable HTTP transport on node:http, a session per client. */
async function startBareServer(pagePath?: string): Promise<{ url: string; close: () => Promise<void> }> {
  // The same answer as one list_api_calls page of the hub, as the hub sent it (content and structured content).
  const page = pagePath ? (JSON.parse(readFileSync(pagePath, 'utf8')) as CallToolResult) : undefined;
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const server = http.createServer((req, res) => {
    const id = req.headers['mcp-session-id'];
    const existing = typeof id === 'string' ? transports.get(id) : undefined;
    if (existing) {
      void existing.handleRequest(req, res);
      return;
    }
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (sid) => {
        transports.set(sid, transport);
      },
    });
    transport.onclose = () => {
      if (transport.sessionId) transports.delete(transport.sessionId);
    };
    const mcp = new McpServer({ name: 'bare', version: '0' });
    mcp.registerTool('ping_tool', { description: 'Answers pong.' }, () => ({ content: [{ type: 'text', text: 'pong' }] }));
    if (page) mcp.registerTool('page_tool', { description: 'Answers a recorded page of API calls.' }, () => page);
    void mcp.connect(transport).then(() => transport.handleRequest(req, res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    close: async () => {
      for (const t of transports.values()) await t.close().catch(() => undefined);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function connect(url: string): Promise<Client> {
  const client = new Client({ name: 'mcp-bench', version: '0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  return client;
}

async function callOnce(client: Client, call: Call): Promise<void> {
  const r = (await client.callTool({ name: call.name, arguments: call.arguments })) as CallToolResult;
  call.check(r);
}

/** Sequential calls on one session: per-call latency. */
async function latency(url: string, call: Call): Promise<{ p50: number; p99: number; mean: number }> {
  const client = await connect(url);
  try {
    for (let i = 0; i < WARMUP; i++) await callOnce(client, call);
    const times: number[] = [];
    for (let i = 0; i < CALLS; i++) {
      const t = performance.now();
      await callOnce(client, call);
      times.push(performance.now() - t);
    }
    const sorted = [...times].sort((a, b) => a - b);
    return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), mean: times.reduce((a, b) => a + b, 0) / times.length };
  } finally {
    await client.close();
  }
}

/** CPU time (user + system) of a process so far, in ms: this one from Node, a child from /proc (Linux); null where unknown. */
function cpuMs(pid: number | 'self'): number | null {
  if (pid === 'self') {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  }
  try {
    // /proc/<pid>/stat: fields 14 and 15 (utime, stime) in clock ticks, after the parenthesised name.
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return null;
  }
}

/** USER_HZ: 100 on every Linux architecture Node runs on. */
const CLOCK_TICKS = 100;

/** The processes whose CPU time the throughput phase accounts for, by role. */
const processes = new Map<string, number | 'self'>([['client', 'self']]);

/** CPU ms per call of each process during a throughput phase. */
type CpuPerCall = Record<string, number | null>;

/** `CLIENTS` sessions calling back to back for `SECONDS`: calls per second over all of them, and CPU ms per call of each process. */
/** One throughput slice: calls made, seconds taken, CPU ms each process spent (null where unknown). */
interface Slice {
  done: number;
  elapsed: number;
  cpu: Record<string, number | null>;
}

async function throughput(url: string, call: Call, roles: string[], seconds: number): Promise<Slice> {
  const clients = await Promise.all(Array.from({ length: CLIENTS }, () => connect(url)));
  try {
    for (const c of clients) await callOnce(c, call);
    let done = 0;
    const cpu0 = roles.map((r) => cpuMs(processes.get(r)!));
    const start = performance.now();
    const deadline = start + seconds * 1000;
    await Promise.all(
      clients.map(async (c) => {
        while (performance.now() < deadline) {
          await callOnce(c, call);
          done++;
        }
      }),
    );
    const elapsed = (performance.now() - start) / 1000;
    const cpu: Record<string, number | null> = {};
    roles.forEach((r, i) => {
      const a = cpu0[i];
      const b = cpuMs(processes.get(r)!);
      cpu[r] = a === null || a === undefined || b === null ? null : b - a;
    });
    return { done, elapsed, cpu };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

/** Slices of one row added up: calls per second and CPU ms per call of each process. */
function sumSlices(slices: Slice[]): { rate: number; cpu: CpuPerCall } {
  const done = slices.reduce((n, x) => n + x.done, 0);
  const elapsed = slices.reduce((n, x) => n + x.elapsed, 0);
  const cpu: CpuPerCall = {};
  for (const role of Object.keys(slices[0]!.cpu)) {
    const parts = slices.map((x) => x.cpu[role]);
    cpu[role] = parts.some((v) => v === null || v === undefined) ? null : +((parts as number[]).reduce((a, b) => a + b, 0) / done).toFixed(3);
  }
  return { rate: done / elapsed, cpu };
}

/** Items per page the hub actually returned, per tool output key. */
const returned = new Map<string, number>();

function pageOf(key: 'calls' | 'flows'): (r: CallToolResult) => void {
  return (r) => {
    if (r.isError) throw new Error(`tool error: ${JSON.stringify(r.content).slice(0, 500)}`);
    const out = r.structuredContent as Record<string, unknown> | undefined;
    const list = out?.[key];
    // A full page, or one the hub's size budget cut short (it then says truncated: true).
    if (!Array.isArray(list) || list.length === 0 || (list.length !== PAGE && out?.truncated !== true)) {
      throw new Error(`expected a page of ${PAGE} ${key}, got ${Array.isArray(list) ? list.length : 'none'}`);
    }
    returned.set(key, list.length);
  };
}

/** A server in a child process of its own (this script with `--serve <what>`): what it printed after `LISTENING `. */
interface Served {
  proc: ChildProcess;
  address: string;
}

function serve(what: string, ...args: string[]): Promise<Served> {
  return new Promise((resolve, reject) => {
    // Every server, the bare one too, runs with the flags `npm start` gives hub and worker; the clients run in this process, as launched.
    const proc = spawn(process.execPath, [...process.execArgv, ...SERVER_NODE_FLAGS, __filename, '--serve', what, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^LISTENING (\S+)$/m.exec(out);
      if (m) {
        process.stdout.write(out.replace(/^LISTENING .*\n?/m, ''));
        proc.stdout!.removeAllListeners('data');
        proc.stdout!.pipe(process.stdout);
        resolve({ proc, address: m[1]! });
      }
    });
    proc.on('exit', (code) => reject(new Error(`${what} exited (${code}) before listening: ${out}`)));
  });
}

function stop(s: Served): Promise<void> {
  return new Promise((resolve) => {
    if (s.proc.exitCode !== null) return resolve();
    s.proc.once('exit', () => resolve());
    s.proc.kill('SIGTERM');
  });
}

/** Child: one of the servers, until SIGTERM. */
async function child(what: string, arg: string | undefined): Promise<void> {
  const closers: (() => Promise<void>)[] = [];
  if (what === 'worker') {
    const engine = new WorkerEngine('node-bench', 'bench', undefined, undefined, {}, Math.max(ENTRIES + 1000, 100_000));
    await fillWorker(engine);
    const worker = await startWorkerServer(engine, '127.0.0.1', 0);
    closers.push(() => worker.close(), () => engine.close());
    process.stdout.write(`LISTENING ${worker.address}\n`);
  } else if (what === 'hub') {
    const hub = await buildHub(validateConfig({ ...DEFAULT_CONFIG, host: '127.0.0.1', port: 0, workers: [arg!] }), { logger: false });
    // A trivial tool through the extension API: the hub's HTTP and MCP layers without a worker call.
    hub.app.mcp.registerTool({
      name: 'hub_ping',
      title: 'Ping',
      description: 'Answers pong (bench only).',
      inputSchema: { type: 'object', properties: {}, additionalProperties: false },
      outputSchema: { type: 'object', properties: { pong: { type: 'boolean' } }, required: ['pong'], additionalProperties: false },
      annotations: { readOnlyHint: true },
      handler: async () => ({ structured: { pong: true }, text: 'pong' }),
    });
    await hub.app.listen({ host: '127.0.0.1', port: 0 });
    closers.push(() => hub.app.close());
    process.stdout.write(`LISTENING http://127.0.0.1:${(hub.app.server.address() as { port: number }).port}/mcp\n`);
  } else {
    const bare = await startBareServer(arg);
    closers.push(bare.close);
    process.stdout.write(`LISTENING ${bare.url}\n`);
  }
  process.once('SIGTERM', () => {
    void (async () => {
      for (const c of closers) await c().catch(() => undefined);
      process.exit(0);
    })();
  });
}

/**
 * Node 20's fetch (undici) raises an AbortSignal's listener limit to 1500 and adds a listener per
 * request on the SDK client's long-lived session signal, dropping them only at garbage collection:
 * thousands of calls on one session print that warning. It is the client library, not a leak in
 * the servers measured; every other warning still prints.
 */
function quietFetchAbortWarning(): void {
  process.removeAllListeners('warning');
  process.on('warning', (w) => {
    if (w.name === 'MaxListenersExceededWarning' && /abort listeners added to \[AbortSignal\]/.test(w.message)) return;
    process.stderr.write(`${w.name}: ${w.message}\n`);
  });
}

async function main(): Promise<void> {
  quietFetchAbortWarning();
  process.stdout.write(`== MCP tool calls through the hub (SDK client -> Streamable HTTP -> hub -> gRPC -> worker) ==\n`);
  process.stdout.write(`load average (1 min) before: ${os.loadavg()[0]!.toFixed(2)} on ${os.availableParallelism()} cores; ${process.version}; worker, hub, bare server and clients each in a process of their own; the servers with ${SERVER_NODE_FLAGS.join(' ') || 'no flags'} (as npm start runs hub and worker), the clients with ${process.execArgv.join(' ') || 'none'}\n`);
  const servers: Served[] = [];
  let hubUrl: string;
  let bareUrl: string;
  try {
    const worker = await serve('worker');
    servers.push(worker);
    const hub = await serve('hub', worker.address);
    servers.push(hub);
    // One page from the hub, recorded for the bare server's page_tool: the same bytes without the hub's work.
    const pagePath = path.join(os.tmpdir(), `mcp-bench-page-${process.pid}.json`);
    const recorder = await connect(hub.address);
    try {
      const page = (await recorder.callTool({ name: 'list_api_calls', arguments: { limit: PAGE } })) as CallToolResult;
      pageOf('calls')(page);
      writeFileSync(pagePath, JSON.stringify(page));
    } finally {
      await recorder.close();
    }
    const bare = await serve('bare', pagePath);
    servers.push(bare);
    rmSync(pagePath, { force: true });
    hubUrl = hub.address;
    bareUrl = bare.address;
    processes.set('worker', worker.proc.pid!).set('hub', hub.proc.pid!).set('bare', bare.proc.pid!);
  } catch (e) {
    await Promise.all(servers.map(stop));
    throw e;
  }

  const runs: { server: string; url: string; roles: string[]; call: Call }[] = [
    { server: 'bare SDK server', url: bareUrl, roles: ['client', 'bare'], call: { name: 'ping_tool', arguments: {}, check: (r) => { if (r.isError) throw new Error('bare tool failed'); } } },
    { server: 'bare SDK server', url: bareUrl, roles: ['client', 'bare'], call: { name: 'page_tool', arguments: {}, check: pageOf('calls') } },
    { server: 'hub', url: hubUrl, roles: ['client', 'hub'], call: { name: 'hub_ping', arguments: {}, check: (r) => { if (r.isError) throw new Error('hub_ping failed'); } } },
    { server: 'hub + worker', url: hubUrl, roles: ['client', 'hub', 'worker'], call: { name: 'list_api_calls', arguments: { limit: PAGE }, check: pageOf('calls') } },
    { server: 'hub + worker', url: hubUrl, roles: ['client', 'hub', 'worker'], call: { name: 'list_l4_flows', arguments: { limit: PAGE }, check: pageOf('flows') } },
  ];
  const rows: Row[] = [];
  try {
    const chosen = runs.filter((r, i) => i < 3 || ONLY.length === 0 || ONLY.includes(r.call.name));
    const latencies: Awaited<ReturnType<typeof latency>>[] = [];
    for (const run of chosen) latencies.push(await latency(run.url, run.call));
    // Throughput in rounds, every row once a round, so that a change in the machine's other load
    // falls on all rows alike instead of on whichever ran during it.
    const slices: Slice[][] = chosen.map(() => []);
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, run] of chosen.entries()) slices[i]!.push(await throughput(run.url, run.call, run.roles, SECONDS / ROUNDS));
    }
    chosen.forEach((run, i) => {
      const lat = latencies[i]!;
      const { rate, cpu } = sumSlices(slices[i]!);
      rows.push({ server: run.server, tool: run.call.name, p50_ms: +lat.p50.toFixed(3), p99_ms: +lat.p99.toFixed(3), mean_ms: +lat.mean.toFixed(3), calls_per_s: Math.round(rate), cpu_ms_per_call: cpu });
    });
  } finally {
    await Promise.all(servers.map(stop));
  }

  const perPage = `list_api_calls returned ${returned.get('calls') ?? 0} calls a page, list_l4_flows ${returned.get('flows') ?? 0} flows a page (the rest cut by the hub's size budget, truncated: true)`;
  process.stdout.write(
    `${perPage}\n${fmtInt(ENTRIES)} (+1) API calls and ${fmtInt(FLOWS)} flows stored; pages of ${PAGE}; latency over ${fmtInt(CALLS)} sequential calls, throughput with ${CLIENTS} concurrent clients for ${SECONDS} s a row, in ${ROUNDS} rounds taking turns\n\n`,
  );
  process.stdout.write(
    table(
      ['server', 'tool', 'p50 ms', 'p99 ms', 'mean ms', `calls/s (${CLIENTS} clients)`, 'CPU ms/call (throughput)'],
      rows.map((r) => [
        r.server,
        r.tool,
        fmt(r.p50_ms),
        fmt(r.p99_ms),
        fmt(r.mean_ms),
        fmtInt(r.calls_per_s),
        Object.entries(r.cpu_ms_per_call)
          .map(([k, v]) => `${k} ${v === null ? '?' : fmt(v)}`)
          .join(', '),
      ]),
    ),
  );
  const bareRate = rows[0]!.calls_per_s;
  const sameAnswerRate = rows[1]!.calls_per_s;
  const hubPing = rows[2]!;
  const targets = rows.slice(3).map((r) => {
    const latencyMet = r.p50_ms < P50_TARGET_MS;
    const rateMet = r.calls_per_s >= RATE_TARGET * bareRate;
    return { tool: r.tool, p50_met: latencyMet, rate_met: rateMet, rate_ratio: +(r.calls_per_s / bareRate).toFixed(3), ratio_to_same_answer: +(r.calls_per_s / sameAnswerRate).toFixed(3) };
  });
  process.stdout.write('\n');
  for (const t of targets) {
    const r = rows.find((x) => x.tool === t.tool)!;
    process.stdout.write(`${t.tool}: p50 < ${P50_TARGET_MS} ms for a page of ${PAGE}: ${t.p50_met ? 'MET' : 'NOT MET'} (${fmt(r.p50_ms)} ms); `);
    process.stdout.write(`>= ${RATE_TARGET}x the bare server's calls/s: ${t.rate_met ? 'MET' : 'NOT MET'} (${fmtInt(r.calls_per_s)} vs ${fmtInt(bareRate)}, ${t.rate_ratio}x)\n`);
  }
  process.stdout.write(`context: the hub answering a trivial tool of its own (hub_ping, no worker call) makes ${fmtInt(hubPing.calls_per_s)} calls/s, ${(hubPing.calls_per_s / bareRate).toFixed(3)}x of the bare server's ping_tool\n`);
  process.stdout.write(`context: the bare server sending a recorded list_api_calls page (same bytes, none of the hub's work) makes ${fmtInt(sameAnswerRate)} calls/s, ${(sameAnswerRate / bareRate).toFixed(3)}x of ping_tool\n`);
  process.stdout.write(
    `BENCH_MCP ${JSON.stringify({ entries: ENTRIES + 1, flows: FLOWS, page: PAGE, returned: Object.fromEntries(returned), calls: CALLS, clients: CLIENTS, seconds: SECONDS, node: process.version, rows, targets })}\n`,
  );
}

(process.argv[2] === '--serve' ? child(process.argv[3]!, process.argv[4]) : main()).catch((err: unknown) => {
  process.stderr.write(`mcp-bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
  if (process.argv[2] === '--serve') process.exit(1);
});
