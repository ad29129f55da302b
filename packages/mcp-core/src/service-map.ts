import type { ApiStatsGroup, CallContext, FlowGroup, NodeCoverage, TrafficSource } from './traffic-source';

/**
 * Who talks to whom: one node per address (named by its Kubernetes identity when the source
 * resolved one), one edge per client -> server address pair with its flows, bytes and TCP
 * handshake percentiles (from list_l4_flows aggregated by ip_pair), and, where the source
 * dissects API calls, each server's calls, failures and latency (get_api_stats).
 */

export interface ServiceMapNode {
  id: string;
  label: string;
  ip: string;
  namespace?: string;
  /** API calls this address served, when the source has them. */
  served?: { requests: number; failures: number; error_rate: number; latency_p99_us: number };
}

export interface ServiceMapEdge {
  from: string;
  to: string;
  flows: number;
  bytes: number;
  tcp_handshake_p50_us?: number;
  tcp_handshake_p99_us?: number;
  /** API calls on this edge, when the source dissects them: count, failures and latency (p50/p99 of the busiest group, microseconds). */
  calls?: { requests: number; failures: number; error_rate: number; latency_p50_us: number; latency_p99_us: number };
}

export interface ServiceMap {
  nodes: ServiceMapNode[];
  edges: ServiceMapEdge[];
  /** More address pairs exist than `limit` kept (the heaviest by bytes are kept). */
  truncated: boolean;
  coverage: NodeCoverage[];
}

export interface ServiceMapQuery {
  since_us?: number;
  until_us?: number;
  /** Edges kept, heaviest by bytes first. */
  limit: number;
}

const labelOf = (e: FlowGroup['client']): string => e.name || e.pod || e.service || e.ip || '?';

export async function buildServiceMap(source: TrafficSource, q: ServiceMapQuery, ctx: CallContext): Promise<ServiceMap> {
  const window = { ...(q.since_us !== undefined ? { since_us: q.since_us } : {}), ...(q.until_us !== undefined ? { until_us: q.until_us } : {}) };
  const [flows, stats] = await Promise.all([
    source.listFlows({ aggregate: 'ip_pair', order_by: 'bytes', limit: q.limit, ...window }, ctx),
    source.getApiStats ? source.getApiStats({ ...window, by_client: true }, ctx) : Promise.resolve(undefined),
  ]);
  const nodes = new Map<string, ServiceMapNode>();
  const node = (e: FlowGroup['client']): string => {
    const ip = e.ip ?? '';
    if (!nodes.has(ip)) nodes.set(ip, { id: `n${nodes.size}`, label: labelOf(e), ip, ...(e.namespace ? { namespace: e.namespace } : {}) });
    return nodes.get(ip)!.id;
  };
  const edges = flows.groups.map((g): ServiceMapEdge => {
    const edge: ServiceMapEdge = {
      from: node(g.client),
      to: node(g.server),
      flows: g.flows,
      bytes: g.client_to_server.bytes + g.server_to_client.bytes,
    };
    if (g.tcp_handshake_server.count > 0) {
      edge.tcp_handshake_p50_us = g.tcp_handshake_server.p50_us;
      edge.tcp_handshake_p99_us = g.tcp_handshake_server.p99_us;
    }
    return edge;
  });
  if (stats) {
    // Per server (all its clients) on the nodes, per client -> server on the edges.
    const byIp = new Map<string, ApiStatsGroup[]>();
    const byEdge = new Map<string, ApiStatsGroup[]>();
    for (const g of stats.groups) {
      const ip = serverIp(g.service, g.dst);
      byIp.set(ip, [...(byIp.get(ip) ?? []), g]);
      if (g.src?.ip) byEdge.set(`${g.src.ip}>${ip}`, [...(byEdge.get(`${g.src.ip}>${ip}`) ?? []), g]);
    }
    for (const n of nodes.values()) {
      const groups = byIp.get(n.ip);
      if (!groups) continue;
      const requests = groups.reduce((s, g) => s + g.requests, 0);
      const failures = groups.reduce((s, g) => s + g.failures, 0);
      n.served = { requests, failures, error_rate: requests ? Math.round((failures / requests) * 1e4) / 1e4 : 0, latency_p99_us: Math.max(...groups.map((g) => g.latency.p99_us)) };
    }
    const ipOf = new Map([...nodes.values()].map((n) => [n.id, n.ip]));
    for (const e of edges) {
      const groups = byEdge.get(`${ipOf.get(e.from)}>${ipOf.get(e.to)}`);
      if (!groups) continue;
      const requests = groups.reduce((s, g) => s + g.requests, 0);
      const failures = groups.reduce((s, g) => s + g.failures, 0);
      const busiest = groups.reduce((a, b) => (b.requests > a.requests ? b : a));
      e.calls = { requests, failures, error_rate: requests ? Math.round((failures / requests) * 1e4) / 1e4 : 0, latency_p50_us: busiest.latency.p50_us, latency_p99_us: Math.max(...groups.map((g) => g.latency.p99_us)) };
    }
  }
  const coverage = mergeCoverage(flows.nodes, stats?.nodes ?? []);
  return { nodes: [...nodes.values()], edges, truncated: flows.total > flows.groups.length, coverage };
}

/** The server's address: the group's destination when the source gives it, else parsed from "10.0.0.2:80" / "[::1]:80". */
function serverIp(service: string, dst?: { ip: string }): string {
  if (dst?.ip) return dst.ip;
  const v6 = /^\[(.*)\]:\d+$/.exec(service);
  if (v6) return v6[1]!;
  const i = service.lastIndexOf(':');
  return i > 0 && !service.slice(0, i).includes(':') ? service.slice(0, i) : service;
}

/** A node is ok only if every answer covered it. */
function mergeCoverage(a: NodeCoverage[], b: NodeCoverage[]): NodeCoverage[] {
  const out = new Map<string, NodeCoverage>();
  for (const n of [...a, ...b]) {
    const seen = out.get(n.node);
    if (!seen || (seen.state === 'ok' && n.state !== 'ok')) out.set(n.node, n);
  }
  return [...out.values()];
}

const human = (bytes: number): string => (bytes >= 1e9 ? `${(bytes / 1e9).toFixed(1)} GB` : bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : bytes >= 1e3 ? `${(bytes / 1e3).toFixed(1)} kB` : `${bytes} B`);
/** Mermaid labels are quoted; quotes and brackets inside would end them. */
const quote = (s: string): string => s.replace(/["[\]{}|<>]/g, ' ');

/** The map as a Mermaid flowchart (graph LR), edges labelled with flows, bytes and the handshake p50. */
export function serviceMapMermaid(map: ServiceMap): string {
  const lines = ['graph LR'];
  for (const n of map.nodes) {
    const served = n.served ? `<br/>${n.served.requests} calls, ${(n.served.error_rate * 100).toFixed(1)}% failed` : '';
    lines.push(`  ${n.id}["${quote(n.label)}${served}"]`);
  }
  for (const e of map.edges) {
    const rtt = e.tcp_handshake_p50_us !== undefined ? `, rtt p50 ${(e.tcp_handshake_p50_us / 1000).toFixed(2)} ms` : '';
    const calls = e.calls ? `<br/>${e.calls.requests} calls, ${(e.calls.error_rate * 100).toFixed(1)}% failed, p99 ${(e.calls.latency_p99_us / 1000).toFixed(1)} ms` : '';
    lines.push(`  ${e.from} -->|"${e.flows} flows, ${human(e.bytes)}${rtt}${calls}"| ${e.to}`);
  }
  return lines.join('\n');
}
