import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { capturePath, GOLDEN_DIR } from '@kubeshark-mcp/testkit';
import { decodePacket, FlowTable, formatIp, IPPROTO_TCP, newL4Packet, readCaptureFile, TcpFlag, type RawPacket } from '../src';
import { u32be } from '../src/bytes';
import {
  packetSide,
  TcpReassembler,
  type TcpChunk,
  type TcpDirection,
  type TcpEnd,
  type TcpEndReason,
  type TcpGap,
  type TcpGapReason,
  type TcpReassemblerOptions,
  type TcpStreamConsumer,
} from '../src/reassembly';

/**
 * TCP reassembly against tshark's `-z follow,tcp,raw,N` of the same captures
 * (fixtures/golden/<capture>/streams/tcp_follow.csv, written by scripts/golden-streams.sh), and
 * the policies one by one on hand-made segments.
 *
 * How our gaps correspond to tshark's: tshark's follow inserts the text "[N bytes missing in
 * capture file]" into the direction's data when the peer acknowledges bytes beyond a hole; the
 * golden script takes it out of the digest and records (bytes delivered before it, N). We report
 * the same hole as a gap event at the same position, so our delivered bytes must hash the same
 * and our gaps (offsets counted without earlier gaps) must equal tshark's. Bytes the snap length
 * cut off tshark leaves out silently (it follows captured bytes only); we report them as
 * `truncated` gaps, compared separately with the wire payload.
 */

const GOLDEN = [
  'zeek/http_get.pcap',
  'zeek/http_pipelined-requests.pcap',
  'zeek/http_1000-requests-one-dropped-response.pcap.gz',
  'ndpi/http_ipv6.pcap',
  'ndpi/pgsql.pcap',
  'grpc-go-book/grpc_Unary.pcapng',
  'zeek/tcp_retransmit-fast009.pcap',
  'suricata-verify/http-gap-simple.pcap',
];

interface DirResult {
  bytes: Buffer[];
  length: number;
  gaps: { offset: number; length: number; reason: TcpGapReason }[];
  ends: { reason: TcpEndReason; offset: number; closed: boolean }[];
  /** Stream offset the next event must start at. */
  next: number;
  midStream?: boolean;
}

/** Copies everything it is given and checks the event invariants as it goes. */
class Collector implements TcpStreamConsumer {
  readonly streams = new Map<number, [DirResult, DirResult]>();
  readonly violations: string[] = [];
  readonly chunks: TcpChunk[] = [];
  keepChunks = false;

  dir(stream: number, dir: TcpDirection): DirResult {
    let s = this.streams.get(stream);
    if (!s) {
      const mk = (): DirResult => ({ bytes: [], length: 0, gaps: [], ends: [], next: 0 });
      s = [mk(), mk()];
      this.streams.set(stream, s);
    }
    return s[dir];
  }

  onData(c: TcpChunk): void {
    const d = this.dir(c.stream, c.dir);
    if (d.ends.length > 0) this.violations.push(`data after end on ${c.stream}/${c.dir}`);
    if (c.offset !== d.next) this.violations.push(`data at ${c.offset}, expected ${d.next} on ${c.stream}/${c.dir}`);
    if (c.length <= 0) this.violations.push(`empty chunk on ${c.stream}/${c.dir}`);
    d.bytes.push(Buffer.from(c.buf.subarray(c.start, c.start + c.length)));
    d.length += c.length;
    d.next = c.offset + c.length;
    d.midStream = c.midStream;
    if (this.keepChunks) this.chunks.push({ ...c });
  }

  onGap(g: TcpGap): void {
    const d = this.dir(g.stream, g.dir);
    if (d.ends.length > 0) this.violations.push(`gap after end on ${g.stream}/${g.dir}`);
    if (g.offset !== d.next) this.violations.push(`gap at ${g.offset}, expected ${d.next} on ${g.stream}/${g.dir}`);
    if (g.length <= 0) this.violations.push(`empty gap on ${g.stream}/${g.dir}`);
    d.gaps.push({ offset: g.offset, length: g.length, reason: g.reason });
    d.next = g.offset + g.length;
  }

  onEnd(e: TcpEnd): void {
    const d = this.dir(e.stream, e.dir);
    if (e.offset !== d.next) this.violations.push(`end at ${e.offset}, expected ${d.next} on ${e.stream}/${e.dir}`);
    d.ends.push({ reason: e.reason, offset: e.offset, closed: e.closed });
  }

  data(stream: number, dir: TcpDirection): Buffer {
    return Buffer.concat(this.streams.get(stream)?.[dir].bytes ?? []);
  }
}

interface GoldenFollow {
  stream: number;
  node: number;
  endpoint: string;
  bytes: number;
  sha256: string;
  gaps: { offset: number; length: number }[];
}

function loadFollow(capture: string): GoldenFollow[] {
  return readFileSync(path.join(GOLDEN_DIR, capture, 'streams', 'tcp_follow.csv'), 'utf8')
    .split('\n')
    .slice(1)
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const [stream, node, endpoint, bytes, sha256, gaps] = l.split(',');
      return {
        stream: Number(stream),
        node: Number(node),
        endpoint: endpoint!,
        bytes: Number(bytes),
        sha256: sha256!,
        gaps: (gaps ?? '')
          .split(' ')
          .filter((g) => g !== '')
          .map((g) => {
            const [o, n] = g.split('+').map(Number);
            return { offset: o!, length: n! };
          }),
      };
    });
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function senderEndpoint(p: RawPacket, d: ReturnType<typeof newL4Packet>): string {
  const w = (i: number): number => (d.ipVersion === 6 ? u32be(p.buf, d.srcOff + 4 * i) : 0);
  const ip = formatIp(d.ipVersion, u32be(p.buf, d.srcOff), w(1), w(2), w(3));
  return `${ip}:${d.srcPort}`;
}

interface CaptureRun {
  collector: Collector;
  reassembler: TcpReassembler;
  /** Flow index of the n-th TCP flow (tshark's tcp.stream n). */
  tcpFlows: number[];
  /** ip:port of each flow's side 0. */
  side0: Map<number, string>;
  /** Wire payload (tcp.len) per flow and direction, retransmissions included. */
  payload: Map<number, [number, number]>;
  /** Packets per flow and packetSide. */
  packets: Map<number, [number, number]>;
  flows: FlowTable;
}

/** Reader + decodePacket + FlowTable (for flow indexes) + reassembler, as the worker will run them. */
async function runCapture(capture: string, options: TcpReassemblerOptions = {}): Promise<CaptureRun> {
  const collector = new Collector();
  const reassembler = new TcpReassembler(collector, options);
  const flows = new FlowTable();
  const l4 = newL4Packet();
  const tcpFlows: number[] = [];
  const seen = new Set<number>();
  const side0 = new Map<number, string>();
  const payload = new Map<number, [number, number]>();
  const packets = new Map<number, [number, number]>();
  const result = await readCaptureFile(capturePath(capture), (p) => {
    if (decodePacket(p, l4) !== 0) return;
    const idx = flows.add(p, l4);
    if (l4.protocol !== IPPROTO_TCP) return;
    if (!seen.has(idx)) {
      seen.add(idx);
      tcpFlows.push(idx);
      payload.set(idx, [0, 0]);
      packets.set(idx, [0, 0]);
    }
    const side = packetSide(p, l4);
    if (side === 0 && !side0.has(idx)) side0.set(idx, senderEndpoint(p, l4));
    if (side === 1 && !side0.has(idx)) {
      // Side 0 is the destination of this packet.
      const w = (i: number): number => (l4.ipVersion === 6 ? u32be(p.buf, l4.dstOff + 4 * i) : 0);
      side0.set(idx, `${formatIp(l4.ipVersion, u32be(p.buf, l4.dstOff), w(1), w(2), w(3))}:${l4.dstPort}`);
    }
    payload.get(idx)![side] += l4.payloadLen;
    packets.get(idx)![side] += 1;
    reassembler.segmentFromPacket(idx, side, p, l4);
  });
  expect(result.error).toBeUndefined();
  reassembler.flush();
  return { collector, reassembler, tcpFlows, side0, payload, packets, flows };
}

describe.each(GOLDEN)('%s against tshark follow', (capture) => {
  let run: CaptureRun;
  const golden = loadFollow(capture);

  beforeAll(async () => {
    run = await runCapture(capture);
  });

  test('events are well formed: contiguous offsets, one end per direction, closed on the second', () => {
    expect(run.collector.violations).toEqual([]);
    for (const idx of run.tcpFlows) {
      const dirs = run.collector.streams.get(idx);
      if (!dirs) continue; // no data and no SYN: never opened
      expect(dirs.map((d) => d.ends.length)).toEqual([1, 1]);
      expect(dirs.filter((d) => d.ends[0]!.closed)).toHaveLength(1);
    }
    expect(run.reassembler.stats().liveStreams).toBe(0);
    expect(run.reassembler.stats().bufferedBytes).toBe(0);
  });

  test('packetSide is the side FlowTable counts the packet on', () => {
    for (const idx of run.tcpFlows) {
      const f = run.flows.get(idx);
      const aIsClient = `${f.client.ip}:${f.client.port}` === run.side0.get(idx);
      const [a, b] = aIsClient ? [f.clientToServer, f.serverToClient] : [f.serverToClient, f.clientToServer];
      expect(run.packets.get(idx)).toEqual([a.packets, b.packets]);
    }
  });

  test('per-direction bytes and gaps equal tshark', () => {
    expect(run.tcpFlows.length).toBe(new Set(golden.map((g) => g.stream)).size);
    const actual = golden.map((g) => {
      const idx = run.tcpFlows[g.stream]!;
      const dir: TcpDirection = run.side0.get(idx) === g.endpoint ? 0 : 1;
      const bytes = run.collector.data(idx, dir);
      const gaps = run.collector.streams.get(idx)?.[dir].gaps ?? [];
      // tshark counts a gap's position in delivered bytes only.
      let missingBefore = 0;
      const asTshark: { offset: number; length: number }[] = [];
      for (const gap of gaps) {
        if (gap.reason !== 'truncated') asTshark.push({ offset: gap.offset - missingBefore, length: gap.length });
        missingBefore += gap.length;
      }
      return { ...g, bytes: bytes.length, sha256: sha256(bytes), gaps: asTshark };
    });
    expect(actual).toEqual(golden);
  });
});

describe('what the golden captures exercise', () => {
  test('http-gap-simple: the 14 missing response bytes are one acked gap where tshark puts its marker', async () => {
    const run = await runCapture('suricata-verify/http-gap-simple.pcap');
    const idx = run.tcpFlows[0]!;
    const server: TcpDirection = run.side0.get(idx) === '127.0.0.1:8080' ? 0 : 1;
    expect(run.collector.streams.get(idx)![server].gaps).toEqual([{ offset: 263, length: 14, reason: 'acked' }]);
    const s = run.reassembler.stats();
    expect(s.gaps).toBe(1);
    expect(s.gapBytes).toBe(14);
    expect(s.outOfOrderSegments).toBe(1);
    expect(s.streamsClosed.fin).toBe(1);
  });

  test('1000 requests, one dropped response: the first 238 response bytes are a gap, acked by the client', async () => {
    const run = await runCapture('zeek/http_1000-requests-one-dropped-response.pcap.gz');
    const s = run.reassembler.stats();
    expect(s.gapsByReason).toEqual({ acked: 1, 'buffer-limit': 0, memory: 0, end: 0, truncated: 0 });
    expect(s.gapBytes).toBe(238);
    expect(s.deliveredBytes).toBe(144000 + 852757);
  });

  test('fast retransmissions on a headers-only capture: every payload byte is a truncated gap, each once', async () => {
    const run = await runCapture('zeek/tcp_retransmit-fast009.pcap');
    const idx = run.tcpFlows[0]!;
    const dirs = run.collector.streams.get(idx)!;
    const client: TcpDirection = run.side0.get(idx) === '10.0.88.85:50368' ? 0 : 1;
    const total = (d: DirResult): number => d.gaps.reduce((n, g) => n + g.length, 0);
    expect(dirs[client].length + dirs[1 - client]!.length).toBe(0);
    expect(total(dirs[client])).toBe(474);
    // Sequence numbers 1..23783 of the server; three 1430-byte segments were sent twice.
    expect(total(dirs[1 - client]!)).toBe(23783);
    expect(dirs[1 - client]!.gaps.every((g) => g.reason === 'truncated')).toBe(true);
    const s = run.reassembler.stats();
    expect(s.retransmittedBytes).toBe(3 * 1430);
    expect(run.payload.get(idx)![1 - client]).toBe(23783 + 3 * 1430);
    expect(s.streamsClosed.rst).toBe(1);
  });

  test('grpc Unary: a mid-stream join starts at the first data segment', async () => {
    const run = await runCapture('grpc-go-book/grpc_Unary.pcapng');
    const idx = run.tcpFlows[0]!;
    const dirs = run.collector.streams.get(idx)!;
    const sender = dirs[0].length > 0 ? dirs[0] : dirs[1];
    expect(sender.midStream).toBe(true);
    expect(sender.length).toBe(52088);
    expect(run.collector.streams.get(run.tcpFlows[1]!)![0].midStream).toBe(false);
  });
});

// --- the policies on hand-made segments -------------------------------------------------------

const { SYN, ACK, FIN, RST } = TcpFlag;
const TWO32 = 2 ** 32;

/** Feeds hand-made segments; payloads are ASCII strings or byte counts (wire length, nothing captured). */
class Script {
  readonly c = new Collector();
  readonly r: TcpReassembler;
  t = 1_000_000;

  constructor(options: TcpReassemblerOptions = {}) {
    this.r = new TcpReassembler(this.c, options);
  }

  seg(dir: TcpDirection, seq: number, flags: number, payload: string | Buffer = '', opts: { ack?: number; stream?: number; at?: number; wireLen?: number } = {}): void {
    const buf = typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload;
    if (opts.at !== undefined) this.t = opts.at;
    else this.t += 1;
    const sec = Math.floor(this.t / 1000);
    const nsec = (this.t % 1000) * 1e6;
    this.r.segment(opts.stream ?? 0, dir, seq >>> 0, (opts.ack ?? 0) >>> 0, flags, buf, 0, buf.length, opts.wireLen ?? buf.length, sec, nsec);
  }

  text(dir: TcpDirection, stream = 0): string {
    return this.c.data(stream, dir).toString('latin1');
  }

  d(dir: TcpDirection, stream = 0): DirResult {
    return this.c.dir(stream, dir);
  }
}

describe('TcpReassembler policies', () => {
  test('in-order data is a view of the packet buffer, with the packet time, and SYN takes one sequence number', () => {
    const s = new Script();
    s.c.keepChunks = true;
    s.seg(0, 1000, SYN);
    s.seg(1, 5000, SYN | ACK, '', { ack: 1001 });
    const pkt = Buffer.from('xxGET / HTTP/1.1\r\n');
    s.r.segment(0, 0, 1001, 5001, ACK, pkt, 2, pkt.length - 2, pkt.length - 2, 1234, 5678);
    expect(s.c.chunks).toHaveLength(1);
    const c = s.c.chunks[0]!;
    expect(c.buf).toBe(pkt);
    expect([c.start, c.length, c.offset, c.firstSec, c.firstNsec, c.lastSec, c.lastNsec, c.midStream]).toEqual([2, 16, 0, 1234, 5678, 1234, 5678, false]);
    expect(s.r.stats().bufferedBytes).toBe(0);
  });

  test('data on a SYN is stream data', () => {
    const s = new Script();
    s.seg(0, 1000, SYN, 'fast');
    s.seg(0, 1005, ACK, 'open');
    expect(s.text(0)).toBe('fastopen');
  });

  test('out-of-order segments wait for the hole, then arrive in order with their own timestamps', () => {
    const s = new Script();
    s.c.keepChunks = true;
    s.seg(0, 99, SYN);
    s.seg(0, 106, ACK, 'world', { at: 2000 });
    s.seg(0, 105, ACK, ' ', { at: 3000 });
    expect(s.text(0)).toBe('');
    s.seg(0, 100, ACK, 'hello', { at: 4000 });
    expect(s.text(0)).toBe('hello world');
    expect(s.c.chunks.map((c) => [c.offset, c.firstSec])).toEqual([
      [0, 4],
      [5, 3],
      [6, 2],
    ]);
    expect(s.r.stats()).toMatchObject({ outOfOrderSegments: 2, outOfOrderBytes: 6, bufferedBytes: 0, gaps: 0 });
  });

  test('first data wins; overlaps are counted, and counted again when their bytes differ', () => {
    const s = new Script();
    s.seg(0, 0, SYN);
    s.seg(0, 1, ACK, 'abc');
    s.seg(0, 1, ACK, 'XYZdef'); // retransmission with different old bytes, plus new ones
    s.seg(0, 11, ACK, 'klm'); // buffered
    s.seg(0, 9, ACK, 'ijKLmn'); // overlaps the buffered 'klm' with different bytes
    s.seg(0, 10, ACK, 'jk'); // overlaps the buffered 'jk' with the same bytes
    s.seg(0, 7, ACK, 'gh');
    expect(s.text(0)).toBe('abcdefghijklmn');
    expect(s.r.stats()).toMatchObject({ retransmittedSegments: 1, retransmittedBytes: 3, overlapSegments: 2, overlapBytes: 5, overlapMismatches: 1 });
  });

  test('sequence numbers wrap around 2^32', () => {
    const s = new Script();
    const isn = TWO32 - 4;
    s.seg(0, isn, SYN);
    s.seg(0, isn + 1, ACK, 'abc'); // TWO32-3 .. TWO32-1
    s.seg(0, 3, ACK, 'ghi'); // after the wrap, out of order
    s.seg(0, TWO32 - 1, ACK, 'cdef'); // overlaps 'c', crosses the wrap
    s.seg(0, 6, ACK | FIN, 'jk');
    expect(s.text(0)).toBe('abcdefghijk');
    expect(s.d(0).ends).toEqual([{ reason: 'fin', offset: 11, closed: false }]);
  });

  test('FIN ends a direction only once the bytes before it are in; RST flushes with gaps and ends both', () => {
    const s = new Script();
    s.seg(0, 0, SYN);
    s.seg(1, 500, SYN | ACK, '', { ack: 1 });
    s.seg(0, 4, ACK | FIN, 'def', { ack: 501 });
    expect(s.d(0).ends).toEqual([]);
    s.seg(0, 1, ACK, 'abc', { ack: 501 });
    expect(s.text(0)).toBe('abcdef');
    expect(s.d(0).ends).toEqual([{ reason: 'fin', offset: 6, closed: false }]);
    s.seg(1, 501, ACK, 'x', { ack: 8 });
    s.seg(1, 505, ACK, 'late', { ack: 8 }); // hole at 1..3
    s.seg(1, 509, RST);
    expect(s.d(1).gaps).toEqual([{ offset: 1, length: 3, reason: 'end' }]);
    expect(s.text(1)).toBe('xlate');
    expect(s.d(1).ends).toEqual([{ reason: 'rst', offset: 8, closed: true }]);
    s.seg(1, 509, ACK, 'after the end');
    expect(s.text(1)).toBe('xlate');
    expect(s.r.stats()).toMatchObject({ ignoredSegments: 1, liveStreams: 0, streamsClosed: { fin: 0, rst: 1, idle: 0, evicted: 0, flush: 0 } });
  });

  test('data beyond the FIN is discarded', () => {
    const s = new Script();
    s.seg(0, 0, SYN);
    s.seg(0, 1, ACK | FIN, 'ab');
    s.seg(0, 3, ACK, 'zz');
    expect(s.text(0)).toBe('ab');
    expect(s.r.stats().ignoredSegments).toBe(1);
  });

  test('a mid-stream join starts at the first data segment; pure ACKs start nothing', () => {
    const s = new Script();
    s.seg(0, 777, ACK); // a keep-alive would sit one byte early
    expect(s.c.streams.size).toBe(0);
    s.seg(0, 5000, ACK, 'middle');
    s.seg(0, 4990, ACK, 'earlier...');
    s.seg(0, 5006, ACK, '!');
    expect(s.text(0)).toBe('middle!');
    expect(s.d(0).midStream).toBe(true);
    expect(s.r.stats().retransmittedBytes).toBe(10);
  });

  test('the peer acknowledging past a hole makes it a gap at once; without ackGaps it waits for the end', () => {
    for (const ackGaps of [true, false]) {
      const s = new Script({ ackGaps });
      s.seg(0, 0, SYN);
      s.seg(1, 100, SYN | ACK, '', { ack: 1 });
      s.seg(0, 1, ACK, 'aaaa', { ack: 101 });
      s.seg(0, 9, ACK, 'cccc', { ack: 101 }); // 5..8 never captured
      s.seg(1, 101, ACK, '', { ack: 7 }); // below the buffered data: not proof yet
      expect(s.d(0).gaps).toEqual([]);
      s.seg(1, 101, ACK, '', { ack: 13 });
      expect(s.d(0).gaps).toEqual(ackGaps ? [{ offset: 4, length: 4, reason: 'acked' }] : []);
      s.r.flush();
      expect(s.d(0).gaps).toEqual([{ offset: 4, length: 4, reason: ackGaps ? 'acked' : 'end' }]);
      expect(s.text(0)).toBe('aaaacccc');
      expect(s.d(0).ends[0]!.reason).toBe('flush');
    }
  });

  test('an acknowledged FIN behind a hole ends the direction after a gap', () => {
    const s = new Script();
    s.seg(0, 0, SYN);
    s.seg(1, 100, SYN | ACK, '', { ack: 1 });
    s.seg(0, 1, ACK, 'ab', { ack: 101 });
    s.seg(0, 6, ACK | FIN, '', { ack: 101 }); // bytes 3..5 lost, FIN at 6
    s.seg(1, 101, ACK, '', { ack: 7 });
    expect(s.d(0).gaps).toEqual([{ offset: 2, length: 3, reason: 'acked' }]);
    expect(s.d(0).ends).toEqual([{ reason: 'fin', offset: 5, closed: false }]);
  });

  test('a stream buffering more than its limit declares its first hole a gap and goes on', () => {
    // Each buffered segment costs its bytes plus 64 of bookkeeping: 2 * 564 fit in 1200.
    const s = new Script({ maxStreamBuffer: 1200 });
    s.seg(0, 0, SYN);
    s.seg(0, 1, ACK, 'a'.repeat(10));
    s.seg(0, 111, ACK, 'b'.repeat(500)); // hole of 100
    s.seg(0, 611, ACK, 'c'.repeat(500));
    expect(s.d(0).gaps).toEqual([]);
    s.seg(0, 2000, ACK, 'd'.repeat(100)); // over the limit: the first hole goes, then the next
    expect(s.d(0).gaps).toEqual([{ offset: 10, length: 100, reason: 'buffer-limit' }]);
    expect(s.d(0).length).toBe(1010);
    expect(s.r.stats().bufferedBytes).toBe(100);
    s.seg(0, 60, ACK, 'late'); // behind the gap: dropped as old
    expect(s.d(0).length).toBe(1010);
  });

  test('idle streams end in capture time; more segments start the stream again mid-stream', () => {
    const s = new Script({ idleTimeoutMs: 10_000 });
    s.seg(0, 0, SYN, '', { at: 1_000 });
    s.seg(0, 1, ACK, 'one', { at: 2_000 });
    s.seg(0, 10, ACK, 'buffered', { stream: 0, at: 3_000 });
    s.seg(0, 50, SYN, '', { stream: 1, at: 12_000 });
    expect(s.d(0).ends).toEqual([]);
    s.seg(0, 51, ACK, 'x', { stream: 1, at: 13_001 }); // stream 0 idle since 3_000
    expect(s.d(0).gaps).toEqual([{ offset: 3, length: 6, reason: 'end' }]);
    expect(s.text(0)).toBe('onebuffered');
    expect(s.d(0).ends).toEqual([{ reason: 'idle', offset: 17, closed: false }]);
    expect(s.d(1).ends).toEqual([{ reason: 'idle', offset: 0, closed: true }]);
    s.seg(0, 18, ACK, 'again', { at: 14_000 });
    expect(s.text(0)).toBe('onebufferedagain');
    expect(s.r.stats()).toMatchObject({ streamsOpened: 3, streamsClosed: { idle: 1 } });
    expect(s.d(0).midStream).toBe(true);
  });

  test('over the global memory limit the streams idle longest are evicted first, and counted', () => {
    // Each stream costs 512 and buffers 300 bytes out of order (+ 64): five take 4380 of 4500.
    const s = new Script({ maxMemory: 4500 });
    for (let id = 0; id < 5; id++) {
      s.seg(0, 0, SYN, '', { stream: id });
      s.seg(0, 11, ACK, 'z'.repeat(300), { stream: id });
    }
    s.seg(1, 0, ACK, '', { stream: 0, ack: 1 }); // stream 0 is now the most recently active
    expect(s.r.stats().evictions).toBe(0);
    s.seg(0, 0, SYN, '', { stream: 5 }); // 4892: stream 1, idle longest, goes
    expect(s.d(0, 1).ends.map((e) => e.reason)).toEqual(['evicted']);
    expect(s.d(0, 1).gaps).toEqual([{ offset: 0, length: 10, reason: 'end' }]);
    expect(s.c.data(1, 0).length).toBe(300);
    expect(s.d(0, 0).ends).toEqual([]);
    expect(s.d(0, 2).ends).toEqual([]);
    expect(s.r.stats()).toMatchObject({ evictions: 1, streamsClosed: { evicted: 1 }, liveStreams: 5 });
    expect(s.r.stats().memoryBytes).toBe(4016);
  });

  test('a lone stream over the global limit gives up its holes instead of itself', () => {
    const s = new Script({ maxMemory: 1000 });
    s.seg(0, 0, SYN);
    s.seg(0, 101, ACK, 'q'.repeat(600));
    expect(s.d(0).gaps).toEqual([{ offset: 0, length: 100, reason: 'memory' }]);
    expect(s.r.stats()).toMatchObject({ evictions: 0, liveStreams: 1 });
  });

  test('payload cut by the snap length is delivered as far as captured, then a truncated gap', () => {
    const s = new Script();
    s.seg(0, 0, SYN);
    s.seg(0, 1, ACK, 'head', { wireLen: 10 });
    s.seg(0, 21, ACK, 'tail'); // out of order, behind a truncated out-of-order one
    s.seg(0, 11, ACK, 'mid', { wireLen: 10 });
    expect(s.text(0)).toBe('headmidtail');
    expect(s.d(0).gaps).toEqual([
      { offset: 4, length: 6, reason: 'truncated' },
      { offset: 13, length: 7, reason: 'truncated' },
    ]);
  });

  test('a segment beyond the largest TCP window is ignored', () => {
    const s = new Script();
    s.seg(0, 0, SYN);
    s.seg(0, 1 + 2 ** 30 + 10, ACK, 'bogus');
    s.seg(0, 1, ACK, 'fine');
    s.r.flush();
    expect(s.text(0)).toBe('fine');
    expect(s.d(0).gaps).toEqual([]);
    expect(s.r.stats().outOfWindowSegments).toBe(1);
  });

  test('packetSide agrees with the address order FlowTable uses', () => {
    // One IPv4 TCP packet, Ethernet framed, 10.0.0.2:80 -> 10.0.0.1:5000.
    const frame = Buffer.alloc(14 + 20 + 20);
    frame.writeUInt16BE(0x0800, 12);
    frame[14] = 0x45;
    frame.writeUInt16BE(40, 16);
    frame[23] = 6;
    frame.writeUInt32BE(0x0a000002, 26);
    frame.writeUInt32BE(0x0a000001, 30);
    frame.writeUInt16BE(80, 34);
    frame.writeUInt16BE(5000, 36);
    frame[46] = 0x50;
    const p: RawPacket = { buf: frame, offset: 0, capLen: frame.length, origLen: frame.length, tsSec: 0, tsNsec: 0, linkType: 1, interfaceId: 0, frame: 1 };
    const d = newL4Packet();
    expect(decodePacket(p, d)).toBe(0);
    expect(packetSide(p, d)).toBe(1);
    const table = new FlowTable();
    const f = table.get(table.add(p, d));
    // The client (first sender) is the larger endpoint, so it is side B (1).
    expect(f.client).toEqual({ ip: '10.0.0.2', port: 80 });
  });
});
