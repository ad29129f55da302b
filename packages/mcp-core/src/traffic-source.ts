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
  /** Why a worker with a Kubernetes source could not name the address (`not-in-cluster-map`, ...). */
  unresolved?: string;
}

export interface DirectionStats {
  packets: number;
  /** Bytes on the wire (frame length). */
  bytes: number;
  /** Transport payload bytes. */
  payload_bytes: number;
  /** TCP only: segments carrying each of tshark's tcp.analysis flags. */
  tcp?: TcpHealth;
}

/** TCP health of one direction, as tshark's expert analysis flags segments. */
export interface TcpHealth {
  /** Includes fast and spurious retransmissions. */
  retransmissions: number;
  fast_retransmissions: number;
  spurious_retransmissions: number;
  out_of_order: number;
  duplicate_acks: number;
  zero_windows: number;
  keep_alives: number;
  window_full: number;
  /** Usually the capture missed packets, not the network. */
  lost_segments: number;
  acked_unseen_segments: number;
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
  /** TCP: Wireshark's tcp.completeness bits (SYN=1, SYN-ACK=2, ACK=4, DATA=8, FIN=16, RST=32). */
  completeness?: number;
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

/**
 * `namespace`, `pod` and `service` group flows by the server side's identity at the flow's first
 * packet (servers the worker cannot name group under their IP); they need a Kubernetes source.
 */
export type FlowAggregate = 'none' | 'ip_pair' | 'node' | 'namespace' | 'pod' | 'service';
export const FLOW_AGGREGATES: readonly FlowAggregate[] = ['none', 'ip_pair', 'node', 'namespace', 'pod', 'service'];
export type FlowOrder = 'bytes' | 'packets' | 'recent' | 'oldest';

export interface FlowQuery {
  ip?: string;
  port?: number;
  protocol?: L4Protocol;
  aggregate: FlowAggregate;
  order_by: FlowOrder;
  limit: number;
  /** A composed KFL filter over flow fields ('' or absent = all). */
  kfl?: string;
  /**
   * Rows to skip, in `order_by` order, before `limit` applies (pagination; default 0). Sources
   * must order totally (break ties the same way on every call) so pages neither repeat nor skip.
   */
  offset?: number;
  since_us?: number;
  until_us?: number;
}

export interface FlowList {
  flows: Flow[];
  groups: FlowGroup[];
  /** Matches before the offset and limit. */
  total: number;
  nodes: NodeCoverage[];
}

export interface SummaryQuery {
  protocol?: L4Protocol;
  /** A composed KFL filter over flow fields ('' or absent = all). */
  kfl?: string;
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
  /** With Kubernetes identities: traffic per namespace ('' = outside the cluster), biggest first. */
  by_namespace?: NamespaceTraffic[];
  /** With Kubernetes identities: client -> server namespace pairs that differ, biggest first. */
  cross_namespace?: NamespacePair[];
  nodes: NodeCoverage[];
}

export interface NamespaceTraffic {
  namespace: string;
  flows: number;
  packets: number;
  bytes: number;
}

export interface NamespacePair {
  src_namespace: string;
  dst_namespace: string;
  flows: number;
  bytes: number;
}

/** Per-call context: cancellation from the MCP client travels down to the workers. */
export interface CallContext {
  signal: AbortSignal;
}

/** The oldest and newest timestamp of one kind of data a node holds, in microseconds. */
export interface TimeRange {
  oldest_us: number;
  newest_us: number;
}

/** What one node can answer about; a kind of data the node holds none of is absent. */
export interface NodeBoundaries {
  node: string;
  /** L4 flows (what list_l4_flows and get_l4_flow_summary see). */
  flows?: TimeRange;
  /** Raw packets the node's store can export, after retention. */
  packets?: TimeRange;
  /** L7 API calls; absent until L7 dissection lands. */
  entries?: TimeRange;
}

export interface BoundariesReport {
  boundaries: NodeBoundaries[];
  nodes: NodeCoverage[];
}

/** Time without capture (tcpdump down), in microseconds. */
export interface CaptureGap {
  from_us: number;
  to_us: number;
  reason: string;
}

/** One capture source of a worker: a replayed file or a live interface. */
export interface CaptureSourceStatus {
  kind: 'file' | 'interface';
  /** File path or interface name. */
  name: string;
  /** Files: pending, replaying, done, failed. Interfaces: starting, capturing, restarting, failed, stopped. */
  state: string;
  error?: string;
  packets: number;
  bytes: number;
  /** Interfaces only: the BPF filter, libpcap's counters (summed over restarts), restarts and gaps. */
  filter?: string;
  received_by_filter?: number;
  kernel_drops?: number;
  restarts?: number;
  gaps?: CaptureGap[];
}

export interface DecodeCount {
  reason: string;
  count: number;
}

/** One worker as the source sees it; everything but the identity is absent when it did not answer. */
export interface WorkerState {
  node: string;
  /** How the source reaches the worker (e.g. its gRPC address). */
  address?: string;
  state: 'connected' | 'unavailable' | 'error';
  /** Why it is unavailable or failed. */
  message?: string;
  version?: string;
  started_at_us?: number;
  sources?: CaptureSourceStatus[];
  packets_seen?: number;
  packets_decoded?: number;
  /** Packets without TCP or UDP we track (ARP, ICMP, ...), by reason. */
  skipped?: DecodeCount[];
  /** Malformed or unsupported headers, by reason. */
  errors?: DecodeCount[];
  flows_tracked?: number;
  /** Flows dropped from memory by the worker's age and count limits: their traffic is not in flow answers. */
  flows_evicted?: number;
  boundaries?: NodeBoundaries;
  /** The worker's Kubernetes resolver: absent when it has none. */
  kubernetes?: KubernetesSourceStatus;
  /** Which pods the worker's live capture is limited to; absent when it is not limited. */
  targeting?: TargetingInfo;
}

/** Live capture limited to some pods: a BPF filter from their addresses, rebuilt as pods come and go. */
export interface TargetingInfo {
  namespaces: string[];
  excluded_namespaces: string[];
  pod_regex: string;
  pods: number;
  pod_ips: number;
  /** `node`: the pods of the worker's node; `cluster`: every pod (the worker's node is unknown). */
  scope: string;
  /** `hosts`, `nets` (aggregated, may include neighbours), `none` (nothing captured), `all` (not applied). */
  mode: string;
  /** The targeting part of the filter, and the whole filter tcpdump runs with. */
  target_filter: string;
  filter: string;
  checked_at_us: number;
  updated_at_us: number;
  updates: number;
  warning?: string;
}

/** Where a worker's Kubernetes identities come from and how healthy that is. */
export interface KubernetesSourceStatus {
  /** `cluster-map` or `kube-watch`. */
  source: string;
  /** Maps: `loaded`, `loaded-with-errors`; watches: `starting`, `synced`, `degraded`, `error`, `stopped`. */
  state: string;
  /** The files, or the API server. */
  detail: string;
  pods: number;
  services: number;
  nodes: number;
  endpoint_slices: number;
  /** Items skipped (maps, with their paths) or the resources' last errors (watches). */
  errors: string[];
  /** 0 = not synced yet. */
  last_sync_us: number;
}

export interface StatusReport {
  workers: WorkerState[];
}

export type PcapFormat = 'pcapng' | 'pcap';

/** Which packets to export; every condition given must hold (flow_ids: any of them). */
export interface PcapQuery {
  format: PcapFormat;
  since_us?: number;
  until_us?: number;
  /** Flow ids as list_l4_flows returns them ("<node>/<index>"). */
  flow_ids?: string[];
  /** Packets with any of these addresses at either end. */
  ips?: string[];
  /** Packets with any of these ports at either end. */
  ports?: number[];
  protocol?: L4Protocol;
  /** Export from this snapshot instead of the live packet store. */
  snapshot?: string;
  /** Packets of the flows a composed KFL filter selects, as flows or through their API calls. */
  kfl?: string;
}

export interface PcapProgress {
  /** File bytes received so far. */
  bytes: number;
  packets: number;
}

/** A finished export: where to download it, and until when. */
export interface PcapExport {
  /** Absolute URL of the file. */
  url: string;
  /** File name, e.g. "kubeshark-node-a-20240501T141500Z.pcapng". */
  name: string;
  bytes: number;
  packets: number;
  format: PcapFormat;
  /** When the download stops working (Unix ms). */
  expires_at_ms: number;
  nodes: NodeCoverage[];
}

/** A named, frozen time range of packets and the flows active in it. */
export interface Snapshot {
  name: string;
  node: string;
  /** 0 = unbounded. */
  since_us: number;
  until_us: number;
  created_at_us: number;
  packets: number;
  /** Size of the snapshot's packet file. */
  bytes: number;
  flows: number;
  /** Only complete snapshots exist: "complete". */
  state: string;
}

export interface SnapshotRequest {
  name: string;
  since_us?: number;
  until_us?: number;
}

export interface SnapshotResult {
  /** The snapshot (with several nodes: the first node's, as in `snapshots`). */
  snapshot: Snapshot;
  /** Sources over several nodes: the snapshot as each node holds it, one per node. */
  snapshots?: Snapshot[];
  nodes: NodeCoverage[];
}

export interface SnapshotList {
  snapshots: Snapshot[];
  nodes: NodeCoverage[];
}

/** A targeted capture to run on every node: the pods of `namespaces` matching `pod_regex`, and/or a BPF filter. */
export interface CaptureRequest {
  namespaces?: string[];
  pod_regex?: string;
  bpf?: string;
  duration_s: number;
  /** Capture file bytes per node. */
  max_bytes: number;
}

/** One node's part of a capture. */
export interface NodeCapture {
  node: string;
  /** `running`, `done`, `stopped`, `limit` (byte budget reached), `failed`. */
  state: string;
  packets: number;
  bytes: number;
  started_at_us: number;
  /** 0 while running. */
  ended_at_us: number;
  filter: string;
  /** Pod addresses the namespaces / pod regex selected on the node. */
  pod_ips: number;
  error?: string;
  /** Why the node captured nothing (e.g. no targeted pod runs there). */
  note?: string;
  /** The snapshot holding the node's packets (export_pcap snapshot=<id>). */
  snapshot?: string;
}

export interface CaptureProgress {
  elapsed_ms: number;
  duration_ms: number;
  packets: number;
  bytes: number;
  /** Nodes still capturing. */
  running: number;
}

export interface CaptureResult {
  /** Shared by every node; also the name of the snapshots that keep the packets. */
  id: string;
  captures: NodeCapture[];
  nodes: NodeCoverage[];
}

/** Application protocols of API calls. */
/** Entry protocols, as the dissectors name them. */
export const API_PROTOCOLS = ['http', 'grpc', 'dns', 'redis', 'postgresql', 'mysql', 'mongodb', 'kafka', 'amqp', 'ws'] as const;
export type ApiProtocol = (typeof API_PROTOCOLS)[number];

/** Which API calls to list: in timestamp order, after `after` (a source cursor) when given. */
export interface ApiCallQuery {
  since_us?: number;
  until_us?: number;
  protocol?: ApiProtocol;
  /** A composed KFL filter for the workers ('' or absent = all). */
  kfl?: string;
  /** Ask for each call's messages (headers, body previews) too (`ApiCall.messages`). */
  full?: boolean;
  limit: number;
  /** Opaque source cursor (`next` of a previous answer): continue after the call it names. */
  after?: string;
}

export interface ApiStatsQuery {
  since_us?: number;
  until_us?: number;
  protocol?: ApiProtocol;
  /** Group by the calls' client too (`ApiStatsGroup.src`): per-edge statistics for the service map. */
  by_client?: boolean;
  /** A composed KFL filter for the workers ('' or absent = all). */
  kfl?: string;
}

/** How many API calls a filter selects, per node. */
export interface ApiCallCount {
  counts: { node: string; scanned: number; matched: number; errors: number; last_error?: string }[];
  nodes: NodeCoverage[];
}

/**
 * One (server, protocol, method, endpoint). The endpoint is the HTTP path without its query,
 * identifier-like segments replaced by `:id`; the gRPC method path; the DNS name; empty for
 * Redis and SQL, which group by method (command or SQL verb) only.
 */
export interface ApiStatsGroup {
  /** With `ApiStatsQuery.by_client`: the calls' client. */
  src?: Endpoint;
  /** The server's address and port (and identity), when the source gives them. */
  dst?: Endpoint;
  /** The server: `ip:port` until Kubernetes identities name it. */
  service: string;
  protocol: string;
  method: string;
  endpoint: string;
  requests: number;
  /** Calls the protocol reported as failed (HTTP >= 400, DNS rcode != 0, gRPC status != 0, SQL errors, ...). */
  failures: number;
  /** Calls that got no answer. */
  unanswered: number;
  statuses: { status_code: number; count: number }[];
  /** elapsed_time of the answered calls, microseconds. */
  latency: Percentiles;
  first_us: number;
  last_us: number;
}

export interface ApiStatsReport {
  groups: ApiStatsGroup[];
  /** Entries counted, over all nodes. */
  entries: number;
  nodes: NodeCoverage[];
}

/** One API call (L7 entry) in its summary shape. */
export interface ApiCall {
  /** `<node>/<flow id>/<index>`. */
  id: string;
  node: string;
  protocol: string;
  /** Request time. */
  timestamp_us: number;
  elapsed_time_us: number;
  /** The flow's client and server, with their Kubernetes identities when resolved. */
  src: Endpoint;
  dst: Endpoint;
  method: string;
  path: string;
  url: string;
  status_code: number;
  flow_id: string;
  error?: string;
  /** The protocol's own account of a failure (HTTP 503 ..., NXDOMAIN, SQLSTATE ...). */
  failure?: string;
  /** With `ApiCallQuery.full`: the request and response as the worker records them (headers, body previews, sizes). */
  messages?: { request: unknown; response: unknown };
  /** Opaque source cursor continuing after this call (see `ApiCallQuery.after`). */
  cursor: string;
}

export interface ApiCallList {
  calls: ApiCall[];
  /** Matches over all pages, when the source knows it. */
  total?: number;
  /** True when more calls match after the last one returned. */
  more: boolean;
  nodes: NodeCoverage[];
}

export interface ApiCallDetail {
  /** The full record as the worker keeps it (headers, body previews, DNS records, ...). */
  call: Record<string, unknown>;
  nodes: NodeCoverage[];
}

export type WorkloadKind = 'pod' | 'service' | 'node';

/** A pod, Service or node as the workers' Kubernetes resolver knows it. */
export interface WorkloadInfo {
  kind: WorkloadKind;
  name: string;
  /** Empty for nodes. */
  namespace: string;
  ips: string[];
  /** Pods: the node they run on. */
  node?: string;
  /** Pods: the controlling workload (a ReplicaSet's Deployment, a StatefulSet, ...). */
  owner?: { kind: string; name: string };
  labels: Record<string, string>;
  /** Pods: the Services they back. */
  services?: string[];
  /** Services: ClusterIP, NodePort, ... */
  type?: string;
  host_network?: boolean;
}

export interface WorkloadQuery {
  namespace?: string;
  /** Alive at this time (µs); absent = now. */
  at_us?: number;
}

export interface WorkloadList {
  /** De-duplicated over the workers, sorted by kind, namespace, name. */
  workloads: WorkloadInfo[];
  namespaces: string[];
  nodes: NodeCoverage[];
}

export interface IpQuery {
  ips?: string[];
  /** Resolve `ips` at this time (µs); absent = now. */
  at_us?: number;
  /** Also every address seen in flows in [since_us, until_us]. */
  from_flows?: boolean;
  since_us?: number;
  until_us?: number;
  /** With from_flows: only addresses the resolver cannot name. */
  unresolved_only?: boolean;
}

/** Who an address is. */
export interface IpInfo {
  ip: string;
  kind: 'pod' | 'service' | 'node' | 'external';
  name?: string;
  namespace?: string;
  pod?: string;
  service?: string;
  services?: string[];
  node?: string;
  owner?: { kind: string; name: string };
  labels?: Record<string, string>;
  /** Why it is external or ambiguous. */
  reason?: string;
  /** Resolved at this time (µs). */
  at_us: number;
  /** from_flows: flows with the address at either end (summed over nodes), first and last seen. */
  flows?: number;
  first_seen_us?: number;
  last_seen_us?: number;
}

export interface IpList {
  ips: IpInfo[];
  nodes: NodeCoverage[];
}

/**
 * Where tools read traffic from. The L4 calls are required; the others are capabilities: a
 * tool is offered only when its source implements what it needs (see `toolsFor`), so a source
 * without packets or snapshots still serves the L4 tools.
 *
 * Errors are `TrafficSourceError`s whose `field`, when set, names the query field at fault
 * (`name`, `since_us`, `flow_ids`, ...); tools translate it into their argument names.
 */
export interface TrafficSource {
  listFlows(query: FlowQuery, ctx: CallContext): Promise<FlowList>;
  getFlowSummary(query: SummaryQuery, ctx: CallContext): Promise<FlowSummary>;
  /** Every worker's state, capture sources and counters. Never throws for a worker that is down: it reports it. */
  getStatus?(ctx: CallContext): Promise<StatusReport>;
  /** Per node, the time range of each kind of data it holds. */
  getDataBoundaries?(ctx: CallContext): Promise<BoundariesReport>;
  /**
   * Exports matching packets into a file the client can download. `onProgress` is called as
   * bytes arrive; when `ctx.signal` fires the export stops and nothing is left behind.
   */
  exportPcap?(query: PcapQuery, ctx: CallContext, onProgress?: (progress: PcapProgress) => void): Promise<PcapExport>;
  createSnapshot?(request: SnapshotRequest, ctx: CallContext): Promise<SnapshotResult>;
  listSnapshots?(ctx: CallContext): Promise<SnapshotList>;
  getSnapshot?(name: string, ctx: CallContext): Promise<SnapshotResult>;
  deleteSnapshot?(name: string, ctx: CallContext): Promise<{ nodes: NodeCoverage[] }>;
  /**
   * Runs a targeted capture on every node and resolves when every node has ended it, reporting
   * progress while it runs. When `ctx.signal` fires the capture is stopped on every node (the
   * packets so far are kept) and the call rejects as cancelled.
   */
  captureTraffic?(request: CaptureRequest, ctx: CallContext, onProgress?: (progress: CaptureProgress) => void): Promise<CaptureResult>;
  /** API calls in timestamp order, paged by the source's own cursor. */
  listApiCalls?(query: ApiCallQuery, ctx: CallContext): Promise<ApiCallList>;
  /** One API call's full record; a TrafficSourceError `not_found` when there is none. */
  getApiCall?(id: string, ctx: CallContext): Promise<ApiCallDetail>;
  /** Request counts, failures and latency per server and endpoint, merged over the nodes. */
  getApiStats?(query: ApiStatsQuery, ctx: CallContext): Promise<ApiStatsReport>;
  /** How many API calls in a window a KFL filter selects, per node. */
  countApiCalls?(query: { since_us?: number; until_us?: number; kfl?: string }, ctx: CallContext): Promise<ApiCallCount>;
  /**
   * Pods, Services and nodes from the workers' Kubernetes resolvers. A source without one fails
   * with `failed_precondition` saying how to configure it.
   */
  listWorkloads?(query: WorkloadQuery, ctx: CallContext): Promise<WorkloadList>;
  /** Who addresses are (given ones, or those seen in flows), from the workers' resolvers. */
  resolveIps?(query: IpQuery, ctx: CallContext): Promise<IpList>;
}
