import type { DirectionCounters, FlowRecord, FlowTable, Timestamp } from './flows';
import { parseIp, formatIp } from './ip';
import { RttSketch } from './sketch';

/**
 * Queries over a flow table: filters, ordering, aggregation into groups and a summary.
 * Filters run on the table's columns where they can, so only matching flows become objects.
 */

export type FlowOrder = 'bytes' | 'packets' | 'recent' | 'oldest';

export interface FlowFilter {
  /** Matches either endpoint's address. */
  ip?: string;
  /** Matches either endpoint's port. */
  port?: number;
  protocol?: 'tcp' | 'udp';
  /** Flows active within [sinceUs, untilUs] (microseconds since the epoch). */
  sinceUs?: number;
  untilUs?: number;
}

/** Thrown for a filter that cannot match anything because it is malformed. */
export class FlowQueryError extends Error {
  override readonly name = 'FlowQueryError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

export function timestampUs(t: Timestamp): number {
  return t.sec * 1e6 + Math.floor(t.nsec / 1000);
}

/** Flows matching the filter, in table order. */
export function selectFlows(table: FlowTable, filter: FlowFilter = {}): FlowRecord[] {
  let ip: string | undefined;
  if (filter.ip !== undefined && filter.ip !== '') {
    const parsed = parseIp(filter.ip);
    if (!parsed) throw new FlowQueryError('ip', `"${filter.ip}" is not an IPv4 or IPv6 address`);
    // Compare in canonical text form so "::1" and "0:0::1" match the same flows.
    ip = formatIp(parsed.version, parsed.w0, parsed.w1, parsed.w2, parsed.w3);
  }
  const out: FlowRecord[] = [];
  for (let i = 0; i < table.size; i++) {
    if (filter.protocol && table.protocolOf(i) !== filter.protocol) continue;
    const f = table.get(i);
    if (ip && f.client.ip !== ip && f.server.ip !== ip) continue;
    if (filter.port && f.client.port !== filter.port && f.server.port !== filter.port) continue;
    if (filter.sinceUs && timestampUs(f.lastSeen) < filter.sinceUs) continue;
    if (filter.untilUs && timestampUs(f.firstSeen) > filter.untilUs) continue;
    out.push(f);
  }
  return out;
}

interface Counted {
  clientToServer: DirectionCounters;
  serverToClient: DirectionCounters;
  firstSeen: Timestamp;
  lastSeen: Timestamp;
}
const totalBytes = (f: Counted): number => f.clientToServer.bytes + f.serverToClient.bytes;
const totalPackets = (f: Counted): number => f.clientToServer.packets + f.serverToClient.packets;

/** Comparators for each order; callers break ties by first appearance. */
const ORDER: Record<FlowOrder, (a: Counted, b: Counted) => number> = {
  bytes: (a, b) => totalBytes(b) - totalBytes(a),
  packets: (a, b) => totalPackets(b) - totalPackets(a),
  recent: (a, b) => timestampUs(b.lastSeen) - timestampUs(a.lastSeen),
  oldest: (a, b) => timestampUs(a.firstSeen) - timestampUs(b.firstSeen),
};

/**
 * One page of flows in `order` (ties by first appearance, as `orderFlows`), and how many match.
 * Without an address or port filter it works on the table's columns and materialises only the
 * page (a list of 50 out of 100,000 flows builds 50 objects, not 100,000); with one it filters
 * the materialised flows.
 */
export function pageFlows(table: FlowTable, filter: FlowFilter, order: FlowOrder, offset: number, limit: number): { flows: FlowRecord[]; total: number } {
  if ((filter.ip !== undefined && filter.ip !== '') || filter.port) {
    const all = orderFlows(selectFlows(table, filter), order);
    return { flows: all.slice(offset, offset + limit), total: all.length };
  }
  // One pass over the columns: count the matches and keep the k best in a bounded max-heap
  // (worst at the root) of (key, row). Rows are in order of first appearance (ids increase with
  // the row), so ties go by row: the order is total and pages never overlap.
  const n = table.size;
  if (sortKeys.length < n) sortKeys = new Float64Array(Math.max(n, 2 * sortKeys.length));
  const keys = sortKeys;
  table.sortKeys(order, keys);
  const heap = new TopK(Math.min(offset + limit, n));
  const total = scan(table, keys, filter, heap);
  const rows = heap.sorted();
  const flows: FlowRecord[] = [];
  for (let j = offset; j < rows.length; j++) flows.push(table.get(rows[j]!));
  return { flows, total };
}

/**
 * Offers every flow that passes the filter to the heap, by its key; returns how many passed.
 * Rows come in increasing order, so once the heap is full a key no better than the worst kept
 * cannot get in: most rows cost one comparison.
 */
function scan(table: FlowTable, keys: Float64Array, filter: FlowFilter, heap: TopK): number {
  const n = table.size;
  const { protocol, sinceUs, untilUs } = filter;
  let worst = Infinity;
  let total = 0;
  for (let i = 0; i < n; i++) {
    if (protocol && table.protocolOf(i) !== protocol) continue;
    if (sinceUs && table.lastSeenUs(i) < sinceUs) continue;
    if (untilUs && table.firstSeenUs(i) > untilUs) continue;
    total++;
    const key = keys[i]!;
    if (key >= worst) continue;
    heap.offer(key, i);
    if (heap.full) worst = heap.worstKey;
  }
  return total;
}

/** Scratch for `pageFlows`' sort keys, grown as the table grows (queries run one at a time). */
let sortKeys = new Float64Array(1024);

/** The `capacity` smallest (key, row) pairs offered (ties: the smaller row), best first by `sorted`. */
class TopK {
  private readonly keys: Float64Array;
  private readonly rows: Int32Array;
  private size = 0;

  constructor(private readonly capacity: number) {
    this.keys = new Float64Array(capacity);
    this.rows = new Int32Array(capacity);
  }

  /** Whether as many pairs are kept as asked for. */
  get full(): boolean {
    return this.size === this.capacity;
  }

  /** The largest key kept (meaningful once `full`). */
  get worstKey(): number {
    return this.keys[0]!;
  }

  /** Whether slot a orders after slot b. */
  private after(a: number, b: number): boolean {
    const ka = this.keys[a]!;
    const kb = this.keys[b]!;
    return ka > kb || (ka === kb && this.rows[a]! > this.rows[b]!);
  }

  private swap(a: number, b: number): void {
    const { keys, rows } = this;
    const k = keys[a]!;
    keys[a] = keys[b]!;
    keys[b] = k;
    const r = rows[a]!;
    rows[a] = rows[b]!;
    rows[b] = r;
  }

  offer(key: number, row: number): void {
    if (this.size < this.capacity) {
      let at = this.size++;
      this.keys[at] = key;
      this.rows[at] = row;
      while (at > 0) {
        const up = (at - 1) >> 1;
        if (!this.after(at, up)) break;
        this.swap(at, up);
        at = up;
      }
      return;
    }
    if (this.capacity === 0) return;
    const worstKey = this.keys[0]!;
    if (key > worstKey || (key === worstKey && row > this.rows[0]!)) return;
    this.keys[0] = key;
    this.rows[0] = row;
    let at = 0;
    for (;;) {
      const l = 2 * at + 1;
      if (l >= this.size) return;
      const r = l + 1;
      const worst = r < this.size && this.after(r, l) ? r : l;
      if (!this.after(worst, at)) return;
      this.swap(worst, at);
      at = worst;
    }
  }

  /** The rows kept, best first. */
  sorted(): Int32Array {
    const { keys, rows } = this;
    const slots = new Int32Array(this.size);
    for (let i = 0; i < slots.length; i++) slots[i] = i;
    slots.sort((a, b) => keys[a]! - keys[b]! || rows[a]! - rows[b]!);
    for (let i = 0; i < slots.length; i++) slots[i] = rows[slots[i]!]!;
    return slots;
  }
}

/** Sorts flows in place; ties fall back to table order so results are deterministic. */
export function orderFlows(flows: FlowRecord[], order: FlowOrder = 'bytes'): FlowRecord[] {
  const c = ORDER[order];
  return flows.sort((a, b) => c(a, b) || a.index - b.index);
}

/** Exact percentiles (nearest rank) of handshake times, in microseconds. */
export interface Percentiles {
  count: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
}

/** Nearest-rank percentiles of values given in nanoseconds, reported in microseconds. */
export function percentilesNs(valuesNs: number[]): Percentiles {
  if (valuesNs.length === 0) return { count: 0, p50Us: 0, p90Us: 0, p99Us: 0 };
  const v = [...valuesNs].sort((a, b) => a - b);
  const at = (p: number): number => v[Math.max(0, Math.ceil((p / 100) * v.length) - 1)]! / 1000;
  return { count: v.length, p50Us: at(50), p90Us: at(90), p99Us: at(99) };
}

/**
 * A mergeable sketch of handshake times (microseconds), for answers that combine several
 * workers: percentiles of merged sketches are right to 1 %, where averaging percentiles is not.
 */
export function handshakeSketch(valuesNs: number[]): RttSketch {
  const sketch = new RttSketch();
  for (const ns of valuesNs) sketch.add(ns / 1000);
  return sketch;
}

export interface FlowGroup {
  key: string;
  /** The group's client and server addresses, when the grouping has them (ip pairs). */
  client: { ip?: string };
  server: { ip?: string };
  flows: number;
  tcpFlows: number;
  udpFlows: number;
  clientToServer: DirectionCounters;
  serverToClient: DirectionCounters;
  firstSeen: Timestamp;
  lastSeen: Timestamp;
  /** Client view (SYN -> SYN-ACK) and server view (SYN -> ACK) over the group's TCP flows. */
  handshakeClient: Percentiles;
  handshakeServer: Percentiles;
  /** The same, as mergeable sketches (microseconds). */
  handshakeClientSketch: RttSketch;
  handshakeServerSketch: RttSketch;
}

const earlier = (a: Timestamp, b: Timestamp): boolean => a.sec < b.sec || (a.sec === b.sec && a.nsec < b.nsec);
const addCounters = (into: DirectionCounters, c: DirectionCounters): void => {
  into.packets += c.packets;
  into.bytes += c.bytes;
  into.payloadBytes += c.payloadBytes;
};

/** Groups flows by client IP -> server IP. Groups come out in the order given by `order`. */
export function aggregateByIpPair(flows: FlowRecord[], order: FlowOrder = 'bytes'): FlowGroup[] {
  return aggregateFlows(flows, (f) => ({ key: `${f.client.ip} -> ${f.server.ip}`, client: { ip: f.client.ip }, server: { ip: f.server.ip } }), order);
}

/** What a flow contributes to its group's identity. */
export interface GroupKey {
  key: string;
  client: { ip?: string };
  server: { ip?: string };
}

/**
 * Groups flows by any key (an address pair, a node, later a namespace or service): counters add
 * up, handshake percentiles and sketches are computed over the group's flows. Groups come out
 * in the order given by `order`, ties by first appearance.
 */
export function aggregateFlows(flows: FlowRecord[], keyOf: (f: FlowRecord) => GroupKey, order: FlowOrder = 'bytes'): FlowGroup[] {
  const groups = new Map<string, FlowGroup & { hc: number[]; hs: number[]; firstIndex: number }>();
  for (const f of flows) {
    const id = keyOf(f);
    const key = id.key;
    let g = groups.get(key);
    if (!g) {
      g = {
        key,
        client: id.client,
        server: id.server,
        flows: 0,
        tcpFlows: 0,
        udpFlows: 0,
        clientToServer: { packets: 0, bytes: 0, payloadBytes: 0 },
        serverToClient: { packets: 0, bytes: 0, payloadBytes: 0 },
        firstSeen: f.firstSeen,
        lastSeen: f.lastSeen,
        handshakeClient: percentilesNs([]),
        handshakeServer: percentilesNs([]),
        handshakeClientSketch: new RttSketch(),
        handshakeServerSketch: new RttSketch(),
        hc: [],
        hs: [],
        firstIndex: f.index,
      };
      groups.set(key, g);
    }
    g.flows++;
    if (f.protocol === 'tcp') g.tcpFlows++;
    else g.udpFlows++;
    addCounters(g.clientToServer, f.clientToServer);
    addCounters(g.serverToClient, f.serverToClient);
    if (earlier(f.firstSeen, g.firstSeen)) g.firstSeen = f.firstSeen;
    if (earlier(g.lastSeen, f.lastSeen)) g.lastSeen = f.lastSeen;
    if (f.tcpHandshakeClientNs !== undefined) g.hc.push(f.tcpHandshakeClientNs);
    if (f.tcpHandshakeServerNs !== undefined) g.hs.push(f.tcpHandshakeServerNs);
  }
  const list = [...groups.values()].map((g) => {
    const { hc, hs, ...group } = g;
    group.handshakeClient = percentilesNs(hc);
    group.handshakeServer = percentilesNs(hs);
    group.handshakeClientSketch = handshakeSketch(hc);
    group.handshakeServerSketch = handshakeSketch(hs);
    return group;
  });
  const c = ORDER[order];
  list.sort((a, b) => c(a, b) || a.firstIndex - b.firstIndex);
  return list.map(({ firstIndex: _firstIndex, ...g }) => g);
}

export interface Talker {
  ip: string;
  txPackets: number;
  rxPackets: number;
  txBytes: number;
  rxBytes: number;
  flows: number;
}

export interface ProtocolTotals {
  flows: number;
  packets: number;
  bytes: number;
}

export interface FlowSummary {
  totalFlows: number;
  totalPackets: number;
  totalBytes: number;
  tcp: ProtocolTotals;
  udp: ProtocolTotals;
  uniqueClients: number;
  uniqueServers: number;
  topByBytes: Talker[];
  topByPackets: Talker[];
  handshakeClient: Percentiles;
  handshakeServer: Percentiles;
  handshakeClientSketch: RttSketch;
  handshakeServerSketch: RttSketch;
  firstSeen?: Timestamp;
  lastSeen?: Timestamp;
}

/** Totals, TCP vs UDP, and the top talkers (addresses by bytes and by packets, sent + received). */
export function summarizeFlows(flows: FlowRecord[], top = 10): FlowSummary {
  const talkers = new Map<string, Talker>();
  const talker = (ip: string): Talker => {
    let t = talkers.get(ip);
    if (!t) {
      t = { ip, txPackets: 0, rxPackets: 0, txBytes: 0, rxBytes: 0, flows: 0 };
      talkers.set(ip, t);
    }
    return t;
  };
  const clients = new Set<string>();
  const servers = new Set<string>();
  const tcp: ProtocolTotals = { flows: 0, packets: 0, bytes: 0 };
  const udp: ProtocolTotals = { flows: 0, packets: 0, bytes: 0 };
  const hc: number[] = [];
  const hs: number[] = [];
  let firstSeen: Timestamp | undefined;
  let lastSeen: Timestamp | undefined;
  for (const f of flows) {
    const t = f.protocol === 'tcp' ? tcp : udp;
    t.flows++;
    t.packets += totalPackets(f);
    t.bytes += totalBytes(f);
    clients.add(f.client.ip);
    servers.add(f.server.ip);
    const c = talker(f.client.ip);
    const s = f.server.ip === f.client.ip ? c : talker(f.server.ip);
    c.flows++;
    if (s !== c) s.flows++;
    c.txPackets += f.clientToServer.packets;
    c.txBytes += f.clientToServer.bytes;
    c.rxPackets += f.serverToClient.packets;
    c.rxBytes += f.serverToClient.bytes;
    // An address talking to itself (loopback) counts each packet once, not as sent and received.
    if (s !== c) {
      s.txPackets += f.serverToClient.packets;
      s.txBytes += f.serverToClient.bytes;
      s.rxPackets += f.clientToServer.packets;
      s.rxBytes += f.clientToServer.bytes;
    }
    if (f.tcpHandshakeClientNs !== undefined) hc.push(f.tcpHandshakeClientNs);
    if (f.tcpHandshakeServerNs !== undefined) hs.push(f.tcpHandshakeServerNs);
    if (!firstSeen || earlier(f.firstSeen, firstSeen)) firstSeen = f.firstSeen;
    if (!lastSeen || earlier(lastSeen, f.lastSeen)) lastSeen = f.lastSeen;
  }
  const all = [...talkers.values()];
  const by = (key: (t: Talker) => number): Talker[] =>
    [...all].sort((a, b) => key(b) - key(a) || (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0)).slice(0, top);
  return {
    totalFlows: tcp.flows + udp.flows,
    totalPackets: tcp.packets + udp.packets,
    totalBytes: tcp.bytes + udp.bytes,
    tcp,
    udp,
    uniqueClients: clients.size,
    uniqueServers: servers.size,
    topByBytes: by((t) => t.txBytes + t.rxBytes),
    topByPackets: by((t) => t.txPackets + t.rxPackets),
    handshakeClient: percentilesNs(hc),
    handshakeServer: percentilesNs(hs),
    handshakeClientSketch: handshakeSketch(hc),
    handshakeServerSketch: handshakeSketch(hs),
    ...(firstSeen ? { firstSeen } : {}),
    ...(lastSeen ? { lastSeen } : {}),
  };
}
