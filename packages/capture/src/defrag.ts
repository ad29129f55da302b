/**
 * Bounded IPv4 and IPv6 fragment reassembly.
 *
 * Fragments are rare, so this path may allocate per fragment (a copy of its data, a string
 * key); the packets that are not fragments never come here. What it holds is bounded three
 * ways, all in capture time so that replaying a file behaves as the live capture did:
 *
 * - at most `maxDatagrams` datagrams in flight: a new one evicts the oldest;
 * - at most `maxBytes` of fragment data buffered: the oldest datagrams are evicted to make room;
 * - a datagram not completed `timeoutSec` after its first fragment is dropped (Linux's
 *   `ipfrag_time`, 30 s). The clock is the newest timestamp seen; expiry is checked on every
 *   fragment and on `expire()`.
 *
 * A datagram is at most 65535 bytes: for IPv4 the header plus data (the total length field),
 * for IPv6 the payload (unfragmentable extension headers plus data). Jumbograms cannot be
 * fragmented (RFC 2675) and are refused.
 *
 * Overlaps: the first data wins. A fragment that brings only bytes already held, starting and
 * ending on the bounds of held fragments, is a `duplicate` (a retransmitted or mirrored copy);
 * any other fragment that intersects held bytes is an `overlap`, and only its new bytes are
 * kept. tshark, the oracle of the tests, also completes such datagrams rather than dropping
 * them (unlike Linux, which drops the datagram, and RFC 5722 for IPv6): the flow counters then
 * agree with it. Whether overlapping bytes agreed is not checked; the counters tell that
 * overlaps happened.
 *
 * The last fragment (more-fragments clear) fixes the datagram's length; a fragment that
 * contradicts it (ends past it, or a second last fragment with another end) is refused as
 * `inconsistent`, again keeping what came first.
 */

/** Why fragments, parts of fragments or whole datagrams were discarded. The index is the code. */
export const DEFRAG_DROP_REASONS = [
  /** A fragment whose bytes were all held already, on held fragment bounds (unit: fragments). */
  'duplicate',
  /** A fragment that overlapped held bytes; its overlapping part was discarded (fragments). */
  'overlap',
  /** A fragment that contradicts the length fixed by the last fragment (fragments). */
  'inconsistent',
  /** A fragment that would make the datagram exceed 65535 bytes (fragments). */
  'oversize',
  /** A fragment with no data, or a non-last one whose length is not a multiple of 8 (fragments). */
  'malformed',
  /** An IPv6 fragment with a zero payload length (jumbogram), not supported (fragments). */
  'jumbogram',
  /** A fragment cut short by the capture's snap length; its data is unknown (fragments). */
  'truncated',
  /** A datagram not completed within the timeout (datagrams). */
  'timeout',
  /** A datagram evicted to stay within `maxDatagrams` (datagrams). */
  'evicted-max-datagrams',
  /** A datagram evicted to stay within `maxBytes` (datagrams). */
  'evicted-max-bytes',
] as const;

export type DefragDropReason = (typeof DEFRAG_DROP_REASONS)[number];

const DUPLICATE = 0;
const OVERLAP = 1;
const INCONSISTENT = 2;
const OVERSIZE = 3;
const MALFORMED = 4;
const JUMBOGRAM = 5;
const TRUNCATED = 6;
const TIMEOUT = 7;
const EVICTED_DATAGRAMS = 8;
const EVICTED_BYTES = 9;

/** Largest datagram: the 16-bit IPv4 total length, or the 16-bit IPv6 payload length. */
const MAX_DATAGRAM = 65535;

export interface DefragOptions {
  /** Datagrams reassembled at once (default 1024); a new one evicts the oldest. */
  maxDatagrams?: number;
  /** Fragment data buffered across all datagrams, in bytes (default 4 MiB). */
  maxBytes?: number;
  /** Capture-time seconds after its first fragment before an incomplete datagram is dropped (default 30). */
  timeoutSec?: number;
}

/**
 * One fragment, as offsets into the packet buffer. `L4Packet` has these fields: when
 * `decodePacket` returned `IP_FRAGMENT_REASON` it set `fragIpOff` and `fragCapEnd`, and
 * `describeFragment` sets the others.
 */
export interface IpFragment {
  ipVersion: 4 | 6;
  /** Offsets of the source and destination addresses (4 or 16 bytes). */
  srcOff: number;
  dstOff: number;
  /** Offset of the IP header. */
  fragIpOff: number;
  /** End of the packet's captured bytes (a snap length may have cut the fragment short). */
  fragCapEnd: number;
  /** Offset of the fragment's data: after the IPv4 header, or after the IPv6 fragment header. */
  fragDataOff: number;
  /** Data length from the IP header (not the captured length); -1 for an IPv6 jumbogram. */
  fragDataLen: number;
  /** Byte offset of the data in the datagram. */
  fragOffset: number;
  /** More fragments follow (MF). */
  fragMore: boolean;
  /** Identification: 16 bits for IPv4, 32 for IPv6. */
  fragId: number;
  /** IPv4 protocol, or the next header of the IPv6 fragment header. */
  fragProto: number;
}

export interface DefragCount {
  reason: DefragDropReason;
  count: number;
}

export interface DefragStats {
  /** Fragments offered. */
  fragments: number;
  /** Datagrams completed. */
  reassembled: number;
  /** Datagrams being reassembled now, and the fragment bytes they hold. */
  inFlight: number;
  bufferedBytes: number;
  /** Discards by reason, only the non-zero ones, in `DEFRAG_DROP_REASONS` order. */
  drops: DefragCount[];
}

/** A run of held bytes [off, end) of a datagram. */
interface Piece {
  off: number;
  end: number;
  data: Uint8Array;
}

interface Datagram {
  key: string;
  version: 4 | 6;
  src: Uint8Array;
  dst: Uint8Array;
  id: number;
  /** IPv4 protocol; for IPv6 the next header of the first fragment (-1 until it arrives). */
  proto: number;
  /** Held runs, sorted by offset and disjoint. */
  pieces: Piece[];
  /** Bytes held. */
  held: number;
  /** Largest end of any held run. */
  maxEnd: number;
  /** Datagram length once the last fragment arrived, else -1. */
  total: number;
  /** Capture time (seconds) after which the datagram is dropped. */
  deadline: number;
}

/**
 * Reassembles IPv4 and IPv6 datagrams from their fragments. Datagrams are keyed by IP version,
 * source, destination, identification and, for IPv4, protocol (RFC 791; RFC 8200 for IPv6).
 * `add` returns the whole datagram when a fragment completes one.
 */
export class IpDefragmenter {
  readonly maxDatagrams: number;
  readonly maxBytes: number;
  readonly timeoutSec: number;
  /** In flight, in insertion order: the oldest (and first to time out) come first. */
  private readonly datagrams = new Map<string, Datagram>();
  private readonly drops = new Float64Array(DEFRAG_DROP_REASONS.length);
  private buffered = 0;
  private fragments = 0;
  private reassembled = 0;
  /** Newest capture time seen, in seconds. */
  private now = -Infinity;

  constructor(options: DefragOptions = {}) {
    this.maxDatagrams = Math.max(1, Math.floor(options.maxDatagrams ?? 1024));
    this.maxBytes = Math.max(0, options.maxBytes ?? 4 * 1024 * 1024);
    this.timeoutSec = Math.max(0, options.timeoutSec ?? 30);
  }

  /**
   * Adds one fragment whose bytes are in `buf`, at capture time `sec`.`nsec`. Returns the
   * reassembled datagram when this fragment completes it: an IP packet with a minimal header
   * (IPv4 without options, IPv6 without the extension headers before the fragmentable part)
   * followed by the datagram's data. The data is copied; `buf` may be reused afterwards.
   */
  add(buf: Uint8Array, f: IpFragment, sec: number, nsec: number): Buffer | undefined {
    this.fragments++;
    this.expire(sec, nsec);
    const len = f.fragDataLen;
    if (len < 0) return this.drop(JUMBOGRAM);
    if (len === 0 || (f.fragMore && (len & 7) !== 0)) return this.drop(MALFORMED);
    const fragEnd = f.fragOffset + len;
    // Bytes that count against the 65535 limit besides the data: the IPv4 header, or the
    // IPv6 extension headers before the fragment header (the payload length excludes the
    // fixed header, and the fragment header is removed by reassembly).
    const overhead = f.ipVersion === 4 ? f.fragDataOff - f.fragIpOff : f.fragDataOff - f.fragIpOff - 48;
    if (overhead + fragEnd > MAX_DATAGRAM) return this.drop(OVERSIZE);
    if (f.fragDataOff + len > f.fragCapEnd) return this.drop(TRUNCATED);

    const alen = f.ipVersion === 4 ? 4 : 16;
    const key = `${f.ipVersion}:${latin1(buf, f.srcOff, alen)}:${latin1(buf, f.dstOff, alen)}:${f.fragId}:${f.ipVersion === 4 ? f.fragProto : 0}`;
    let d = this.datagrams.get(key);
    if (d !== undefined) {
      // The last fragment fixes the length; what contradicts what came first is refused.
      if (f.fragMore ? d.total >= 0 && fragEnd > d.total : (d.total >= 0 && d.total !== fragEnd) || d.maxEnd > fragEnd) {
        return this.drop(INCONSISTENT);
      }
    } else {
      if (this.datagrams.size >= this.maxDatagrams) this.evictOldest(EVICTED_DATAGRAMS);
      d = {
        key,
        version: f.ipVersion,
        src: copy(buf, f.srcOff, alen),
        dst: copy(buf, f.dstOff, alen),
        id: f.fragId,
        proto: f.ipVersion === 4 ? f.fragProto : -1,
        pieces: [],
        held: 0,
        maxEnd: 0,
        total: -1,
        deadline: this.now + this.timeoutSec,
      };
      this.datagrams.set(key, d);
    }

    // The gaps of [fragOffset, fragEnd) not held yet; first data wins.
    const start = f.fragOffset;
    const pieces = d.pieces;
    const added: Piece[] = [];
    let pos = start;
    let touched = false; // intersects held bytes
    let startsOnBound = false;
    let endsOnBound = false;
    for (const p of pieces) {
      if (p.end <= start) continue;
      if (p.off >= fragEnd) break;
      touched = true;
      if (p.off === start) startsOnBound = true;
      if (p.end === fragEnd) endsOnBound = true;
      if (p.off > pos) added.push(piece(buf, f.fragDataOff, start, pos, p.off));
      if (p.end > pos) pos = p.end;
    }
    if (pos < fragEnd) added.push(piece(buf, f.fragDataOff, start, pos, fragEnd));
    if (touched) this.drops[added.length === 0 && startsOnBound && endsOnBound ? DUPLICATE : OVERLAP]! += 1;

    let newBytes = 0;
    for (const p of added) newBytes += p.end - p.off;
    if (d.held + newBytes > this.maxBytes) {
      // This datagram alone would not fit.
      this.remove(d);
      return this.drop(EVICTED_BYTES);
    }
    while (this.buffered + newBytes > this.maxBytes) this.evictOldest(EVICTED_BYTES, d);

    if (added.length > 0) {
      for (const p of added) pieces.push(p);
      pieces.sort((a, b) => a.off - b.off);
      d.held += newBytes;
      this.buffered += newBytes;
    }
    if (fragEnd > d.maxEnd) d.maxEnd = fragEnd;
    if (!f.fragMore) d.total = fragEnd;
    if (start === 0 && d.version === 6) d.proto = f.fragProto;
    // Held runs are disjoint and end by `total`, so holding `total` bytes means complete.
    if (d.total < 0 || d.held !== d.total) return undefined;
    this.remove(d);
    this.reassembled++;
    return build(d);
  }

  /** Advances the capture clock to `sec`.`nsec` and drops the datagrams that timed out. */
  expire(sec: number, nsec: number): void {
    const t = sec + nsec * 1e-9;
    if (t > this.now) this.now = t;
    // Deadlines grow with insertion order (the clock never goes back), so stop at the first
    // datagram still in time.
    for (const d of this.datagrams.values()) {
      if (d.deadline >= this.now) break;
      this.remove(d);
      this.drops[TIMEOUT]! += 1;
    }
  }

  stats(): DefragStats {
    const drops: DefragCount[] = [];
    DEFRAG_DROP_REASONS.forEach((reason, i) => {
      const count = this.drops[i]!;
      if (count > 0) drops.push({ reason, count });
    });
    return { fragments: this.fragments, reassembled: this.reassembled, inFlight: this.datagrams.size, bufferedBytes: this.buffered, drops };
  }

  private drop(reason: number): undefined {
    this.drops[reason]! += 1;
    return undefined;
  }

  private remove(d: Datagram): void {
    this.datagrams.delete(d.key);
    this.buffered -= d.held;
  }

  /** Evicts the oldest datagram other than `keep`. */
  private evictOldest(reason: number, keep?: Datagram): void {
    for (const d of this.datagrams.values()) {
      if (d === keep) continue;
      this.remove(d);
      this.drops[reason]! += 1;
      return;
    }
  }
}

function latin1(b: Uint8Array, off: number, len: number): string {
  return Buffer.from(b.buffer, b.byteOffset + off, len).toString('latin1');
}

/** A copy, never a view: the packet buffer is reused by the reader. */
function copy(b: Uint8Array, off: number, len: number): Uint8Array {
  const c = new Uint8Array(len);
  c.set(b.subarray(off, off + len));
  return c;
}

/** A copy of the datagram bytes [from, to) of a fragment whose data starts at `dataOff` in `b` and at `start` in the datagram. */
function piece(b: Uint8Array, dataOff: number, start: number, from: number, to: number): Piece {
  return { off: from, end: to, data: copy(b, dataOff + from - start, to - from) };
}

/** The reassembled datagram as an IP packet with a minimal header. */
function build(d: Datagram): Buffer {
  const hlen = d.version === 4 ? 20 : 40;
  const out = Buffer.alloc(hlen + d.total);
  if (d.version === 4) {
    out[0] = 0x45;
    out.writeUInt16BE(hlen + d.total, 2);
    out.writeUInt16BE(d.id, 4);
    out[8] = 64; // TTL: unknown, and irrelevant here
    out[9] = d.proto;
    out.set(d.src, 12);
    out.set(d.dst, 16);
  } else {
    out[0] = 0x60;
    out.writeUInt16BE(d.total, 4);
    out[6] = d.proto;
    out[7] = 64;
    out.set(d.src, 8);
    out.set(d.dst, 24);
  }
  for (const p of d.pieces) out.set(p.data, hlen + p.off);
  return out;
}
