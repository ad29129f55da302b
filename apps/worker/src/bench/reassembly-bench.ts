/**
 * TCP reassembly throughput on an HTTP-heavy capture with full payloads (section 2 of
 * `npm run bench`; run by flows-bench.ts, not on its own).
 *
 * 1. Generates a classic pcap (Ethernet, full payloads) in the OS temp dir from two fixture
 *    captures: zeek/http_1000-requests-one-dropped-response.pcap.gz (one IPv6 connection with
 *    1000 HTTP requests, ~1 MB of payload, one response missing from the capture) and
 *    zeek/http_get.pcap (one short IPv4 HTTP GET, ~5 KB). Each connection instance gets its own
 *    client address (10.x.y.z or fd00::x:y:z) and client port, with the IPv4 header checksum
 *    recomputed and the TCP checksum updated incrementally (RFC 1624), so each instance is a new
 *    flow and a new stream; servers keep their address and port, as on a node serving HTTP.
 *    LANES connection instances are written side by side (packet by packet, round robin), so
 *    hundreds of streams are open at once. Timestamps are a synthetic monotonic clock.
 * 2. Reads it once to warm the page cache, then measures each mode in a fresh Node process,
 *    RUNS times, keeping the best:
 *      read        readCaptureFile with a callback that only counts packets (the reference)
 *      flows       + decodePacket + FlowTable.add
 *      reassembly  + TcpReassembler.segmentFromPacket for every TCP packet, with a consumer that
 *                  only counts the bytes delivered to it; flush() at the end
 * 3. Prints a table and one `BENCH_REASSEMBLY {json}` line, and deletes the generated file.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { gunzipSync } from 'node:zlib';
import {
  CaptureReader,
  FlowTable,
  IPPROTO_TCP,
  LinkType,
  TcpFlag,
  TcpReassembler,
  decodePacket,
  newL4Packet,
  packetSide,
  readCaptureFile,
  type RawPacket,
  type TcpReassemblerStats,
  type TcpStreamConsumer,
} from '@kubeshark-mcp/capture';
import { runChild } from './child';
import { fmtInt, mbps, mib, table } from './format';
import { PcapFileWriter } from './pcapfile';

/** TCP payload to generate, in MiB (about: whole connections are written). */
export const DEFAULT_PAYLOAD_MIB = 1024;
/** Short connections (http_get) per long one (the 1000-request connection). */
const SHORT_PER_LONG = 5;
/** Connection instances written side by side. */
const LANES = 512;
const TICK_NS = 2_000;
const START_SEC = 1_700_000_000;
/** Target from the issue: reading + flow tracking + reassembly, payload bytes per second, one core. */
export const TARGET_PAYLOAD_MBPS = 300;

/** The HTTP templates (also the L7 section's HTTP/1.1 workload). */
export const LONG = 'zeek/http_1000-requests-one-dropped-response.pcap.gz';
export const SHORT = 'zeek/http_get.pcap';

type Mode = 'read' | 'flows' | 'reassembly';
const MODES: Mode[] = ['read', 'flows', 'reassembly'];
const LABELS: Record<Mode, string> = {
  read: 'read (reference)',
  flows: 'read + decode + FlowTable',
  reassembly: '+ TcpReassembler',
};

interface RunResult {
  packets: number;
  /** TCP packets (flows and reassembly modes). */
  tcp: number;
  flows: number;
  /** Bytes the consumer was handed (reassembly mode). */
  delivered: number;
  gaps: number;
  ends: number;
  seconds: number;
  cpuSeconds: number;
}

interface ChildReport {
  runs: RunResult[];
  memory: NodeJS.MemoryUsage;
  /** Reassembler counters of the last run (reassembly mode). */
  stats?: TcpReassemblerStats;
}

// ---------------------------------------------------------------------------------------------
// Generating the capture

interface ConnPacket {
  /** Frame bytes in `Conn.bytes`. */
  off: number;
  len: number;
  origLen: number;
  /** Offset of the IP header in the frame. */
  ip: number;
  /** Offset of the TCP header in the frame. */
  tcp: number;
  /** Sent by the client (the SYN's sender). */
  fromClient: boolean;
}

/** One template connection: its frames and what is rewritten per instance. */
export interface Conn {
  name: string;
  ipVersion: 4 | 6;
  bytes: Buffer;
  packets: ConnPacket[];
  payload: number;
}

export function fixturesDir(): string {
  return path.resolve(__dirname, '..', '..', '..', '..', 'fixtures', 'captures');
}

/** Reads a one-connection, Ethernet, TCP-only template capture (gzip allowed). */
export function loadConn(rel: string): Conn {
  const file = path.join(fixturesDir(), rel);
  let raw = readFileSync(file);
  if (raw[0] === 0x1f && raw[1] === 0x8b) raw = gunzipSync(raw);
  const l4 = newL4Packet();
  const frames: Buffer[] = [];
  const packets: ConnPacket[] = [];
  let size = 0;
  let payload = 0;
  let ipVersion: 4 | 6 | undefined;
  let client: string | undefined;
  let first: string | undefined;
  const endpoint = (p: RawPacket, addrOff: number, port: number): string => `${p.buf.toString('hex', addrOff, addrOff + (l4.ipVersion === 4 ? 4 : 16))}:${port}`;
  const senders: string[] = [];
  const reader = new CaptureReader((p: RawPacket) => {
    if (p.linkType !== LinkType.ETHERNET) throw new Error(`${rel}: link type ${p.linkType}, expected Ethernet`);
    if (decodePacket(p, l4) !== 0 || l4.protocol !== IPPROTO_TCP) throw new Error(`${rel}: frame ${p.frame} is not a decodable TCP packet`);
    if (p.capLen < p.origLen) throw new Error(`${rel}: frame ${p.frame} is truncated; payloads must be whole`);
    if (ipVersion !== undefined && l4.ipVersion !== ipVersion) throw new Error(`${rel}: mixes IPv4 and IPv6`);
    ipVersion = l4.ipVersion;
    const src = endpoint(p, l4.srcOff, l4.srcPort);
    first ??= src;
    if (client === undefined && l4.tcpFlags & TcpFlag.SYN && !(l4.tcpFlags & TcpFlag.ACK)) client = src;
    senders.push(src);
    const frame = Buffer.from(p.buf.subarray(p.offset, p.offset + p.capLen));
    const ip = l4.srcOff - p.offset - (l4.ipVersion === 4 ? 12 : 8);
    // No IPv6 extension headers in the templates: TCP follows the fixed header.
    const tcp = ip + (l4.ipVersion === 4 ? (frame[ip]! & 0x0f) << 2 : 40);
    if (frame.readUInt16BE(tcp) !== l4.srcPort || frame.readUInt16BE(tcp + 2) !== l4.dstPort) throw new Error(`${rel}: frame ${p.frame}: unexpected header layout`);
    packets.push({ off: size, len: frame.length, origLen: p.origLen, ip, tcp, fromClient: false });
    frames.push(frame);
    size += frame.length;
    payload += l4.payloadLen;
  });
  reader.push(raw);
  reader.end();
  client ??= first;
  packets.forEach((cp, i) => (cp.fromClient = senders[i] === client));
  if (ipVersion === undefined) throw new Error(`${rel}: no packets`);
  return { name: path.basename(rel), ipVersion, bytes: Buffer.concat(frames, size), packets, payload };
}

/** One's-complement sum of 16-bit words, folded. */
function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

function ipv4HeaderChecksum(b: Buffer, off: number): number {
  const ihl = (b[off]! & 0x0f) << 2;
  let sum = 0;
  for (let i = 0; i < ihl; i += 2) if (i !== 10) sum += (b[off + i]! << 8) | b[off + i + 1]!;
  return ~fold(sum) & 0xffff;
}

/**
 * Rewrites the 16-bit words at `offs` of frame `b` to `values`, updating the TCP checksum at
 * `csumOff` incrementally (RFC 1624: HC' = ~(~HC + ~m + m')).
 */
function rewriteWords(b: Buffer, csumOff: number, offs: number[], values: number[]): void {
  let sum = ~((b[csumOff]! << 8) | b[csumOff + 1]!) & 0xffff;
  for (let k = 0; k < offs.length; k++) {
    const o = offs[k]!;
    const old = (b[o]! << 8) | b[o + 1]!;
    const v = values[k]!;
    sum += (~old & 0xffff) + v;
    b[o] = v >>> 8;
    b[o + 1] = v & 0xff;
  }
  const c = ~fold(sum) & 0xffff;
  b[csumOff] = c >>> 8;
  b[csumOff + 1] = c & 0xff;
}

/** Client address words and port of connection instance `i`. */
function clientWords(ipVersion: 4 | 6, i: number): number[] {
  // 10.x.y.z (z never 0) / fd00::<i>
  const v4 = (0x0a000000 | ((i + 1) & 0xffffff)) >>> 0;
  if (ipVersion === 4) return [v4 >>> 16, v4 & 0xffff];
  return [0xfd00, 0, 0, 0, 0, 0, (i >>> 16) & 0xffff, i & 0xffff];
}

function clientPort(i: number): number {
  return 1024 + ((i * 7919) % 64000);
}

export interface Generated {
  packets: number;
  connections: number;
  longConns: number;
  shortConns: number;
  payload: number;
}

/**
 * Writes the schedule of connection instances LANES at a time: each lane plays one instance
 * packet by packet and takes the next instance from the schedule when its connection is over.
 * About `payloadTarget` bytes of TCP payload from `long`, with `shortPerLong` instances of
 * `short` after each instance of `long` (none when `short` is undefined).
 */
export function writeCapture(file: string, long: Conn, short: Conn | undefined, payloadTarget: number, shortPerLong = SHORT_PER_LONG): Generated {
  const longConns = Math.max(1, Math.round(payloadTarget / long.payload));
  const perLong = short ? shortPerLong : 0;
  const shortConns = longConns * perLong;
  // Short connections spread evenly between the long ones.
  const schedule: Conn[] = [];
  for (let i = 0; i < longConns; i++) {
    schedule.push(long);
    if (short) for (let k = 0; k < perLong; k++) schedule.push(short);
  }
  const w = new PcapFileWriter(file, 16 << 20, 262144);
  const out = w.buf;

  const laneConn: (Conn | undefined)[] = new Array(LANES).fill(undefined);
  const laneInst = new Int32Array(LANES);
  const lanePos = new Int32Array(LANES);
  let nextInst = 0;
  let active = 0;
  const take = (lane: number): void => {
    if (nextInst < schedule.length) {
      laneConn[lane] = schedule[nextInst];
      laneInst[lane] = nextInst++;
      lanePos[lane] = 0;
      active++;
    } else {
      laneConn[lane] = undefined;
    }
  };
  for (let l = 0; l < LANES; l++) take(l);
  const offs4 = [0, 0, 0];
  const offs6 = [0, 0, 0, 0, 0, 0, 0, 0, 0];
  let n = 0;
  let payload = 0;
  while (active > 0) {
    for (let lane = 0; lane < LANES; lane++) {
      const c = laneConn[lane];
      if (c === undefined) continue;
      const cp = c.packets[lanePos[lane]!]!;
      const ns = n * TICK_NS;
      const o = w.begin(START_SEC + Math.floor(ns / 1e9), Math.floor((ns % 1e9) / 1000), cp.len, cp.origLen);
      c.bytes.copy(out, o, cp.off, cp.off + cp.len);
      const inst = laneInst[lane]!;
      const ip = o + cp.ip;
      const tcp = o + cp.tcp;
      const portOff = cp.fromClient ? tcp : tcp + 2;
      if (c.ipVersion === 4) {
        const addr = ip + (cp.fromClient ? 12 : 16);
        offs4[0] = addr;
        offs4[1] = addr + 2;
        offs4[2] = portOff;
        rewriteWords(out, tcp + 16, offs4, [...clientWords(4, inst), clientPort(inst)]);
        out.writeUInt16BE(ipv4HeaderChecksum(out, ip), ip + 10);
      } else {
        const addr = ip + (cp.fromClient ? 8 : 24);
        for (let k = 0; k < 8; k++) offs6[k] = addr + 2 * k;
        offs6[8] = portOff;
        rewriteWords(out, tcp + 16, offs6, [...clientWords(6, inst), clientPort(inst)]);
      }
      n++;
      if (++lanePos[lane]! === c.packets.length) {
        payload += c.payload;
        active--;
        take(lane);
      }
    }
  }
  w.close();
  return { packets: n, connections: schedule.length, longConns, shortConns, payload };
}

// ---------------------------------------------------------------------------------------------
// Measuring (in a child process per mode)

class CountingConsumer implements TcpStreamConsumer {
  bytes = 0;
  gaps = 0;
  ends = 0;
  onData(chunk: { length: number }): void {
    this.bytes += chunk.length;
  }
  onGap(): void {
    this.gaps++;
  }
  onEnd(): void {
    this.ends++;
  }
}

async function runOnce(mode: Mode, file: string): Promise<{ result: RunResult; stats?: TcpReassemblerStats }> {
  let packets = 0;
  let tcp = 0;
  let flows = 0;
  let stats: TcpReassemblerStats | undefined;
  const consumer = new CountingConsumer();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  if (mode === 'read') {
    await readCaptureFile(file, () => {
      packets++;
    });
  } else if (mode === 'flows') {
    const table = new FlowTable();
    const l4 = newL4Packet();
    await readCaptureFile(file, (p) => {
      packets++;
      if (decodePacket(p, l4) !== 0) return;
      table.add(p, l4);
      if (l4.protocol === IPPROTO_TCP) tcp++;
    });
    flows = table.size;
  } else {
    const table = new FlowTable();
    const l4 = newL4Packet();
    const reassembler = new TcpReassembler(consumer);
    await readCaptureFile(file, (p) => {
      packets++;
      if (decodePacket(p, l4) !== 0) return;
      const flow = table.add(p, l4);
      if (l4.protocol !== IPPROTO_TCP) return;
      tcp++;
      reassembler.segmentFromPacket(flow, packetSide(p, l4), p, l4);
    });
    reassembler.flush();
    flows = table.size;
    stats = reassembler.stats();
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return {
    result: { packets, tcp, flows, delivered: consumer.bytes, gaps: consumer.gaps, ends: consumer.ends, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 },
    ...(stats ? { stats } : {}),
  };
}

async function child(mode: Mode, file: string, runs: number): Promise<void> {
  const results: RunResult[] = [];
  let stats: TcpReassemblerStats | undefined;
  for (let i = 0; i < runs; i++) {
    const r = await runOnce(mode, file);
    results.push(r.result);
    stats = r.stats;
  }
  (globalThis as { gc?: () => void }).gc?.();
  const report: ChildReport = { runs: results, memory: process.memoryUsage(), ...(stats ? { stats } : {}) };
  process.send!(report);
}

function measure(mode: Mode, file: string, runs: number): Promise<ChildReport> {
  return runChild<ChildReport>(__filename, ['--child', mode, file, String(runs)], `reassembly benchmark child for ${mode}`);
}

// ---------------------------------------------------------------------------------------------

export interface ReassemblyBenchOptions {
  /** TCP payload to generate, MiB. */
  payloadMiB: number;
  runs: number;
  keep: boolean;
}

/** Runs the section; prints its table and `BENCH_REASSEMBLY` line. Returns the JSON (undefined when skipped). */
export async function runReassemblyBench(opts: ReassemblyBenchOptions): Promise<object | undefined> {
  const out = (s: string): boolean => process.stdout.write(s);
  const load0 = os.loadavg()[0]!;
  out(`\n== TCP reassembly throughput (HTTP, full payloads) ==\nload average (1 min) before: ${load0.toFixed(2)} on ${os.availableParallelism()} cores\n`);
  const missing = [LONG, SHORT].filter((rel) => !existsSync(path.join(fixturesDir(), rel)));
  if (missing.length) {
    out(`skipped: template captures not found in ${fixturesDir()}: ${missing.join(', ')}\n`);
    return undefined;
  }
  const tGen = performance.now();
  const long = loadConn(LONG);
  const short = loadConn(SHORT);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'reassembly-bench-'));
  const file = path.join(dir, 'reassembly-bench.pcap');
  const onSignal = (): void => {
    rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const gen = writeCapture(file, long, short, opts.payloadMiB * 1048576);
    const fileBytes = statSync(file).size;
    const genSeconds = (performance.now() - tGen) / 1000;
    out(
      `template: ${long.name} (${long.packets.length} pkts, ${fmtInt(long.payload)} payload bytes, IPv${long.ipVersion}), ` +
        `${short.name} (${short.packets.length} pkts, ${fmtInt(short.payload)} payload bytes, IPv${short.ipVersion})\n` +
        `generated ${file}: ${fmtInt(gen.packets)} packets, ${fmtInt(gen.connections)} connections (${fmtInt(gen.longConns)} x 1000 requests, ` +
        `${fmtInt(gen.shortConns)} x one GET), ${LANES} side by side, ${mib(gen.payload)} TCP payload, file ${mib(fileBytes)} ` +
        `(avg ${((fileBytes - 24) / gen.packets - 16).toFixed(0)} bytes/frame), ${genSeconds.toFixed(1)} s\n`,
    );

    const warm = await readCaptureFile(file, () => {});
    if (warm.error) throw warm.error;

    const results = {} as Record<Mode, { best: RunResult; all: RunResult[]; report: ChildReport }>;
    for (const mode of MODES) {
      const report = await measure(mode, file, opts.runs);
      const best = report.runs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
      results[mode] = { best, all: report.runs, report };
    }
    const read = results.read.best;
    const re = results.reassembly.best;
    const stats = results.reassembly.report.stats!;
    // Payload rates of every mode are of the same bytes: what the reassembler delivered.
    const delivered = re.delivered;
    const rows = MODES.map((m) => {
      const r = results[m].best;
      return [
        LABELS[m],
        fmtInt(r.packets),
        r.seconds.toFixed(3),
        fmtInt(r.packets / r.seconds),
        mbps(fileBytes, r.seconds).toFixed(0),
        mbps(delivered, r.seconds).toFixed(0),
        `${(r.seconds / read.seconds).toFixed(2)}x`,
        mbps(delivered, r.cpuSeconds).toFixed(0),
        results[m].all.map((x) => x.seconds.toFixed(3)).join(' '),
      ];
    });
    const payloadMBps = mbps(delivered, re.seconds);
    const met = payloadMBps >= TARGET_PAYLOAD_MBPS;
    const mem = results.reassembly.report.memory;
    out(
      '\n' +
        table(['mode', 'packets', 'best s', 'packets/s', 'file MB/s', 'payload MB/s', 'vs read', 'payload MB/cpu-s', `all ${opts.runs} runs (s)`], rows) +
        `\nMB = 10^6 bytes; payload = TCP payload the reassembler delivered (${fmtInt(delivered)} bytes, ${((delivered / gen.payload) * 100).toFixed(2)} % of the payload in the file), ` +
        `the same bytes for every row\n` +
        `reassembler: ${fmtInt(stats.segments)} segments, ${fmtInt(stats.deliveredChunks)} chunks, ${fmtInt(stats.streamsOpened)} streams ` +
        `(closed: ${Object.entries(stats.streamsClosed).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${fmtInt(v)}`).join(', ')}), ` +
        `${fmtInt(stats.gaps)} gaps (${fmtInt(stats.gapBytes)} bytes; ${Object.entries(stats.gapsByReason).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${fmtInt(v)}`).join(', ') || 'none'}), ${fmtInt(stats.outOfOrderSegments)} out-of-order and ${fmtInt(stats.retransmittedSegments)} retransmitted segments, ` +
        `peak buffered ${fmtInt(stats.peakBufferedBytes)} bytes\n` +
        `reassembly costs ${(re.seconds / results.flows.best.seconds).toFixed(2)}x read + flows in wall time, ${(re.cpuSeconds / results.flows.best.cpuSeconds).toFixed(2)}x in CPU time ` +
        `(${(((re.seconds - results.flows.best.seconds) * 1e9) / re.tcp).toFixed(0)} / ${(((re.cpuSeconds - results.flows.best.cpuSeconds) * 1e9) / re.tcp).toFixed(0)} ns per segment on top); ` +
        `memory of the reassembly process after its runs: rss ${mib(mem.rss)}, heap used ${mib(mem.heapUsed)}\n` +
        `target >= ${TARGET_PAYLOAD_MBPS} MB/s of payload per core (read + flow tracking + reassembly, HTTP): ${met ? 'MET' : 'NOT MET'} (${payloadMBps.toFixed(0)} MB/s)\n`,
    );
    const modeJson = (r: RunResult): object => ({
      seconds: +r.seconds.toFixed(4),
      pps: Math.round(r.packets / r.seconds),
      fileMBps: +mbps(fileBytes, r.seconds).toFixed(1),
      payloadMBps: +mbps(delivered, r.seconds).toFixed(1),
      cpuSeconds: +r.cpuSeconds.toFixed(4),
      payloadMBpsCpu: +mbps(delivered, r.cpuSeconds).toFixed(1),
      vsRead: +(r.seconds / read.seconds).toFixed(3),
    });
    const json = {
      node: process.version,
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.availableParallelism(),
      loadAvg1: +load0.toFixed(2),
      fileBytes,
      packets: gen.packets,
      connections: gen.connections,
      lanes: LANES,
      payloadBytes: gen.payload,
      deliveredBytes: delivered,
      gaps: stats.gaps,
      gapBytes: stats.gapBytes,
      gapsByReason: stats.gapsByReason,
      outOfOrderSegments: stats.outOfOrderSegments,
      runs: opts.runs,
      read: modeJson(read),
      flows: modeJson(results.flows.best),
      reassembly: modeJson(re),
      rssBytes: mem.rss,
      targetPayloadMBps: TARGET_PAYLOAD_MBPS,
      targetMet: met,
    };
    out(`BENCH_REASSEMBLY ${JSON.stringify(json)}\n`);
    return json;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (opts.keep) out(`kept ${file}\n`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module && process.argv[2] === '--child') {
  child(process.argv[3] as Mode, process.argv[4]!, Number(process.argv[5])).catch((err: unknown) => {
    process.stderr.write(`reassembly-bench child: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
