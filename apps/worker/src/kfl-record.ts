import type { FlowRecord } from '@kubeshark-mcp/capture';
import type { DnsRecordData, EntryMessage } from '@kubeshark-mcp/dissectors';
import { FIELDS, KflError, bodyText, compile, headerMap, queryMap, type CompiledFilter, type KflEndpoint, type KflRecord } from '@kubeshark-mcp/kfl';
import { QueryError } from './engine';
import type { StoredEntry } from './entries';
import type { ClusterResolver, Identity } from './k8s';

/**
 * KFL filters where the data is: stored entries and tracked flows as `KflRecord`s, and filter
 * compilation with errors that name the `kfl` argument, its position and a suggestion.
 */

/** Body text a filter can search, per message (the stored preview is at most this long anyway). */
const BODY_CHARS = 4096;

/** Top-level catalogue fields and their types: an entry's own field with one of these names and a matching type is copied as is. */
const TOP_LEVEL = new Map(FIELDS.filter((f) => !f.name.includes('.')).map((f) => [f.name, f.type]));

function typeMatches(type: string, v: unknown): boolean {
  switch (type) {
    case 'string':
      return typeof v === 'string';
    case 'int':
    case 'uint':
    case 'double':
    case 'timestamp':
    case 'duration':
      return typeof v === 'number' && Number.isFinite(v);
    case 'bool':
      return typeof v === 'boolean';
    case 'list<string>':
      return Array.isArray(v) && v.every((x) => typeof x === 'string');
    default:
      return false;
  }
}

const message = (m: EntryMessage | null): KflRecord['request'] => (m ? { headers: headerMap(m.headers), body: bodyText(m.body, BODY_CHARS) } : { headers: {}, body: '' });

function dnsData(d: DnsRecordData): string {
  switch (d.kind) {
    case 'A':
    case 'AAAA':
      return d.address;
    case 'CNAME':
    case 'NS':
    case 'PTR':
      return d.target;
    case 'MX':
      return d.exchange;
    case 'TXT':
      return d.strings.join('');
    case 'SRV':
      return d.target;
    case 'SOA':
      return d.mname;
    case 'other':
      return '';
    default: {
      const never: never = d;
      return String(never);
    }
  }
}

/** An address's KFL endpoint: `src.pod.name`, `src.service.name`, `src.name`, `src.namespace`, `src.node.name`. */
function kflEndpoint(ip: string, port: number, id: Identity | undefined): KflEndpoint {
  if (id === undefined || id.kind === 'external') return { ip, port };
  return {
    ip,
    port,
    ...(id.name ? { name: id.name } : {}),
    ...(id.namespace ? { namespace: id.namespace } : {}),
    ...(id.pod ? { pod: { name: id.pod.name, namespace: id.pod.namespace } } : {}),
    ...(id.service ? { service: { name: id.service.name, namespace: id.service.namespace } } : {}),
    ...(id.node ? { node: { name: id.node.name } } : {}),
  };
}

const EMPTY: readonly string[] = [];

/** Unique non-empty values of both sides, in order (local first). */
function both(a: readonly string[], b: readonly string[]): string[] {
  const out: string[] = [];
  for (const x of a) if (x && !out.includes(x)) out.push(x);
  for (const x of b) if (x && !out.includes(x)) out.push(x);
  return out;
}

/**
 * The Kubernetes fields of a record whose local end (client, entry src) is `l` and remote end
 * (server, entry dst) `r`: both endpoints, `namespaces`, `pods`, `services` (every Service either
 * side backs or is), the peers' labels and node names.
 */
function identityFields(src: { ip: string; port: number }, dst: { ip: string; port: number }, l: Identity | undefined, r: Identity | undefined): Pick<KflRecord, 'src' | 'dst' | 'namespaces' | 'pods' | 'services' | 'local_labels' | 'remote_labels' | 'local_node_name' | 'remote_node_name'> {
  const known = (id: Identity | undefined): id is Identity => id !== undefined && id.kind !== 'external';
  const lk = known(l) ? l : undefined;
  const rk = known(r) ? r : undefined;
  const services = (id: Identity | undefined): string[] => (id?.services ?? (id?.service ? [id.service] : [])).map((s) => s.name);
  return {
    src: kflEndpoint(src.ip, src.port, lk),
    dst: kflEndpoint(dst.ip, dst.port, rk),
    namespaces: both(lk?.namespace ? [lk.namespace] : EMPTY, rk?.namespace ? [rk.namespace] : EMPTY),
    pods: both(lk?.pod ? [lk.pod.name] : EMPTY, rk?.pod ? [rk.pod.name] : EMPTY),
    services: both(services(lk), services(rk)),
    local_labels: lk ? { ...lk.labels } : {},
    remote_labels: rk ? { ...rk.labels } : {},
    ...(lk?.node ? { local_node_name: lk.node.name } : {}),
    ...(rk?.node ? { remote_node_name: rk.node.name } : {}),
  };
}

const resolveAt = (resolver: ClusterResolver | undefined, ip: string, tUs: number): Identity | undefined => (resolver && ip ? resolver.resolve(ip, tUs) : undefined);

/** Records with identities, per entry: rebuilt only when an end's identity object changes (the cluster changed). */
const identified = new WeakMap<StoredEntry, { record: KflRecord; src: Identity | undefined; dst: Identity | undefined }>();

/**
 * The record a filter sees for a stored entry (built once per entry, then cached). With a
 * resolver, src and dst carry their Kubernetes identities at the request time.
 */
export function entryRecord(s: StoredEntry, resolver?: ClusterResolver): KflRecord {
  const base = plainEntryRecord(s);
  if (resolver === undefined) return base;
  const t = s.entry.timestamp;
  const src = resolveAt(resolver, s.src.ip, t);
  const dst = resolveAt(resolver, s.dst.ip, t);
  const hit = identified.get(s);
  if (hit && hit.src === src && hit.dst === dst) return hit.record;
  const record: KflRecord = { ...base, ...identityFields(s.src, s.dst, src, dst) };
  identified.set(s, { record, src, dst });
  return record;
}

const cache = new WeakMap<StoredEntry, KflRecord>();

function plainEntryRecord(s: StoredEntry): KflRecord {
  let r = cache.get(s);
  if (r) return r;
  const e = s.entry;
  const p: string = e.protocol;
  r = {
    http: p === 'http',
    grpc: p === 'grpc',
    dns: p === 'dns',
    redis: p === 'redis',
    kafka: p === 'kafka',
    amqp: p === 'amqp',
    postgresql: p === 'postgresql',
    mysql: p === 'mysql',
    mongodb: p === 'mongodb',
    ws: p === 'ws',
    tcp: !('transport' in e && e.transport === 'udp'),
    udp: 'transport' in e && e.transport === 'udp',
    tls: false,
    flow: false,
    tcp_flow: false,
    udp_flow: false,
    protocol: e.protocol,
    src: { ip: s.src.ip, port: s.src.port },
    dst: { ip: s.dst.ip, port: s.dst.port },
    node_name: s.node,
    id: s.id,
    flow_id: s.flow_id,
    index: e.index,
    timestamp: e.timestamp,
    elapsed_time: e.elapsed_time,
    failure: e.failure ?? '',
    error: e.error ?? '',
    method: e.method,
    // KFL2's path is the path alone; the query is query_string.
    path: p === 'http' || p === 'grpc' ? e.path.split('?', 1)[0]! : e.path,
    url: e.url,
    status_code: e.status_code,
    query_string: queryMap(e.path),
    request: message(e.request),
    response: message(e.response),
    request_body_size: e.request?.body_size ?? 0,
    response_body_size: e.response?.body_size ?? 0,
  };
  for (const [k, v] of Object.entries(e)) {
    if (k in r) continue;
    const type = TOP_LEVEL.get(k);
    if (type && typeMatches(type, v)) (r as Record<string, unknown>)[k] = v;
  }
  if ('version' in e) r.http_version = e.version;
  if ('status_text' in e) r.status_text = e.status_text;
  if ('dns_questions' in e) {
    r.dns_questions = e.dns_questions.map((q) => q.name);
    r.dns_question_types = e.dns_questions.map((q) => String(q.type));
    r.dns_answers = e.dns_answers.map((a) => dnsData(a.data)).filter((x) => x !== '');
    r.dns_request = e.request !== null;
    r.dns_response = e.response !== null;
    r.dns_request_length = e.dns_request?.length ?? 0;
    r.dns_response_length = e.dns_response?.length ?? 0;
  }
  cache.set(s, r);
  return r;
}

/**
 * The record a filter sees for a flow: `local` is the client, `remote` the server. With a
 * resolver, both carry their Kubernetes identities at the flow's first packet.
 */
export function flowRecord(f: FlowRecord, node: string, resolver?: ClusterResolver): KflRecord {
  const first = f.firstSeen.sec * 1e6 + Math.floor(f.firstSeen.nsec / 1000);
  const last = f.lastSeen.sec * 1e6 + Math.floor(f.lastSeen.nsec / 1000);
  const seconds = (last - first) / 1e6;
  const rate = (n: number): number => (seconds > 0 ? Math.round(n / seconds) : 0);
  const c = f.clientToServer;
  const s = f.serverToClient;
  const health = f.tcpHealth;
  return {
    flow: true,
    tcp_flow: f.protocol === 'tcp',
    udp_flow: f.protocol === 'udp',
    tcp: f.protocol === 'tcp',
    udp: f.protocol === 'udp',
    protocol: f.protocol,
    src: { ip: f.client.ip, port: f.client.port },
    dst: { ip: f.server.ip, port: f.server.port },
    node_name: node,
    id: `${node}/${f.index}`,
    flow_id: `${node}/${f.index}`,
    timestamp: first,
    flow_state: f.state,
    flow_local_pkts: c.packets,
    flow_local_bytes: c.bytes,
    flow_remote_pkts: s.packets,
    flow_remote_bytes: s.bytes,
    flow_local_pps: rate(c.packets),
    flow_local_bps: rate(c.bytes),
    flow_remote_pps: rate(s.packets),
    flow_remote_bps: rate(s.bytes),
    flow_duration: last - first,
    ...(f.tcpHandshakeClientNs !== undefined ? { tcp_handshake_client_us: f.tcpHandshakeClientNs / 1000 } : {}),
    ...(f.tcpHandshakeServerNs !== undefined ? { tcp_handshake_server_us: f.tcpHandshakeServerNs / 1000 } : {}),
    tcp_retransmissions: health ? health.clientToServer.retransmissions + health.serverToClient.retransmissions : 0,
    tcp_rst_count: f.rstCount,
    ...(resolver ? identityFields(f.client, f.server, resolveAt(resolver, f.client.ip, first), resolveAt(resolver, f.server.ip, first)) : {}),
  };
}

/**
 * Compiles a filter for this worker (cached by text inside the kfl package). An empty filter
 * gives undefined: everything matches. A bad filter is a QueryError on `kfl` with the
 * position and the suggestion in its message.
 */
export function compileKfl(text: string | undefined): CompiledFilter | undefined {
  if (text === undefined || text.trim() === '') return undefined;
  try {
    return compile(text);
  } catch (err) {
    if (err instanceof KflError) throw new QueryError('kfl', err.message);
    throw err;
  }
}
