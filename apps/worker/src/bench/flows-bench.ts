/**
 * The worker's benchmarks (not a test: it asserts nothing and fails on nothing). Three sections,
 * run one after the other, each printing a table and one JSON line the docs quote:
 *
 *   flows       flow-tracking throughput on a headers-only capture (this file)    BENCH {...}
 *   reassembly  TCP reassembly throughput on an HTTP capture with full payloads   BENCH_REASSEMBLY {...}
 *               (reassembly-bench.ts)
 *   live        live capture on loopback with tcpdump under a bounded UDP load     BENCH_LIVE {...}
 *               (live-bench.ts; needs root and tcpdump, else prints why it skipped)
 *   l7          HTTP/1.1 and HTTP/2 dissection (WorkerEngine replay) next to       BENCH_L7 {...}
 *               tshark on the same files (l7-bench.ts; tshark's column skipped when it is missing)
 *   resolver    Kubernetes resolver lookups (resolver-bench.ts, its own process)   BENCH_RESOLVER {...}
 *   kfl         KFL filter over 1,000,000 entries vs a plain JS predicate          BENCH_KFL {...}
 *               (packages/kfl's `npm run bench`, its own process)
 *
 *   npm run bench                       # from the repo root: builds, then runs this file
 *   npm run bench -- --only l7,kfl      # a subset
 *   node apps/worker/dist/bench/flows-bench.js [--only flows,reassembly,live,l7,resolver,kfl]
 *        [--runs N] [--keep] [--packets N] [--reassembly-mib N] [--live-rates 100000,200000]
 *        [--live-seconds N] [--l7-mib N] [--l7-http1-mib N (64)] [--l7-http2-mib N (256)]
 *   (FLOWS_BENCH_PACKETS=N also sets the packet count, REASSEMBLY_BENCH_MIB=N the TCP payload
 *   of the reassembly capture and L7_BENCH_MIB=N that of both L7 captures; `node --cpu-prof ...`
 *   profiles every measuring process too, since they inherit the parent's Node flags.)
 *
 * The flows section:
 * 1. Generates a large headers-only classic pcap (Ethernet, snap length 96, as `tcpdump -s 96`
 *    writes) in the OS temp dir by repeating the TCP/UDP packets of a few fixture captures.
 *    Every repetition gets its own IP addresses (10.<rep>.<host> and fd00::<rep>:<host>, one
 *    <host> per distinct address of the template), so each repetition's flows are new flows;
 *    repetitions are interleaved (LANES at a time, round robin) so that thousands of flows are
 *    active at once, as on a busy node, rather than one at a time. Timestamps are a synthetic
 *    monotonic clock; orig_len keeps each frame's length on the wire.
 * 2. Reads the file once to warm the page cache, then measures, each in a fresh Node process
 *    (so that one mode's JIT feedback and garbage do not bias the next) and each RUNS times,
 *    keeping the best:
 *      read    readCaptureFile with a callback that only counts packets (the reference)
 *      decode  + decodePacket into one reused L4Packet (no flow table)
 *      track   + FlowTracker.onPacket (decode and flow table), as the worker runs it
 * 3. Prints a table and one `BENCH {json}` line, and deletes the generated file.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { CaptureReader, FlowTracker, decodePacket, newL4Packet, readCaptureFile, type RawPacket } from '@kubeshark-mcp/capture';
import { runChild } from './child';
import { DEFAULT_L7_HTTP1_MIB, DEFAULT_L7_HTTP2_MIB, runL7Bench } from './l7-bench';
import { DEFAULT_LIVE_RATES, DEFAULT_LIVE_SECONDS, runLiveBench } from './live-bench';
import { PcapFileWriter } from './pcapfile';
import { DEFAULT_PAYLOAD_MIB, runReassemblyBench } from './reassembly-bench';

/** Packets to generate (about; whole repetitions of the template are written). */
const DEFAULT_PACKETS = 2_000_000;
/** Snap length of the generated capture: Ethernet + IP + TCP headers with options fit. */
const SNAP_LEN = 96;
/**
 * Packets kept per template flow. The long fixture flows (a 4276-packet gRPC connection, a
 * 254-packet retransmission test) are cut to their first packets so that the mix averages ~20
 * packets per flow, which with 2M packets gives ~100k flows.
 */
const MAX_PACKETS_PER_TEMPLATE_FLOW = 200;
/** Repetitions are numbered in 16 bits of the IPv4 addresses. */
const MAX_REPETITIONS = 65536;
/** Repetitions written side by side, round robin: LANES x template flows are active at once. */
const LANES = 256;
/** Spacing of the synthetic clock. */
const TICK_NS = 10_000;
const START_SEC = 1_700_000_000;
const DEFAULT_RUNS = 3;
/** Target for headers-only captures, on one core. */
const TARGET_PPS = 1_000_000;

/** Fixture captures repeated to make the benchmark file, relative to fixtures/captures. */
const TEMPLATE_CAPTURES = [
  'zeek/http_get.pcap', // IPv4 TCP, one HTTP exchange
  'suricata-verify/syn_retransmit_with_ts.pcap', // IPv4 TCP with timestamps, retransmissions
  'ndpi/http_ipv6.pcap', // IPv6 TCP, several connections
  'ndpi/pgsql.pcap', // IPv4 TCP, PostgreSQL
  'suricata-verify/dns-udp-google.com-a-aaaa-mx.pcap', // IPv4 UDP DNS
  'grpc-go-book/grpc_Unary.pcapng', // loopback (BSD NULL) TCP, gRPC, pcapng
];

type Mode = 'read' | 'decode' | 'track';
const MODES: Mode[] = ['read', 'decode', 'track'];

interface RunResult {
  packets: number;
  /** Packets with a TCP/UDP header (decode and track modes). */
  decoded: number;
  flows: number;
  seconds: number;
  /** Main-thread plus libuv-pool CPU time of the run. */
  cpuSeconds: number;
}

interface ChildReport {
  runs: RunResult[];
  memory: NodeJS.MemoryUsage;
  /** Flows in the table that was alive when `memory` was taken. */
  liveFlows: number;
}

// ---------------------------------------------------------------------------------------------
// Generating the capture

interface TemplatePacket {
  /** Frame bytes (Ethernet header + up to SNAP_LEN - 14 bytes of IP) in `Template.bytes`. */
  off: number;
  capLen: number;
  origLen: number;
  ipVersion: 4 | 6;
  /** IPv4 header length, for the header checksum. */
  ihl: number;
  /** Host numbers of the source and destination addresses (one per distinct template address). */
  srcHost: number;
  dstHost: number;
}

interface Template {
  bytes: Buffer;
  packets: TemplatePacket[];
  flows: number;
  sources: { file: string; packets: number; kept: number; flows: number }[];
}

function captureDirs(): { fixtures: string; demo: string } {
  return {
    fixtures: path.resolve(__dirname, '..', '..', '..', '..', 'fixtures', 'captures'),
    demo: path.resolve(__dirname, '..', '..', 'demo'),
  };
}

/** The template captures: from fixtures/captures, else the worker's demo copies (a/b.pcap -> a_b.pcap). */
function templateFiles(): string[] {
  const { fixtures, demo } = captureDirs();
  const files: string[] = [];
  for (const rel of TEMPLATE_CAPTURES) {
    const fromFixtures = path.join(fixtures, rel);
    const fromDemo = path.join(demo, rel.replace('/', '_'));
    if (existsSync(fromFixtures)) files.push(fromFixtures);
    else if (existsSync(fromDemo)) files.push(fromDemo);
  }
  return files;
}

const ETH_HEADER = Buffer.from([0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0, 0]);

/**
 * Reads the template captures and rewrites each TCP/UDP packet as an Ethernet frame cut to
 * SNAP_LEN; other packets (none in the chosen fixtures) are left out.
 */
function buildTemplate(files: string[]): Template {
  const chunks: Buffer[] = [];
  const packets: TemplatePacket[] = [];
  const sources: Template['sources'] = [];
  const hosts = new Map<string, number>();
  const host = (b: Buffer, off: number, len: number): number => {
    const key = b.toString('hex', off, off + len);
    let h = hosts.get(key);
    if (h === undefined) {
      h = hosts.size + 1;
      hosts.set(key, h);
    }
    return h;
  };
  let size = 0;
  let flows = 0;
  for (const file of files) {
    const tracker = new FlowTracker();
    const perFlow: number[] = [];
    const l4 = newL4Packet();
    let total = 0;
    let kept = 0;
    const reader = new CaptureReader((p: RawPacket) => {
      total++;
      const flow = tracker.onPacket(p);
      if (flow < 0) return;
      perFlow[flow] = (perFlow[flow] ?? 0) + 1;
      if (perFlow[flow]! > MAX_PACKETS_PER_TEMPLATE_FLOW) return;
      decodePacket(p, l4);
      const ipStart = l4.srcOff - (l4.ipVersion === 4 ? 12 : 8);
      const ipBytes = Math.min(p.offset + p.capLen - ipStart, SNAP_LEN - 14);
      const frame = Buffer.alloc(14 + ipBytes);
      ETH_HEADER.copy(frame, 0);
      frame.writeUInt16BE(l4.ipVersion === 4 ? 0x0800 : 0x86dd, 12);
      p.buf.copy(frame, 14, ipStart, ipStart + ipBytes);
      packets.push({
        off: size,
        capLen: frame.length,
        // The frame on the wire, with an Ethernet header in place of the original link header.
        origLen: p.origLen - (ipStart - p.offset) + 14,
        ipVersion: l4.ipVersion,
        ihl: (frame[14]! & 0x0f) << 2,
        srcHost: host(p.buf, l4.srcOff, l4.ipVersion === 4 ? 4 : 16),
        dstHost: host(p.buf, l4.dstOff, l4.ipVersion === 4 ? 4 : 16),
      });
      chunks.push(frame);
      size += frame.length;
      kept++;
    });
    reader.push(readFileSync(file));
    reader.end();
    flows += tracker.flows.size;
    sources.push({ file: path.basename(file), packets: total, kept, flows: tracker.flows.size });
  }
  // IPv4 hosts are the last octet of 10.<rep>.<host>.
  if (hosts.size > 255) throw new Error(`template has ${hosts.size} distinct addresses; at most 255 fit`);
  return { bytes: Buffer.concat(chunks, size), packets, flows, sources };
}

function ipv4Checksum(b: Buffer, off: number, ihl: number): number {
  let sum = 0;
  for (let i = 0; i < ihl; i += 2) if (i !== 10) sum += (b[off + i]! << 8) | b[off + i + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function writeIpv6(b: Buffer, off: number, rep: number, host: number): void {
  b.writeUInt32BE(0xfd000000, off);
  b.writeUInt32BE(0, off + 4);
  b.writeUInt32BE(rep >>> 16, off + 8);
  b.writeUInt32BE((((rep & 0xffff) << 16) | host) >>> 0, off + 12);
}

/** Writes `reps` repetitions of the template, LANES at a time, round robin. Returns packets written. */
function writeCapture(file: string, t: Template, reps: number): number {
  const w = new PcapFileWriter(file, 8 << 20, SNAP_LEN);
  const out = w.buf;
  let n = 0;
  for (let first = 0; first < reps; first += LANES) {
    const lanes = Math.min(LANES, reps - first);
    for (const tp of t.packets) {
      for (let lane = 0; lane < lanes; lane++) {
        const rep = first + lane;
        const ns = n * TICK_NS;
        const o = w.begin(START_SEC + Math.floor(ns / 1e9), Math.floor((ns % 1e9) / 1000), tp.capLen, tp.origLen);
        t.bytes.copy(out, o, tp.off, tp.off + tp.capLen);
        // Addresses 10.<rep>.<host> / fd00::<rep>:<host>: distinct template addresses stay
        // distinct within a repetition, and no address is shared between repetitions.
        const ip = o + 14;
        if (tp.ipVersion === 4) {
          out.writeUInt32BE((0x0a000000 | (rep << 8) | tp.srcHost) >>> 0, ip + 12);
          out.writeUInt32BE((0x0a000000 | (rep << 8) | tp.dstHost) >>> 0, ip + 16);
          out.writeUInt16BE(ipv4Checksum(out, ip, tp.ihl), ip + 10);
        } else {
          writeIpv6(out, ip + 8, rep, tp.srcHost);
          writeIpv6(out, ip + 24, rep, tp.dstHost);
        }
        n++;
      }
    }
  }
  w.close();
  return n;
}

// ---------------------------------------------------------------------------------------------
// Measuring (in a child process per mode)

async function runOnce(mode: Mode, file: string, keep: { tracker?: FlowTracker }): Promise<RunResult> {
  let packets = 0;
  let decoded = 0;
  let flows = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  if (mode === 'read') {
    await readCaptureFile(file, () => {
      packets++;
    });
  } else if (mode === 'decode') {
    const l4 = newL4Packet();
    await readCaptureFile(file, (p) => {
      packets++;
      if (decodePacket(p, l4) === 0) decoded++;
    });
  } else {
    const tracker = new FlowTracker();
    const r = await readCaptureFile(file, tracker.onPacket);
    packets = r.packets;
    decoded = tracker.stats().decoded;
    flows = tracker.flows.size;
    keep.tracker = tracker;
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { packets, decoded, flows, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

async function child(mode: Mode, file: string, runs: number): Promise<void> {
  const keep: { tracker?: FlowTracker } = {};
  const results: RunResult[] = [];
  for (let i = 0; i < runs; i++) {
    delete keep.tracker; // the previous run's table is garbage before the next one starts
    results.push(await runOnce(mode, file, keep));
  }
  // Memory with the last run's flow table still alive, after a full GC when exposed.
  (globalThis as { gc?: () => void }).gc?.();
  const memory = process.memoryUsage();
  const report: ChildReport = { runs: results, memory, liveFlows: keep.tracker?.flows.size ?? 0 };
  process.send!(report);
}

function measure(mode: Mode, file: string, runs: number): Promise<ChildReport> {
  return runChild<ChildReport>(__filename, ['--child', mode, file, String(runs)], `benchmark child for ${mode}`);
}

// ---------------------------------------------------------------------------------------------

type Section = 'flows' | 'reassembly' | 'live' | 'l7' | 'resolver' | 'kfl';
const SECTIONS: Section[] = ['flows', 'reassembly', 'live', 'l7', 'resolver', 'kfl'];

interface Options {
  packets: number;
  runs: number;
  keep: boolean;
  only: Section[];
  reassemblyMiB: number;
  liveRates: number[];
  liveSeconds: number;
  l7Http1MiB: number;
  l7Http2MiB: number;
}

function parseArgs(argv: string[]): Options {
  let packets = Number(process.env.FLOWS_BENCH_PACKETS ?? DEFAULT_PACKETS);
  let reassemblyMiB = Number(process.env.REASSEMBLY_BENCH_MIB ?? DEFAULT_PAYLOAD_MIB);
  let runs = DEFAULT_RUNS;
  let keep = false;
  let only = SECTIONS;
  let liveRates = DEFAULT_LIVE_RATES;
  let liveSeconds = DEFAULT_LIVE_SECONDS;
  let l7Http1MiB = Number(process.env.L7_BENCH_MIB ?? DEFAULT_L7_HTTP1_MIB);
  let l7Http2MiB = Number(process.env.L7_BENCH_MIB ?? DEFAULT_L7_HTTP2_MIB);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--packets') packets = Number(argv[++i]);
    else if (a === '--runs') runs = Number(argv[++i]);
    else if (a === '--keep') keep = true;
    else if (a === '--reassembly-mib') reassemblyMiB = Number(argv[++i]);
    else if (a === '--live-seconds') liveSeconds = Number(argv[++i]);
    else if (a === '--l7-mib') l7Http1MiB = l7Http2MiB = Number(argv[++i]);
    else if (a === '--l7-http1-mib') l7Http1MiB = Number(argv[++i]);
    else if (a === '--l7-http2-mib') l7Http2MiB = Number(argv[++i]);
    else if (a === '--live-rates') liveRates = (argv[++i] ?? '').split(',').map(Number).filter((r) => r > 0);
    else if (a === '--only') {
      const want = (argv[++i] ?? '').split(',');
      const bad = want.filter((w) => !SECTIONS.includes(w as Section));
      if (bad.length) throw new Error(`--only: unknown section ${bad.join(', ')} (sections: ${SECTIONS.join(', ')})`);
      only = want as Section[];
    }
  }
  return {
    packets: Math.max(1, packets),
    runs: Math.max(1, runs),
    keep,
    only,
    reassemblyMiB: Math.max(1, reassemblyMiB),
    liveRates,
    // Bounded: the live load never runs for more than a minute per rate.
    liveSeconds: Math.min(60, Math.max(0.1, liveSeconds)),
    l7Http1MiB: Math.max(1, l7Http1MiB),
    l7Http2MiB: Math.max(1, l7Http2MiB),
  };
}

const mb = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;
const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const t0 = performance.now();
  if (opts.only.includes('flows')) await runFlowsBench(opts);
  if (opts.only.includes('reassembly')) await runReassemblyBench({ payloadMiB: opts.reassemblyMiB, runs: opts.runs, keep: opts.keep });
  if (opts.only.includes('live')) await runLiveBench({ rates: opts.liveRates, seconds: opts.liveSeconds });
  if (opts.only.includes('l7')) await runL7Bench({ http1MiB: opts.l7Http1MiB, http2MiB: opts.l7Http2MiB, runs: opts.runs, keep: opts.keep });
  if (opts.only.includes('resolver')) {
    await runProcessSection('Kubernetes resolver lookups', process.execPath, [path.join(__dirname, 'resolver-bench.js')], path.resolve(__dirname, '..', '..'));
  }
  if (opts.only.includes('kfl')) {
    // packages/kfl's own bench (compiles its bench/ and src/, then runs), through npm so that
    // the worker depends on the package's script, not on its file layout.
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const out = await runProcessSection('KFL filter throughput (packages/kfl)', npm, ['run', '--silent', 'bench', '-w', '@kubeshark-mcp/kfl'], path.resolve(__dirname, '..', '..', '..', '..'));
    kflTarget(out);
  }
  process.stdout.write(`\nbench done in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
}

/**
 * A section that is its own program: prints the heading and the load average, then runs it,
 * passing its output through. Resolves with that output. A failure is reported, never thrown:
 * benchmarks fail nothing.
 */
async function runProcessSection(title: string, command: string, args: string[], cwd: string): Promise<string> {
  process.stdout.write(`\n== ${title} ==\nload average (1 min) before: ${os.loadavg()[0]!.toFixed(2)} on ${os.availableParallelism()} cores\n`);
  const chunks: Buffer[] = [];
  const code = await new Promise<number | null>((resolve) => {
    const proc = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'inherit'] });
    proc.stdout.on('data', (b: Buffer) => {
      chunks.push(b);
      process.stdout.write(b);
    });
    proc.on('error', (err) => {
      process.stdout.write(`skipped: ${command}: ${err.message}\n`);
      resolve(null);
    });
    proc.on('close', (c) => resolve(c));
  });
  if (code !== 0) process.stdout.write(`(${title}: exited with ${code})\n`);
  return Buffer.concat(chunks).toString('utf8');
}

/** Issue 5's target, from the KFL bench's `BENCH_KFL` line: >= 10 M entries/s, within 5x of plain JS. */
const KFL_TARGET_PER_S = 10_000_000;
const KFL_TARGET_RATIO = 5;

function kflTarget(output: string): void {
  const line = output.split('\n').find((l) => l.startsWith('BENCH_KFL '));
  if (!line) return;
  const j = JSON.parse(line.slice('BENCH_KFL '.length)) as { compiled_per_s?: number; plain_per_s?: number; ratio?: number };
  if (j.compiled_per_s === undefined || j.ratio === undefined) return;
  const met = j.compiled_per_s >= KFL_TARGET_PER_S && j.ratio <= KFL_TARGET_RATIO;
  process.stdout.write(
    `target >= ${fmtInt(KFL_TARGET_PER_S)} entries/s on one core and within ${KFL_TARGET_RATIO}x of the plain predicate: ${met ? 'MET' : 'NOT MET'} ` +
      `(${fmtInt(j.compiled_per_s)} entries/s, ${j.ratio}x of plain JS's ${fmtInt(j.plain_per_s ?? 0)})\n`,
  );
}

async function runFlowsBench(opts: Options): Promise<void> {
  process.stdout.write(`== Flow tracking throughput (headers-only) ==\nload average (1 min) before: ${os.loadavg()[0]!.toFixed(2)} on ${os.availableParallelism()} cores\n`);
  const files = templateFiles();
  if (files.length === 0) {
    const { fixtures, demo } = captureDirs();
    process.stderr.write(`flows-bench: no template captures found in ${fixtures} or ${demo}\n`);
    process.exitCode = 1;
    return;
  }

  const tGen = performance.now();
  const template = buildTemplate(files);
  const reps = Math.min(MAX_REPETITIONS, Math.max(1, Math.round(opts.packets / template.packets.length)));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flows-bench-'));
  const file = path.join(dir, 'flows-bench.pcap');
  const onSignal = (): void => {
    rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const written = writeCapture(file, template, reps);
    const fileBytes = statSync(file).size;
    const genSeconds = (performance.now() - tGen) / 1000;

    process.stdout.write(
      `flows-bench: node ${process.version}, ${os.cpus()[0]?.model ?? 'unknown cpu'} x${os.availableParallelism()}\n` +
        `template: ${template.packets.length} packets, ${template.flows} flows from ` +
        template.sources.map((s) => `${s.file} (${s.kept}/${s.packets} pkts, ${s.flows} flows)`).join(', ') +
        `\ngenerated ${file}: ${fmtInt(written)} packets, ${reps} repetitions x ${template.flows} flows = ${fmtInt(reps * template.flows)} flows, ` +
        `${mb(fileBytes)} (avg ${((fileBytes - 24) / written - 16).toFixed(1)} captured bytes/packet, snaplen ${SNAP_LEN}), ${genSeconds.toFixed(1)} s\n`,
    );

    // Warm the page cache (and check the file reads back whole).
    const warm = await readCaptureFile(file, () => {});
    if (warm.error) throw warm.error;

    const results = {} as Record<Mode, { best: RunResult; all: RunResult[]; memory: NodeJS.MemoryUsage; liveFlows: number }>;
    for (const mode of MODES) {
      const report = await measure(mode, file, opts.runs);
      const best = report.runs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
      results[mode] = { best, all: report.runs, memory: report.memory, liveFlows: report.liveFlows };
    }

    const pps = (r: RunResult): number => r.packets / r.seconds;
    const read = results.read.best;
    const track = results.track.best;
    const rows = MODES.map((m) => {
      const r = results[m].best;
      return [
        m === 'read' ? 'read (reference)' : m === 'decode' ? 'read + decode' : 'read + FlowTracker',
        fmtInt(r.packets),
        m === 'read' ? '-' : fmtInt(r.decoded),
        m === 'track' ? fmtInt(r.flows) : '-',
        r.seconds.toFixed(3),
        fmtInt(pps(r)),
        `${(r.seconds / read.seconds).toFixed(2)}x`,
        fmtInt(r.packets / r.cpuSeconds),
        results[m].all.map((x) => x.seconds.toFixed(3)).join(' '),
      ];
    });
    const head = ['mode', 'packets', 'decoded', 'flows', 'best s', 'packets/s', 'vs read', 'pkts/cpu-s', `all ${opts.runs} runs (s)`];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]): string => cells.map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
    const mem = results.track.memory;
    const trackPps = pps(track);
    const met = trackPps >= TARGET_PPS;
    process.stdout.write(
      `\n${line(head)}\n${line(head.map((_, i) => '-'.repeat(widths[i]!)))}\n${rows.map(line).join('\n')}\n\n` +
        `flow tracking costs ${(track.seconds / read.seconds).toFixed(2)}x the plain read ` +
        `(${((track.seconds - read.seconds) * 1e9 / track.packets).toFixed(0)} ns/packet on top of ${((read.seconds * 1e9) / read.packets).toFixed(0)} ns/packet)\n` +
        `memory of the read + FlowTracker process after its runs (${fmtInt(results.track.liveFlows)} flows live, after GC): rss ${mb(mem.rss)}, heap used ${mb(mem.heapUsed)}, ` +
        `array buffers ${mb(mem.arrayBuffers)}\n` +
        `target >= ${fmtInt(TARGET_PPS)} packets/s per core (headers-only): ${met ? 'MET' : 'NOT MET'} (${fmtInt(trackPps)} packets/s)\n`,
    );

    const json = {
      node: process.version,
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.availableParallelism(),
      snapLen: SNAP_LEN,
      fileBytes,
      packets: written,
      decoded: track.decoded,
      flows: track.flows,
      runs: opts.runs,
      read: { seconds: +read.seconds.toFixed(4), pps: Math.round(pps(read)), ppsCpu: Math.round(read.packets / read.cpuSeconds) },
      decode: {
        seconds: +results.decode.best.seconds.toFixed(4),
        pps: Math.round(pps(results.decode.best)),
        ppsCpu: Math.round(results.decode.best.packets / results.decode.best.cpuSeconds),
      },
      track: { seconds: +track.seconds.toFixed(4), pps: Math.round(trackPps), ppsCpu: Math.round(track.packets / track.cpuSeconds) },
      trackVsRead: +(track.seconds / read.seconds).toFixed(3),
      rssBytes: mem.rss,
      heapUsedBytes: mem.heapUsed,
      arrayBuffersBytes: mem.arrayBuffers,
      targetPps: TARGET_PPS,
      targetMet: met,
    };
    process.stdout.write(`BENCH ${JSON.stringify(json)}\n`);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (opts.keep) process.stdout.write(`kept ${file}\n`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') {
  child(process.argv[3] as Mode, process.argv[4]!, Number(process.argv[5])).catch((err: unknown) => {
    process.stderr.write(`flows-bench child: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
} else {
  main().catch((err: unknown) => {
    process.stderr.write(`flows-bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  });
}
