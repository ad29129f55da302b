import { formatIpv4, formatIpv6, type L4Packet, type RawPacket, type TcpChunk, type TcpEnd, type TcpGap } from '@kubeshark-mcp/capture';
import type { Entry, EntryMessage } from './entry';
import type { StreamOpen, TcpDissector, TcpProtocol, Verdict } from './stream';

/**
 * DNS (RFC 1035) over UDP datagrams and TCP streams (RFC 7766: each message behind a 2-byte
 * length; several per stream, split anywhere across chunks). Pure: bytes and capture times in,
 * entries out through a callback. Malformed input is counted per reason, never thrown.
 *
 * Pairing: a response answers a query with the same id on the same flow (flow index from
 * `FlowTable.add`, which covers both directions and both transports). When several queries with
 * that id wait (a client retransmitting), `pairWith` picks the earliest (default: the latency is
 * what the client waited since its first attempt) or the latest (what tshark's dns.response_to
 * does). Queries left unanswered after `timeoutMs` of capture time, or at `flush`, become entries
 * with error `pair-not-found`, as do responses that answer no waiting query.
 */

/** Why (part of) a message could not be decoded; the index is stable for counters. */
export const DNS_MALFORMED_REASONS = [
  'truncated-header',
  'truncated-question',
  'truncated-record',
  'bad-label-type',
  'bad-pointer',
  'name-too-long',
  'bad-rdata',
  'tcp-gap',
  'tcp-truncated',
] as const;
export type DnsMalformedReason = (typeof DNS_MALFORMED_REASONS)[number];

/** Record types decoded into structured data; anything else is kept as type number + length. */
export const DnsType = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, OPT: 41 } as const;

const OPCODES = ['QUERY', 'IQUERY', 'STATUS', '3', 'NOTIFY', 'UPDATE', 'DSO'] as const;

export interface DnsQuestion {
  /** Presentation form without the trailing dot; the root is ".". */
  name: string;
  type: number;
  class: number;
}

/** Decoded RDATA, by record type. Names are in the same form as `DnsQuestion.name`. */
export type DnsRecordData =
  | { kind: 'A' | 'AAAA'; address: string }
  | { kind: 'CNAME' | 'NS' | 'PTR'; target: string }
  | { kind: 'MX'; preference: number; exchange: string }
  | { kind: 'TXT'; strings: string[] }
  | { kind: 'SRV'; priority: number; weight: number; port: number; target: string }
  | { kind: 'SOA'; mname: string; rname: string; serial: number; refresh: number; retry: number; expire: number; minimum: number }
  /** Another type, or RDATA of a known type that did not decode (counted as `bad-rdata`). */
  | { kind: 'other'; length: number };

export interface DnsRecord {
  name: string;
  type: number;
  /** The CLASS field (for OPT, the requestor's UDP payload size). */
  class: number;
  /** Seconds (for OPT, the extended RCODE and flags word). */
  ttl: number;
  data: DnsRecordData;
}

/** One decoded DNS message. */
export interface DnsMessage {
  id: number;
  response: boolean;
  opcode: number;
  /** The whole 16-bit flags word (QR, opcode, AA, TC, RD, RA, Z, AD, CD, RCODE). */
  flags: number;
  rcode: number;
  questions: DnsQuestion[];
  answers: DnsRecord[];
  authorities: DnsRecord[];
  additionals: DnsRecord[];
  /** Set when part of the message did not decode; the sections hold what did. */
  malformed?: DnsMalformedReason;
  /** Message length in bytes (without the TCP length prefix). */
  length: number;
  /** Capture time of the message's first byte. */
  sec: number;
  nsec: number;
}

/**
 * A DNS query and its response as an `Entry`. `method` is the opcode name, `path` and `url` the
 * first question's name, `status_code` the response's RCODE (0 without a response, as in
 * `Entry`; `dns_rcode` tells "no response" apart). `request`/`response` carry the raw message as
 * body and the header fields as headers. `dns_questions` and `dns_answers` are KFL2's names.
 */
export interface DnsEntry extends Entry {
  protocol: 'dns';
  transport: 'udp' | 'tcp';
  dns_id: number;
  dns_questions: DnsQuestion[];
  dns_answers: DnsRecord[];
  dns_authorities: DnsRecord[];
  dns_additionals: DnsRecord[];
  /** Absent without a response. */
  dns_rcode?: number;
  dns_request: DnsMessage | null;
  dns_response: DnsMessage | null;
}

export interface DnsDissectorOptions {
  /** A query unanswered for this long (capture time) becomes a `pair-not-found` entry. Default 10 s. */
  timeoutMs?: number;
  /** Which of several waiting queries with the response's id it answers. Default `earliest`. */
  pairWith?: 'earliest' | 'latest';
  /** Keep the raw message bytes as the entry body (a copy). Default true. */
  keepBodies?: boolean;
}

export interface DnsStats {
  messages: number;
  queries: number;
  responses: number;
  paired: number;
  /** Queries that became `pair-not-found` entries (timeout, stream end or flush). */
  unansweredQueries: number;
  /** Responses that matched no waiting query. */
  unmatchedResponses: number;
  /** Messages (or TCP stream stretches) that did not decode, by reason. */
  malformed: Record<DnsMalformedReason, number>;
}

// ---------------------------------------------------------------------------------------------
// Message decoding

/** RFC 1035: a name is at most 255 octets on the wire. */
const MAX_NAME = 255;
/** Bound on compression pointers followed in one name (the backward-only rule already stops loops). */
const MAX_POINTERS = 64;
/** Bound on records decoded per section: a 64 KiB message holds at most ~6,000 (11 bytes each). */
const MAX_RECORDS = 8192;

class Malformed {
  constructor(readonly reason: DnsMalformedReason) {}
}

/** Cursor over one message: `b[base, end)`; name pointers are relative to `base`. */
class Reader {
  pos: number;
  constructor(
    readonly b: Uint8Array,
    readonly base: number,
    readonly end: number,
  ) {
    this.pos = base;
  }

  u8(reason: DnsMalformedReason): number {
    if (this.pos + 1 > this.end) throw new Malformed(reason);
    return this.b[this.pos++]!;
  }

  u16(reason: DnsMalformedReason): number {
    if (this.pos + 2 > this.end) throw new Malformed(reason);
    const v = (this.b[this.pos]! << 8) | this.b[this.pos + 1]!;
    this.pos += 2;
    return v;
  }

  u32(reason: DnsMalformedReason): number {
    if (this.pos + 4 > this.end) throw new Malformed(reason);
    const b = this.b;
    const p = this.pos;
    this.pos += 4;
    return ((b[p]! << 24) >>> 0) + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!);
  }

  /**
   * Reads a possibly compressed name at `pos` and leaves `pos` after its wire form. A pointer
   * must point strictly before the label that holds it, so every pointer moves backwards and
   * no chain can loop; `MAX_POINTERS` and the 255-octet limit bound the work anyway.
   */
  name(reason: DnsMalformedReason): string {
    const b = this.b;
    let p = this.pos;
    let after = -1;
    let pointers = 0;
    let octets = 0;
    let out = '';
    for (;;) {
      if (p >= this.end) throw new Malformed(reason);
      const len = b[p]!;
      if (len === 0) {
        p++;
        break;
      }
      const kind = len & 0xc0;
      if (kind === 0xc0) {
        if (p + 2 > this.end) throw new Malformed(reason);
        const target = this.base + (((len & 0x3f) << 8) | b[p + 1]!);
        if (target >= p || ++pointers > MAX_POINTERS) throw new Malformed('bad-pointer');
        if (after < 0) after = p + 2;
        p = target;
        continue;
      }
      if (kind !== 0) throw new Malformed('bad-label-type');
      if (p + 1 + len > this.end) throw new Malformed(reason);
      octets += len + 1;
      if (octets + 1 > MAX_NAME) throw new Malformed('name-too-long');
      if (out.length > 0) out += '.';
      out += label(b, p + 1, p + 1 + len);
      p += 1 + len;
    }
    this.pos = after >= 0 ? after : p;
    return out.length > 0 ? out : '.';
  }
}

/** A label in presentation form: printable ASCII as is, '.' and '\' escaped, other bytes as \DDD. */
function label(b: Uint8Array, from: number, to: number): string {
  let s = '';
  for (let i = from; i < to; i++) {
    const c = b[i]!;
    if (c === 0x2e || c === 0x5c) s += '\\' + String.fromCharCode(c);
    else if (c > 0x20 && c < 0x7f) s += String.fromCharCode(c);
    else s += '\\' + String(c).padStart(3, '0');
  }
  return s;
}

function characterStrings(r: Reader, end: number): string[] {
  const out: string[] = [];
  while (r.pos < end) {
    const len = r.b[r.pos]!;
    if (r.pos + 1 + len > end) throw new Malformed('bad-rdata');
    out.push(Buffer.from(r.b.buffer, r.b.byteOffset + r.pos + 1, len).toString('latin1'));
    r.pos += 1 + len;
  }
  return out;
}

function rdata(r: Reader, type: number, len: number): DnsRecordData {
  const start = r.pos;
  const end = start + len;
  const b = r.b;
  const sub = new Reader(b, r.base, end);
  sub.pos = start;
  let data: DnsRecordData;
  switch (type) {
    case DnsType.A:
      if (len !== 4) throw new Malformed('bad-rdata');
      data = { kind: 'A', address: formatIpv4(sub.u32('bad-rdata')) };
      break;
    case DnsType.AAAA:
      if (len !== 16) throw new Malformed('bad-rdata');
      data = { kind: 'AAAA', address: formatIpv6(sub.u32('bad-rdata'), sub.u32('bad-rdata'), sub.u32('bad-rdata'), sub.u32('bad-rdata')) };
      break;
    case DnsType.CNAME:
      data = { kind: 'CNAME', target: sub.name('bad-rdata') };
      break;
    case DnsType.NS:
      data = { kind: 'NS', target: sub.name('bad-rdata') };
      break;
    case DnsType.PTR:
      data = { kind: 'PTR', target: sub.name('bad-rdata') };
      break;
    case DnsType.MX:
      data = { kind: 'MX', preference: sub.u16('bad-rdata'), exchange: sub.name('bad-rdata') };
      break;
    case DnsType.TXT:
      data = { kind: 'TXT', strings: characterStrings(sub, end) };
      break;
    case DnsType.SRV:
      data = { kind: 'SRV', priority: sub.u16('bad-rdata'), weight: sub.u16('bad-rdata'), port: sub.u16('bad-rdata'), target: sub.name('bad-rdata') };
      break;
    case DnsType.SOA:
      data = {
        kind: 'SOA',
        mname: sub.name('bad-rdata'),
        rname: sub.name('bad-rdata'),
        serial: sub.u32('bad-rdata'),
        refresh: sub.u32('bad-rdata'),
        retry: sub.u32('bad-rdata'),
        expire: sub.u32('bad-rdata'),
        minimum: sub.u32('bad-rdata'),
      };
      break;
    default:
      return { kind: 'other', length: len };
  }
  // Names may point outside the RDATA, but their own bytes must end inside it.
  if (sub.pos !== end) throw new Malformed('bad-rdata');
  return data;
}

/**
 * Reads `count` records into `out`. A bad RDATA spoils one record, not the message: its length
 * still frames the next one, so the record is kept as `other` and the reason returned.
 */
function records(r: Reader, count: number, out: DnsRecord[]): DnsMalformedReason | undefined {
  let bad: DnsMalformedReason | undefined;
  for (let i = 0; i < count && i < MAX_RECORDS; i++) {
    const name = r.name('truncated-record');
    const type = r.u16('truncated-record');
    const cls = r.u16('truncated-record');
    const ttl = r.u32('truncated-record');
    const len = r.u16('truncated-record');
    if (r.pos + len > r.end) throw new Malformed('truncated-record');
    let data: DnsRecordData;
    try {
      data = rdata(r, type, len);
    } catch (e) {
      if (!(e instanceof Malformed)) throw e;
      data = { kind: 'other', length: len };
      bad ??= e.reason;
    }
    r.pos += len;
    out.push({ name, type, class: cls, ttl, data });
  }
  return bad;
}

/**
 * Decodes one DNS message at `b[off, off + len)`. Returns undefined when even the 12-byte
 * header is missing; otherwise the message, with `malformed` set when a later part failed (the
 * sections then hold what decoded before it). Never throws on content.
 */
export function parseDnsMessage(b: Uint8Array, off: number, len: number, sec = 0, nsec = 0): DnsMessage | undefined {
  if (len < 12 || off < 0 || off + len > b.length) return undefined;
  const r = new Reader(b, off, off + len);
  const id = r.u16('truncated-header');
  const flags = r.u16('truncated-header');
  const qd = r.u16('truncated-header');
  const an = r.u16('truncated-header');
  const ns = r.u16('truncated-header');
  const ar = r.u16('truncated-header');
  const m: DnsMessage = {
    id,
    response: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    flags,
    rcode: flags & 0xf,
    questions: [],
    answers: [],
    authorities: [],
    additionals: [],
    length: len,
    sec,
    nsec,
  };
  try {
    for (let i = 0; i < qd && i < MAX_RECORDS; i++) {
      const name = r.name('truncated-question');
      m.questions.push({ name, type: r.u16('truncated-question'), class: r.u16('truncated-question') });
    }
    const badAn = records(r, an, m.answers);
    const badNs = records(r, ns, m.authorities);
    const bad = badAn ?? badNs ?? records(r, ar, m.additionals);
    if (bad) m.malformed = bad;
  } catch (e) {
    if (!(e instanceof Malformed)) throw e;
    m.malformed = e.reason;
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// Pairing and the two transports

interface Pending {
  flow: number;
  index: number;
  transport: 'udp' | 'tcp';
  msg: DnsMessage;
  body: Uint8Array | null;
  done: boolean;
}

interface FlowState {
  nextIndex: number;
  /** Waiting queries by id, oldest first. */
  waiting: Map<number, Pending[]>;
}

/** Framing state of one TCP direction: the message being assembled, if any. */
class TcpDir {
  /** Bytes of the length prefix seen (0, 1 or 2) and their value so far. */
  prefixHave = 0;
  prefix = 0;
  part: Uint8Array | null = null;
  partLen = 0;
  sec = 0;
  nsec = 0;
  /** A gap broke the framing: the rest of this direction is skipped. */
  lost = false;

  reset(): void {
    this.prefixHave = 0;
    this.prefix = 0;
    this.part = null;
    this.partLen = 0;
  }
}

/** b - a in nanoseconds, exact: an epoch time in ns (~1.7e18) does not fit a double's 53 bits. */
const diffNs = (aSec: number, aNsec: number, bSec: number, bNsec: number): number => (bSec - aSec) * 1e9 + (bNsec - aNsec);
const toUs = (sec: number, nsec: number): number => sec * 1e6 + Math.floor(nsec / 1000);

function rcodeName(rcode: number): string {
  return ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'][rcode] ?? String(rcode);
}

/**
 * DNS over TCP by content: a 2-byte length, then a header whose counts and opcode are those
 * of a plausible query or response (one to a few questions, standard opcodes, no reserved
 * bit), judged on the header alone so a long first message need not be buffered.
 */
export const DNS_TCP_PROTOCOL: TcpProtocol = {
  name: 'dns',
  ports: [53, 5353],
  detect(b: Uint8Array): Verdict {
    if (b.length < 14) return 'more';
    const len = (b[0]! << 8) | b[1]!;
    const flags = (b[4]! << 8) | b[5]!;
    const opcode = (flags >> 11) & 0xf;
    const z = (flags >> 6) & 1;
    const qd = (b[6]! << 8) | b[7]!;
    const an = (b[8]! << 8) | b[9]!;
    const ns = (b[10]! << 8) | b[11]!;
    const ar = (b[12]! << 8) | b[13]!;
    const plausible = len >= 17 && opcode <= 6 && opcode !== 3 && z === 0 && qd >= 1 && qd <= 4 && an <= 512 && ns <= 512 && ar <= 512;
    return plausible ? 'yes' : 'no';
  },
};

/**
 * Turns DNS datagrams and TCP streams into `DnsEntry`s. Feed UDP with `onUdp` (or
 * `onDatagram`), TCP by passing the dissector as a `TcpReassembler` consumer (for port-53
 * streams only: it frames every byte it gets as DNS). Entries go to `emit` when a pair
 * completes, a query times out, a TCP stream closes, or at `flush`.
 */
export class DnsDissector implements TcpDissector {
  private readonly timeoutNs: number;
  private readonly latest: boolean;
  private readonly keepBodies: boolean;
  private readonly flows = new Map<number, FlowState>();
  /** Waiting queries in arrival order, for expiry; paired ones are skipped lazily. */
  private queue: Pending[] = [];
  private queueHead = 0;
  private readonly tcp = new Map<number, [TcpDir, TcpDir]>();
  private nowSec = -Infinity;
  private nowNsec = 0;
  private readonly counters = { messages: 0, queries: 0, responses: 0, paired: 0, unansweredQueries: 0, unmatchedResponses: 0 };
  private readonly malformedCounts = new Float64Array(DNS_MALFORMED_REASONS.length);

  constructor(
    private readonly emit: (entry: DnsEntry) => void,
    options: DnsDissectorOptions = {},
  ) {
    this.timeoutNs = (options.timeoutMs ?? 10_000) * 1e6;
    this.latest = options.pairWith === 'latest';
    this.keepBodies = options.keepBodies ?? true;
  }

  /** Queries and responses are told apart by the QR bit, so the client direction is not needed. */
  open(_stream: number, _info: StreamOpen): void {}

  /** A UDP packet decoded by `decodePacket`, with its flow index from `FlowTable.add`. */
  onUdp(p: RawPacket, d: L4Packet, flow: number): void {
    // The UDP length may claim more than the snap length kept: decode what was captured.
    const capEnd = p.offset + p.capLen;
    const len = Math.max(0, Math.min(d.payloadLen, capEnd - d.payloadOff));
    this.onDatagram(p.buf, d.payloadOff, len, flow, p.tsSec, p.tsNsec);
  }

  /** One DNS message in a datagram: `buf[off, off + len)`. */
  onDatagram(buf: Uint8Array, off: number, len: number, flow: number, sec: number, nsec: number): void {
    this.tick(sec, nsec);
    this.message(buf, off, len, flow, 'udp', sec, nsec);
  }

  onData(c: TcpChunk): void {
    this.tick(c.lastSec, c.lastNsec);
    let dirs = this.tcp.get(c.stream);
    if (dirs === undefined) {
      dirs = [new TcpDir(), new TcpDir()];
      this.tcp.set(c.stream, dirs);
    }
    const d = dirs[c.dir];
    if (d.lost) return;
    const b = c.buf;
    let pos = c.start;
    const end = c.start + c.length;
    while (pos < end) {
      if (d.prefixHave < 2) {
        // Fast path: a whole message inside this chunk is parsed in place, without a copy.
        if (d.prefixHave === 0 && end - pos >= 2) {
          const len = (b[pos]! << 8) | b[pos + 1]!;
          if (end - pos - 2 >= len) {
            this.message(b, pos + 2, len, c.stream, 'tcp', c.firstSec, c.firstNsec);
            pos += 2 + len;
            continue;
          }
        }
        if (d.prefixHave === 0) {
          d.sec = c.firstSec;
          d.nsec = c.firstNsec;
        }
        d.prefix = (d.prefix << 8) | b[pos++]!;
        if (++d.prefixHave < 2) continue;
        d.part = new Uint8Array(d.prefix);
        d.partLen = 0;
      }
      const part = d.part!;
      const take = Math.min(part.length - d.partLen, end - pos);
      part.set(b.subarray(pos, pos + take), d.partLen);
      d.partLen += take;
      pos += take;
      if (d.partLen === part.length) {
        this.message(part, 0, part.length, c.stream, 'tcp', d.sec, d.nsec);
        d.reset();
      }
    }
  }

  onGap(g: TcpGap): void {
    this.tick(g.sec, g.nsec);
    const dirs = this.tcp.get(g.stream);
    const d = dirs?.[g.dir];
    // Message boundaries are only known by counting bytes: after a hole the framing is gone.
    if (d === undefined) {
      const fresh: [TcpDir, TcpDir] = [new TcpDir(), new TcpDir()];
      fresh[g.dir].lost = true;
      this.tcp.set(g.stream, fresh);
    } else if (!d.lost) {
      d.lost = true;
      d.reset();
    } else return;
    this.malformed('tcp-gap');
  }

  onEnd(e: TcpEnd): void {
    this.tick(e.sec, e.nsec);
    const d = this.tcp.get(e.stream)?.[e.dir];
    if (d !== undefined && !d.lost && d.prefixHave > 0) this.malformed('tcp-truncated');
    d?.reset();
    if (e.closed) {
      this.tcp.delete(e.stream);
      // No answer can come on a closed connection.
      this.expireFlow(e.stream);
    }
  }

  /** Advances the capture clock (for example when no DNS arrives): expires old queries. */
  advance(sec: number, nsec: number): void {
    this.tick(sec, nsec);
  }

  /** End of input: every waiting query becomes a `pair-not-found` entry. */
  flush(): void {
    for (let i = this.queueHead; i < this.queue.length; i++) this.unanswered(this.queue[i]!);
    this.queue = [];
    this.queueHead = 0;
    this.flows.clear();
    this.tcp.clear();
  }

  /** Drops the index counter of a flow the flow table evicted (its waiting queries stay). */
  forgetFlow(flow: number): void {
    const f = this.flows.get(flow);
    if (f !== undefined && f.waiting.size === 0) this.flows.delete(flow);
  }

  stats(): DnsStats {
    const malformed = {} as Record<DnsMalformedReason, number>;
    DNS_MALFORMED_REASONS.forEach((r, i) => (malformed[r] = this.malformedCounts[i]!));
    return { ...this.counters, malformed };
  }

  private malformed(reason: DnsMalformedReason): void {
    this.malformedCounts[DNS_MALFORMED_REASONS.indexOf(reason)]! += 1;
  }

  private tick(sec: number, nsec: number): void {
    if (diffNs(this.nowSec, this.nowNsec, sec, nsec) <= 0) return;
    this.nowSec = sec;
    this.nowNsec = nsec;
    const q = this.queue;
    while (this.queueHead < q.length) {
      const p = q[this.queueHead]!;
      if (!p.done && diffNs(p.msg.sec, p.msg.nsec, sec, nsec) <= this.timeoutNs) break;
      this.queueHead++;
      this.unanswered(p);
    }
    if (this.queueHead > 1024 && this.queueHead * 2 > q.length) {
      this.queue = q.slice(this.queueHead);
      this.queueHead = 0;
    }
  }

  private flowState(flow: number): FlowState {
    let f = this.flows.get(flow);
    if (f === undefined) {
      f = { nextIndex: 0, waiting: new Map() };
      this.flows.set(flow, f);
    }
    return f;
  }

  private message(b: Uint8Array, off: number, len: number, flow: number, transport: 'udp' | 'tcp', sec: number, nsec: number): void {
    const m = parseDnsMessage(b, off, len, sec, nsec);
    if (m === undefined) {
      this.malformed('truncated-header');
      return;
    }
    this.counters.messages++;
    if (m.malformed) this.malformed(m.malformed);
    const body = this.keepBodies ? Uint8Array.prototype.slice.call(b, off, off + len) : null;
    const f = this.flowState(flow);
    if (!m.response) {
      this.counters.queries++;
      const p: Pending = { flow, index: f.nextIndex++, transport, msg: m, body, done: false };
      const list = f.waiting.get(m.id);
      if (list === undefined) f.waiting.set(m.id, [p]);
      else list.push(p);
      this.queue.push(p);
      return;
    }
    this.counters.responses++;
    const list = f.waiting.get(m.id);
    const q = list === undefined ? undefined : this.latest ? list.pop() : list.shift();
    if (list !== undefined && list.length === 0) f.waiting.delete(m.id);
    if (q === undefined) {
      this.counters.unmatchedResponses++;
      this.emit(this.entry(flow, f.nextIndex++, transport, null, null, m, body, 'pair-not-found'));
      return;
    }
    q.done = true;
    this.counters.paired++;
    this.emit(this.entry(flow, q.index, transport, q.msg, q.body, m, body));
  }

  private unanswered(p: Pending): void {
    if (p.done) return;
    p.done = true;
    const f = this.flows.get(p.flow);
    const list = f?.waiting.get(p.msg.id);
    if (list !== undefined) {
      const i = list.indexOf(p);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) f!.waiting.delete(p.msg.id);
    }
    this.counters.unansweredQueries++;
    this.emit(this.entry(p.flow, p.index, p.transport, p.msg, p.body, null, null, 'pair-not-found'));
  }

  private expireFlow(flow: number): void {
    const f = this.flows.get(flow);
    if (f === undefined) return;
    const waiting = [...f.waiting.values()].flat().sort((a, b) => diffNs(b.msg.sec, b.msg.nsec, a.msg.sec, a.msg.nsec));
    for (const p of waiting) this.unanswered(p);
    this.flows.delete(flow);
  }

  private entry(
    flow: number,
    index: number,
    transport: 'udp' | 'tcp',
    req: DnsMessage | null,
    reqBody: Uint8Array | null,
    res: DnsMessage | null,
    resBody: Uint8Array | null,
    error?: 'pair-not-found',
  ): DnsEntry {
    const first = (req ?? res)!;
    const q = first.questions[0];
    const name = q?.name ?? '';
    const e: DnsEntry = {
      protocol: 'dns',
      stream: flow,
      index,
      timestamp: toUs(first.sec, first.nsec),
      // Rounded from nanoseconds: captures with nanosecond stamps keep sub-µs differences.
      elapsed_time: req && res ? Math.round(diffNs(req.sec, req.nsec, res.sec, res.nsec) / 1000) : 0,
      method: OPCODES[first.opcode] ?? String(first.opcode),
      path: name,
      url: name,
      status_code: res ? res.rcode : 0,
      request: req ? entryMessage(req, reqBody) : null,
      response: res ? entryMessage(res, resBody) : null,
      transport,
      dns_id: first.id,
      dns_questions: first.questions,
      dns_answers: res?.answers ?? [],
      dns_authorities: res?.authorities ?? [],
      dns_additionals: res?.additionals ?? [],
      dns_request: req,
      dns_response: res,
    };
    if (res) {
      e.dns_rcode = res.rcode;
      if (res.rcode !== 0) e.failure = rcodeName(res.rcode);
    }
    if (error) e.error = error;
    else if (req?.malformed || res?.malformed) e.error = 'dissection';
    return e;
  }
}

function entryMessage(m: DnsMessage, body: Uint8Array | null): EntryMessage {
  const headers: [string, string][] = [
    ['id', '0x' + m.id.toString(16).padStart(4, '0')],
    ['flags', '0x' + m.flags.toString(16).padStart(4, '0')],
    ['opcode', OPCODES[m.opcode] ?? String(m.opcode)],
  ];
  if (m.response) headers.push(['rcode', rcodeName(m.rcode)]);
  return { headers, body, body_size: m.length, truncated: false };
}
