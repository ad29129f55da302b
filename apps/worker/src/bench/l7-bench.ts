/**
 * L7 dissection throughput, next to tshark on the same files (section `l7` of `npm run bench`;
 * run by flows-bench.ts, not on its own).
 *
 * Two workloads, each a classic pcap generated in the OS temp dir with reassembly-bench.ts's
 * `loadConn` and `writeCapture` (every connection instance gets its own client address and
 * port, 512 instances side by side, packet by packet):
 *
 *   HTTP/1.1  zeek/http_1000-requests-one-dropped-response.pcap.gz (one IPv6 keep-alive
 *             connection, 1000 requests, one response missing) + 5 x zeek/http_get.pcap (one
 *             IPv4 GET) per long connection, as in the reassembly section
 *   HTTP/2    suricata-verify/http2-keywords.pcap (one IPv6 prior-knowledge h2c connection to
 *             port 3000: 6 requests, ~410 KB of responses in large DATA frames)
 *
 * For each, after reading the file once to warm the page cache, it measures in fresh child
 * processes, best of RUNS:
 *
 *   read  readCaptureFile with a callback that only counts packets (the reference)
 *   l7    WorkerEngine.replay: decode, flow tracking, reassembly, the stream router with every
 *         dissector, and the entry store (the worker's default of 100,000 entries), as the
 *         worker replays a capture; entries = API calls stored (a request with its response)
 *
 * then, when tshark is installed, runs it once on the same file, timed by the wall clock:
 *
 *   HTTP/1.1  tshark -n -r FILE -Y http -T fields -e frame.number
 *   HTTP/2    tshark -n -r FILE -d tcp.port==3000,http2 -Y http2.type==1 -T fields -e http2.type
 *
 * tshark's "entries" are the HTTP messages it shows: frames matching `http` (a request or a
 * response each) for HTTP/1.1, HEADERS frames (counted per frame, several can share a packet)
 * for HTTP/2. That is about two per API call, so entries/s do not compare one to one; the ratio
 * ours/tshark is the ratio of times on the same file. tshark's time includes its start-up
 * (loading every dissector), measured separately on the one-connection template and printed.
 * Prints a table per workload and one `BENCH_L7 {json}` line; deletes the generated files.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { readCaptureFile } from '@kubeshark-mcp/capture';
import { WorkerEngine } from '../engine';
import { runChild } from './child';
import { fmtInt, mbps, mib, table } from './format';
import { LONG, SHORT, fixturesDir, loadConn, writeCapture, type Conn, type Generated } from './reassembly-bench';

/**
 * TCP payload of the generated captures, MiB (about: whole connections are written). Chosen so
 * that tshark takes seconds on each (about 7 s and 2 s on the development machine): HTTP/2's
 * template is mostly large DATA frames, which tshark goes through ten times faster per byte.
 */
export const DEFAULT_L7_HTTP1_MIB = 64;
export const DEFAULT_L7_HTTP2_MIB = 256;
/** Target from issue 4: at least ten times tshark's rate on the same file. */
export const TARGET_VS_TSHARK = 10;
const TSHARK = process.env.TSHARK ?? 'tshark';

const H2 = 'suricata-verify/http2-keywords.pcap';
const H2_PORT = 3000;

type WorkloadName = 'http1' | 'http2';

interface Workload {
  name: WorkloadName;
  label: string;
  long: string;
  short?: string;
  tsharkArgs: (file: string) => string[];
  /** Counts tshark's entries in its output. */
  tsharkCount: (stdout: string) => number;
}

/** Lines of output: one per displayed frame. */
const countLines = (s: string): number => s.split('\n').filter((l) => l.length > 0).length;
/** HEADERS frames: the `1`s among each line's comma-separated http2.type values. */
const countHeaders = (s: string): number => s.split(/[\n,]/).filter((t) => t.trim() === '1').length;

const WORKLOADS: Workload[] = [
  {
    name: 'http1',
    label: 'HTTP/1.1',
    long: LONG,
    short: SHORT,
    tsharkArgs: (f) => ['-n', '-r', f, '-Y', 'http', '-T', 'fields', '-e', 'frame.number'],
    tsharkCount: countLines,
  },
  {
    name: 'http2',
    label: 'HTTP/2',
    long: H2,
    tsharkArgs: (f) => ['-n', '-r', f, '-d', `tcp.port==${H2_PORT},http2`, '-Y', 'http2.type==1', '-T', 'fields', '-e', 'http2.type'],
    tsharkCount: countHeaders,
  },
];

type Mode = 'read' | 'l7';
const MODES: Mode[] = ['read', 'l7'];

interface RunResult {
  packets: number;
  /** API calls the engine stored (l7 mode), evicted ones included. */
  entries: number;
  seconds: number;
  cpuSeconds: number;
}

interface ChildReport {
  runs: RunResult[];
  memory: NodeJS.MemoryUsage;
  /** Peak resident set of the process, bytes. */
  maxRss: number;
  /** Entries of the last run by protocol and error (`http`, `http:pair-not-found`), of those retained. */
  kinds: Record<string, number>;
  retained: number;
  evicted: number;
}

// ---------------------------------------------------------------------------------------------
// Measuring (in a child process per workload and mode)

function kindsOf(engine: WorkerEngine): Record<string, number> {
  const kinds: Record<string, number> = {};
  for (const s of engine.entries?.query({ limit: 0 }).entries ?? []) {
    const k = s.entry.error ? `${s.entry.protocol}:${s.entry.error}` : s.entry.protocol;
    kinds[k] = (kinds[k] ?? 0) + 1;
  }
  return kinds;
}

async function runOnce(mode: Mode, file: string, keep: { engine?: WorkerEngine }): Promise<RunResult> {
  let packets = 0;
  let entries = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  if (mode === 'read') {
    const r = await readCaptureFile(file, () => {
      packets++;
    });
    if (r.error) throw r.error;
  } else {
    const engine = new WorkerEngine('bench', 'bench');
    let failed: string | undefined;
    await engine.replay([file], (_f, message) => (failed = message));
    if (failed !== undefined) throw new Error(`replay failed: ${failed}`);
    packets = engine.stats().packets;
    entries = engine.entries?.stored ?? 0;
    keep.engine = engine;
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { packets, entries, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

async function child(mode: Mode, file: string, runs: number): Promise<void> {
  const keep: { engine?: WorkerEngine } = {};
  const results: RunResult[] = [];
  for (let i = 0; i < runs; i++) {
    delete keep.engine; // the previous run's engine is garbage before the next one starts
    results.push(await runOnce(mode, file, keep));
  }
  (globalThis as { gc?: () => void }).gc?.();
  const report: ChildReport = {
    runs: results,
    memory: process.memoryUsage(),
    maxRss: process.resourceUsage().maxRSS * 1024,
    kinds: keep.engine ? kindsOf(keep.engine) : {},
    retained: keep.engine?.entries?.size ?? 0,
    evicted: keep.engine?.entries?.evicted ?? 0,
  };
  process.send!(report);
}

function measure(mode: Mode, file: string, runs: number): Promise<ChildReport> {
  return runChild<ChildReport>(__filename, ['--child', mode, file, String(runs)], `L7 benchmark child for ${mode}`);
}

/** Entries the engine makes of one template connection, replayed alone (in this process: small). */
async function templateEntries(file: string): Promise<number> {
  const engine = new WorkerEngine('bench', 'bench');
  await engine.replay([file]);
  return engine.entries?.stored ?? 0;
}

// ---------------------------------------------------------------------------------------------
// tshark

interface TsharkRun {
  seconds: number;
  entries: number;
  code: number | null;
  stderr: string;
}

function tsharkVersion(): string | undefined {
  const r = spawnSync(TSHARK, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return undefined;
  return r.stdout.split('\n')[0]?.trim();
}

/** Runs tshark once, timed by the wall clock from spawn to exit; counts entries in its output. */
function runTshark(args: string[], count: (stdout: string) => number): Promise<TsharkRun> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const proc = spawn(TSHARK, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    proc.stdout.on('data', (b: Buffer) => out.push(b));
    proc.stderr.on('data', (b: Buffer) => err.push(b));
    proc.on('error', reject);
    proc.on('close', (code) => {
      const seconds = (performance.now() - t0) / 1000;
      resolve({ seconds, entries: count(Buffer.concat(out).toString('latin1')), code, stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

// ---------------------------------------------------------------------------------------------

export interface L7BenchOptions {
  /** TCP payload of the HTTP/1.1 capture, MiB. */
  http1MiB: number;
  /** TCP payload of the HTTP/2 capture, MiB. */
  http2MiB: number;
  runs: number;
  keep: boolean;
}

interface WorkloadResult {
  json: Record<string, unknown>;
  ratio?: number;
}

/** Runs the section; prints its tables and `BENCH_L7` line. Returns the JSON (undefined when skipped). */
export async function runL7Bench(opts: L7BenchOptions): Promise<object | undefined> {
  const out = (s: string): boolean => process.stdout.write(s);
  const load0 = os.loadavg()[0]!;
  out(`\n== L7 dissection throughput (WorkerEngine replay vs tshark) ==\nload average (1 min) before: ${load0.toFixed(2)} on ${os.availableParallelism()} cores\n`);
  const missing = [LONG, SHORT, H2].filter((rel) => !existsSync(path.join(fixturesDir(), rel)));
  if (missing.length) {
    out(`skipped: template captures not found in ${fixturesDir()}: ${missing.join(', ')}\n`);
    out(`BENCH_L7 ${JSON.stringify({ skipped: `template captures missing: ${missing.join(', ')}` })}\n`);
    return undefined;
  }
  const version = tsharkVersion();
  out(version ? `tshark: ${version}\n` : `tshark: not found (${TSHARK}); its column is skipped\n`);

  const dir = mkdtempSync(path.join(os.tmpdir(), 'l7-bench-'));
  const onSignal = (): void => {
    rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const results: Record<string, unknown> = {};
  const ratios: number[] = [];
  try {
    for (const w of WORKLOADS) {
      const r = await runWorkload(w, w.name === 'http1' ? opts.http1MiB : opts.http2MiB, dir, opts, version !== undefined);
      results[w.name] = r.json;
      if (r.ratio !== undefined) ratios.push(r.ratio);
    }
    const met = version !== undefined && ratios.length === WORKLOADS.length && ratios.every((x) => x >= TARGET_VS_TSHARK);
    out(
      `\ntarget >= ${TARGET_VS_TSHARK}x tshark (both workloads): ` +
        (version === undefined ? 'not measured (tshark not installed)\n' : `${met ? 'MET' : 'NOT MET'} (${ratios.map((x) => `${x.toFixed(1)}x`).join(', ')})\n`),
    );
    const json = {
      node: process.version,
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.availableParallelism(),
      loadAvg1: +load0.toFixed(2),
      loadAvg1After: +os.loadavg()[0]!.toFixed(2),
      tshark: version ?? null,
      runs: opts.runs,
      ...results,
      targetVsTshark: TARGET_VS_TSHARK,
      targetMet: version === undefined ? null : met,
    };
    out(`BENCH_L7 ${JSON.stringify(json)}\n`);
    return json;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (opts.keep) out(`kept ${dir}\n`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

async function runWorkload(w: Workload, payloadMiB: number, dir: string, opts: L7BenchOptions, withTshark: boolean): Promise<WorkloadResult> {
  const out = (s: string): boolean => process.stdout.write(s);
  const file = path.join(dir, `l7-bench-${w.name}.pcap`);
  const tGen = performance.now();
  const long: Conn = loadConn(w.long);
  const short: Conn | undefined = w.short ? loadConn(w.short) : undefined;
  const gen: Generated = writeCapture(file, long, short, payloadMiB * 1048576);
  const fileBytes = statSync(file).size;
  const genSeconds = (performance.now() - tGen) / 1000;
  const templates = [{ rel: w.long, conn: long, instances: gen.longConns }, ...(short && w.short ? [{ rel: w.short, conn: short, instances: gen.shortConns }] : [])];
  out(
    `\n-- ${w.label} --\ntemplate: ${templates.map((t) => `${t.conn.name} (${t.conn.packets.length} pkts, ${fmtInt(t.conn.payload)} payload bytes, IPv${t.conn.ipVersion}) x ${fmtInt(t.instances)}`).join(', ')}\n` +
      `generated ${file}: ${fmtInt(gen.packets)} packets, ${fmtInt(gen.connections)} connections, ${mib(gen.payload)} TCP payload, file ${mib(fileBytes)}, ${genSeconds.toFixed(1)} s\n`,
  );

  // Expected counts: per-template counts (ours, tshark's) times instances.
  let expectedOurs = 0;
  let expectedTshark = 0;
  let tsharkStartup: number | undefined;
  for (const t of templates) {
    const full = path.join(fixturesDir(), t.rel);
    expectedOurs += (await templateEntries(full)) * t.instances;
    if (withTshark) {
      const tr = await runTshark(w.tsharkArgs(full), w.tsharkCount);
      expectedTshark += tr.entries * t.instances;
      if (t.rel === w.long) tsharkStartup = tr.seconds;
    }
  }

  const warm = await readCaptureFile(file, () => {});
  if (warm.error) throw warm.error;

  const res = {} as Record<Mode, { best: RunResult; report: ChildReport }>;
  for (const mode of MODES) {
    const report = await measure(mode, file, opts.runs);
    res[mode] = { best: report.runs.reduce((a, b) => (b.seconds < a.seconds ? b : a)), report };
  }
  const read = res.read.best;
  const l7 = res.l7.best;
  const ts = withTshark ? await runTshark(w.tsharkArgs(file), w.tsharkCount) : undefined;
  if (ts && ts.code !== 0) out(`tshark exited with ${ts.code}: ${ts.stderr.trim().split('\n').slice(-3).join(' | ')}\n`);

  const row = (label: string, entries: string, seconds: number, entriesPerS: string, all: string): string[] => [
    label,
    entries,
    seconds.toFixed(3),
    entriesPerS,
    mbps(fileBytes, seconds).toFixed(0),
    mbps(gen.payload, seconds).toFixed(0),
    `${(seconds / read.seconds).toFixed(2)}x`,
    all,
  ];
  const allRuns = (m: Mode): string => res[m].report.runs.map((x) => x.seconds.toFixed(3)).join(' ');
  const rows = [
    row('read (reference)', '-', read.seconds, '-', allRuns('read')),
    row('ours: WorkerEngine replay', fmtInt(l7.entries), l7.seconds, fmtInt(l7.entries / l7.seconds), allRuns('l7')),
    ts
      ? row(`tshark (${w.name === 'http1' ? 'HTTP messages' : 'HEADERS frames'})`, fmtInt(ts.entries), ts.seconds, fmtInt(ts.entries / ts.seconds), 'one run, wall clock')
      : ['tshark', 'skipped', '-', '-', '-', '-', '-', 'not installed'],
  ];
  const ratio = ts ? ts.seconds / l7.seconds : undefined;
  const startup = ts && tsharkStartup !== undefined ? tsharkStartup : undefined;
  const ratioNoStartup = ts && startup !== undefined ? (ts.seconds - startup) / l7.seconds : undefined;
  const mem = res.l7.report.memory;
  const kinds = Object.entries(res.l7.report.kinds)
    .map(([k, v]) => `${k} ${fmtInt(v)}`)
    .join(', ');
  out(
    '\n' +
      table(['mode', 'entries', 'best s', 'entries/s', 'file MB/s', 'payload MB/s', 'vs read', `runs (s)`], rows) +
      `\nMB = 10^6 bytes; payload = TCP payload in the file (${fmtInt(gen.payload)} bytes)\n` +
      `entries, ours: ${fmtInt(l7.entries)} API calls (expected ${fmtInt(expectedOurs)} from the templates replayed alone x instances; ` +
      `${fmtInt(res.l7.report.retained)} retained, ${fmtInt(res.l7.report.evicted)} evicted; retained by kind: ${kinds || 'none'})\n` +
      (ts
        ? `entries, tshark: ${fmtInt(ts.entries)} (expected ${fmtInt(expectedTshark)} from the templates x instances); tshark start-up on the template: ${startup?.toFixed(2) ?? '?'} s\n` +
          `ours / tshark: ${ratio!.toFixed(1)}x by time on the same file (${ratioNoStartup!.toFixed(1)}x with tshark's start-up taken out)\n`
        : `tshark: skipped (not installed; set TSHARK=/path/to/tshark to use another binary)\n`) +
      `memory of the l7 process after its runs (last run's engine alive, after GC): rss ${mib(mem.rss)}, heap used ${mib(mem.heapUsed)}, peak rss ${mib(res.l7.report.maxRss)}\n`,
  );
  const modeJson = (r: RunResult): object => ({
    seconds: +r.seconds.toFixed(4),
    cpuSeconds: +r.cpuSeconds.toFixed(4),
    fileMBps: +mbps(fileBytes, r.seconds).toFixed(1),
    payloadMBps: +mbps(gen.payload, r.seconds).toFixed(1),
    entriesPerS: Math.round(r.entries / r.seconds),
  });
  return {
    json: {
      fileBytes,
      packets: gen.packets,
      connections: gen.connections,
      payloadBytes: gen.payload,
      entries: l7.entries,
      expectedEntries: expectedOurs,
      kinds: res.l7.report.kinds,
      read: modeJson(read),
      l7: { ...modeJson(l7), rssBytes: mem.rss, heapUsedBytes: mem.heapUsed, maxRssBytes: res.l7.report.maxRss },
      tshark: ts
        ? {
            seconds: +ts.seconds.toFixed(4),
            startupSeconds: startup === undefined ? null : +startup.toFixed(4),
            entries: ts.entries,
            expectedEntries: expectedTshark,
            fileMBps: +mbps(fileBytes, ts.seconds).toFixed(1),
            entriesPerS: Math.round(ts.entries / ts.seconds),
            exitCode: ts.code,
          }
        : null,
      vsTshark: ratio === undefined ? null : +ratio.toFixed(2),
      vsTsharkNoStartup: ratioNoStartup === undefined ? null : +ratioNoStartup.toFixed(2),
    },
    ...(ratio !== undefined ? { ratio } : {}),
  };
}

if (require.main === module && process.argv[2] === '--child') {
  child(process.argv[3] as Mode, process.argv[4]!, Number(process.argv[5])).catch((err: unknown) => {
    process.stderr.write(`l7-bench child: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
