/**
 * The port through which MCP tools read traffic. mcp-core declares it; the hub implements it
 * over gRPC to its workers, tests implement it in memory. Field names follow the shared
 * vocabulary (KFL2 names where they exist), in snake_case as on the wire.
 */

export type L4Protocol = 'tcp' | 'udp';

export interface Endpoint {
  ip: string;
  port: number;
  /** Kubernetes identity, when the worker could resolve it. */
  name?: string;
  namespace?: string;
  pod?: string;
  service?: string;
  node?: string;
}

export interface DirectionStats {
  packets: number;
  /** Bytes on the wire (frame length). */
  bytes: number;
  /** Transport payload bytes. */
  payload_bytes: number;
}

export interface Flow {
  id: string;
  node: string;
  protocol: L4Protocol;
  client: Endpoint;
  server: Endpoint;
  client_to_server: DirectionStats;
  server_to_client: DirectionStats;
  first_seen_us: number;
  last_seen_us: number;
  state: string;
  /** SYN -> SYN-ACK. */
  tcp_handshake_client_us?: number;
  /** SYN -> ACK (Wireshark's tcp.analysis.initial_rtt). */
  tcp_handshake_server_us?: number;
  syn_count: number;
  fin_count: number;
  rst_count: number;
}

export interface Percentiles {
  count: number;
  p50_us: number;
  p90_us: number;
  p99_us: number;
  /** The values as a mergeable sketch, for sources that combine several workers. */
  sketch?: Uint8Array;
}

export interface FlowGroup {
  key: string;
  client: Partial<Endpoint>;
  server: Partial<Endpoint>;
  flows: number;
  tcp_flows: number;
  udp_flows: number;
  client_to_server: DirectionStats;
  server_to_client: DirectionStats;
  first_seen_us: number;
  last_seen_us: number;
  tcp_handshake_client: Percentiles;
  tcp_handshake_server: Percentiles;
}

/** Which nodes an answer covers, and why any are missing. */
export interface NodeCoverage {
  node: string;
  state: 'ok' | 'unavailable' | 'error';
  message?: string;
}

export type FlowAggregate = 'none' | 'ip_pair';
export type FlowOrder = 'bytes' | 'packets' | 'recent' | 'oldest';

export interface FlowQuery {
  ip?: string;
  port?: number;
  protocol?: L4Protocol;
  aggregate: FlowAggregate;
  order_by: FlowOrder;
  limit: number;
  since_us?: number;
  until_us?: number;
}

export interface FlowList {
  flows: Flow[];
  groups: FlowGroup[];
  /** Matches before the limit. */
  total: number;
  nodes: NodeCoverage[];
}

export interface SummaryQuery {
  protocol?: L4Protocol;
  since_us?: number;
  until_us?: number;
  top: number;
}

export interface ProtocolTotals {
  flows: number;
  packets: number;
  bytes: number;
}

export interface Talker {
  ip: string;
  tx_packets: number;
  rx_packets: number;
  tx_bytes: number;
  rx_bytes: number;
  flows: number;
}

export interface FlowSummary {
  total_flows: number;
  total_packets: number;
  total_bytes: number;
  tcp: ProtocolTotals;
  udp: ProtocolTotals;
  unique_clients: number;
  unique_servers: number;
  top_by_bytes: Talker[];
  top_by_packets: Talker[];
  tcp_handshake_client: Percentiles;
  tcp_handshake_server: Percentiles;
  /** 0 when there are no flows. */
  first_seen_us: number;
  last_seen_us: number;
  nodes: NodeCoverage[];
}

/** Per-call context: cancellation from the MCP client travels down to the workers. */
export interface CallContext {
  signal: AbortSignal;
}

export interface TrafficSource {
  listFlows(query: FlowQuery, ctx: CallContext): Promise<FlowList>;
  getFlowSummary(query: SummaryQuery, ctx: CallContext): Promise<FlowSummary>;
}
