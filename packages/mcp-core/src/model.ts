import type { DirectionStats, Flow, FlowGroup, FlowSummary, Percentiles, TcpHealth } from './traffic-source';

export type {
  DirectionStats,
  Endpoint,
  Flow,
  FlowAggregate,
  FlowGroup,
  FlowSummary,
  Percentiles,
  Talker,
  ProtocolTotals,
  NodeCoverage,
  TcpHealth,
  WorkloadKind,
  WorkloadInfo,
  WorkloadQuery,
  WorkloadList,
  IpQuery,
  IpInfo,
  IpList,
  KubernetesSourceStatus,
} from './traffic-source';
export { FLOW_AGGREGATES } from './traffic-source';

/**
 * The JSON that tools return and that `kubeshark-worker analyze` prints: one vocabulary for
 * every consumer. Pure functions, importable without the MCP server as
 * `@kubeshark-mcp/mcp-core/model`.
 *
 * Handshake percentiles (`tcp_handshake_p50_us`, ...) use the server view, SYN -> ACK
 * (Wireshark's tcp.analysis.initial_rtt): it spans a full round trip wherever the capture
 * point is, whereas SYN -> SYN-ACK is near zero when captured beside the server.
 */

/** "2013-03-07T21:42:06" by whole second: a page of rows shares a few seconds, and Date#toISOString is slow. */
const secondText = new Map<number, string>();

/** RFC 3339 with microseconds, e.g. 2013-03-07T21:42:06.939084Z. */
export function isoMicros(us: number): string {
  const whole = Math.floor(us);
  const sec = Math.floor(whole / 1_000_000);
  let base = secondText.get(sec);
  if (base === undefined) {
    base = new Date(sec * 1000).toISOString().slice(0, 19);
    if (secondText.size >= 4096) secondText.clear();
    secondText.set(sec, base);
  }
  return `${base}.${String(whole - sec * 1_000_000).padStart(6, '0')}Z`;
}

const round2 = (x: number): number => Math.round(x * 100) / 100;

/**
 * Rates are given for flows and groups seen over more than this many seconds (5 ms, the
 * threshold of Wireshark's Conversations table, which leaves the bits/s of shorter conversations
 * empty): over a shorter span a per-second rate extrapolates from a packet or two (a DNS
 * exchange of 0.5 ms would read as thousands of packets a second) and misleads more than it tells.
 */
export const MIN_RATE_SECONDS = 0.005;

/** Sets packets and bits per second over `seconds` on `out`, unless the span is too short to say. */
function addRates<T extends { packets: number; bytes: number; pps?: number; bps?: number }>(out: T, seconds: number): T {
  if (seconds > MIN_RATE_SECONDS) {
    out.pps = round2(out.packets / seconds);
    out.bps = round2((out.bytes * 8) / seconds);
  }
  return out;
}

export interface RatedDirection extends Omit<DirectionStats, 'tcp'> {
  /** Packets and bits per second, averaged over first -> last seen; absent for a span of 5 ms or less (`MIN_RATE_SECONDS`). */
  pps?: number;
  bps?: number;
  /** The TCP health counters above zero (`{}`: none of the flags was seen). */
  tcp?: Partial<TcpHealth>;
}

/**
 * The counters of a TCP direction that are not zero. Most connections have none, and twenty
 * zeros a flow were about half of a TCP flow row: a page of clean connections costs the
 * model half the tokens without them.
 */
export function nonZeroCounters(h: TcpHealth): Partial<TcpHealth> {
  const out: Partial<TcpHealth> = {};
  for (const k in h) {
    const v = h[k as keyof TcpHealth];
    if (v) out[k as keyof TcpHealth] = v;
  }
  return out;
}

export interface Totals {
  packets: number;
  bytes: number;
  /** As in `RatedDirection`: absent for a span of 5 ms or less. */
  pps?: number;
  bps?: number;
}

function rated(d: DirectionStats, seconds: number): RatedDirection {
  const out = addRates<RatedDirection>({ packets: d.packets, bytes: d.bytes, payload_bytes: d.payload_bytes }, seconds);
  if (d.tcp) out.tcp = nonZeroCounters(d.tcp);
  return out;
}

function totals(a: DirectionStats, b: DirectionStats, seconds: number): Totals {
  return addRates<Totals>({ packets: a.packets + b.packets, bytes: a.bytes + b.bytes }, seconds);
}

export interface HandshakePercentiles {
  tcp_handshake_p50_us?: number;
  tcp_handshake_p90_us?: number;
  tcp_handshake_p99_us?: number;
}

function percentileFields(p: Percentiles): HandshakePercentiles {
  if (p.count === 0) return {};
  return { tcp_handshake_p50_us: p.p50_us, tcp_handshake_p90_us: p.p90_us, tcp_handshake_p99_us: p.p99_us };
}

export interface FlowView extends HandshakePercentiles {
  id: string;
  node: string;
  protocol: string;
  state: string;
  client: Flow['client'];
  server: Flow['server'];
  client_to_server: RatedDirection;
  server_to_client: RatedDirection;
  totals: Totals;
  first_seen: string;
  last_seen: string;
  duration_ms: number;
  tcp_handshake_client_us?: number;
  tcp_handshake_server_us?: number;
  syn_count?: number;
  fin_count?: number;
  rst_count?: number;
  /** Wireshark's tcp.completeness: SYN=1, SYN-ACK=2, ACK=4, DATA=8, FIN=16, RST=32 (31 = a complete, closed connection). */
  tcp_completeness?: number;
}

export function flowView(f: Flow): FlowView {
  const seconds = (f.last_seen_us - f.first_seen_us) / 1e6;
  const view: FlowView = {
    id: f.id,
    node: f.node,
    protocol: f.protocol,
    state: f.state,
    client: f.client,
    server: f.server,
    client_to_server: rated(f.client_to_server, seconds),
    server_to_client: rated(f.server_to_client, seconds),
    totals: totals(f.client_to_server, f.server_to_client, seconds),
    first_seen: isoMicros(f.first_seen_us),
    last_seen: isoMicros(f.last_seen_us),
    duration_ms: round2(seconds * 1000),
  };
  if (f.protocol === 'tcp') {
    if (f.tcp_handshake_client_us !== undefined) view.tcp_handshake_client_us = f.tcp_handshake_client_us;
    if (f.tcp_handshake_server_us !== undefined) {
      view.tcp_handshake_server_us = f.tcp_handshake_server_us;
      Object.assign(view, percentileFields({ count: 1, p50_us: f.tcp_handshake_server_us, p90_us: f.tcp_handshake_server_us, p99_us: f.tcp_handshake_server_us }));
    }
    view.syn_count = f.syn_count;
    view.fin_count = f.fin_count;
    view.rst_count = f.rst_count;
    if (f.completeness !== undefined) view.tcp_completeness = f.completeness;
  }
  return view;
}

export interface FlowGroupView extends HandshakePercentiles {
  key: string;
  client: FlowGroup['client'];
  server: FlowGroup['server'];
  flows: number;
  tcp_flows: number;
  udp_flows: number;
  client_to_server: RatedDirection;
  server_to_client: RatedDirection;
  totals: Totals;
  first_seen: string;
  last_seen: string;
  /** TCP flows whose handshake was measured (the percentiles' sample size). */
  tcp_handshakes: number;
  /** Client view (SYN -> SYN-ACK) percentiles, for comparing the two views. */
  tcp_handshake_client_p50_us?: number;
  tcp_handshake_client_p90_us?: number;
  tcp_handshake_client_p99_us?: number;
}

export function flowGroupView(g: FlowGroup): FlowGroupView {
  const seconds = (g.last_seen_us - g.first_seen_us) / 1e6;
  const view: FlowGroupView = {
    key: g.key,
    client: g.client,
    server: g.server,
    flows: g.flows,
    tcp_flows: g.tcp_flows,
    udp_flows: g.udp_flows,
    client_to_server: rated(g.client_to_server, seconds),
    server_to_client: rated(g.server_to_client, seconds),
    totals: totals(g.client_to_server, g.server_to_client, seconds),
    first_seen: isoMicros(g.first_seen_us),
    last_seen: isoMicros(g.last_seen_us),
    tcp_handshakes: g.tcp_handshake_server.count,
    ...percentileFields(g.tcp_handshake_server),
  };
  if (g.tcp_handshake_client.count > 0) {
    view.tcp_handshake_client_p50_us = g.tcp_handshake_client.p50_us;
    view.tcp_handshake_client_p90_us = g.tcp_handshake_client.p90_us;
    view.tcp_handshake_client_p99_us = g.tcp_handshake_client.p99_us;
  }
  return view;
}

/** RTT bands used in summaries and prompts. */
export function rttBand(us: number): 'excellent' | 'good' | 'elevated' | 'high' {
  if (us < 1000) return 'excellent';
  if (us < 10_000) return 'good';
  if (us < 100_000) return 'elevated';
  return 'high';
}

export interface FlowSummaryView extends HandshakePercentiles {
  total_flows: number;
  total_packets: number;
  total_bytes: number;
  tcp: FlowSummary['tcp'];
  udp: FlowSummary['udp'];
  unique_clients: number;
  unique_servers: number;
  top_by_bytes: FlowSummary['top_by_bytes'];
  top_by_packets: FlowSummary['top_by_packets'];
  tcp_handshakes: number;
  /** The RTT band of the median handshake: excellent < 1 ms, good < 10 ms, elevated < 100 ms. */
  tcp_handshake_band?: string;
  first_seen?: string;
  last_seen?: string;
  /** With Kubernetes identities: traffic per namespace ('' = outside the cluster). */
  by_namespace?: FlowSummary['by_namespace'];
  /** With Kubernetes identities: client -> server namespace pairs that differ. */
  cross_namespace?: FlowSummary['cross_namespace'];
}

export function flowSummaryView(s: FlowSummary): FlowSummaryView {
  const view: FlowSummaryView = {
    total_flows: s.total_flows,
    total_packets: s.total_packets,
    total_bytes: s.total_bytes,
    tcp: s.tcp,
    udp: s.udp,
    unique_clients: s.unique_clients,
    unique_servers: s.unique_servers,
    top_by_bytes: s.top_by_bytes,
    top_by_packets: s.top_by_packets,
    tcp_handshakes: s.tcp_handshake_server.count,
    ...percentileFields(s.tcp_handshake_server),
  };
  if (s.tcp_handshake_server.count > 0) view.tcp_handshake_band = rttBand(s.tcp_handshake_server.p50_us);
  if (s.total_flows > 0) {
    view.first_seen = isoMicros(s.first_seen_us);
    view.last_seen = isoMicros(s.last_seen_us);
  }
  if (s.by_namespace?.length) view.by_namespace = s.by_namespace;
  if (s.cross_namespace?.length) view.cross_namespace = s.cross_namespace;
  return view;
}
