import { u32be } from './bytes';
import { TcpFlag, type L4Packet } from './decode';
import type { RawPacket } from './reader';

/**
 * TCP stream reassembly: turns the segments of each connection into two ordered byte streams,
 * one per direction, the input L7 dissectors consume.
 *
 * ## The consumer interface
 *
 * Feed every TCP segment to `TcpReassembler.segment` (or `segmentFromPacket`) with its stream id
 * (the flow index from `FlowTable.add`), its direction (0 or 1, the flow's canonical side, see
 * `packetSide`), sequence and acknowledgement numbers, flags, payload and capture timestamp. The
 * reassembler calls its `TcpStreamConsumer`, synchronously and in stream order per direction:
 *
 * - `onData(chunk)`: the next bytes of one direction, `chunk.buf[chunk.start, chunk.start +
 *   chunk.length)`, with the capture timestamps of the packets that carried its first and last
 *   bytes. `chunk.offset` is the position of the first byte in the direction's stream (byte 0
 *   follows the SYN, or is the first byte seen when the connection was joined mid-stream).
 * - `onGap(gap)`: `gap.length` bytes at `gap.offset` are missing from the capture and will never
 *   be delivered; the stream continues after them. Data is never glued across a hole silently.
 * - `onEnd(end)`: the direction is over (`fin`, `rst`, `idle`, `evicted` or `flush`); nothing
 *   more comes for it. Every direction of every stream that was opened ends exactly once, both
 *   directions of a stream end together except on FIN, and `end.closed` is set on the second
 *   one: the consumer can drop its per-stream state then. A stream that ended by idle timeout,
 *   eviction or flush may start again under the same id if more segments arrive (a mid-stream
 *   join, `chunk.midStream`); one that ended by FIN or RST ignores late segments.
 *
 * Offsets count every byte position of the direction, delivered or missing, so for each
 * direction `offset` of the next event equals `offset + length` of the previous one, and
 * `end.offset` is the direction's total length.
 *
 * The three event objects are reused and `chunk.buf` is the caller's packet buffer whenever the
 * segment arrived in order: **everything handed to the consumer is valid only during the call;
 * copy what you keep.** The consumer must not call back into the reassembler.
 *
 * ## Policies
 *
 * - Sequence numbers wrap: every comparison uses 32-bit serial arithmetic ((a - b) | 0) against
 *   the next expected sequence number, and positions inside the reassembler are stream offsets
 *   (a double, exact to 2^53 bytes) so nothing after the entry point needs to care about wrap.
 * - A SYN consumes one sequence number; data on a SYN (TCP Fast Open) is stream data. A
 *   direction starts at its SYN, or, with no SYN seen (mid-stream join), at the first segment
 *   carrying data or a FIN. Pure ACKs start nothing (a keep-alive probe sits one byte early).
 * - First data wins: bytes at positions already delivered (or declared missing) are dropped and
 *   counted as retransmitted; bytes overlapping buffered out-of-order data are compared with it
 *   and dropped, counting the overlap and, when the bytes differ, a mismatch. Delivered bytes
 *   are not kept, so overlaps with them are counted but cannot be compared.
 * - Out-of-order segments are copied into a per-direction buffer until the hole before them
 *   fills. A hole is declared a gap (and the data after it delivered) when: the peer
 *   acknowledges data at or beyond the buffered segment or FIN after the hole (the receiver had
 *   the bytes, the capture did not: reason `acked`, as tshark's follow does; `ackGaps: false`
 *   turns this off); the stream's buffered bytes exceed `maxStreamBuffer` (`buffer-limit`); the
 *   global memory is over `maxMemory` and this stream is the only one left to evict (`memory`);
 *   the stream ends with a hole (`end`). Bytes the snap length cut off are a gap (`truncated`).
 * - A segment starting more than 1 GiB (the largest TCP window) beyond the next expected byte
 *   is ignored and counted: one bogus sequence number must not throw a stream away.
 * - FIN ends its direction once every byte before it was delivered or declared missing; data
 *   beyond a FIN is discarded. RST ends both directions at once, after delivering what was
 *   buffered (with gaps).
 * - Idle timeout in capture time: a stream without segments for `idleTimeoutMs` ends with
 *   `idle`. Memory: buffered bytes (plus a fixed overhead per buffered segment and per stream)
 *   are capped globally by `maxMemory`; over it, the streams idle longest are evicted first.
 *
 * ## Cost
 *
 * A segment arriving in order with nothing buffered is delivered as a view of the caller's
 * packet buffer: no copy, and no allocation (event objects are reused, streams are found by
 * indexing an array with the flow index). Only out-of-order data is copied.
 */

export type TcpDirection = 0 | 1;

/** Why bytes are missing; see the policies above. */
export const TCP_GAP_REASONS = ['acked', 'buffer-limit', 'memory', 'end', 'truncated'] as const;
export type TcpGapReason = (typeof TCP_GAP_REASONS)[number];

/** Why a direction ended. `flush` is the end of input (`TcpReassembler.flush`). */
export const TCP_END_REASONS = ['fin', 'rst', 'idle', 'evicted', 'flush'] as const;
export type TcpEndReason = (typeof TCP_END_REASONS)[number];

/** In-order bytes of one direction. Reused: valid only during `onData`. */
export interface TcpChunk {
  stream: number;
  dir: TcpDirection;
  /** Stream offset of the first byte. */
  offset: number;
  /** The bytes are `buf[start, start + length)`; `buf` is often the caller's packet buffer. */
  buf: Uint8Array;
  start: number;
  length: number;
  /**
   * Capture time of the packets that carried the first and the last byte. A chunk never spans
   * packets today (so both are equal), but consumers must not rely on that.
   */
  firstSec: number;
  firstNsec: number;
  lastSec: number;
  lastNsec: number;
  /** The direction was joined mid-stream (no SYN seen): offset 0 is not the first byte sent. */
  midStream: boolean;
}

/** Bytes missing from the capture. Reused: valid only during `onGap`. */
export interface TcpGap {
  stream: number;
  dir: TcpDirection;
  offset: number;
  length: number;
  reason: TcpGapReason;
  /** Capture time of the packet (or the clock, for time-driven events) that decided the gap. */
  sec: number;
  nsec: number;
}

/** The end of one direction. Reused: valid only during `onEnd`. */
export interface TcpEnd {
  stream: number;
  dir: TcpDirection;
  /** Total length of the direction (delivered plus missing bytes). */
  offset: number;
  reason: TcpEndReason;
  sec: number;
  nsec: number;
  /** Both directions have now ended: the stream's state is gone. */
  closed: boolean;
}

/** What the reassembler calls. Everything passed in is reused: copy what you keep. */
export interface TcpStreamConsumer {
  onData(chunk: TcpChunk): void;
  onGap(gap: TcpGap): void;
  onEnd(end: TcpEnd): void;
}

export interface TcpReassemblerOptions {
  /** A stream with no segment for this long (capture time) ends with `idle`. Default 300 s. */
  idleTimeoutMs?: number;
  /**
   * Out-of-order bytes one stream may buffer (each buffered segment also counts 64 bytes of
   * bookkeeping) before its first hole becomes a gap. Default 1 MiB.
   */
  maxStreamBuffer?: number;
  /** Buffered bytes plus bookkeeping over all streams; over it, evict. Default 64 MiB. */
  maxMemory?: number;
  /** Declare a hole missing once the peer acknowledges data beyond it. Default true. */
  ackGaps?: boolean;
}

/** Counters since the reassembler was made, plus current memory use. */
export interface TcpReassemblerStats {
  segments: number;
  /** Segments ignored: after their stream ended by FIN/RST, after their direction ended, or out of window. */
  ignoredSegments: number;
  outOfWindowSegments: number;
  deliveredBytes: number;
  deliveredChunks: number;
  /** Segments that arrived ahead of a hole and were buffered, and their new bytes. */
  outOfOrderSegments: number;
  outOfOrderBytes: number;
  /** Bytes at positions already delivered or declared missing (dropped: first data wins). */
  retransmittedSegments: number;
  retransmittedBytes: number;
  /** Segments overlapping buffered data, the bytes overlapped, and segments whose bytes differed. */
  overlapSegments: number;
  overlapBytes: number;
  overlapMismatches: number;
  gaps: number;
  gapBytes: number;
  gapsByReason: Record<TcpGapReason, number>;
  /** Buffered bytes dropped because they lay beyond a FIN. */
  discardedBytes: number;
  streamsOpened: number;
  /** Streams ended, by the reason of the end that closed them. */
  streamsClosed: Record<TcpEndReason, number>;
  evictions: number;
  liveStreams: number;
  bufferedBytes: number;
  peakBufferedBytes: number;
  memoryBytes: number;
}

/** Bookkeeping charged per stream and per buffered segment in the memory accounting (estimates). */
const STREAM_OVERHEAD = 512;
const PIECE_OVERHEAD = 64;
/** The largest TCP window (RFC 7323): a segment further ahead than this is not this stream's. */
const MAX_WINDOW = 1 << 30;

const UNSET = 0;
const OPEN = 1;
const ENDED = 2;

/** Buffered out-of-order bytes at [off, off + len); `data` is null when the snap length cut them. */
class Piece {
  constructor(
    public off: number,
    public len: number,
    public data: Uint8Array | null,
    public sec: number,
    public nsec: number,
  ) {}
}

class Direction {
  state = UNSET;
  /** Sequence number of the byte at `offset`. */
  nextSeq = 0;
  /** Stream offset of the next byte to deliver. */
  offset = 0;
  /** Stream offset of the FIN, -1 until one is seen. */
  finOff = -1;
  midStream = false;
  /** Out-of-order data, sorted by offset, never overlapping, all beyond `offset`. */
  pieces: Piece[] = [];
  /** Memory charged for `pieces`. */
  buffered = 0;
}

class Stream {
  readonly d0 = new Direction();
  readonly d1 = new Direction();
  prev: Stream | null = null;
  next: Stream | null = null;
  lastMs = 0;
  constructor(readonly id: number) {}
}

/** Segments of a stream that ended by FIN or RST are ignored; this marks such ids. */
const CLOSED = null;

function newGapCounts(): Record<TcpGapReason, number> {
  return { acked: 0, 'buffer-limit': 0, memory: 0, end: 0, truncated: 0 };
}

/**
 * Per-direction TCP reassembly for many streams. One instance per capture pipeline;
 * `segment` is the hot path. See the file comment for the interface and the policies.
 */
export class TcpReassembler {
  private readonly idleMs: number;
  private readonly maxStreamBuffer: number;
  private readonly maxMemory: number;
  private readonly ackGaps: boolean;
  /** Indexed by stream id: live stream, CLOSED after FIN/RST, undefined when unknown. */
  private readonly streams: (Stream | null | undefined)[] = [];
  /** Least recently active first: idle expiry and eviction take from the head. */
  private head: Stream | null = null;
  private tail: Stream | null = null;
  /** Capture clock: the latest packet time seen. */
  private nowSec = 0;
  private nowNsec = 0;
  private nowMs = -Infinity;
  private readonly chunk: TcpChunk = { stream: 0, dir: 0, offset: 0, buf: new Uint8Array(0), start: 0, length: 0, firstSec: 0, firstNsec: 0, lastSec: 0, lastNsec: 0, midStream: false };
  private readonly gap: TcpGap = { stream: 0, dir: 0, offset: 0, length: 0, reason: 'end', sec: 0, nsec: 0 };
  private readonly endEv: TcpEnd = { stream: 0, dir: 0, offset: 0, reason: 'flush', sec: 0, nsec: 0, closed: false };
  private readonly empty = new Uint8Array(0);

  private live = 0;
  private memory = 0;
  private bufferedBytes = 0;
  private peakBuffered = 0;
  private segments = 0;
  private ignoredSegments = 0;
  private outOfWindowSegments = 0;
  private deliveredBytes = 0;
  private deliveredChunks = 0;
  private outOfOrderSegments = 0;
  private outOfOrderBytes = 0;
  private retransmittedSegments = 0;
  private retransmittedBytes = 0;
  private overlapSegments = 0;
  private overlapBytes = 0;
  private overlapMismatches = 0;
  private gaps = 0;
  private gapBytes = 0;
  private readonly gapsByReason = newGapCounts();
  private discardedBytes = 0;
  private streamsOpened = 0;
  private readonly streamsClosed: Record<TcpEndReason, number> = { fin: 0, rst: 0, idle: 0, evicted: 0, flush: 0 };
  private evictions = 0;

  constructor(
    private readonly consumer: TcpStreamConsumer,
    options: TcpReassemblerOptions = {},
  ) {
    this.idleMs = options.idleTimeoutMs ?? 300_000;
    this.maxStreamBuffer = options.maxStreamBuffer ?? 1 << 20;
    this.maxMemory = options.maxMemory ?? 64 << 20;
    this.ackGaps = options.ackGaps ?? true;
  }

  /**
   * As `segment`, from a packet decoded by `decodePacket`: the payload is read in place, and a
   * payload the snap length cut short delivers what was captured and a `truncated` gap.
   */
  segmentFromPacket(stream: number, dir: TcpDirection, p: RawPacket, d: L4Packet): void {
    const avail = p.offset + p.capLen - d.payloadOff;
    const cap = avail < 0 ? 0 : avail < d.payloadLen ? avail : d.payloadLen;
    this.segment(stream, dir, d.seq, d.ack, d.tcpFlags, p.buf, d.payloadOff, cap, d.payloadLen, p.tsSec, p.tsNsec);
  }

  /**
   * Accounts one TCP segment of stream `stream` (a small non-negative integer such as a flow
   * index: streams are found by indexing an array with it) sent in direction `dir`.
   * The payload occupies `len` sequence numbers; the first `capLen` of them were captured, at
   * `buf[start, start + capLen)`. `seq`/`ack` are the header's numbers (unsigned 32-bit).
   */
  segment(
    stream: number,
    dir: TcpDirection,
    seq: number,
    ack: number,
    flags: number,
    buf: Uint8Array,
    start: number,
    capLen: number,
    len: number,
    sec: number,
    nsec: number,
  ): void {
    this.segments++;
    this.tick(sec, nsec);
    let s = this.streams[stream];
    if (s === CLOSED) {
      this.ignoredSegments++;
      return;
    }
    if (s === undefined) {
      // Only data or a SYN opens a stream: pure ACKs, FINs and RSTs of unknown streams carry
      // nothing to reassemble.
      if (len === 0 && !(flags & TcpFlag.SYN)) return;
      s = this.open(stream);
    } else {
      this.touch(s);
    }
    s.lastMs = this.nowMs;
    const d = dir === 0 ? s.d0 : s.d1;
    const o = dir === 0 ? s.d1 : s.d0;
    // The peer's ACK first: it may prove holes in the other direction missing.
    if (flags & TcpFlag.ACK && this.ackGaps && o.state === OPEN && (o.pieces.length > 0 || o.finOff >= 0)) {
      this.acked(s, o, dir === 0 ? 1 : 0, ack, sec, nsec);
    }
    const syn = flags & TcpFlag.SYN;
    if (d.state === UNSET) {
      if (syn) {
        d.state = OPEN;
        d.nextSeq = (seq + 1) >>> 0;
      } else if (len > 0 || flags & TcpFlag.FIN) {
        d.state = OPEN;
        d.nextSeq = seq;
        d.midStream = true;
      }
    }
    if (d.state === OPEN) {
      const dataSeq = syn ? (seq + 1) >>> 0 : seq;
      if (len > 0) this.data(s, d, dir, dataSeq, buf, start, capLen < len ? capLen : len, len, sec, nsec);
      if (flags & TcpFlag.FIN && d.state === OPEN) this.fin(s, d, dir, dataSeq, len, sec, nsec);
    } else if (d.state === ENDED && len > 0) {
      this.ignoredSegments++;
    }
    if (flags & TcpFlag.RST) {
      this.close(s, 'rst', 'end', sec, nsec);
      return;
    }
    if (this.memory > this.maxMemory) this.reclaim(s, sec, nsec);
  }

  /** Advances the capture clock and ends the streams idle for longer than the timeout. */
  expireIdle(sec: number, nsec: number): void {
    this.tick(sec, nsec);
  }

  /** Ends every stream (reason `flush`), delivering what was buffered after gaps: end of input. */
  flush(): void {
    while (this.head) this.close(this.head, 'flush', 'end', this.nowSec, this.nowNsec);
  }

  /**
   * Ends one stream now (reason `flush`) and forgets its id, so the id may be used for a new
   * stream (for a flow table that reuses indexes).
   */
  release(stream: number): void {
    const s = this.streams[stream];
    if (s) this.close(s, 'flush', 'end', this.nowSec, this.nowNsec);
    this.streams[stream] = undefined;
  }

  stats(): TcpReassemblerStats {
    return {
      segments: this.segments,
      ignoredSegments: this.ignoredSegments,
      outOfWindowSegments: this.outOfWindowSegments,
      deliveredBytes: this.deliveredBytes,
      deliveredChunks: this.deliveredChunks,
      outOfOrderSegments: this.outOfOrderSegments,
      outOfOrderBytes: this.outOfOrderBytes,
      retransmittedSegments: this.retransmittedSegments,
      retransmittedBytes: this.retransmittedBytes,
      overlapSegments: this.overlapSegments,
      overlapBytes: this.overlapBytes,
      overlapMismatches: this.overlapMismatches,
      gaps: this.gaps,
      gapBytes: this.gapBytes,
      gapsByReason: { ...this.gapsByReason },
      discardedBytes: this.discardedBytes,
      streamsOpened: this.streamsOpened,
      streamsClosed: { ...this.streamsClosed },
      evictions: this.evictions,
      liveStreams: this.live,
      bufferedBytes: this.bufferedBytes,
      peakBufferedBytes: this.peakBuffered,
      memoryBytes: this.memory,
    };
  }

  // --- per-segment work ---------------------------------------------------------------------

  private data(s: Stream, d: Direction, dir: TcpDirection, seq: number, buf: Uint8Array, start: number, cap: number, len: number, sec: number, nsec: number): void {
    // Serial arithmetic: the signed 32-bit distance from the next expected sequence number.
    const off0 = d.offset + ((seq - d.nextSeq) | 0);
    const end = off0 + len;
    const capEnd = off0 + cap;
    if (end <= d.offset) {
      this.retransmittedSegments++;
      this.retransmittedBytes += len;
      return;
    }
    if (off0 - d.offset > MAX_WINDOW) {
      this.outOfWindowSegments++;
      this.ignoredSegments++;
      return;
    }
    let off = off0;
    if (off < d.offset) {
      this.retransmittedSegments++;
      this.retransmittedBytes += d.offset - off;
      off = d.offset;
    }
    if (off === d.offset) {
      // In order: deliver straight from the packet up to the first buffered piece, if any.
      const first = d.pieces[0];
      const lim = first === undefined || first.off > end ? end : first.off;
      const ce = capEnd < lim ? capEnd : lim;
      if (ce > off) this.emitData(s, d, dir, buf, start + (off - off0), ce - off, sec, nsec, sec, nsec);
      if (lim > d.offset) this.emitGap(s, d, dir, lim - d.offset, 'truncated', sec, nsec);
      if (lim < end) this.insert(d, lim, end, buf, start, off0, capEnd, sec, nsec);
      if (d.pieces.length > 0) this.drain(s, d, dir);
    } else {
      this.outOfOrderSegments++;
      this.insert(d, off, end, buf, start, off0, capEnd, sec, nsec);
      while (d.buffered > this.maxStreamBuffer && d.pieces.length > 0) this.gapToFirstPiece(s, d, dir, 'buffer-limit', sec, nsec);
    }
    if (d.finOff >= 0 && d.offset >= d.finOff) this.endDirection(s, d, dir, 'fin', sec, nsec);
  }

  private fin(s: Stream, d: Direction, dir: TcpDirection, seq: number, len: number, sec: number, nsec: number): void {
    const finOff = d.offset + ((seq - d.nextSeq) | 0) + len;
    // A FIN behind what was delivered is stale, one beyond the window bogus; the earliest stands.
    if (finOff < d.offset || finOff - d.offset > MAX_WINDOW || (d.finOff >= 0 && d.finOff <= finOff)) return;
    d.finOff = finOff;
    if (d.offset >= finOff) this.endDirection(s, d, dir, 'fin', sec, nsec);
  }

  /** The peer acknowledged up to `ack`: holes before buffered data or a FIN below it are missing. */
  private acked(s: Stream, o: Direction, dir: TcpDirection, ack: number, sec: number, nsec: number): void {
    const ackOff = o.offset + ((ack - o.nextSeq) | 0);
    if (ackOff <= o.offset) return;
    for (let p = o.pieces[0]; p !== undefined && p.off <= ackOff; p = o.pieces[0]) this.gapToFirstPiece(s, o, dir, 'acked', sec, nsec);
    // The ACK of a FIN is one past it.
    if (o.state === OPEN && o.finOff >= 0 && ackOff > o.finOff) {
      if (o.offset < o.finOff) this.emitGap(s, o, dir, o.finOff - o.offset, 'acked', sec, nsec);
      this.endDirection(s, o, dir, 'fin', sec, nsec);
    }
  }

  /** Stores [from, to) of a segment that starts at `off0`, keeping what is buffered (first data wins). */
  private insert(d: Direction, from: number, to: number, buf: Uint8Array, start: number, off0: number, capEnd: number, sec: number, nsec: number): void {
    const pieces = d.pieces;
    // First piece ending after `from`.
    let lo = 0;
    let hi = pieces.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const p = pieces[mid]!;
      if (p.off + p.len <= from) lo = mid + 1;
      else hi = mid;
    }
    let i = lo;
    let x = from;
    let overlapped = false;
    let mismatch = false;
    while (x < to) {
      const p = pieces[i];
      if (p === undefined || p.off >= to) {
        i = this.addPieces(d, i, x, to, buf, start, off0, capEnd, sec, nsec);
        break;
      }
      if (p.off > x) {
        i = this.addPieces(d, i, x, p.off, buf, start, off0, capEnd, sec, nsec);
        x = p.off;
        continue;
      }
      const oe = p.off + p.len < to ? p.off + p.len : to;
      overlapped = true;
      this.overlapBytes += oe - x;
      if (p.data !== null && !mismatch) {
        const ce = oe < capEnd ? oe : capEnd;
        const data = p.data;
        for (let k = x; k < ce; k++) {
          if (data[k - p.off] !== buf[start + (k - off0)]) {
            mismatch = true;
            break;
          }
        }
      }
      x = oe;
      i++;
    }
    if (overlapped) this.overlapSegments++;
    if (mismatch) this.overlapMismatches++;
  }

  /** Inserts pieces for [a, b) at index i: captured bytes copied, the rest as a null piece. */
  private addPieces(d: Direction, i: number, a: number, b: number, buf: Uint8Array, start: number, off0: number, capEnd: number, sec: number, nsec: number): number {
    const ce = capEnd < b ? capEnd : b;
    if (ce > a) {
      const copy = new Uint8Array(ce - a);
      copy.set(buf.subarray(start + (a - off0), start + (ce - off0)));
      d.pieces.splice(i++, 0, new Piece(a, ce - a, copy, sec, nsec));
      this.charge(d, ce - a + PIECE_OVERHEAD, ce - a);
      this.outOfOrderBytes += ce - a;
    }
    const ma = ce > a ? ce : a;
    if (b > ma) {
      d.pieces.splice(i++, 0, new Piece(ma, b - ma, null, sec, nsec));
      this.charge(d, PIECE_OVERHEAD, 0);
    }
    return i;
  }

  /** Delivers the buffered pieces that have become contiguous. */
  private drain(s: Stream, d: Direction, dir: TcpDirection): void {
    const pieces = d.pieces;
    let n = 0;
    while (n < pieces.length && pieces[n]!.off <= d.offset) {
      const p = pieces[n++]!;
      this.charge(d, -(p.len * (p.data ? 1 : 0) + PIECE_OVERHEAD), p.data ? -p.len : 0);
      const end = p.off + p.len;
      if (end <= d.offset) continue;
      const skip = d.offset - p.off;
      if (p.data) this.emitData(s, d, dir, p.data, skip, end - d.offset, p.sec, p.nsec, p.sec, p.nsec);
      else this.emitGap(s, d, dir, end - d.offset, 'truncated', p.sec, p.nsec);
    }
    if (n > 0) pieces.splice(0, n);
  }

  /** Declares the hole before the first buffered piece missing and delivers what follows it. */
  private gapToFirstPiece(s: Stream, d: Direction, dir: TcpDirection, reason: TcpGapReason, sec: number, nsec: number): void {
    const p = d.pieces[0]!;
    if (p.off > d.offset) this.emitGap(s, d, dir, p.off - d.offset, reason, sec, nsec);
    this.drain(s, d, dir);
    if (d.finOff >= 0 && d.offset >= d.finOff) this.endDirection(s, d, dir, 'fin', sec, nsec);
  }

  // --- events -------------------------------------------------------------------------------

  private emitData(s: Stream, d: Direction, dir: TcpDirection, buf: Uint8Array, start: number, length: number, fs: number, fn: number, ls: number, ln: number): void {
    // Nothing at or beyond a FIN is stream data.
    if (d.finOff >= 0 && d.offset + length > d.finOff) {
      this.discardedBytes += d.offset + length - d.finOff;
      length = d.finOff - d.offset;
      if (length <= 0) return;
    }
    const c = this.chunk;
    c.stream = s.id;
    c.dir = dir;
    c.offset = d.offset;
    c.buf = buf;
    c.start = start;
    c.length = length;
    c.firstSec = fs;
    c.firstNsec = fn;
    c.lastSec = ls;
    c.lastNsec = ln;
    c.midStream = d.midStream;
    d.offset += length;
    d.nextSeq = (d.nextSeq + length) >>> 0;
    this.deliveredBytes += length;
    this.deliveredChunks++;
    this.consumer.onData(c);
  }

  private emitGap(s: Stream, d: Direction, dir: TcpDirection, length: number, reason: TcpGapReason, sec: number, nsec: number): void {
    if (d.finOff >= 0 && d.offset + length > d.finOff) length = d.finOff - d.offset;
    if (length <= 0) return;
    const g = this.gap;
    g.stream = s.id;
    g.dir = dir;
    g.offset = d.offset;
    g.length = length;
    g.reason = reason;
    g.sec = sec;
    g.nsec = nsec;
    d.offset += length;
    d.nextSeq = (d.nextSeq + length) >>> 0;
    this.gaps++;
    this.gapBytes += length;
    this.gapsByReason[reason]++;
    this.consumer.onGap(g);
  }

  /** Ends one direction; closes the stream when the other one has ended too. */
  private endDirection(s: Stream, d: Direction, dir: TcpDirection, reason: TcpEndReason, sec: number, nsec: number): void {
    if (d.state === ENDED) return;
    for (const p of d.pieces) {
      if (p.data) this.discardedBytes += p.len;
      this.charge(d, -((p.data ? p.len : 0) + PIECE_OVERHEAD), p.data ? -p.len : 0);
    }
    d.pieces.length = 0;
    d.state = ENDED;
    const other = dir === 0 ? s.d1 : s.d0;
    const closed = other.state === ENDED;
    if (closed) this.forget(s, reason === 'fin' || reason === 'rst', reason);
    const e = this.endEv;
    e.stream = s.id;
    e.dir = dir;
    e.offset = d.offset;
    e.reason = reason;
    e.sec = sec;
    e.nsec = nsec;
    e.closed = closed;
    this.consumer.onEnd(e);
  }

  /** Ends both directions: buffered data is delivered after gaps for the holes before it. */
  private close(s: Stream, reason: TcpEndReason, gapReason: TcpGapReason, sec: number, nsec: number): void {
    for (let dir: TcpDirection = 0; ; dir = 1) {
      const d = dir === 0 ? s.d0 : s.d1;
      if (d.state === OPEN) {
        while (d.pieces.length > 0 && d.state === OPEN) this.gapToFirstPiece(s, d, dir, gapReason, sec, nsec);
        if (d.state === OPEN && d.finOff > d.offset) this.emitGap(s, d, dir, d.finOff - d.offset, gapReason, sec, nsec);
      }
      this.endDirection(s, d, dir, d.state === OPEN && d.finOff >= 0 && d.offset >= d.finOff ? 'fin' : reason, sec, nsec);
      if (dir === 1) break;
    }
  }

  // --- stream table, clock, memory ----------------------------------------------------------

  private open(id: number): Stream {
    const s = new Stream(id);
    this.streams[id] = s;
    this.append(s);
    this.live++;
    this.streamsOpened++;
    this.memory += STREAM_OVERHEAD;
    return s;
  }

  private forget(s: Stream, sticky: boolean, reason: TcpEndReason): void {
    this.unlink(s);
    this.streams[s.id] = sticky ? CLOSED : undefined;
    this.live--;
    this.memory -= STREAM_OVERHEAD;
    this.streamsClosed[reason]++;
  }

  private charge(d: Direction, mem: number, bytes: number): void {
    d.buffered += mem;
    this.memory += mem;
    this.bufferedBytes += bytes;
    if (this.bufferedBytes > this.peakBuffered) this.peakBuffered = this.bufferedBytes;
  }

  private tick(sec: number, nsec: number): void {
    const ms = sec * 1000 + nsec / 1e6;
    if (ms > this.nowMs) {
      this.nowMs = ms;
      this.nowSec = sec;
      this.nowNsec = nsec;
    }
    const limit = this.nowMs - this.idleMs;
    while (this.head !== null && this.head.lastMs < limit) this.close(this.head, 'idle', 'end', this.nowSec, this.nowNsec);
  }

  /** Over the memory limit: evict the streams idle longest, then squeeze the current one. */
  private reclaim(current: Stream, sec: number, nsec: number): void {
    while (this.memory > this.maxMemory && this.head !== null && this.head !== current) {
      this.evictions++;
      this.close(this.head, 'evicted', 'end', sec, nsec);
    }
    for (let dir: TcpDirection = 0; this.memory > this.maxMemory; dir = 1) {
      const d = dir === 0 ? current.d0 : current.d1;
      while (this.memory > this.maxMemory && d.pieces.length > 0 && d.state === OPEN) this.gapToFirstPiece(current, d, dir, 'memory', sec, nsec);
      if (dir === 1) break;
    }
  }

  private append(s: Stream): void {
    s.prev = this.tail;
    s.next = null;
    if (this.tail) this.tail.next = s;
    else this.head = s;
    this.tail = s;
  }

  private unlink(s: Stream): void {
    if (s.prev) s.prev.next = s.next;
    else this.head = s.next;
    if (s.next) s.next.prev = s.prev;
    else this.tail = s.prev;
    s.prev = null;
    s.next = null;
  }

  private touch(s: Stream): void {
    if (this.tail === s) return;
    this.unlink(s);
    this.append(s);
  }
}

/**
 * The canonical side of a decoded packet's sender, as `FlowTable` assigns it: 0 when the source
 * (address, port) is the smaller endpoint. Reads the header words in place; allocates nothing.
 */
export function packetSide(p: RawPacket, d: L4Packet): TcpDirection {
  const b = p.buf;
  const words = d.ipVersion === 6 ? 4 : 1;
  for (let w = 0; w < words; w++) {
    const s = u32be(b, d.srcOff + 4 * w);
    const t = u32be(b, d.dstOff + 4 * w);
    if (s !== t) return s < t ? 0 : 1;
  }
  return d.srcPort <= d.dstPort ? 0 : 1;
}
