import { Completeness, parseIp, type FlowTable, type L4Packet, type RawPacket, type TcpStreamConsumer } from '@kubeshark-mcp/capture';
import {
  AMQP_PROTOCOL,
  AmqpDissector,
  DNS_TCP_PROTOCOL,
  KAFKA_PROTOCOL,
  KafkaDissector,
  MONGODB_PROTOCOL,
  MYSQL_PROTOCOL,
  MongodbDissector,
  MysqlDissector,
  WebSocketDissector,
  type MongodbEntry,
  type MysqlEntry,
  type WebSocketEntry,
  POSTGRESQL_PROTOCOL,
  PostgresqlDissector,
  REDIS_PROTOCOL,
  RedisDissector,
  type AmqpEntry,
  type KafkaEntry,
  type PostgresqlEntry,
  type RedisEntry,
  DnsDissector,
  HTTP2_PROTOCOL,
  HTTP_PROTOCOL,
  Http2Dissector,
  HttpDissector,
  StreamRouter,
  type DnsEntry,
  type Entry,
  type EntryMessage,
  type Http2Entry,
  type HttpEntry,
  type RoutedProtocol,
  type StreamFacts,
  type TcpDissector,
  type GrpcJsonDecoder,
} from '@kubeshark-mcp/dissectors';
import type { IdentityLookup } from './k8s';

/** Every entry the worker stores: the dissectors' own types. */
export type AnyEntry = HttpEntry | DnsEntry | Http2Entry | RedisEntry | PostgresqlEntry | KafkaEntry | AmqpEntry | MysqlEntry | MongodbEntry | WebSocketEntry;

/**
 * L7 API calls on the worker: the dissectors wired behind the flow tracker, and a bounded
 * in-memory store of the entries they produce, ordered by request time.
 */

export interface EntryEndpoint {
  ip: string;
  port: number;
  /** Kubernetes identity at the request time (summaries of a worker with a Kubernetes source). */
  name?: string;
  namespace?: string;
  pod?: string;
  service?: string;
  node?: string;
  /** Why the worker's resolver could not name the address. */
  unresolved?: string;
}

/** An API call as the worker serves it: the dissector's entry plus where it was seen. */
export interface StoredEntry {
  /** `<node>/<flow id>/<index>`. */
  id: string;
  node: string;
  flow_id: string;
  /** The flow's client (src) and server (dst); empty when the flow was already dropped. */
  src: EntryEndpoint;
  dst: EntryEndpoint;
  entry: AnyEntry;
  /** Insertion order: breaks timestamp ties, so (timestamp, seq) orders entries totally. */
  seq: number;
}

/** The summary fields of an entry (one line of `analyze --entries`). */
export interface EntrySummary {
  id: string;
  node: string;
  protocol: string;
  src: EntryEndpoint;
  dst: EntryEndpoint;
  flow_id: string;
  method: string;
  path: string;
  url: string;
  status_code: number;
  /** Microseconds. */
  elapsed_time: number;
  /** Request time, microseconds since the epoch. */
  timestamp: number;
  error?: string;
  /** The protocol's own account of a failure (HTTP 503, NXDOMAIN, grpc-status 14 UNAVAILABLE, ...). */
  failure?: string;
}

/** An entry's endpoint with, given `ids`, its Kubernetes identity at the request time. */
export function endpointAt(ep: StoredEntry['src'], s: StoredEntry, ids?: IdentityLookup): StoredEntry['src'] {
  return ids && ep.ip ? { ...ep, ...ids.endpoint(ep.ip, s.entry.timestamp) } : ep;
}

/** With `ids`, src and dst carry their Kubernetes identities at the request time. */
export function entrySummary(s: StoredEntry, ids?: IdentityLookup): EntrySummary {
  const e = s.entry;
  return {
    id: s.id,
    node: s.node,
    protocol: e.protocol,
    src: endpointAt(s.src, s, ids),
    dst: endpointAt(s.dst, s, ids),
    flow_id: s.flow_id,
    method: e.method,
    path: e.path,
    url: e.url,
    status_code: e.status_code,
    elapsed_time: e.elapsed_time,
    timestamp: e.timestamp,
    ...(e.error ? { error: e.error } : {}),
    ...(e.failure ? { failure: e.failure } : {}),
  };
}

/** Bytes shown as text when they are printable UTF-8, else base64. */
function bodyPreview(b: Uint8Array | null): { body?: string; body_encoding?: 'text' | 'base64' } {
  if (b === null) return {};
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const text = buf.toString('utf8');
  // Replacement characters mean invalid UTF-8; control characters other than whitespace mean binary.
  // eslint-disable-next-line no-control-regex
  if (!text.includes('\ufffd') && !/[\u0000-\u0008\u000b\u000e-\u001f\u007f]/.test(text)) return { body: text, body_encoding: 'text' };
  return { body: buf.toString('base64'), body_encoding: 'base64' };
}

function messageJson(m: (EntryMessage & { trailers?: unknown }) | null, withBody: boolean): object | null {
  if (m === null) return null;
  return {
    headers: m.headers,
    ...(m.trailers !== undefined ? { trailers: m.trailers } : {}),
    body_size: m.body_size,
    truncated: m.truncated,
    ...(withBody ? bodyPreview(m.body) : {}),
  };
}

/**
 * The gRPC messages of a call as JSON, per side: `{ grpc_message_type, grpc_messages,
 * grpc_messages_omitted }` (see GrpcJsonDecoder), or null for a side without headers.
 *
 * Decoded here, when a call is read (GetEntry, `analyze --entries`), not at capture time: the
 * body bytes are kept anyway (up to --body-max-kib), so capture pays nothing per call, and
 * protobuf decoding plus JSON (tens of microseconds a message) is spent only on the few calls
 * someone opens. The cost is that a call is decoded again at every read.
 */
export function grpcMessagesJson(e: AnyEntry, decoder: GrpcJsonDecoder): { request: object | null; response: object | null } | null {
  if (e.protocol !== 'grpc' || !('http2_stream_id' in e)) return null;
  const side = (which: 'request' | 'response', counted: number | undefined): object | null => {
    const m = e[which];
    if (!m) return null;
    const out = decoder.decode(e.path, which, m, counted ?? 0);
    return { ...(out.type ? { grpc_message_type: out.type } : {}), grpc_messages: out.messages, ...(out.omitted ? { grpc_messages_omitted: out.omitted } : {}) };
  };
  return { request: side('request', e.grpc_request_messages), response: side('response', e.grpc_response_messages) };
}

/** Fields every entry has, shown by the summary; the rest of an entry is its protocol's own. */
const COMMON_FIELDS = new Set(['protocol', 'stream', 'index', 'timestamp', 'elapsed_time', 'method', 'path', 'url', 'status_code', 'request', 'response', 'error', 'failure', 'times']);

/**
 * The full record of an entry (GetEntry's `json`): the summary, the protocol's own fields, and
 * the messages with body previews; with `grpc`, a gRPC call's messages decoded to JSON too.
 */
export function entryDetail(s: StoredEntry, ids?: IdentityLookup, grpc?: GrpcJsonDecoder): object {
  const e = s.entry;
  const base = { ...entrySummary(s, ids), index: e.index };
  if (e.protocol === 'dns' && 'dns_id' in e) {
    return {
      ...base,
      transport: e.transport,
      dns_id: e.dns_id,
      dns_questions: e.dns_questions,
      dns_answers: e.dns_answers,
      dns_authorities: e.dns_authorities,
      dns_additionals: e.dns_additionals,
      ...(e.dns_rcode !== undefined ? { dns_rcode: e.dns_rcode } : {}),
      request: messageJson(e.request, false),
      response: messageJson(e.response, false),
      request_size: e.dns_request?.length ?? 0,
      response_size: e.dns_response?.length ?? 0,
    };
  }
  const own: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e)) {
    if (COMMON_FIELDS.has(k) || v === undefined || v instanceof Uint8Array) continue;
    own[k] = v;
  }
  const decoded = grpc ? grpcMessagesJson(e, grpc) : null;
  const request = messageJson(e.request, true);
  const response = messageJson(e.response, true);
  return {
    ...base,
    ...own,
    request: request && decoded?.request ? { ...request, ...decoded.request } : request,
    response: response && decoded?.response ? { ...response, ...decoded.response } : response,
  };
}

export class CursorError extends Error {}

const keyBefore = (a: StoredEntry, ts: number, seq: number): boolean => a.entry.timestamp < ts || (a.entry.timestamp === ts && a.seq <= seq);

/**
 * Entries in memory, at most `maxEntries` (the earliest by request time go first, counted as
 * evicted), ordered by (timestamp, arrival). Entries mostly arrive in time order, so an insert
 * is an append or a short move near the end.
 */
export class EntryStore {
  private items: StoredEntry[] = [];
  /**
   * `items[i].entry.timestamp`, flat and aligned with `items`: finding an insert position reads
   * numbers in a row instead of two objects per step.
   */
  private times: number[] = [];
  private head = 0;
  private readonly byId = new Map<string, StoredEntry>();
  private seq = 0;
  private evictedCount = 0;
  private storedCount = 0;

  constructor(readonly maxEntries = 100_000) {}

  get size(): number {
    return this.items.length - this.head;
  }

  get evicted(): number {
    return this.evictedCount;
  }

  /** Entries ever stored (including evicted ones). */
  get stored(): number {
    return this.storedCount;
  }

  add(s: Omit<StoredEntry, 'seq'>): void {
    this.insert(s.id, s.node, s.flow_id, s.src, s.dst, s.entry);
  }

  /** `add` without an object to copy from. */
  insert(id: string, node: string, flowId: string, src: EntryEndpoint, dst: EntryEndpoint, entry: AnyEntry): void {
    const item: StoredEntry = { id, node, flow_id: flowId, src, dst, entry, seq: this.seq++ };
    const ts = entry.timestamp;
    const items = this.items;
    const times = this.times;
    let i = items.length;
    if (i > this.head && times[i - 1]! > ts) {
      // After the last entries with a timestamp <= ts (the order is kept sorted): a binary
      // search, as calls from many connections finish out of request order.
      let lo = this.head;
      let hi = i - 1;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (times[mid]! > ts) hi = mid;
        else lo = mid + 1;
      }
      i = lo;
    }
    if (i === items.length) {
      items.push(item);
      times.push(ts);
    } else {
      items.splice(i, 0, item);
      times.splice(i, 0, ts);
    }
    this.byId.set(id, item);
    this.storedCount++;
    while (this.size > this.maxEntries) {
      const old = items[this.head]!;
      items[this.head++] = undefined as unknown as StoredEntry;
      this.byId.delete(old.id);
      this.evictedCount++;
    }
    if (this.head > 1024 && this.head * 2 > items.length) {
      this.items = items.slice(this.head);
      this.times = times.slice(this.head);
      this.head = 0;
    }
  }

  get(id: string): StoredEntry | undefined {
    return this.byId.get(id);
  }

  /** Request times of the oldest and newest entry (0 when empty). */
  window(): { oldestUs: number; newestUs: number } {
    if (this.size === 0) return { oldestUs: 0, newestUs: 0 };
    return { oldestUs: this.items[this.head]!.entry.timestamp, newestUs: this.items[this.items.length - 1]!.entry.timestamp };
  }

  /**
   * Entries with `sinceUs <= timestamp <= untilUs` (0 = unbounded) that `match` accepts (all
   * when absent), in timestamp order, after `cursor` when given, at most `limit` (0 = all).
   * `next` continues after the last one returned (absent when nothing matched); `more` says
   * whether another matching entry follows; `scanned` counts the entries examined.
   */
  query(q: { sinceUs?: number; untilUs?: number; limit?: number; cursor?: string; match?: (s: StoredEntry) => boolean }): { entries: StoredEntry[]; next?: string; more: boolean; scanned: number } {
    const items = this.items;
    let lo = this.head;
    let hi = items.length;
    if (q.cursor) {
      const m = /^(\d+(?:\.\d+)?)_(\d+)$/.exec(q.cursor);
      if (!m) throw new CursorError(`cursor "${q.cursor}" is not one this worker returned`);
      const ts = Number(m[1]);
      const seq = Number(m[2]);
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (keyBefore(items[mid]!, ts, seq)) lo = mid + 1;
        else hi = mid;
      }
      hi = items.length;
    }
    if (q.sinceUs) {
      const since = q.sinceUs;
      let a = lo;
      let b = hi;
      while (a < b) {
        const mid = (a + b) >>> 1;
        if (items[mid]!.entry.timestamp < since) a = mid + 1;
        else b = mid;
      }
      lo = a;
    }
    const out: StoredEntry[] = [];
    const limit = q.limit || Infinity;
    const match = q.match;
    let more = false;
    let scanned = 0;
    for (let i = lo; i < hi; i++) {
      const it = items[i]!;
      if (q.untilUs && it.entry.timestamp > q.untilUs) break;
      scanned++;
      if (match && !match(it)) continue;
      if (out.length === limit) {
        more = true;
        break;
      }
      out.push(it);
    }
    const last = out[out.length - 1];
    return { entries: out, more, scanned, ...(last ? { next: `${last.entry.timestamp}_${last.seq}` } : {}) };
  }
}

/** Body bytes kept per message: previews, so 100,000 entries stay within memory. */
const BODY_PREVIEW = 4096;

export interface L7Options {
  /** More ports per protocol name, asked first when detecting (Kubeshark's `portMapping`). */
  portMapping?: Record<string, number[]>;
  /** Body bytes kept per message. Default 4 KiB. */
  maxBodySize?: number;
  /** Decodes gRPC messages to JSON when a call is read (from --grpc-descriptor-set). */
  grpcDecoder?: GrpcJsonDecoder;
}

/** Direction 0 is the endpoint with the lower address (then port), as `packetSide` numbers them. */
function lowerEndpoint(a: { ip: string; port: number }, b: { ip: string; port: number }): boolean {
  const x = parseIp(a.ip);
  const y = parseIp(b.ip);
  if (x && y) {
    const xs = [x.w0, x.w1, x.w2, x.w3];
    const ys = [y.w0, y.w1, y.w2, y.w3];
    for (let i = 0; i < 4; i++) {
      const u = xs[i]! >>> 0;
      const v = ys[i]! >>> 0;
      if (u !== v) return u < v;
    }
  }
  return a.port <= b.port;
}

/**
 * The dissectors behind one flow tracker, storing what they produce: TCP streams go through
 * the stream router (each protocol claims streams by content, ports only order the questions;
 * HTTP/1.1 upgrades hand over to the protocol they name), UDP port 53 to the DNS dissector.
 * Give `tcpConsumer` and `onUdp` to the tracker's options, then `bind` the tracker's flow table.
 */
export class L7Pipeline {
  readonly http: HttpDissector;
  readonly dns: DnsDissector;
  readonly http2: Http2Dissector;
  readonly ws: WebSocketDissector;
  readonly router: StreamRouter;
  readonly tcpConsumer: TcpStreamConsumer;
  private readonly dissectors: TcpDissector[];
  private table: FlowTable | undefined;

  constructor(
    readonly node: string,
    readonly store: EntryStore,
    options: L7Options = {},
  ) {
    const emit = (e: Entry): void => this.emit(e);
    const maxBodySize = options.maxBodySize ?? BODY_PREVIEW;
    this.http = new HttpDissector(emit, { maxBodySize, onUpgrade: (u) => this.router.upgrade(u) });
    this.dns = new DnsDissector(emit, { keepBodies: false });
    this.http2 = new Http2Dissector(emit, { maxBodySize });
    this.ws = new WebSocketDissector(emit, { maxBodySize });
    // Asked in this order (after the ones whose ports match): the cheap, unambiguous signatures first.
    const protocols: RoutedProtocol[] = [
      { protocol: HTTP_PROTOCOL, dissector: this.http },
      { protocol: HTTP2_PROTOCOL, dissector: this.http2 },
      { protocol: POSTGRESQL_PROTOCOL, dissector: new PostgresqlDissector(emit, { maxBodySize }) },
      { protocol: AMQP_PROTOCOL, dissector: new AmqpDissector(emit, { maxBodySize }) },
      { protocol: REDIS_PROTOCOL, dissector: new RedisDissector(emit, { maxBodySize }) },
      { protocol: MYSQL_PROTOCOL, dissector: new MysqlDissector(emit, { maxBodySize }) },
      { protocol: MONGODB_PROTOCOL, dissector: new MongodbDissector(emit, { maxBodySize }) },
      { protocol: KAFKA_PROTOCOL, dissector: new KafkaDissector(emit, { maxBodySize }) },
      { protocol: DNS_TCP_PROTOCOL, dissector: this.dns },
    ];
    this.dissectors = [...protocols.map((p) => p.dissector), this.ws];
    this.router = new StreamRouter({
      protocols,
      facts: (stream) => this.facts(stream),
      ...(options.portMapping ? { portMapping: options.portMapping } : {}),
      upgrades: { h2c: this.http2, websocket: this.ws },
    });
    this.tcpConsumer = this.router;
    this.onUdp = this.onUdp.bind(this);
  }

  bind(table: FlowTable): void {
    this.table = table;
  }

  onUdp(flow: number, d: L4Packet, p: RawPacket): void {
    if (d.srcPort === 53 || d.dstPort === 53) this.dns.onUdp(p, d, flow);
  }

  /** After the streams were flushed: what is still pending becomes entries. */
  flush(): void {
    for (const d of new Set(this.dissectors)) d.flush();
  }

  /** Live capture: advances the clock so unanswered DNS queries and HTTP requests time out. */
  advance(sec: number, nsec: number): void {
    this.dns.advance(sec, nsec);
    this.http.advance(sec, nsec);
  }

  /** The client's direction (when the handshake was captured) and the ports, from the flow table. */
  private facts(stream: number): StreamFacts {
    const table = this.table;
    const row = table ? table.rowOf(stream) : -1;
    if (!table || row < 0) return { clientDir: undefined, ports: [0, 0] };
    const f = table.get(row);
    const clientLow = lowerEndpoint(f.client, f.server);
    const handshake = (f.completeness & (Completeness.SYN | Completeness.SYN_ACK)) !== 0;
    const low = clientLow ? f.client.port : f.server.port;
    const high = clientLow ? f.server.port : f.client.port;
    return { clientDir: handshake ? (clientLow ? 0 : 1) : undefined, ports: [low, high] };
  }

  /** The endpoints of recent streams: reading them from the flow table formats addresses, which costs more than a call. */
  private readonly endpoints = new Map<number, { flowId: string; src: EntryEndpoint; dst: EntryEndpoint }>();

  private endpointsOf(stream: number): { flowId: string; src: EntryEndpoint; dst: EntryEndpoint } {
    let ep = this.endpoints.get(stream);
    if (ep) return ep;
    const table = this.table;
    const row = table ? table.rowOf(stream) : -1;
    const f = row >= 0 ? table!.get(row) : undefined;
    ep = {
      flowId: `${this.node}/${stream}`,
      src: f ? { ip: f.client.ip, port: f.client.port } : { ip: '', port: 0 },
      dst: f ? { ip: f.server.ip, port: f.server.port } : { ip: '', port: 0 },
    };
    // Only a flow that was found is remembered (a missing one may be added later); bounded, oldest first out.
    if (f) {
      this.endpoints.set(stream, ep);
      if (this.endpoints.size > 4096) this.endpoints.delete(this.endpoints.keys().next().value!);
    }
    return ep;
  }

  private emit(e: Entry): void {
    const ep = this.endpointsOf(e.stream);
    this.store.insert(`${ep.flowId}/${e.index}`, this.node, ep.flowId, ep.src, ep.dst, e as AnyEntry);
  }
}
