import {
  TrafficSourceError,
  type ApiCall,
  type ApiCallDetail,
  type ApiCallList,
  type ApiCallQuery,
  type ApiStatsQuery,
  type ApiCallCount,
  type ApiStatsReport,
  type BoundariesReport,
  type CallContext,
  type Flow,
  type FlowGroup,
  type FlowList,
  type FlowQuery,
  type FlowSummary,
  type NodeCoverage,
  type PcapExport,
  type PcapProgress,
  type PcapQuery,
  type Snapshot,
  type SnapshotList,
  type SnapshotRequest,
  type SnapshotResult,
  type StatusReport,
  type SummaryQuery,
  type TrafficSource,
} from '../src/index';

/**
 * A TrafficSource over hand-written flows. It answers with what it was given, paged by the
 * query's offset and limit (no filtering or ordering: that is the real source's job), and records every query, so tests can check exactly what
 * the tools asked for.
 */
export class MemorySource implements TrafficSource {
  readonly flowQueries: FlowQuery[] = [];
  readonly summaryQueries: SummaryQuery[] = [];
  readonly signals: AbortSignal[] = [];

  constructor(
    public flows: Flow[] = [],
    public groups: FlowGroup[] = [],
    public summary: FlowSummary = emptySummary(),
    /** Matches "before the limit"; defaults to the number of flows. */
    public total?: number,
    public nodes: NodeCoverage[] = [{ node: 'node-a', state: 'ok' }],
  ) {}

  async listFlows(query: FlowQuery, ctx: CallContext): Promise<FlowList> {
    this.flowQueries.push(query);
    this.signals.push(ctx.signal);
    const rows = query.aggregate === 'none' ? this.flows : this.groups;
    const from = query.offset ?? 0;
    return {
      flows: query.aggregate === 'none' ? this.flows.slice(from, from + query.limit) : [],
      groups: query.aggregate === 'none' ? [] : this.groups.slice(from, from + query.limit),
      total: this.total ?? rows.length,
      nodes: this.nodes,
    };
  }

  async getFlowSummary(query: SummaryQuery, ctx: CallContext): Promise<FlowSummary> {
    this.summaryQueries.push(query);
    this.signals.push(ctx.signal);
    return this.summary;
  }
}

/** 2024-05-01T14:16:00.123456Z in microseconds. */
export const T0_US = 1_714_572_960_123_456;

/** A TCP flow lasting exactly 3 s, with a measured handshake. */
export const tcpFlow: Flow = {
  id: 'node-a/1',
  node: 'node-a',
  protocol: 'tcp',
  client: { ip: '10.0.0.1', port: 51000, pod: 'web-0', namespace: 'shop' },
  server: { ip: '10.0.0.2', port: 80, service: 'api', namespace: 'shop' },
  client_to_server: { packets: 10, bytes: 1500, payload_bytes: 900 },
  server_to_client: { packets: 8, bytes: 12000, payload_bytes: 11000 },
  first_seen_us: T0_US,
  last_seen_us: T0_US + 3_000_000,
  state: 'closed',
  tcp_handshake_client_us: 120,
  tcp_handshake_server_us: 450,
  syn_count: 2,
  fin_count: 2,
  rst_count: 0,
};

/** A UDP exchange seen at a single instant (zero duration), 42 us after a whole second. */
export const udpFlow: Flow = {
  id: 'node-a/2',
  node: 'node-a',
  protocol: 'udp',
  client: { ip: '10.0.0.3', port: 5353 },
  server: { ip: '10.0.0.1', port: 53 },
  client_to_server: { packets: 1, bytes: 80, payload_bytes: 38 },
  server_to_client: { packets: 0, bytes: 0, payload_bytes: 0 },
  first_seen_us: 1_714_572_961_000_042,
  last_seen_us: 1_714_572_961_000_042,
  state: 'active',
  syn_count: 0,
  fin_count: 0,
  rst_count: 0,
};

export const ipPairGroup: FlowGroup = {
  key: '10.0.0.1 -> 10.0.0.2',
  client: { ip: '10.0.0.1' },
  server: { ip: '10.0.0.2' },
  flows: 3,
  tcp_flows: 3,
  udp_flows: 0,
  client_to_server: { packets: 30, bytes: 4500, payload_bytes: 2700 },
  server_to_client: { packets: 24, bytes: 36000, payload_bytes: 33000 },
  first_seen_us: T0_US,
  last_seen_us: T0_US + 10_000_000,
  tcp_handshake_client: { count: 3, p50_us: 100, p90_us: 130, p99_us: 140 },
  tcp_handshake_server: { count: 3, p50_us: 400, p90_us: 480, p99_us: 500 },
};

export function emptySummary(): FlowSummary {
  return {
    total_flows: 0,
    total_packets: 0,
    total_bytes: 0,
    tcp: { flows: 0, packets: 0, bytes: 0 },
    udp: { flows: 0, packets: 0, bytes: 0 },
    unique_clients: 0,
    unique_servers: 0,
    top_by_bytes: [],
    top_by_packets: [],
    tcp_handshake_client: { count: 0, p50_us: 0, p90_us: 0, p99_us: 0 },
    tcp_handshake_server: { count: 0, p50_us: 0, p90_us: 0, p99_us: 0 },
    first_seen_us: 0,
    last_seen_us: 0,
    nodes: [{ node: 'node-a', state: 'ok' }],
  };
}

/** A summary whose median server-side handshake is `p50Us`. */
export function summaryWithHandshake(p50Us: number): FlowSummary {
  return {
    total_flows: 2,
    total_packets: 19,
    total_bytes: 13580,
    tcp: { flows: 1, packets: 18, bytes: 13500 },
    udp: { flows: 1, packets: 1, bytes: 80 },
    unique_clients: 2,
    unique_servers: 2,
    top_by_bytes: [{ ip: '10.0.0.2', tx_packets: 8, rx_packets: 10, tx_bytes: 12000, rx_bytes: 1500, flows: 1 }],
    top_by_packets: [{ ip: '10.0.0.1', tx_packets: 10, rx_packets: 8, tx_bytes: 1500, rx_bytes: 12000, flows: 2 }],
    tcp_handshake_client: { count: 1, p50_us: p50Us / 2, p90_us: p50Us / 2, p99_us: p50Us / 2 },
    tcp_handshake_server: { count: 1, p50_us: p50Us, p90_us: p50Us * 2, p99_us: p50Us * 3 },
    first_seen_us: T0_US,
    last_seen_us: T0_US + 3_000_000,
    nodes: [
      { node: 'node-a', state: 'ok' },
      { node: 'node-b', state: 'unavailable', message: 'connection refused' },
    ],
  };
}

/**
 * A MemorySource that also has every optional capability: status, boundaries, PCAP export and
 * snapshots, answered from fields the test sets, with every request recorded. `fail` makes the
 * next call of a method throw.
 */
export class CapableSource extends MemorySource implements Required<Pick<TrafficSource, 'getStatus' | 'getDataBoundaries' | 'exportPcap' | 'createSnapshot' | 'listSnapshots' | 'getSnapshot' | 'deleteSnapshot' | 'listApiCalls' | 'getApiCall' | 'getApiStats' | 'countApiCalls'>> {
  readonly calls: { method: string; args: unknown }[] = [];
  status: StatusReport = { workers: [] };
  boundaries: BoundariesReport = { boundaries: [], nodes: [] };
  snapshots: Snapshot[] = [];
  /** Progress the export reports before answering, in order. */
  exportSteps: PcapProgress[] = [];
  exportResult: PcapExport = {
    url: 'http://localhost:8898/downloads/tok/kubeshark-node-a.pcapng',
    name: 'kubeshark-node-a.pcapng',
    bytes: 4096,
    packets: 12,
    format: 'pcapng',
    expires_at_ms: Date.UTC(2024, 4, 1, 15, 16, 0),
    nodes: [{ node: 'node-a', state: 'ok' }],
  };
  failures = new Map<string, TrafficSourceError>();

  private record(method: string, args: unknown, ctx: CallContext): void {
    this.calls.push({ method, args });
    this.signals.push(ctx.signal);
    const err = this.failures.get(method);
    if (err) {
      this.failures.delete(method);
      throw err;
    }
  }

  /** API calls list_api_calls sees (no filtering: the test asks for what it gave). */
  apiCalls: ApiCall[] = [];

  async listApiCalls(query: ApiCallQuery, ctx: CallContext): Promise<ApiCallList> {
    this.record('listApiCalls', query, ctx);
    return { calls: this.apiCalls.slice(0, query.limit), more: this.apiCalls.length > query.limit, nodes: this.nodes };
  }

  async getApiCall(id: string, ctx: CallContext): Promise<ApiCallDetail> {
    this.record('getApiCall', id, ctx);
    const c = this.apiCalls.find((x) => x.id === id);
    if (!c) throw new TrafficSourceError('not_found', `no entry "${id}"`);
    return { call: { ...c }, nodes: this.nodes };
  }

  /** What countApiCalls answers (per node), whatever the filter: the test checks the query it got. */
  apiCounts: ApiCallCount['counts'] = [{ node: 'node-a', scanned: 0, matched: 0, errors: 0 }];

  async countApiCalls(query: { since_us?: number; until_us?: number; kfl?: string }, ctx: CallContext): Promise<ApiCallCount> {
    this.record('countApiCalls', query, ctx);
    return { counts: this.apiCounts, nodes: this.nodes };
  }

  /** What get_api_stats sees. */
  apiStats: ApiStatsReport = { groups: [], entries: 0, nodes: [{ node: 'node-a', state: 'ok' }] };

  async getApiStats(query: ApiStatsQuery, ctx: CallContext): Promise<ApiStatsReport> {
    this.record('getApiStats', query, ctx);
    return this.apiStats;
  }

  async getStatus(ctx: CallContext): Promise<StatusReport> {
    this.record('getStatus', undefined, ctx);
    return this.status;
  }

  async getDataBoundaries(ctx: CallContext): Promise<BoundariesReport> {
    this.record('getDataBoundaries', undefined, ctx);
    return this.boundaries;
  }

  async exportPcap(query: PcapQuery, ctx: CallContext, onProgress?: (p: PcapProgress) => void): Promise<PcapExport> {
    this.record('exportPcap', { query, progress: onProgress !== undefined }, ctx);
    for (const step of this.exportSteps) {
      onProgress?.(step);
      await new Promise((r) => setTimeout(r, 5));
    }
    return { ...this.exportResult, format: query.format };
  }

  async createSnapshot(request: SnapshotRequest, ctx: CallContext): Promise<SnapshotResult> {
    this.record('createSnapshot', request, ctx);
    const snapshot: Snapshot = { name: request.name, node: 'node-a', since_us: request.since_us ?? 0, until_us: request.until_us ?? 0, created_at_us: T0_US + 60_000_000, packets: 10, bytes: 2048, flows: 2, state: 'complete' };
    this.snapshots.push(snapshot);
    return { snapshot, nodes: this.nodes };
  }

  async listSnapshots(ctx: CallContext): Promise<SnapshotList> {
    this.record('listSnapshots', undefined, ctx);
    return { snapshots: this.snapshots, nodes: this.nodes };
  }

  async getSnapshot(name: string, ctx: CallContext): Promise<SnapshotResult> {
    this.record('getSnapshot', name, ctx);
    const snapshot = this.snapshots.find((s) => s.name === name);
    if (!snapshot) throw new TrafficSourceError('not_found', `no snapshot named "${name}"`);
    return { snapshot, nodes: this.nodes };
  }

  async deleteSnapshot(name: string, ctx: CallContext): Promise<{ nodes: NodeCoverage[] }> {
    this.record('deleteSnapshot', name, ctx);
    return { nodes: this.nodes };
  }
}

/** `n` distinct TCP flows with Kubernetes names, so rows are as large as real ones. */
export function manyFlows(n: number): Flow[] {
  return Array.from({ length: n }, (_, i) => ({
    ...tcpFlow,
    id: `node-a/${i}`,
    client: { ip: `10.1.${Math.floor(i / 250)}.${i % 250}`, port: 40000 + i, pod: `web-${i}`, namespace: 'shop', name: `web-${i}` },
    server: { ip: '10.0.0.2', port: 80, service: 'api', namespace: 'shop', pod: 'api-0' },
    first_seen_us: T0_US + i,
    client_to_server: { ...tcpFlow.client_to_server, tcp: { retransmissions: 1, fast_retransmissions: 0, spurious_retransmissions: 0, out_of_order: 0, duplicate_acks: 2, zero_windows: 0, keep_alives: 0, window_full: 0, lost_segments: 0, acked_unseen_segments: 0 } },
  }));
}
