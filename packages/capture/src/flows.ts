import { u16be, u32be } from './bytes';
import { IPPROTO_TCP, TcpFlag, type L4Packet } from './decode';
import { formatIp } from './ip';
import type { RawPacket } from './reader';

/**
 * The L4 flow table. Flows are keyed by protocol and the two (address, port) endpoints in a
 * canonical order, so both directions of a conversation land on one flow. Keys live in a
 * Uint32Array and the index is an open-addressing hash table of Int32 slots: a lookup reads
 * header words straight from the packet buffer and allocates nothing. Per-flow counters are
 * columns of typed arrays ("side" 0 is the canonical endpoint A, side 1 is B); objects are
 * made only when a flow is read.
 */

/** Wireshark's tcp.completeness bits. */
export const Completeness = { SYN: 1, SYN_ACK: 2, ACK: 4, DATA: 8, FIN: 16, RST: 32 } as const;

// Internal state bits, above the completeness bits.
const FIN_A = 1 << 6;
const FIN_B = 1 << 7;
const BASE_A = 1 << 8;
const BASE_B = 1 << 9;
const CLIENT_HS_DONE = 1 << 10;
const SYN_ACK_TIME = 1 << 12;
const SERVER_HS_DONE = 1 << 11;

const KEY_WORDS = 10; // A address (4), B address (4), ports, protocol + IP version

// Per-segment TCP analysis flags (Wireshark's TCP_A_*). The first HEALTH_COUNTERS bits are the
// ones counted per direction; bit k is counter k (see healthOf).
const TA_RETRANSMISSION = 1 << 0;
const TA_FAST_RETRANSMISSION = 1 << 1;
const TA_SPURIOUS_RETRANSMISSION = 1 << 2;
const TA_OUT_OF_ORDER = 1 << 3;
const TA_DUPLICATE_ACK = 1 << 4;
const TA_ZERO_WINDOW = 1 << 5;
const TA_KEEP_ALIVE = 1 << 6;
const TA_WINDOW_FULL = 1 << 7;
const TA_LOST_SEGMENT = 1 << 8;
const TA_ACK_LOST_SEGMENT = 1 << 9;
const TA_ZERO_WINDOW_PROBE = 1 << 10;
const HEALTH_COUNTERS = 10;

// Sequence-analysis state of one direction: a 32-byte record at u32 word o = (2i + side) *
// SEQ_STRIDE of one buffer, viewed as Uint32 (`seq`) and Float64 (`seqTime`, index o / 2 + k):
// a flow's whole analysis state is 64 contiguous bytes, read and written by every packet (the
// table is bound by memory access, so spreading it over columns would cost a cache miss per
// column). As in Wireshark's tcp_analyze_seq_info, 0 in NEXT, MAX_TO_ACK and LAST_ACK means
// "not seen yet".
const SEQ_STRIDE = 8;
const SEQ_NEXT = 0; // highest seq + len (+1 for SYN/FIN) sent
const SEQ_MAX_TO_ACK = 1; // end of the contiguous data sent, for ACKed-unseen segments
const SEQ_LAST_ACK = 2;
const SEQ_META = 3; // M_* fields below
const TIME_NEXT = 2; // seqTime: when NEXT last advanced (words 4-5)
const TIME_LAST = 3; // seqTime: the direction's last segment (words 6-7)
// SEQ_META: the last raw window (bits 0-15), duplicate ACKs in a row (bits 16-22, a 7-bit
// signed count saturating at 63 (only "0", "-1" and ">= 2" matter); -1 after an ACKed-unseen
// segment), state bits, the window scale code (bits 27-31).
const M_WINDOW = 0xffff;
const M_DUP_SHIFT = 16;
const M_DUP = 0x7f << M_DUP_SHIFT;
const M_HAVE_WINDOW = 1 << 23; // a segment was seen: Wireshark's window is 0xffffffff before
const M_LAST_KEEP_ALIVE = 1 << 24; // the direction's last segment was a keep-alive
const M_FIRST_ACK = 1 << 25; // a SYN was sent and no pure ACK since: its window is not scaled yet
const M_RTT_DONE = 1 << 26; // side A only: firstRtt is measured
const M_SCALE_SHIFT = 27;
const M_SCALE = 0x1f << M_SCALE_SHIFT;
// Window scale codes: unknown, not used, or the shift (at most 14) + WS_SHIFT.
const WS_UNKNOWN = 0;
const WS_NONE = 1;
const WS_SHIFT = 2;
/** Duplicate ACKs of a META word. */
const dupAcksOf = (meta: number): number => (meta << 9) >> 25;

/** Wireshark's out-of-order window when the handshake RTT is not known: 3 ms. */
const DEFAULT_REORDER_NS = 3e6;
/** A retransmission within 20 ms of the second duplicate ACK is a fast retransmission. */
const FAST_RETRANSMISSION_NS = 20e6;

export type FlowState = 'syn_sent' | 'syn_received' | 'established' | 'closing' | 'closed' | 'reset' | 'mid_stream' | 'active';

export interface Timestamp {
  sec: number;
  nsec: number;
}

export interface DirectionCounters {
  packets: number;
  /** Frame bytes on the wire (Wireshark's frame.len). */
  bytes: number;
  /** Transport payload bytes (tcp.len, or the UDP length minus 8). */
  payloadBytes: number;
}

/**
 * TCP health of one direction: how many of its segments Wireshark's expert analysis
 * (tcp.analysis.*) would flag, with the same rules and in a single pass. A segment can carry
 * several flags; `retransmissions` includes the fast and the spurious ones, as
 * tcp.analysis.retransmission does.
 */
export interface TcpHealth {
  /** Data, SYN or FIN below the next expected sequence number (tcp.analysis.retransmission). */
  retransmissions: number;
  /** A retransmission of the sequence number the peer duplicate-ACKed at least twice, within 20 ms. */
  fastRetransmissions: number;
  /** A retransmission of data the peer had already acknowledged. */
  spuriousRetransmissions: number;
  /** Like a retransmission, but within one handshake RTT (3 ms if unknown) of the newest segment. */
  outOfOrder: number;
  /** A pure ACK repeating the previous ACK number and window. */
  duplicateAcks: number;
  /** Advertised window 0 (without SYN, FIN or RST). */
  zeroWindows: number;
  /** 0 or 1 byte one below the next expected sequence number; never counted as a retransmission. */
  keepAlives: number;
  /** Data that fills the window the peer advertised (needs the window scale from the handshake). */
  windowFull: number;
  /** Sequence number beyond the next expected one: a segment was not captured. */
  lostSegments: number;
  /** ACK of data that was not captured in the other direction. */
  ackedUnseenSegments: number;
}

/** A flow as read from the table. */
export interface FlowRecord {
  /** The flow's id in its table: increasing in order of appearance, never reused. */
  index: number;
  protocol: 'tcp' | 'udp';
  ipVersion: 4 | 6;
  /** The TCP client sent the SYN (or received the SYN-ACK); for UDP, the first sender. */
  client: { ip: string; port: number };
  server: { ip: string; port: number };
  clientToServer: DirectionCounters;
  serverToClient: DirectionCounters;
  firstSeen: Timestamp;
  lastSeen: Timestamp;
  state: FlowState;
  /** Wireshark's tcp.completeness bitmask (0 for UDP). */
  completeness: number;
  /** Client view of the handshake: most recent SYN -> first SYN-ACK, in nanoseconds. */
  tcpHandshakeClientNs?: number;
  /** Server view: most recent SYN -> first ACK (Wireshark's tcp.analysis.initial_rtt), ns. */
  tcpHandshakeServerNs?: number;
  synCount: number;
  finCount: number;
  rstCount: number;
  /** TCP only: expert-analysis counters per direction. */
  tcpHealth?: { clientToServer: TcpHealth; serverToClient: TcpHealth };
}

export interface FlowTableOptions {
  /** Initial number of flows the columns hold before growing (default 1024). */
  initialCapacity?: number;
  /**
   * A UDP conversation silent for longer than this many seconds starts a new flow when it
   * resumes (0 = never, as tshark numbers UDP conversations; the worker uses 120 s).
   */
  udpIdleTimeoutSec?: number;
}

/** Typed-array columns, each with its number of elements per flow. */
type Column = Uint8Array | Uint16Array | Uint32Array | Float64Array;

export class FlowTable {
  private cap: number;
  private n = 0;
  /** Flow ids: rows move when old flows are evicted, ids do not. Increasing with the row. */
  private ids: Float64Array;
  private nextId = 0;
  private evictedFlows = 0;
  private readonly udpIdleSec: number;
  private keys: Uint32Array;
  private hashes: Uint32Array;
  private slots: Int32Array;
  private mask: number;

  private clientIsA: Uint8Array;
  /** Wireshark's tcp.completeness, by its own rules (see `add`). */
  private complete: Uint8Array;
  private flags: Uint16Array;
  private pkts: Float64Array; // [2i] side A, [2i+1] side B
  private bytes: Float64Array;
  private payload: Float64Array;
  private firstSec: Float64Array;
  private firstNsec: Float64Array;
  private lastSec: Float64Array;
  private lastNsec: Float64Array;
  private synSec: Float64Array; // most recent pure SYN, -1 when none
  private synNsec: Float64Array;
  private synAckSec: Float64Array; // first SYN-ACK
  private synAckNsec: Float64Array;
  private hsClient: Float64Array;
  private hsServer: Float64Array;
  private baseSeq: Uint32Array; // [2i] side A, [2i+1] side B
  private counts: Uint32Array; // [3i] SYN, [3i+1] FIN, [3i+2] RST
  // TCP sequence analysis (see SEQ_*). Times are nanoseconds since the table's first packet:
  // exact in a double for 104 days, then to a few nanoseconds.
  private seq: Uint32Array;
  private seqTime: Float64Array; // the same buffer as `seq`
  private firstRtt: Float64Array; // tcp.analysis.initial_rtt as tshark keeps it: 0 = not yet
  private epochSec = -1;
  // Health counters only for flows that had a flagged segment: most never do. healthSlot[i]
  // is 0 or 1 + the flow's slot; a slot is HEALTH_COUNTERS counters per side.
  private healthSlot: Uint32Array;
  private health = new Uint32Array(64 * 2 * HEALTH_COUNTERS);
  private healthSlots = 0;

  constructor(options: FlowTableOptions = {}) {
    this.cap = Math.max(16, options.initialCapacity ?? 1024);
    this.udpIdleSec = options.udpIdleTimeoutSec ?? 0;
    this.ids = new Float64Array(this.cap);
    this.keys = new Uint32Array(this.cap * KEY_WORDS);
    this.hashes = new Uint32Array(this.cap);
    this.clientIsA = new Uint8Array(this.cap);
    this.complete = new Uint8Array(this.cap);
    this.flags = new Uint16Array(this.cap);
    this.pkts = new Float64Array(this.cap * 2);
    this.bytes = new Float64Array(this.cap * 2);
    this.payload = new Float64Array(this.cap * 2);
    this.firstSec = new Float64Array(this.cap);
    this.firstNsec = new Float64Array(this.cap);
    this.lastSec = new Float64Array(this.cap);
    this.lastNsec = new Float64Array(this.cap);
    this.synSec = new Float64Array(this.cap);
    this.synNsec = new Float64Array(this.cap);
    this.synAckSec = new Float64Array(this.cap);
    this.synAckNsec = new Float64Array(this.cap);
    this.hsClient = new Float64Array(this.cap);
    this.hsServer = new Float64Array(this.cap);
    this.baseSeq = new Uint32Array(this.cap * 2);
    this.counts = new Uint32Array(this.cap * 3);
    this.seq = new Uint32Array(this.cap * 2 * SEQ_STRIDE);
    this.seqTime = new Float64Array(this.seq.buffer);
    this.firstRtt = new Float64Array(this.cap);
    this.healthSlot = new Uint32Array(this.cap);
    let slots = 16;
    while (slots < this.cap * 2) slots <<= 1;
    this.slots = new Int32Array(slots);
    this.mask = slots - 1;
  }

  /** Number of flows recorded (a reused port pair after a new SYN counts as a new flow). */
  get size(): number {
    return this.n;
  }

  /** Flows dropped by `evict` since the table was made. */
  get evicted(): number {
    return this.evictedFlows;
  }

  /** The row of the flow with id `id`, or -1 when it was evicted or never existed. */
  rowOf(id: number): number {
    let lo = 0;
    let hi = this.n - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = this.ids[mid]!;
      if (v === id) return mid;
      if (v < id) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** Last-seen time of row `i`, in seconds (for eviction policies). */
  lastSeenSec(i: number): number {
    return this.lastSec[i]!;
  }

  /**
   * Drops flows last seen before `olderThanSec`, then, while more than `maxFlows` remain, the
   * least recently seen ones. The others keep their ids and order. Returns how many went.
   * Costs a pass over the table: callers run it now and then, not per packet.
   */
  evict(olderThanSec: number, maxFlows: number): number {
    const n = this.n;
    const keep = new Uint8Array(n);
    let kept = 0;
    for (let i = 0; i < n; i++) {
      if (this.lastSec[i]! >= olderThanSec) {
        keep[i] = 1;
        kept++;
      }
    }
    if (kept > maxFlows) {
      // The (kept - maxFlows)-th oldest last-seen time is the cut; ties go oldest row first.
      const times = new Float64Array(kept);
      for (let i = 0, k = 0; i < n; i++) if (keep[i]) times[k++] = this.lastSec[i]! + this.lastNsec[i]! / 1e9;
      times.sort();
      const cut = times[kept - maxFlows - 1]!;
      let drop = kept - maxFlows;
      for (let i = 0; i < n && drop > 0; i++) {
        if (keep[i] && this.lastSec[i]! + this.lastNsec[i]! / 1e9 < cut) {
          keep[i] = 0;
          drop--;
        }
      }
      for (let i = 0; i < n && drop > 0; i++) {
        if (keep[i] && this.lastSec[i]! + this.lastNsec[i]! / 1e9 === cut) {
          keep[i] = 0;
          drop--;
        }
      }
      kept = maxFlows;
    }
    if (kept === n) return 0;
    this.compact(keep, kept);
    this.evictedFlows += n - kept;
    return n - kept;
  }

  /** Moves the kept rows down in order, re-packs the health counters and rebuilds the index. */
  private compact(keep: Uint8Array, kept: number): void {
    const n = this.n;
    this.mapColumns((a, per) => {
      let w = 0;
      for (let i = 0; i < n; i++) {
        if (!keep[i]) continue;
        if (w !== i) a.copyWithin(w * per, i * per, (i + 1) * per);
        w++;
      }
      a.fill(0, kept * per, n * per); // new rows must start zeroed
      return a;
    });
    const health = new Uint32Array(Math.max(this.health.length, 64 * 2 * HEALTH_COUNTERS));
    let slots = 0;
    const stride = 2 * HEALTH_COUNTERS;
    for (let r = 0; r < kept; r++) {
      const old = this.healthSlot[r]!;
      if (old === 0) continue;
      health.set(this.health.subarray((old - 1) * stride, old * stride), slots * stride);
      this.healthSlot[r] = ++slots;
    }
    this.health = health;
    this.healthSlots = slots;
    this.n = kept;
    this.rebuildIndex(this.slots.length);
  }

  /**
   * Accounts one decoded TCP or UDP packet and returns the index of its flow.
   * `d` must come from `decodePacket` on the same `p`.
   */
  add(p: RawPacket, d: L4Packet): number {
    const b = p.buf;
    let s1 = 0, s2 = 0, s3 = 0, t1 = 0, t2 = 0, t3 = 0;
    let so = d.srcOff;
    let to = d.dstOff;
    const s0 = u32be(b, so);
    const t0 = u32be(b, to);
    if (d.ipVersion === 6) {
      so += 4;
      to += 4;
      s1 = u32be(b, so);
      t1 = u32be(b, to);
      so += 4;
      to += 4;
      s2 = u32be(b, so);
      t2 = u32be(b, to);
      so += 4;
      to += 4;
      s3 = u32be(b, so);
      t3 = u32be(b, to);
    }
    const sp = d.srcPort;
    const tp = d.dstPort;
    // Canonical order: A is the smaller (address, port); the packet is "from A" or not.
    let fromA: boolean;
    if (s0 !== t0) fromA = s0 < t0;
    else if (s1 !== t1) fromA = s1 < t1;
    else if (s2 !== t2) fromA = s2 < t2;
    else if (s3 !== t3) fromA = s3 < t3;
    else fromA = sp <= tp;
    const a0 = fromA ? s0 : t0, a1 = fromA ? s1 : t1, a2 = fromA ? s2 : t2, a3 = fromA ? s3 : t3;
    const b0 = fromA ? t0 : s0, b1 = fromA ? t1 : s1, b2 = fromA ? t2 : s2, b3 = fromA ? t3 : s3;
    const ports = fromA ? ((sp << 16) | tp) >>> 0 : ((tp << 16) | sp) >>> 0;
    const pv = (d.protocol << 8) | d.ipVersion;

    let h = 0x811c9dc5;
    h = Math.imul(h ^ a0, 0x01000193);
    h = Math.imul(h ^ b0, 0x01000193);
    h = Math.imul(h ^ ports, 0x01000193);
    h = Math.imul(h ^ pv, 0x01000193);
    if (d.ipVersion === 6) {
      h = Math.imul(h ^ a1, 0x01000193);
      h = Math.imul(h ^ a2, 0x01000193);
      h = Math.imul(h ^ a3, 0x01000193);
      h = Math.imul(h ^ b1, 0x01000193);
      h = Math.imul(h ^ b2, 0x01000193);
      h = Math.imul(h ^ b3, 0x01000193);
    }
    h ^= h >>> 15;
    h = Math.imul(h, 0x2c1b3c6d);
    h ^= h >>> 12;
    h >>>= 0;

    const keys = this.keys;
    let slot = h & this.mask;
    let idx = -1;
    for (;;) {
      const v = this.slots[slot]!;
      if (v === 0) break;
      const i = v - 1;
      const k = i * KEY_WORDS;
      if (
        this.hashes[i] === h &&
        keys[k] === a0 &&
        keys[k + 4] === b0 &&
        keys[k + 8] === ports &&
        keys[k + 9] === pv &&
        keys[k + 1] === a1 &&
        keys[k + 2] === a2 &&
        keys[k + 3] === a3 &&
        keys[k + 5] === b1 &&
        keys[k + 6] === b2 &&
        keys[k + 7] === b3
      ) {
        idx = i;
        break;
      }
      slot = (slot + 1) & this.mask;
    }

    const side = fromA ? 0 : 1;
    const tcp = d.protocol === IPPROTO_TCP;
    const fl = d.tcpFlags;
    const pureSyn = tcp && (fl & (TcpFlag.SYN | TcpFlag.ACK)) === TcpFlag.SYN;

    // A SYN with a new initial sequence number on a known port pair is a new connection
    // (as Wireshark starts a new tcp.stream); a retransmitted SYN keeps the same ISN.
    const reused =
      idx >= 0 &&
      ((pureSyn && (this.flags[idx]! & (side === 0 ? BASE_A : BASE_B)) !== 0 && this.baseSeq[2 * idx + side] !== d.seq) ||
        (!tcp && this.udpIdleSec > 0 && p.tsSec - this.lastSec[idx]! > this.udpIdleSec));
    if (idx < 0 || reused) {
      idx = this.create(h, a0, a1, a2, a3, b0, b1, b2, b3, ports, pv);
      if (this.n * 2 > this.slots.length) this.rehash();
      else this.slots[slot] = idx + 1;
    }

    const sec = p.tsSec;
    const nsec = p.tsNsec;
    const j = 2 * idx + side;
    const first = this.pkts[2 * idx]! + this.pkts[2 * idx + 1]! === 0;
    if (first) {
      this.firstSec[idx] = sec;
      this.firstNsec[idx] = nsec;
      // The first packet's sender is the client, unless it is a SYN-ACK.
      this.clientIsA[idx] = (tcp && (fl & (TcpFlag.SYN | TcpFlag.ACK)) === (TcpFlag.SYN | TcpFlag.ACK)) !== fromA ? 1 : 0;
    }
    if (tcp) {
      // tcp.completeness as Wireshark 4.0 shows it once the capture is dissected (tshark -2, the
      // GUI): a pure SYN counts only as the first packet of a conversation; a SYN-ACK counts
      // anywhere; after the first packet, an ACK without data (ACK) or with data (DATA), a FIN
      // with ACK, and any RST.
      let c = this.complete[idx]!;
      const sa = fl & (TcpFlag.SYN | TcpFlag.ACK);
      if (sa === (TcpFlag.SYN | TcpFlag.ACK)) c |= Completeness.SYN_ACK;
      if (first) {
        if (sa === TcpFlag.SYN) c |= d.payloadLen > 0 ? Completeness.SYN | Completeness.DATA : Completeness.SYN;
      } else {
        if (sa === TcpFlag.ACK) c |= d.payloadLen > 0 ? Completeness.DATA : Completeness.ACK;
        if ((fl & (TcpFlag.FIN | TcpFlag.ACK)) === (TcpFlag.FIN | TcpFlag.ACK)) c |= Completeness.FIN;
        if (fl & TcpFlag.RST) c |= Completeness.RST;
      }
      this.complete[idx] = c;
    }
    this.pkts[j]! += 1;
    this.bytes[j]! += p.origLen;
    this.payload[j]! += d.payloadLen;
    if (sec > this.lastSec[idx]! || (sec === this.lastSec[idx]! && nsec > this.lastNsec[idx]!)) {
      this.lastSec[idx] = sec;
      this.lastNsec[idx] = nsec;
    }
    if (tcp) this.trackTcp(idx, side, fl, p, d, sec, nsec);
    return idx;
  }

  private trackTcp(idx: number, side: number, fl: number, p: RawPacket, d: L4Packet, sec: number, nsec: number): void {
    let f = this.flags[idx]!;
    const baseBit = side === 0 ? BASE_A : BASE_B;
    const j = 2 * idx + side;
    const o = j * SEQ_STRIDE;
    const st = this.seq;
    // A retransmitted SYN (same ISN, same flow) restarts the direction's expected sequence
    // number from its contiguous end, as Wireshark does (an RST may have moved it, issue 17616).
    if (f & baseBit && (fl & (TcpFlag.SYN | TcpFlag.ACK)) === TcpFlag.SYN) st[o + SEQ_NEXT] = st[o + SEQ_MAX_TO_ACK]!;
    if (this.epochSec < 0) this.epochSec = sec;
    const now = (sec - this.epochSec) * 1e9 + nsec;
    this.analyzeSequence(idx, j, fl, d, now);
    if ((fl & (TcpFlag.SYN | TcpFlag.ACK)) === TcpFlag.ACK) {
      st[o + SEQ_META]! &= ~M_FIRST_ACK;
      // tshark's initial RTT, which sets the out-of-order window: like hsServer, but zero is
      // tshark's "not measured" marker, so a zero delta is measured again at the next pure ACK
      // and a SYN stamped at the epoch itself counts as no SYN.
      const a = 2 * idx * SEQ_STRIDE + SEQ_META;
      if (f & Completeness.SYN && !(st[a]! & M_RTT_DONE)) {
        const synSec = this.synSec[idx]!;
        const synNsec = this.synNsec[idx]!;
        if (synSec !== 0 || synNsec !== 0) {
          const rtt = now - ((synSec - this.epochSec) * 1e9 + synNsec);
          this.firstRtt[idx] = rtt;
          if (rtt !== 0) st[a]! |= M_RTT_DONE;
        }
      }
    }
    if (fl & TcpFlag.SYN) {
      st[o + SEQ_META]! |= M_FIRST_ACK;
      this.windowScaling(j, fl, p, d);
    }
    if (!(f & baseBit)) {
      f |= baseBit;
      this.baseSeq[2 * idx + side] = d.seq;
    }
    if (fl & TcpFlag.SYN) {
      this.counts[3 * idx]! += 1;
      if (fl & TcpFlag.ACK) {
        if (!(f & SYN_ACK_TIME)) {
          f |= SYN_ACK_TIME;
          this.synAckSec[idx] = sec;
          this.synAckNsec[idx] = nsec;
        }
        f |= Completeness.SYN_ACK;
      } else {
        if (!(f & Completeness.SYN)) this.clientIsA[idx] = side === 0 ? 1 : 0;
        f |= Completeness.SYN;
        this.synSec[idx] = sec;
        this.synNsec[idx] = nsec;
      }
      // Client view, once both ends of it are known. Captures merged from several interfaces
      // can hold the SYN-ACK before the SYN in file order; the timestamps decide, and a
      // SYN-ACK stamped before its SYN gives no measurement.
      if (!(f & CLIENT_HS_DONE) && f & Completeness.SYN && f & SYN_ACK_TIME) {
        const delta = (this.synAckSec[idx]! - this.synSec[idx]!) * 1e9 + (this.synAckNsec[idx]! - this.synNsec[idx]!);
        if (delta >= 0) {
          this.hsClient[idx] = delta;
          f |= CLIENT_HS_DONE;
        }
      }
    } else if (fl & TcpFlag.ACK) {
      // Wireshark's initial RTT: the first ACK without SYN after a SYN, from the latest SYN.
      if (!(f & SERVER_HS_DONE) && f & Completeness.SYN) {
        this.hsServer[idx] = (sec - this.synSec[idx]!) * 1e9 + (nsec - this.synNsec[idx]!);
        f |= SERVER_HS_DONE;
      }
      if (f & Completeness.SYN_ACK) f |= Completeness.ACK;
    }
    if (d.payloadLen > 0) f |= Completeness.DATA;
    if (fl & TcpFlag.FIN) {
      this.counts[3 * idx + 1]! += 1;
      f |= Completeness.FIN | (side === 0 ? FIN_A : FIN_B);
    }
    if (fl & TcpFlag.RST) {
      this.counts[3 * idx + 2]! += 1;
      f |= Completeness.RST;
    }
    this.flags[idx] = f;
  }

  /**
   * Wireshark's tcp_analyze_sequence_number for one segment of direction `j` (2i + side; the
   * peer is j ^ 1), in its order and with its precedence, so the counters equal tshark's
   * tcp.analysis.* flags (checked against tshark 4.0.17's packet-tcp.c and its output).
   * Allocation-free: the state is the flow's 64-byte record. Not mirrored: the unacked-segment
   * list (it only feeds RTT/RTO display and, past 10000 unacked segments, stops a FIN from
   * counting one sequence number) and MPTCP's tolerance of duplicate ACKs.
   */
  private analyzeSequence(idx: number, j: number, fl: number, d: L4Packet, now: number): void {
    const st = this.seq;
    const o = j * SEQ_STRIDE; // this direction
    const q = (j ^ 1) * SEQ_STRIDE; // the peer
    const seq = d.seq;
    const ack = d.ack;
    const len = d.payloadLen;
    const win = d.window;
    const next = st[o + SEQ_NEXT]!;
    const lastAck = st[o + SEQ_LAST_ACK]!;
    const meta = st[o + SEQ_META]!;
    const peerMeta = st[q + SEQ_META]!;
    const synFin = fl & (TcpFlag.SYN | TcpFlag.FIN);
    const synFinRst = fl & (TcpFlag.SYN | TcpFlag.FIN | TcpFlag.RST);
    let dup = dupAcksOf(meta);
    let ta = 0;

    if (len === 1 && seq === next && (peerMeta & (M_HAVE_WINDOW | M_WINDOW)) === M_HAVE_WINDOW) {
      // Zero-window probe: skips the window and duplicate-ACK checks and does not advance.
      ta = TA_ZERO_WINDOW_PROBE;
    } else {
      if (win === 0 && synFinRst === 0) ta |= TA_ZERO_WINDOW;
      if (next !== 0 && seqGt(seq, next) && !(fl & TcpFlag.RST)) ta |= TA_LOST_SEGMENT;
      if (len <= 1 && seq === ((next - 1) >>> 0) && synFinRst === 0) ta |= TA_KEEP_ALIVE;
      const scale = peerMeta >>> M_SCALE_SHIFT;
      if (len > 0 && scale !== WS_UNKNOWN && synFinRst === 0) {
        // The peer's window is unscaled in its SYN (and until its first pure ACK).
        const shift = scale === WS_NONE || peerMeta & M_FIRST_ACK ? 0 : scale - WS_SHIFT;
        const peerWindow = peerMeta & M_HAVE_WINDOW ? peerMeta & M_WINDOW : 0xffffffff;
        if (((seq + len) >>> 0) === ((st[q + SEQ_LAST_ACK]! + ((peerWindow << shift) >>> 0)) >>> 0)) ta |= TA_WINDOW_FULL;
      }
      // A repeated ACK is a duplicate unless it answers a keep-alive; with window 0 it is not
      // one either (zero-window-probe ACKs are such repeats).
      if (
        len === 0 &&
        win !== 0 &&
        seq === next &&
        ack === lastAck &&
        (meta & (M_HAVE_WINDOW | M_WINDOW)) === (M_HAVE_WINDOW | win) &&
        synFinRst === 0 &&
        !(peerMeta & M_LAST_KEEP_ALIVE)
      ) {
        dup = dup === -1 ? 1 : dup < 63 ? dup + 1 : 63;
        ta |= TA_DUPLICATE_ACK;
      }
    }
    if (ack !== lastAck) dup = 0;

    // An ACK beyond what the peer was seen to send: the peer's segment was not captured.
    const peerMax = st[q + SEQ_MAX_TO_ACK]!;
    if (peerMax !== 0 && fl & TcpFlag.ACK && seqGt(ack, peerMax)) {
      // Each hole is reported once: the peer's contiguous end jumps to what it sent, and
      // while the peer sends only pure ACKs (dup ACKs -1 until its ACK number moves) the
      // same missing data is not reported again.
      const peerNext = st[q + SEQ_NEXT]!;
      if (seqLt(peerMax, peerNext)) {
        st[q + SEQ_MAX_TO_ACK] = peerNext;
        ta |= TA_ACK_LOST_SEGMENT;
      } else {
        if (!(peerMeta & M_DUP)) ta |= TA_ACK_LOST_SEGMENT;
        st[q + SEQ_META] = peerMeta | M_DUP;
      }
    }

    if ((len > 0 || synFin) && !(ta & TA_KEEP_ALIVE)) {
      // Sequence numbers wrap: compare with serial arithmetic. A segment of 2+ bytes starting
      // one below `next` follows a zero-window probe and brings new data.
      const notAdvanced = next !== 0 && seqLt(seq, next) && !(len > 1 && seq === ((next - 1) >>> 0));
      const peerAck = st[q + SEQ_LAST_ACK]!;
      if (len > 0 && peerAck !== 0 && seqLe((seq + len) >>> 0, peerAck)) {
        ta |= TA_SPURIOUS_RETRANSMISSION | TA_RETRANSMISSION;
      } else if (notAdvanced) {
        // Time differences compare as tshark's unsigned 64-bit ones: a negative one is huge.
        const t = this.seqTime;
        // tshark keeps the count unsigned, so the -1 left by an ACKed-unseen segment is >= 2.
        const peerDups = dupAcksOf(st[q + SEQ_META]!);
        if ((peerDups >= 2 || peerDups === -1) && peerAck === seq && u64Less(now - t[(q >> 1) + TIME_LAST]!, FAST_RETRANSMISSION_NS)) {
          ta |= TA_FAST_RETRANSMISSION | TA_RETRANSMISSION;
        } else if (
          u64Less(now - t[(o >> 1) + TIME_NEXT]!, this.firstRtt[idx] !== 0 ? this.firstRtt[idx]! : DEFAULT_REORDER_NS) &&
          next !== ((seq + len + (synFin ? 1 : 0)) >>> 0)
        ) {
          ta |= TA_OUT_OF_ORDER;
        } else {
          ta |= TA_RETRANSMISSION;
        }
      }
    }

    if (!(ta & TA_ZERO_WINDOW_PROBE)) {
      const end = (seq + len + (synFin ? 1 : 0)) >>> 0;
      let nextNow = next;
      if (next === 0 || seqGt(end, next)) {
        nextNow = end;
        st[o + SEQ_NEXT] = end;
        this.seqTime[(o >> 1) + TIME_NEXT] = now;
      }
      const max = st[o + SEQ_MAX_TO_ACK]!;
      if (max === 0 || seq === max) st[o + SEQ_MAX_TO_ACK] = nextNow;
    }
    st[o + SEQ_LAST_ACK] = ack;
    this.seqTime[(o >> 1) + TIME_LAST] = now;
    st[o + SEQ_META] =
      (meta & ~(M_WINDOW | M_DUP | M_LAST_KEEP_ALIVE)) | win | ((dup & 0x7f) << M_DUP_SHIFT) | M_HAVE_WINDOW | (ta & TA_KEEP_ALIVE ? M_LAST_KEEP_ALIVE : 0);
    if (ta & ((1 << HEALTH_COUNTERS) - 1)) this.countHealth(idx, j & 1, ta);
  }

  /** Counts a flagged segment (rare: off the common path). */
  private countHealth(idx: number, side: number, ta: number): void {
    let slot = this.healthSlot[idx]!;
    if (slot === 0) {
      slot = ++this.healthSlots;
      this.healthSlot[idx] = slot;
      if (slot * 2 * HEALTH_COUNTERS > this.health.length) {
        const next = new Uint32Array(this.health.length * 2);
        next.set(this.health);
        this.health = next;
      }
    }
    const h = ((slot - 1) * 2 + side) * HEALTH_COUNTERS;
    for (let k = 0; k < HEALTH_COUNTERS; k++) if (ta & (1 << k)) this.health[h + k]! += 1;
  }

  /**
   * Window scaling of direction `j` from its SYN's options, then Wireshark's check that
   * both SYNs offered it (otherwise neither side scales). Runs on SYNs only, off the data path.
   */
  private windowScaling(j: number, fl: number, p: RawPacket, d: L4Packet): void {
    const st = this.seq;
    const o = j * SEQ_STRIDE + SEQ_META;
    const q = (j ^ 1) * SEQ_STRIDE + SEQ_META;
    const shift = windowScaleOption(p, d);
    let scale = st[o]! >>> M_SCALE_SHIFT;
    if (shift >= 0) scale = (shift > 14 ? 14 : shift) + WS_SHIFT;
    if (scale === WS_UNKNOWN) {
      scale = WS_NONE;
      st[q] = (st[q]! & ~M_SCALE) | (WS_NONE << M_SCALE_SHIFT);
    } else if (fl & TcpFlag.ACK && st[q]! >>> M_SCALE_SHIFT === WS_NONE) {
      scale = WS_NONE;
    }
    st[o] = (st[o]! & ~M_SCALE) | (scale << M_SCALE_SHIFT);
  }

  private healthOf(i: number, side: number): TcpHealth {
    const slot = this.healthSlot[i]!;
    const c = this.health;
    const h = slot === 0 ? -1 : ((slot - 1) * 2 + side) * HEALTH_COUNTERS;
    const n = (k: number): number => (h < 0 ? 0 : c[h + k]!);
    return {
      retransmissions: n(0),
      fastRetransmissions: n(1),
      spuriousRetransmissions: n(2),
      outOfOrder: n(3),
      duplicateAcks: n(4),
      zeroWindows: n(5),
      keepAlives: n(6),
      windowFull: n(7),
      lostSegments: n(8),
      ackedUnseenSegments: n(9),
    };
  }

  private create(h: number, a0: number, a1: number, a2: number, a3: number, b0: number, b1: number, b2: number, b3: number, ports: number, pv: number): number {
    if (this.n === this.cap) this.grow();
    const i = this.n++;
    const k = i * KEY_WORDS;
    const keys = this.keys;
    keys[k] = a0;
    keys[k + 1] = a1;
    keys[k + 2] = a2;
    keys[k + 3] = a3;
    keys[k + 4] = b0;
    keys[k + 5] = b1;
    keys[k + 6] = b2;
    keys[k + 7] = b3;
    keys[k + 8] = ports;
    keys[k + 9] = pv;
    this.hashes[i] = h;
    this.ids[i] = this.nextId++;
    this.synSec[i] = -1;
    return i;
  }

  private grow(): void {
    const cap = this.cap * 2;
    this.mapColumns((a, per) => {
      const next = new (a.constructor as new (n: number) => typeof a)(cap * per);
      next.set(a);
      return next;
    });
    this.cap = cap;
  }

  /** Applies `fn` to every per-flow column and stores what it returns. */
  private mapColumns(fn: <T extends Column>(a: T, per: number) => T): void {
    this.ids = fn(this.ids, 1);
    this.keys = fn(this.keys, KEY_WORDS);
    this.hashes = fn(this.hashes, 1);
    this.clientIsA = fn(this.clientIsA, 1);
    this.complete = fn(this.complete, 1);
    this.flags = fn(this.flags, 1);
    this.pkts = fn(this.pkts, 2);
    this.bytes = fn(this.bytes, 2);
    this.payload = fn(this.payload, 2);
    this.firstSec = fn(this.firstSec, 1);
    this.firstNsec = fn(this.firstNsec, 1);
    this.lastSec = fn(this.lastSec, 1);
    this.lastNsec = fn(this.lastNsec, 1);
    this.synSec = fn(this.synSec, 1);
    this.synNsec = fn(this.synNsec, 1);
    this.synAckSec = fn(this.synAckSec, 1);
    this.synAckNsec = fn(this.synAckNsec, 1);
    this.hsClient = fn(this.hsClient, 1);
    this.hsServer = fn(this.hsServer, 1);
    this.baseSeq = fn(this.baseSeq, 2);
    this.counts = fn(this.counts, 3);
    this.seq = fn(this.seq, 2 * SEQ_STRIDE);
    this.seqTime = new Float64Array(this.seq.buffer); // a view of the same rows
    this.firstRtt = fn(this.firstRtt, 1);
    this.healthSlot = fn(this.healthSlot, 1);
  }

  /** Rebuilds the slot index at twice the size. Only the newest flow per key is indexed. */
  private rehash(): void {
    this.rebuildIndex(this.slots.length * 2);
  }

  /** Rebuilds the slot index with `size` slots from the rows' keys. */
  private rebuildIndex(size: number): void {
    const slots = new Int32Array(size);
    const mask = size - 1;
    // Later flows with the same key (port reuse) overwrite earlier ones, so iterate in order
    // and let a key's newest flow win its slot.
    for (let i = 0; i < this.n; i++) {
      let slot = this.hashes[i]! & mask;
      for (;;) {
        const v = slots[slot]!;
        if (v === 0 || this.sameKey(v - 1, i)) {
          slots[slot] = i + 1;
          break;
        }
        slot = (slot + 1) & mask;
      }
    }
    this.slots = slots;
    this.mask = mask;
  }

  private sameKey(i: number, j: number): boolean {
    if (this.hashes[i] !== this.hashes[j]) return false;
    const ki = i * KEY_WORDS;
    const kj = j * KEY_WORDS;
    for (let w = 0; w < KEY_WORDS; w++) if (this.keys[ki + w] !== this.keys[kj + w]) return false;
    return true;
  }

  /**
   * Numbers of flow `i` without materialising it: frame bytes and packets of both directions,
   * and first and last seen in microseconds since the epoch.
   */
  bytesOf(i: number): number {
    return this.bytes[2 * i]! + this.bytes[2 * i + 1]!;
  }

  packetsOf(i: number): number {
    return this.pkts[2 * i]! + this.pkts[2 * i + 1]!;
  }

  firstSeenUs(i: number): number {
    return this.firstSec[i]! * 1e6 + Math.floor(this.firstNsec[i]! / 1000);
  }

  lastSeenUs(i: number): number {
    return this.lastSec[i]! * 1e6 + Math.floor(this.lastNsec[i]! / 1000);
  }

  /**
   * The sort key of every flow for an order, smallest first, in one pass over the columns:
   * minus the frame bytes or packets of both directions, minus the last-seen time, or the
   * first-seen time (both in microseconds, as `lastSeenUs` and `firstSeenUs`). Written to
   * `out[0 .. size)`; `out` must be at least `size` long.
   */
  sortKeys(order: 'bytes' | 'packets' | 'recent' | 'oldest', out: Float64Array): void {
    const n = this.n;
    if (out.length < n) throw new RangeError(`sortKeys needs room for ${n} keys (got ${out.length})`);
    if (order === 'bytes' || order === 'packets') {
      const c = order === 'bytes' ? this.bytes : this.pkts;
      for (let i = 0; i < n; i++) out[i] = -(c[2 * i]! + c[2 * i + 1]!);
      return;
    }
    const recent = order === 'recent';
    const sec = recent ? this.lastSec : this.firstSec;
    const nsec = recent ? this.lastNsec : this.firstNsec;
    const sign = recent ? -1 : 1;
    for (let i = 0; i < n; i++) out[i] = sign * (sec[i]! * 1e6 + Math.floor(nsec[i]! / 1000));
  }

  /** The id (`FlowRecord.index`) of flow `i`. */
  idOf(i: number): number {
    return this.ids[i]!;
  }

  /** Protocol of flow `i` without materialising it. */
  protocolOf(i: number): 'tcp' | 'udp' {
    return this.keys[i * KEY_WORDS + 9]! >>> 8 === IPPROTO_TCP ? 'tcp' : 'udp';
  }

  /** Reads flow `i` as an object. */
  get(i: number): FlowRecord {
    if (i < 0 || i >= this.n) throw new RangeError(`no flow ${i}`);
    const k = i * KEY_WORDS;
    const keys = this.keys;
    const version = (keys[k + 9]! & 0xff) as 4 | 6;
    const tcp = keys[k + 9]! >>> 8 === IPPROTO_TCP;
    const ipA = formatIp(version, keys[k]!, keys[k + 1]!, keys[k + 2]!, keys[k + 3]!);
    const ipB = formatIp(version, keys[k + 4]!, keys[k + 5]!, keys[k + 6]!, keys[k + 7]!);
    const portA = keys[k + 8]! >>> 16;
    const portB = keys[k + 8]! & 0xffff;
    const aIsClient = this.clientIsA[i] === 1;
    const dir = (side: number): DirectionCounters => ({
      packets: this.pkts[2 * i + side]!,
      bytes: this.bytes[2 * i + side]!,
      payloadBytes: this.payload[2 * i + side]!,
    });
    const f = this.flags[i]!;
    const rec: FlowRecord = {
      index: this.ids[i]!,
      protocol: tcp ? 'tcp' : 'udp',
      ipVersion: version,
      client: aIsClient ? { ip: ipA, port: portA } : { ip: ipB, port: portB },
      server: aIsClient ? { ip: ipB, port: portB } : { ip: ipA, port: portA },
      clientToServer: dir(aIsClient ? 0 : 1),
      serverToClient: dir(aIsClient ? 1 : 0),
      firstSeen: { sec: this.firstSec[i]!, nsec: this.firstNsec[i]! },
      lastSeen: { sec: this.lastSec[i]!, nsec: this.lastNsec[i]! },
      state: tcp ? tcpState(f) : 'active',
      completeness: tcp ? this.complete[i]! : 0,
      synCount: this.counts[3 * i]!,
      finCount: this.counts[3 * i + 1]!,
      rstCount: this.counts[3 * i + 2]!,
    };
    if (f & CLIENT_HS_DONE) rec.tcpHandshakeClientNs = this.hsClient[i]!;
    if (f & SERVER_HS_DONE) rec.tcpHandshakeServerNs = this.hsServer[i]!;
    if (tcp) rec.tcpHealth = { clientToServer: this.healthOf(i, aIsClient ? 0 : 1), serverToClient: this.healthOf(i, aIsClient ? 1 : 0) };
    return rec;
  }

  /** Every flow, in table order (the order flows were first seen). */
  *all(): IterableIterator<FlowRecord> {
    for (let i = 0; i < this.n; i++) yield this.get(i);
  }
}

function tcpState(f: number): FlowState {
  if (f & Completeness.RST) return 'reset';
  if ((f & (FIN_A | FIN_B)) === (FIN_A | FIN_B)) return 'closed';
  if (f & Completeness.FIN) return 'closing';
  const syn = f & Completeness.SYN;
  const synAck = f & Completeness.SYN_ACK;
  if (syn && synAck) return f & (Completeness.ACK | Completeness.DATA) ? 'established' : 'syn_received';
  if (syn) return 'syn_sent';
  if (synAck) return 'established';
  return 'mid_stream';
}

// Serial-number comparisons (RFC 1982): sequence numbers wrap at 2^32.
const seqGt = (a: number, b: number): boolean => ((b - a) | 0) < 0;
const seqLt = (a: number, b: number): boolean => ((a - b) | 0) < 0;
const seqLe = (a: number, b: number): boolean => ((a - b) | 0) <= 0;

/** `a < b` for time differences as Wireshark compares them: unsigned 64-bit, so negatives are huge. */
const u64Less = (a: number, b: number): boolean => ((a < 0) === (b < 0) ? a < b : b < 0);

/**
 * The shift of the window-scale option (kind 3) in the TCP header before `d.payloadOff`, or -1
 * when absent or when the header cannot be located in the captured bytes.
 */
function windowScaleOption(p: RawPacket, d: L4Packet): number {
  const b = p.buf;
  const end = p.offset + p.capLen;
  let off: number;
  if (d.ipVersion === 4) {
    const ip = d.srcOff - 12;
    off = ip + ((b[ip]! & 0x0f) << 2);
  } else {
    const ip = d.srcOff - 8;
    let next = b[ip + 6]!;
    off = ip + 40;
    // Hop-by-hop, routing, fragment, destination options, authentication header.
    for (let n = 0; next !== 6 && n < 8 && off + 8 <= end; n++) {
      if (next === 0 || next === 43 || next === 60) {
        next = b[off]!;
        off += (b[off + 1]! + 1) << 3;
      } else if (next === 44) {
        next = b[off]!;
        off += 8;
      } else if (next === 51) {
        next = b[off]!;
        off += (b[off + 1]! + 2) << 2;
      } else {
        return -1;
      }
    }
    if (next !== 6) return -1;
  }
  if (off + 20 > end || u16be(b, off) !== d.srcPort || u16be(b, off + 2) !== d.dstPort) return -1;
  const optEnd = off + ((b[off + 12]! >> 4) << 2);
  if (optEnd !== d.payloadOff) return -1;
  let o = off + 20;
  const stop = optEnd < end ? optEnd : end;
  while (o < stop) {
    const kind = b[o]!;
    if (kind === 0) break;
    if (kind === 1) {
      o++;
      continue;
    }
    if (o + 1 >= stop) break;
    const len = b[o + 1]!;
    if (len < 2) break;
    if (kind === 3 && len === 3 && o + 2 < stop) return b[o + 2]!;
    o += len;
  }
  return -1;
}
