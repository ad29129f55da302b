import { capturePath, prng } from '@kubeshark-mcp/testkit';
import { decodePacket, FlowTable, IPPROTO_TCP, newL4Packet, readCaptureFile, TcpFlag } from '../src';
import { packetSide, TcpReassembler, type TcpDirection, type TcpReassemblerOptions, type TcpReassemblerStats, type TcpStreamConsumer } from '../src/reassembly';

/**
 * Mutation suite: the segments of real captures, fed to the reassembler after reordering,
 * duplicating, splitting into overlapping pieces, rewriting sequence numbers so they wrap
 * around 2^32 mid-stream, and dropping. Every mutation must give back the streams of the
 * unmutated capture byte for byte; a drop must give a gap exactly where the dropped bytes were,
 * of their length, with every other byte equal. Seeded PRNG: every run is the same.
 */

const CAPTURES = ['zeek/http_get.pcap', 'ndpi/http_ipv6.pcap', 'ndpi/pgsql.pcap'];
const SEEDS = Array.from({ length: 25 }, (_, i) => i + 1);
const { SYN, FIN, RST, ACK } = TcpFlag;
const CONTROL = SYN | FIN | RST;

interface Seg {
  stream: number;
  dir: TcpDirection;
  seq: number;
  ack: number;
  flags: number;
  /** Captured payload (a copy). */
  payload: Buffer;
  /** Payload length on the wire. */
  len: number;
  sec: number;
  nsec: number;
}

interface Dir {
  data: Buffer[];
  gaps: { offset: number; length: number }[];
  ends: number;
  next: number;
}

interface Result {
  streams: Map<string, Dir>;
  violations: string[];
  stats: TcpReassemblerStats;
}

const randInt = (rng: () => number, n: number): number => Math.floor(rng() * n);

async function loadSegments(capture: string): Promise<Seg[]> {
  const flows = new FlowTable();
  const l4 = newL4Packet();
  const segs: Seg[] = [];
  const result = await readCaptureFile(capturePath(capture), (p) => {
    if (decodePacket(p, l4) !== 0) return;
    const stream = flows.add(p, l4);
    if (l4.protocol !== IPPROTO_TCP) return;
    const cap = Math.max(0, Math.min(l4.payloadLen, p.offset + p.capLen - l4.payloadOff));
    segs.push({
      stream,
      dir: packetSide(p, l4),
      seq: l4.seq,
      ack: l4.ack,
      flags: l4.tcpFlags,
      payload: Buffer.from(p.buf.subarray(l4.payloadOff, l4.payloadOff + cap)),
      len: l4.payloadLen,
      sec: p.tsSec,
      nsec: p.tsNsec,
    });
  });
  expect(result.error).toBeUndefined();
  return segs;
}

function reassemble(segs: Seg[], options: TcpReassemblerOptions = {}): Result {
  const streams = new Map<string, Dir>();
  const violations: string[] = [];
  const get = (stream: number, dir: number): Dir => {
    const k = `${stream}/${dir}`;
    let d = streams.get(k);
    if (!d) streams.set(k, (d = { data: [], gaps: [], ends: 0, next: 0 }));
    return d;
  };
  const consumer: TcpStreamConsumer = {
    onData(c) {
      const d = get(c.stream, c.dir);
      if (c.offset !== d.next || d.ends > 0) violations.push(`data ${c.stream}/${c.dir} at ${c.offset}`);
      d.data.push(Buffer.from(c.buf.subarray(c.start, c.start + c.length)));
      d.next = c.offset + c.length;
    },
    onGap(g) {
      const d = get(g.stream, g.dir);
      if (g.offset !== d.next || d.ends > 0) violations.push(`gap ${g.stream}/${g.dir} at ${g.offset}`);
      // Holes next to each other are one hole, however the reassembler came to declare them.
      const last = d.gaps[d.gaps.length - 1];
      if (last && last.offset + last.length === g.offset) last.length += g.length;
      else d.gaps.push({ offset: g.offset, length: g.length });
      d.next = g.offset + g.length;
    },
    onEnd(e) {
      const d = get(e.stream, e.dir);
      if (e.offset !== d.next) violations.push(`end ${e.stream}/${e.dir} at ${e.offset}`);
      d.ends++;
    },
  };
  const r = new TcpReassembler(consumer, options);
  for (const s of segs) r.segment(s.stream, s.dir, s.seq, s.ack, s.flags, s.payload, 0, s.payload.length, s.len, s.sec, s.nsec);
  r.flush();
  return { streams, violations, stats: r.stats() };
}

/** Stream and direction as plain comparable values. */
function view(r: Result): Record<string, { hex: string; gaps: { offset: number; length: number }[]; ends: number }> {
  const out: Record<string, { hex: string; gaps: { offset: number; length: number }[]; ends: number }> = {};
  for (const [k, d] of [...r.streams].sort(([a], [b]) => a.localeCompare(b))) out[k] = { hex: Buffer.concat(d.data).toString('hex'), gaps: d.gaps, ends: d.ends };
  return out;
}

const key = (s: Seg): string => `${s.stream}/${s.dir}`;
const isData = (s: Seg): boolean => s.len > 0 && s.payload.length === s.len && !(s.flags & CONTROL);

/**
 * The first data segment of each direction without a SYN: it decides where a mid-stream join
 * starts (bytes before it are old), so the mutations keep it first and whole.
 */
function pinned(segs: Seg[]): Set<Seg> {
  const synced = new Set(segs.filter((s) => s.flags & SYN).map(key));
  const seen = new Set<string>();
  const out = new Set<Seg>();
  for (const s of segs) {
    if (s.len === 0 || synced.has(key(s)) || seen.has(key(s))) continue;
    seen.add(key(s));
    out.add(s);
  }
  return out;
}

/**
 * The sequence number of stream offset 0 for each direction: after the SYN, or the first data
 * segment's when the capture joined mid-stream.
 */
function bases(segs: Seg[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of segs) if (s.flags & SYN && !out.has(key(s))) out.set(key(s), (s.seq + 1) >>> 0);
  for (const s of segs) if ((s.len > 0 || s.flags & FIN) && !out.has(key(s))) out.set(key(s), s.seq);
  return out;
}

/**
 * Permutes data segments among their own positions, in windows: a segment moves only among
 * segments of its stream and direction (and never past a SYN, FIN or RST of its stream). With
 * `sameDirection`, also never past a segment of the other direction, which may acknowledge it:
 * at a capture point on the path, an ACK always follows the data it acknowledges.
 */
function reorder(segs: Seg[], rng: () => number, window: number, sameDirection: boolean): Seg[] {
  const out = segs.slice();
  const keep = pinned(segs);
  const runs = new Map<string, number[]>();
  const flush = (k: string): void => {
    const run = runs.get(k);
    if (!run) return;
    runs.delete(k);
    const items = run.map((i) => out[i]!);
    for (let i = 0; i < items.length; i++) {
      const j = i + randInt(rng, Math.min(window, items.length - i));
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    run.forEach((pos, i) => (out[pos] = items[i]!));
  };
  segs.forEach((s, i) => {
    const other = `${s.stream}/${1 - s.dir}`;
    if (s.flags & CONTROL || keep.has(s)) {
      flush(key(s));
      flush(other);
      return;
    }
    if (sameDirection) flush(other);
    if (!isData(s)) return;
    const run = runs.get(key(s)) ?? [];
    run.push(i);
    runs.set(key(s), run);
  });
  for (const k of [...runs.keys()]) flush(k);
  return out;
}

/**
 * Copies of some segments (any kind) again, a little later: retransmissions. Never past a jump
 * in capture time (pgsql.pcap is two captures 15 years apart): a stream that ended idle starts
 * again on a late segment, by design.
 */
function duplicate(segs: Seg[], rng: () => number, p: number): Seg[] {
  const out = segs.slice();
  for (let i = segs.length - 1; i >= 0; i--) {
    if (rng() >= p) continue;
    let at = Math.min(out.length, i + 1 + randInt(rng, 6));
    while (at > i + 1 && out[at - 1]!.sec - segs[i]!.sec > 60) at--;
    out.splice(at, 0, { ...segs[i]! });
  }
  return out;
}

/** Splits data segments into two or three pieces that overlap with identical bytes, sent in any order. */
function split(segs: Seg[], rng: () => number): Seg[] {
  const out: Seg[] = [];
  const keep = pinned(segs);
  for (const s of segs) {
    if (!isData(s) || s.len < 4 || keep.has(s) || rng() < 0.3) {
      out.push(s);
      continue;
    }
    const n = s.len < 12 ? 2 : 2 + randInt(rng, 2);
    // Cut points c_1 < ... < c_{n-1}; piece k spans [c_k - overlap, c_{k+1}) where it can.
    const cuts = [0];
    for (let k = 1; k < n; k++) cuts.push(Math.floor((s.len * k) / n));
    cuts.push(s.len);
    const pieces: Seg[] = [];
    for (let k = 0; k < n; k++) {
      const from = Math.max(0, cuts[k]! - randInt(rng, 4));
      const to = Math.min(s.len, cuts[k + 1]! + randInt(rng, 4));
      pieces.push({ ...s, seq: (s.seq + from) >>> 0, payload: s.payload.subarray(from, to), len: to - from });
    }
    for (let k = pieces.length - 1; k > 0; k--) {
      const j = randInt(rng, k + 1);
      [pieces[k], pieces[j]] = [pieces[j]!, pieces[k]!];
    }
    out.push(...pieces);
  }
  return out;
}

/** Shifts each direction's sequence space (and the peer's ACKs of it) so it wraps mid-stream. */
function wrap(segs: Seg[], lengths: Map<string, number>): Seg[] {
  const base = bases(segs);
  const shift = new Map<string, number>();
  for (const [k, b] of base) shift.set(k, (2 ** 32 - b - Math.floor((lengths.get(k) ?? 0) / 2)) >>> 0);
  return segs.map((s) => ({
    ...s,
    seq: (s.seq + (shift.get(key(s)) ?? 0)) >>> 0,
    ack: s.flags & ACK ? (s.ack + (shift.get(`${s.stream}/${1 - s.dir}`) ?? 0)) >>> 0 : s.ack,
  }));
}

/**
 * Drops up to `n` data segments whose bytes no other segment carries and after which their
 * direction carries more data, and returns the holes they leave, merged when adjacent.
 */
function drop(segs: Seg[], rng: () => number, n: number): { segs: Seg[]; holes: Map<string, { offset: number; length: number }[]> } {
  const base = bases(segs);
  const synced = new Set(segs.filter((s) => s.flags & SYN).map(key));
  // Stream offset of a segment's first data byte (a SYN takes the sequence number before it).
  const offsetOf = (s: Seg): number => ((s.flags & SYN ? s.seq + 1 : s.seq) - base.get(key(s))!) | 0;
  const ranges = new Map<string, [number, number, number][]>();
  segs.forEach((s, i) => {
    if (s.len === 0) return;
    const r = ranges.get(key(s)) ?? [];
    r.push([offsetOf(s), offsetOf(s) + s.len, i]);
    ranges.set(key(s), r);
  });
  const candidates: number[] = [];
  segs.forEach((s, i) => {
    if (!isData(s)) return;
    const r = ranges.get(key(s))!;
    const o = offsetOf(s);
    const alone = r.every(([a, b, j]) => j === i || b <= o || a >= o + s.len);
    const later = r.some(([a]) => a >= o + s.len);
    // Without a SYN the first data segment decides where the stream starts: keep it.
    const start = synced.has(key(s)) || r.some(([a]) => a < o);
    if (alone && later && start) candidates.push(i);
  });
  const dropped = new Set<number>();
  for (let k = 0; k < n && candidates.length > 0; k++) dropped.add(candidates.splice(randInt(rng, candidates.length), 1)[0]!);
  const holes = new Map<string, { offset: number; length: number }[]>();
  for (const i of [...dropped].sort((a, b) => offsetOf(segs[a]!) - offsetOf(segs[b]!))) {
    const s = segs[i]!;
    const h = holes.get(key(s)) ?? [];
    const last = h[h.length - 1];
    if (last && last.offset + last.length === offsetOf(s)) last.length += s.len;
    else h.push({ offset: offsetOf(s), length: s.len });
    holes.set(key(s), h);
  }
  return { segs: segs.filter((_, i) => !dropped.has(i)), holes };
}

/** The original streams with the holes cut out of the bytes and reported as gaps. */
function withHoles(original: ReturnType<typeof view>, holes: Map<string, { offset: number; length: number }[]>): ReturnType<typeof view> {
  const out: ReturnType<typeof view> = {};
  for (const [k, d] of Object.entries(original)) {
    const h = holes.get(k) ?? [];
    const bytes = Buffer.from(d.hex, 'hex');
    const kept: Buffer[] = [];
    let at = 0;
    for (const { offset, length } of h) {
      kept.push(bytes.subarray(at, offset));
      at = offset + length;
    }
    kept.push(bytes.subarray(at));
    out[k] = { hex: Buffer.concat(kept).toString('hex'), gaps: h, ends: d.ends };
  }
  return out;
}

describe.each(CAPTURES)('%s mutated', (capture) => {
  let segs: Seg[];
  let original: ReturnType<typeof view>;
  let lengths: Map<string, number>;
  /** Counters summed over the seeds of each mutation, to show it exercised what it should. */
  const totals = new Map<string, TcpReassemblerStats[]>();
  const sum = (name: string, field: keyof TcpReassemblerStats): number => (totals.get(name) ?? []).reduce((n, s) => n + (s[field] as number), 0);

  const check = (name: string, mutated: Seg[], expected: ReturnType<typeof view>, options: TcpReassemblerOptions = {}): void => {
    const r = reassemble(mutated, options);
    expect(r.violations).toEqual([]);
    expect(view(r)).toEqual(expected);
    totals.set(name, [...(totals.get(name) ?? []), r.stats]);
  };

  beforeAll(async () => {
    segs = await loadSegments(capture);
    const r = reassemble(segs);
    expect(r.violations).toEqual([]);
    original = view(r);
    lengths = new Map([...r.streams].map(([k, d]) => [k, d.data.reduce((n, b) => n + b.length, 0)]));
  });

  test('the unmutated capture has no gaps and ends every direction once', () => {
    expect(Object.keys(original).length).toBeGreaterThan(0);
    for (const d of Object.values(original)) {
      expect(d.gaps).toEqual([]);
      expect(d.ends).toBe(1);
    }
  });

  test.each(SEEDS)('reordered within same-direction runs (ACK gaps on), seed %i', (seed) => {
    check('reorder', reorder(segs, prng(seed), 4, true), original);
  });

  test.each(SEEDS)('reordered across directions (ACK gaps off), seed %i', (seed) => {
    check('reorder-any', reorder(segs, prng(seed), 6, false), original, { ackGaps: false });
  });

  test.each(SEEDS)('duplicated, seed %i', (seed) => {
    check('duplicate', duplicate(segs, prng(seed), 0.3), original);
  });

  test.each(SEEDS)('split into overlapping pieces with the same bytes, seed %i', (seed) => {
    check('split', split(segs, prng(seed)), original);
  });

  test('sequence numbers rewritten to wrap around 2^32 mid-stream', () => {
    const wrapped = wrap(segs, lengths);
    // The rewrite must actually put a wrap inside some stream.
    expect(wrapped.some((s, i) => s.len > 0 && s.seq < segs[i]!.seq)).toBe(true);
    check('wrap', wrapped, original);
  });

  test.each(SEEDS)('dropped segments leave gaps of their length exactly where they were, seed %i', (seed) => {
    const rng = prng(seed);
    const { segs: kept, holes } = drop(segs, rng, 1 + randInt(rng, 3));
    expect(holes.size).toBeGreaterThan(0);
    check('drop', kept, withHoles(original, holes));
  });

  test.each(SEEDS)('everything at once: drop, wrap, split, duplicate, reorder, seed %i', (seed) => {
    const rng = prng(seed);
    const { segs: kept, holes } = drop(segs, rng, randInt(rng, 3));
    const mutated = reorder(duplicate(split(wrap(kept, lengths), rng), rng, 0.2), rng, 4, true);
    check('all', mutated, withHoles(original, holes));
  });

  test('the mutations exercised the paths they target', () => {
    expect(sum('duplicate', 'retransmittedBytes')).toBeGreaterThan(0);
    expect(sum('split', 'overlapBytes')).toBeGreaterThan(0);
    expect(sum('split', 'overlapMismatches')).toBe(0);
    expect(sum('split', 'outOfOrderSegments')).toBeGreaterThan(0);
    expect(sum('reorder-any', 'outOfOrderSegments')).toBeGreaterThan(0);
    expect(sum('drop', 'gapBytes')).toBeGreaterThan(0);
    if (capture !== 'ndpi/pgsql.pcap') expect(sum('reorder', 'outOfOrderSegments')).toBeGreaterThan(0);
  });
});
