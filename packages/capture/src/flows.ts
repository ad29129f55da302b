import { u32be } from './bytes';
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
const COMPLETENESS_MASK = 63;

const KEY_WORDS = 10; // A address (4), B address (4), ports, protocol + IP version

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

/** A flow as read from the table. */
export interface FlowRecord {
  /** Position in the table, stable for the table's lifetime. */
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
}

export interface FlowTableOptions {
  /** Initial number of flows the columns hold before growing (default 1024). */
  initialCapacity?: number;
}

export class FlowTable {
  private cap: number;
  private n = 0;
  private keys: Uint32Array;
  private hashes: Uint32Array;
  private slots: Int32Array;
  private mask: number;

  private clientIsA: Uint8Array;
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

  constructor(options: FlowTableOptions = {}) {
    this.cap = Math.max(16, options.initialCapacity ?? 1024);
    this.keys = new Uint32Array(this.cap * KEY_WORDS);
    this.hashes = new Uint32Array(this.cap);
    this.clientIsA = new Uint8Array(this.cap);
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
    let slots = 16;
    while (slots < this.cap * 2) slots <<= 1;
    this.slots = new Int32Array(slots);
    this.mask = slots - 1;
  }

  /** Number of flows recorded (a reused port pair after a new SYN counts as a new flow). */
  get size(): number {
    return this.n;
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
    const reused = idx >= 0 && pureSyn && (this.flags[idx]! & (side === 0 ? BASE_A : BASE_B)) !== 0 && this.baseSeq[2 * idx + side] !== d.seq;
    if (idx < 0 || reused) {
      idx = this.create(h, a0, a1, a2, a3, b0, b1, b2, b3, ports, pv);
      if (this.n * 2 > this.slots.length) this.rehash();
      else this.slots[slot] = idx + 1;
    }

    const sec = p.tsSec;
    const nsec = p.tsNsec;
    const j = 2 * idx + side;
    if (this.pkts[2 * idx]! + this.pkts[2 * idx + 1]! === 0) {
      this.firstSec[idx] = sec;
      this.firstNsec[idx] = nsec;
      // The first packet's sender is the client, unless it is a SYN-ACK.
      this.clientIsA[idx] = (tcp && (fl & (TcpFlag.SYN | TcpFlag.ACK)) === (TcpFlag.SYN | TcpFlag.ACK)) !== fromA ? 1 : 0;
    }
    this.pkts[j]! += 1;
    this.bytes[j]! += p.origLen;
    this.payload[j]! += d.payloadLen;
    if (sec > this.lastSec[idx]! || (sec === this.lastSec[idx]! && nsec > this.lastNsec[idx]!)) {
      this.lastSec[idx] = sec;
      this.lastNsec[idx] = nsec;
    }
    if (tcp) this.trackTcp(idx, side, fl, d, sec, nsec);
    return idx;
  }

  private trackTcp(idx: number, side: number, fl: number, d: L4Packet, sec: number, nsec: number): void {
    let f = this.flags[idx]!;
    const baseBit = side === 0 ? BASE_A : BASE_B;
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
    this.synSec[i] = -1;
    return i;
  }

  private grow(): void {
    const cap = this.cap * 2;
    const g = <T extends Uint8Array | Uint16Array | Uint32Array | Float64Array>(a: T, per: number): T => {
      const next = new (a.constructor as new (n: number) => T)(cap * per);
      next.set(a);
      return next;
    };
    this.keys = g(this.keys, KEY_WORDS);
    this.hashes = g(this.hashes, 1);
    this.clientIsA = g(this.clientIsA, 1);
    this.flags = g(this.flags, 1);
    this.pkts = g(this.pkts, 2);
    this.bytes = g(this.bytes, 2);
    this.payload = g(this.payload, 2);
    this.firstSec = g(this.firstSec, 1);
    this.firstNsec = g(this.firstNsec, 1);
    this.lastSec = g(this.lastSec, 1);
    this.lastNsec = g(this.lastNsec, 1);
    this.synSec = g(this.synSec, 1);
    this.synNsec = g(this.synNsec, 1);
    this.synAckSec = g(this.synAckSec, 1);
    this.synAckNsec = g(this.synAckNsec, 1);
    this.hsClient = g(this.hsClient, 1);
    this.hsServer = g(this.hsServer, 1);
    this.baseSeq = g(this.baseSeq, 2);
    this.counts = g(this.counts, 3);
    this.cap = cap;
  }

  /** Rebuilds the slot index at twice the size. Only the newest flow per key is indexed. */
  private rehash(): void {
    const size = this.slots.length * 2;
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
      index: i,
      protocol: tcp ? 'tcp' : 'udp',
      ipVersion: version,
      client: aIsClient ? { ip: ipA, port: portA } : { ip: ipB, port: portB },
      server: aIsClient ? { ip: ipB, port: portB } : { ip: ipA, port: portA },
      clientToServer: dir(aIsClient ? 0 : 1),
      serverToClient: dir(aIsClient ? 1 : 0),
      firstSeen: { sec: this.firstSec[i]!, nsec: this.firstNsec[i]! },
      lastSeen: { sec: this.lastSec[i]!, nsec: this.lastNsec[i]! },
      state: tcp ? tcpState(f) : 'active',
      completeness: tcp ? f & COMPLETENESS_MASK : 0,
      synCount: this.counts[3 * i]!,
      finCount: this.counts[3 * i + 1]!,
      rstCount: this.counts[3 * i + 2]!,
    };
    if (f & CLIENT_HS_DONE) rec.tcpHandshakeClientNs = this.hsClient[i]!;
    if (f & SERVER_HS_DONE) rec.tcpHandshakeServerNs = this.hsServer[i]!;
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
