import { handshakeSketch, percentilesNs, type Percentiles, type RttSketch } from '@kubeshark-mcp/capture';
import type { Entry } from '@kubeshark-mcp/dissectors';
import type { StoredEntry } from './entries';
import type { IdentityLookup } from './k8s';

/**
 * Per service and endpoint: how many calls, how many failed, how long they took. A group is
 * (server, protocol, method, endpoint). The server is the entry's destination: its Kubernetes
 * service (or workload) with namespace and port when the worker resolves it, else `ip:port`. The endpoint is the HTTP path without its query, with the
 * segments that look like identifiers (numbers, UUIDs, long hex or token strings) replaced by
 * `:id` so that `/users/12345` and `/users/67890` count together; for gRPC the method path;
 * for DNS the query name; for Kafka the topic, MongoDB the collection, AMQP the exchange or
 * queue, WebSocket the upgraded path; none for Redis, PostgreSQL and MySQL, whose calls differ
 * by key or statement text (the method, i.e. the command or SQL verb, groups them instead).
 *
 * Latency percentiles are nearest-rank over the `elapsed_time` of the answered calls, plus the
 * same values as a mergeable sketch so that several workers' groups combine correctly.
 */

export interface ApiStatsGroup {
  /** With `byClient`: the calls' client. */
  src?: { ip: string; port: number };
  service: string;
  dst: { ip: string; port: number };
  protocol: string;
  method: string;
  endpoint: string;
  requests: number;
  /** Calls the protocol reported as failed (`failure`: HTTP >= 400, gRPC status != 0, SQL errors, ...). */
  failures: number;
  /** Calls without an answer (`pair-not-found`, `timeout`). */
  unanswered: number;
  /** Calls per status code, most frequent first. */
  statuses: { status_code: number; count: number }[];
  latency: Percentiles;
  latencySketch: RttSketch;
  firstUs: number;
  lastUs: number;
}

const ID_SEGMENT = /^(?:\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{12,}|[A-Za-z0-9_-]*\d[A-Za-z0-9_-]*\d[A-Za-z0-9_-]{14,})$/i;
const NO_ENDPOINT = new Set(['redis', 'postgresql', 'mysql']);

/** The endpoint an entry counts under (see the module comment). */
export function endpointOf(e: Entry): string {
  if (NO_ENDPOINT.has(e.protocol)) return '';
  if (e.protocol !== 'http') return e.path;
  const path = e.path.split(/[?#]/, 1)[0]!;
  return path
    .split('/')
    .map((seg) => (ID_SEGMENT.test(seg) ? ':id' : seg))
    .join('/');
}

/** Groups the entries (any order), largest request count first, then by service and endpoint. */
export function apiStats(entries: Iterable<StoredEntry>, ids?: IdentityLookup, byClient = false): ApiStatsGroup[] {
  interface Acc {
    g: Omit<ApiStatsGroup, 'latency' | 'latencySketch' | 'statuses'>;
    elapsedNs: number[];
    statuses: Map<number, number>;
  }
  const groups = new Map<string, Acc>();
  for (const s of entries) {
    const e = s.entry;
    const named = ids && s.dst.ip ? ids.endpoint(s.dst.ip, e.timestamp) : undefined;
    const addr = s.dst.ip ? (s.dst.ip.includes(':') ? `[${s.dst.ip}]:${s.dst.port}` : `${s.dst.ip}:${s.dst.port}`) : '';
    // The Kubernetes name when resolved (service, else workload or pod, with its namespace), else ip:port.
    const service = named?.name ? `${named.namespace ? `${named.namespace}/` : ''}${named.service ?? named.name}:${s.dst.port}` : addr;
    const endpoint = endpointOf(e);
    const key = `${byClient ? `${s.src.ip}\u0000` : ''}${service}\u0000${e.protocol}\u0000${e.method}\u0000${endpoint}`;
    let a = groups.get(key);
    if (!a) {
      a = {
        g: { ...(byClient ? { src: { ip: s.src.ip, port: 0 } } : {}), service, dst: { ip: s.dst.ip, port: s.dst.port }, protocol: e.protocol, method: e.method, endpoint, requests: 0, failures: 0, unanswered: 0, firstUs: e.timestamp, lastUs: e.timestamp },
        elapsedNs: [],
        statuses: new Map(),
      };
      groups.set(key, a);
    }
    const g = a.g;
    g.requests++;
    if (e.failure !== undefined) g.failures++;
    const unanswered = e.error === 'pair-not-found' || e.error === 'timeout';
    if (unanswered) g.unanswered++;
    else a.elapsedNs.push(e.elapsed_time * 1000);
    a.statuses.set(e.status_code, (a.statuses.get(e.status_code) ?? 0) + 1);
    if (e.timestamp < g.firstUs) g.firstUs = e.timestamp;
    if (e.timestamp > g.lastUs) g.lastUs = e.timestamp;
  }
  const out = [...groups.values()].map(
    (a): ApiStatsGroup => ({
      ...a.g,
      statuses: [...a.statuses].map(([status_code, count]) => ({ status_code, count })).sort((x, y) => y.count - x.count || x.status_code - y.status_code),
      latency: percentilesNs(a.elapsedNs),
      latencySketch: handshakeSketch(a.elapsedNs),
    }),
  );
  return out.sort((x, y) => y.requests - x.requests || (x.service < y.service ? -1 : x.service > y.service ? 1 : 0) || (x.endpoint < y.endpoint ? -1 : x.endpoint > y.endpoint ? 1 : 0) || (x.method < y.method ? -1 : x.method > y.method ? 1 : 0) || (x.protocol < y.protocol ? -1 : 1));
}
