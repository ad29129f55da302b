import * as grpc from '@grpc/grpc-js';
import {
  ERROR_CODES,
  PCAP_MEDIA_TYPES,
  TrafficSourceError,
  type ApiCall,
  type ApiCallDetail,
  type ApiCallList,
  type ApiCallQuery,
  type ApiStatsQuery,
  type ApiStatsReport,
  type BoundariesReport,
  type CallContext,
  type Flow,
  type FlowGroup,
  type FlowList,
  type FlowQuery,
  type FlowSummary,
  type NodeBoundaries,
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
  type TcpHealth,
  type TimeRange,
  type TrafficSource,
  type WorkerState,
} from '@kubeshark-mcp/mcp-core';
import {
  createWorkerClient,
  type DataBoundaries as ProtoBoundaries,
  type Endpoint as ProtoEndpoint,
  type Flow as ProtoFlow,
  type FlowGroup as ProtoGroup,
  type FlowSummary as ProtoSummary,
  type Talker as ProtoTalker,
  type TimeWindow as ProtoWindow,
  type WorkerClient,
  type WorkerStatus,
} from '@kubeshark-mcp/proto';
import { mergeApiStats, type ProtoApiStats } from './api-stats-merge';
import type { DownloadStore, PendingDownload } from './downloads';

// Message types the proto package does not re-export, taken from the client's signatures.
type StreamMessage<F> = F extends (...args: never[]) => grpc.ClientReadableStream<infer T> ? T : never;
type UnaryResult<F> = F extends (arg: never, callback: grpc.requestCallback<infer T>) => grpc.ClientUnaryCall ? T : never;
type PcapChunk = StreamMessage<WorkerClient['ExportPcap']>;
type SnapshotInfo = UnaryResult<WorkerClient['GetSnapshot']>;
type EntryFrame = StreamMessage<WorkerClient['StreamEntries']>;
type ProtoEntry = UnaryResult<WorkerClient['GetEntry']>;

/** Entries asked of the worker per StreamEntries call while the hub filters by protocol. */
export const ENTRY_BATCH = 1000;

/** The summary fields of a worker entry; `url` and `error` travel only in its JSON. */
function fromProtoEntry(e: ProtoEntry, cursor: string): ApiCall {
  let extra: { url?: unknown; error?: unknown } = {};
  try {
    extra = JSON.parse(e.json || '{}') as typeof extra;
  } catch {
    // A summary without its JSON still lists.
  }
  return {
    id: e.id,
    node: e.node,
    protocol: e.protocol,
    timestamp_us: e.timestamp_us,
    elapsed_time_us: e.elapsed_time_us,
    src: { ip: e.src?.ip ?? '', port: e.src?.port ?? 0 },
    dst: { ip: e.dst?.ip ?? '', port: e.dst?.port ?? 0 },
    method: e.method,
    path: e.path,
    url: typeof extra.url === 'string' ? extra.url : e.path,
    status_code: e.status_code,
    flow_id: e.flow_id,
    ...(typeof extra.error === 'string' && extra.error ? { error: extra.error } : {}),
    cursor,
  };
}

/** Trailing metadata key in which a worker names the request field an error refers to. */
const ARGUMENT_METADATA_KEY = 'x-argument';

export interface WorkerConnection {
  address: string;
  client: WorkerClient;
  /** The worker's node name once it has answered. */
  node?: string;
}

/** The request field a worker named in its trailing metadata, if any. */
function argument(e: Partial<grpc.ServiceError>): { field?: string } {
  const field = e.metadata?.get(ARGUMENT_METADATA_KEY)[0];
  return field ? { field: String(field) } : {};
}

/**
 * The one place where gRPC errors become TrafficSource errors (and so MCP tool errors).
 * The message names the worker, so a model (or a person) knows which node is missing.
 */
export function toSourceError(err: unknown, worker: WorkerConnection): TrafficSourceError {
  const e = err as Partial<grpc.ServiceError>;
  const who = worker.node ? `worker ${worker.node} (${worker.address})` : `worker at ${worker.address}`;
  const details = e.details || e.message || String(err);
  switch (e.code) {
    case grpc.status.UNAVAILABLE:
      return new TrafficSourceError(ERROR_CODES.UNAVAILABLE, `${who} is unavailable: ${details}`, { cause: err });
    case grpc.status.DEADLINE_EXCEEDED:
      return new TrafficSourceError(ERROR_CODES.DEADLINE_EXCEEDED, `${who} did not answer within the deadline`, { cause: err });
    case grpc.status.INVALID_ARGUMENT:
      return new TrafficSourceError(ERROR_CODES.INVALID_ARGUMENT, details, { cause: err, ...argument(e) });
    case grpc.status.UNIMPLEMENTED:
      return new TrafficSourceError(ERROR_CODES.UNIMPLEMENTED, `${who}: ${details}`, { cause: err });
    case grpc.status.NOT_FOUND:
      return new TrafficSourceError(ERROR_CODES.NOT_FOUND, details, { cause: err, ...argument(e) });
    case grpc.status.ALREADY_EXISTS:
      return new TrafficSourceError(ERROR_CODES.ALREADY_EXISTS, details, { cause: err, ...argument(e) });
    case grpc.status.FAILED_PRECONDITION:
      return new TrafficSourceError(ERROR_CODES.FAILED_PRECONDITION, `${who}: ${details}`, { cause: err });
    case grpc.status.RESOURCE_EXHAUSTED:
      return new TrafficSourceError(ERROR_CODES.RESOURCE_EXHAUSTED, `${who}: ${details}`, { cause: err });
    case grpc.status.CANCELLED:
      return new TrafficSourceError(ERROR_CODES.CANCELLED, 'the request was cancelled', { cause: err });
    default:
      return new TrafficSourceError(ERROR_CODES.INTERNAL, `${who} failed: ${details}`, { cause: err });
  }
}

const endpoint = (e: ProtoEndpoint | null): Flow['client'] => {
  const out: Flow['client'] = { ip: e?.ip ?? '', port: e?.port ?? 0 };
  for (const k of ['name', 'namespace', 'pod', 'service', 'node'] as const) if (e?.[k]) out[k] = e[k];
  return out;
};

const stats = (d: { packets: number; bytes: number; payload_bytes: number; tcp?: TcpHealth | null } | null) => ({
  packets: d?.packets ?? 0,
  bytes: d?.bytes ?? 0,
  payload_bytes: d?.payload_bytes ?? 0,
  ...(d?.tcp ? { tcp: { ...d.tcp } } : {}),
});

const percentiles = (p: { count: number; p50_us: number; p90_us: number; p99_us: number; sketch?: Uint8Array } | null) => ({
  count: p?.count ?? 0,
  p50_us: p?.p50_us ?? 0,
  p90_us: p?.p90_us ?? 0,
  p99_us: p?.p99_us ?? 0,
  ...(p?.sketch?.length ? { sketch: p.sketch } : {}),
});

function fromProtoFlow(f: ProtoFlow): Flow {
  const flow: Flow = {
    id: f.id,
    node: f.node,
    protocol: f.protocol === 'UDP' ? 'udp' : 'tcp',
    client: endpoint(f.client),
    server: endpoint(f.server),
    client_to_server: stats(f.client_to_server),
    server_to_client: stats(f.server_to_client),
    first_seen_us: f.first_seen_us,
    last_seen_us: f.last_seen_us,
    state: f.state,
    syn_count: f.syn_count,
    fin_count: f.fin_count,
    rst_count: f.rst_count,
    ...(f.protocol === 'TCP' ? { completeness: f.completeness } : {}),
  };
  if (f.tcp_handshake_client_us !== undefined) flow.tcp_handshake_client_us = f.tcp_handshake_client_us;
  if (f.tcp_handshake_server_us !== undefined) flow.tcp_handshake_server_us = f.tcp_handshake_server_us;
  return flow;
}

function fromProtoGroup(g: ProtoGroup): FlowGroup {
  const { port: _c, ...client } = endpoint(g.client);
  const { port: _s, ...server } = endpoint(g.server);
  return {
    key: g.key,
    client,
    server,
    flows: g.flows,
    tcp_flows: g.tcp_flows,
    udp_flows: g.udp_flows,
    client_to_server: stats(g.client_to_server),
    server_to_client: stats(g.server_to_client),
    first_seen_us: g.first_seen_us,
    last_seen_us: g.last_seen_us,
    tcp_handshake_client: percentiles(g.tcp_handshake_client),
    tcp_handshake_server: percentiles(g.tcp_handshake_server),
  };
}

const PROTOCOL = { tcp: 'TCP', udp: 'UDP' } as const;
const AGGREGATE = { none: 'AGGREGATE_NONE', ip_pair: 'AGGREGATE_IP_PAIR', node: 'AGGREGATE_NODE' } as const;

/**
 * Creating a snapshot copies packets on the worker's disk, which takes longer than a query:
 * it gets this many worker deadlines.
 */
export const SNAPSHOT_DEADLINE_FACTOR = 10;

const window = (w: ProtoWindow | null | undefined): TimeRange | undefined =>
  w && (w.oldest_us || w.newest_us) ? { oldest_us: w.oldest_us, newest_us: w.newest_us } : undefined;

function fromProtoBoundaries(b: ProtoBoundaries, node: string): NodeBoundaries {
  const out: NodeBoundaries = { node: b.node || node };
  const flows = window(b.flows);
  const packets = window(b.packets);
  const entries = window(b.entries);
  if (flows) out.flows = flows;
  if (packets) out.packets = packets;
  if (entries) out.entries = entries;
  return out;
}

const fromProtoSnapshot = (s: SnapshotInfo, node: string): Snapshot => ({
  name: s.name,
  node,
  since_us: s.since_us,
  until_us: s.until_us,
  created_at_us: s.created_at_us,
  packets: s.packets,
  bytes: s.bytes,
  flows: s.flows,
  state: s.state,
});

const evicted = (s: WorkerStatus): number => Number((s as { flows_evicted?: number }).flows_evicted ?? 0);

/** 2024-05-01T14:15:00.123Z -> 20240501T141500Z, for file names. */
const compactTime = (ms: number): string => new Date(ms).toISOString().replace(/\.\d+/, '').replace(/[-:]/g, '');

/**
 * TrafficSource over the worker gRPC API. Every call carries a deadline and is cancelled when
 * the MCP request is. This version talks to one worker (see HubConfig.workers).
 *
 * With a download store it also exports PCAP: the worker's stream is written into a file on the
 * hub, served by the download routes. Without one, `exportPcap` is absent and the tool is not
 * offered.
 */
export class GrpcTrafficSource implements TrafficSource {
  readonly workers: WorkerConnection[];
  readonly exportPcap?: (query: PcapQuery, ctx: CallContext, onProgress?: (progress: PcapProgress) => void) => Promise<PcapExport>;

  constructor(
    addresses: readonly string[],
    private readonly deadlineMs: number,
    downloads?: DownloadStore,
  ) {
    this.workers = addresses.map((address) => ({
      address,
      client: createWorkerClient(address, grpc.credentials.createInsecure(), {
        // Reconnect quickly after a worker restart rather than waiting out a long backoff.
        'grpc.initial_reconnect_backoff_ms': 200,
        'grpc.max_reconnect_backoff_ms': 5000,
      }),
    }));
    if (downloads) this.exportPcap = (query, ctx, onProgress) => this.exportToDownload(downloads, query, ctx, onProgress);
  }

  private get worker(): WorkerConnection {
    return this.workers[0]!;
  }

  /** Calls one unary method with a deadline, cancellation and error translation. */
  private unary<Req, Res>(
    worker: WorkerConnection,
    method: (req: Req, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => grpc.ClientUnaryCall,
    req: Req,
    signal?: AbortSignal,
    deadlineMs = this.deadlineMs,
  ): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      if (signal?.aborted) {
        reject(new TrafficSourceError(ERROR_CODES.CANCELLED, 'the request was cancelled'));
        return;
      }
      const call = method.call(worker.client, req, { deadline: Date.now() + deadlineMs }, (err, res) => {
        signal?.removeEventListener('abort', onAbort);
        if (err || !res) reject(toSourceError(err ?? new Error('empty response'), worker));
        else resolve(res);
      });
      const onAbort = (): void => call.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private coverage(node: string): NodeCoverage[] {
    return [{ node, state: 'ok' }];
  }

  async listFlows(q: FlowQuery, ctx: CallContext): Promise<FlowList> {
    const w = this.worker;
    const res = await this.unary(
      w,
      w.client.ListFlows as never,
      {
        ip: q.ip ?? '',
        port: q.port ?? 0,
        protocol: q.protocol ? PROTOCOL[q.protocol] : 'L4_PROTOCOL_UNSPECIFIED',
        limit: q.limit,
        aggregate: AGGREGATE[q.aggregate],
        since_us: q.since_us ?? 0,
        until_us: q.until_us ?? 0,
        order_by: q.order_by,
        offset: q.offset ?? 0,
      },
      ctx.signal,
    );
    const r = res as { node: string; flows: ProtoFlow[]; groups: ProtoGroup[]; total: number };
    w.node = r.node;
    return { flows: r.flows.map(fromProtoFlow), groups: r.groups.map(fromProtoGroup), total: r.total, nodes: this.coverage(r.node) };
  }

  async getFlowSummary(q: SummaryQuery, ctx: CallContext): Promise<FlowSummary> {
    const w = this.worker;
    const s = (await this.unary(
      w,
      w.client.GetFlowSummary as never,
      {
        protocol: q.protocol ? PROTOCOL[q.protocol] : 'L4_PROTOCOL_UNSPECIFIED',
        since_us: q.since_us ?? 0,
        until_us: q.until_us ?? 0,
        top: q.top,
      },
      ctx.signal,
    )) as ProtoSummary;
    w.node = s.node;
    const talker = (t: ProtoTalker) => ({
      ip: t.ip,
      tx_packets: t.tx_packets,
      rx_packets: t.rx_packets,
      tx_bytes: t.tx_bytes,
      rx_bytes: t.rx_bytes,
      flows: t.flows,
    });
    const totals = (p: { flows: number; packets: number; bytes: number } | null) => ({ flows: p?.flows ?? 0, packets: p?.packets ?? 0, bytes: p?.bytes ?? 0 });
    return {
      total_flows: s.total_flows,
      total_packets: s.total_packets,
      total_bytes: s.total_bytes,
      tcp: totals(s.tcp),
      udp: totals(s.udp),
      unique_clients: s.unique_clients,
      unique_servers: s.unique_servers,
      top_by_bytes: s.top_by_bytes.map(talker),
      top_by_packets: s.top_by_packets.map(talker),
      tcp_handshake_client: percentiles(s.tcp_handshake_client),
      tcp_handshake_server: percentiles(s.tcp_handshake_server),
      first_seen_us: s.first_seen_us,
      last_seen_us: s.last_seen_us,
      nodes: this.coverage(s.node),
    };
  }

  /** Each worker's status, or why it could not be read; for /healthz, /readyz and get_status. */
  async workerStatuses(
    deadlineMs = 2000,
    signal?: AbortSignal,
  ): Promise<{ address: string; node?: string; state: 'connected' | 'unavailable' | 'error'; error?: string; status?: WorkerStatus }[]> {
    return Promise.all(
      this.workers.map(async (w) => {
        try {
          const status = (await this.unary(w, w.client.GetStatus as never, {}, signal, deadlineMs)) as WorkerStatus;
          w.node = status.node;
          return { address: w.address, node: status.node, state: 'connected' as const, status };
        } catch (err) {
          const e = err as TrafficSourceError;
          return { address: w.address, ...(w.node ? { node: w.node } : {}), state: e.code === 'unavailable' || e.code === 'deadline_exceeded' ? ('unavailable' as const) : ('error' as const), error: e.message };
        }
      }),
    );
  }

  async getStatus(ctx: CallContext): Promise<StatusReport> {
    const statuses = await this.workerStatuses(this.deadlineMs, ctx.signal);
    if (ctx.signal.aborted) throw new TrafficSourceError(ERROR_CODES.CANCELLED, 'the request was cancelled');
    return {
      workers: statuses.map(({ address, node, state, error, status }): WorkerState => {
        if (!status) return { node: node ?? address, address, state, ...(error ? { message: error } : {}) };
        return {
          node: status.node,
          address,
          state,
          version: status.version,
          started_at_us: status.started_at_us,
          sources: status.sources.map((src) => ({
            kind: src.kind === 'interface' ? 'interface' : 'file',
            name: src.name,
            state: src.state,
            packets: src.packets,
            bytes: src.bytes,
            ...(src.error ? { error: src.error } : {}),
            ...(src.kind === 'interface'
              ? {
                  filter: src.filter,
                  received_by_filter: src.received_by_filter,
                  kernel_drops: src.kernel_drops,
                  restarts: src.restarts,
                  gaps: src.gaps.map((g) => ({ from_us: g.from_us, to_us: g.to_us, reason: g.reason })),
                }
              : {}),
          })),
          packets_seen: status.packets_seen,
          packets_decoded: status.packets_decoded,
          skipped: status.skipped.map((c) => ({ reason: c.reason, count: c.count })),
          errors: status.errors.map((c) => ({ reason: c.reason, count: c.count })),
          flows_tracked: status.flows_tracked,
          // Newer workers report flows dropped by their limits; older ones leave it out.
          ...(evicted(status) ? { flows_evicted: evicted(status) } : {}),
          ...(status.boundaries ? { boundaries: fromProtoBoundaries(status.boundaries, status.node) } : {}),
        };
      }),
    };
  }

  /** Per node, its data windows; a worker that does not answer is reported, not thrown. */
  async getDataBoundaries(ctx: CallContext): Promise<BoundariesReport> {
    const report: BoundariesReport = { boundaries: [], nodes: [] };
    for (const w of this.workers) {
      try {
        const b = (await this.unary(w, w.client.GetDataBoundaries as never, {}, ctx.signal)) as ProtoBoundaries;
        w.node = b.node || w.node;
        report.boundaries.push(fromProtoBoundaries(b, w.node ?? w.address));
        report.nodes.push({ node: w.node ?? w.address, state: 'ok' });
      } catch (err) {
        const e = err as TrafficSourceError;
        if (e.code === ERROR_CODES.CANCELLED) throw e;
        const state = e.code === ERROR_CODES.UNAVAILABLE || e.code === ERROR_CODES.DEADLINE_EXCEEDED ? 'unavailable' : 'error';
        report.nodes.push({ node: w.node ?? w.address, state, message: e.message });
      }
    }
    return report;
  }

  /** The worker's node name, asking it once if no answer has told us yet. */
  private async nodeOf(w: WorkerConnection, signal: AbortSignal): Promise<string> {
    if (!w.node) {
      const b = (await this.unary(w, w.client.GetDataBoundaries as never, {}, signal)) as ProtoBoundaries;
      w.node = b.node;
    }
    return w.node ?? w.address;
  }

  async createSnapshot(r: SnapshotRequest, ctx: CallContext): Promise<SnapshotResult> {
    const w = this.worker;
    const node = await this.nodeOf(w, ctx.signal);
    const req = { name: r.name, since_us: r.since_us ?? 0, until_us: r.until_us ?? 0 };
    const s = (await this.unary(w, w.client.CreateSnapshot as never, req, ctx.signal, this.deadlineMs * SNAPSHOT_DEADLINE_FACTOR)) as SnapshotInfo;
    return { snapshot: fromProtoSnapshot(s, node), nodes: this.coverage(node) };
  }

  async listSnapshots(ctx: CallContext): Promise<SnapshotList> {
    const w = this.worker;
    const node = await this.nodeOf(w, ctx.signal);
    const res = (await this.unary(w, w.client.ListSnapshots as never, {}, ctx.signal)) as { snapshots: SnapshotInfo[] };
    return { snapshots: res.snapshots.map((s) => fromProtoSnapshot(s, node)), nodes: this.coverage(node) };
  }

  async getSnapshot(name: string, ctx: CallContext): Promise<SnapshotResult> {
    const w = this.worker;
    const node = await this.nodeOf(w, ctx.signal);
    const s = (await this.unary(w, w.client.GetSnapshot as never, { name }, ctx.signal)) as SnapshotInfo;
    return { snapshot: fromProtoSnapshot(s, node), nodes: this.coverage(node) };
  }

  async deleteSnapshot(name: string, ctx: CallContext): Promise<{ nodes: NodeCoverage[] }> {
    const w = this.worker;
    const node = await this.nodeOf(w, ctx.signal);
    await this.unary(w, w.client.DeleteSnapshot as never, { name }, ctx.signal);
    return { nodes: this.coverage(node) };
  }

  /**
   * API calls over StreamEntries. The worker has no protocol filter, so the hub asks for entries
   * in batches after the last cursor and keeps the matching ones until it has one more than the
   * limit (which says whether more match); every entry carries the worker's cursor, so the next
   * page continues right after the last call returned, whatever was filtered out.
   */
  async listApiCalls(q: ApiCallQuery, ctx: CallContext): Promise<ApiCallList> {
    const w = this.worker;
    const calls: ApiCall[] = [];
    let after = q.after ?? '';
    let node = w.node;
    for (;;) {
      const batch = q.protocol ? ENTRY_BATCH : q.limit + 1 - calls.length;
      const frames = await this.collectEntries(w, { kfl: '', since_us: q.since_us ?? 0, until_us: q.until_us ?? 0, limit: batch, cursor: after, follow: false }, ctx.signal);
      let entries = 0;
      for (const f of frames) {
        if (!f.entry) continue;
        entries++;
        node = f.entry.node || node;
        after = f.cursor;
        if (q.protocol && f.entry.protocol !== q.protocol) continue;
        calls.push(fromProtoEntry(f.entry, f.cursor));
        if (calls.length > q.limit) break;
      }
      if (calls.length > q.limit || entries < batch) break;
    }
    if (node) w.node = node;
    const more = calls.length > q.limit;
    return { calls: calls.slice(0, q.limit), more, nodes: this.coverage(node ?? (await this.nodeOf(w, ctx.signal))) };
  }

  async getApiCall(id: string, ctx: CallContext): Promise<ApiCallDetail> {
    const w = this.worker;
    const e = (await this.unary(w, w.client.GetEntry as never, { id, include_payload: false }, ctx.signal)) as ProtoEntry;
    w.node = e.node || w.node;
    let call: Record<string, unknown>;
    try {
      call = JSON.parse(e.json) as Record<string, unknown>;
    } catch {
      throw new TrafficSourceError(ERROR_CODES.INTERNAL, `worker ${w.node ?? w.address} sent entry "${id}" with a malformed record`);
    }
    return { call, nodes: this.coverage(e.node || (w.node ?? w.address)) };
  }

  async getApiStats(q: ApiStatsQuery, ctx: CallContext): Promise<ApiStatsReport> {
    const w = this.worker;
    const res = (await this.unary(w, w.client.GetApiStats as never, { since_us: q.since_us ?? 0, until_us: q.until_us ?? 0, protocol: q.protocol ?? '' }, ctx.signal)) as ProtoApiStats;
    w.node = res.node || w.node;
    return { ...mergeApiStats([res]), nodes: this.coverage(res.node || (w.node ?? w.address)) };
  }

  /** One StreamEntries call read to its end, within the deadline; cancelled with the request. */
  private collectEntries(w: WorkerConnection, request: object, signal: AbortSignal): Promise<EntryFrame[]> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(new TrafficSourceError(ERROR_CODES.CANCELLED, 'the request was cancelled'));
        return;
      }
      const call = w.client.StreamEntries(request, { deadline: Date.now() + this.deadlineMs });
      const frames: EntryFrame[] = [];
      let settled = false;
      const finish = (err?: unknown): void => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        if (err === undefined) {
          resolve(frames);
          return;
        }
        call.cancel();
        reject(err);
      };
      const onAbort = (): void => finish(new TrafficSourceError(ERROR_CODES.CANCELLED, 'the request was cancelled'));
      signal.addEventListener('abort', onAbort, { once: true });
      call.on('data', (f: EntryFrame) => {
        if (!settled) frames.push(f);
      });
      call.on('error', (err) => finish(toSourceError(err, w)));
      call.on('end', () => finish());
    });
  }

  /**
   * Streams ExportPcap into a download file. The stream has no overall deadline (a large export
   * takes as long as it takes) but the worker must send something within every deadline
   * period; the hub's size limit, a cancelled request or any failure ends the call and deletes
   * the partial file.
   */
  private async exportToDownload(downloads: DownloadStore, q: PcapQuery, ctx: CallContext, onProgress?: (p: PcapProgress) => void): Promise<PcapExport> {
    const w = this.worker;
    const node = await this.nodeOf(w, ctx.signal);
    const stem = q.snapshot ? `${node}-${q.snapshot}` : `${node}-${compactTime(q.since_us !== undefined ? q.since_us / 1000 : Date.now())}`;
    const file = downloads.begin(`kubeshark-${stem}.${q.format}`, PCAP_MEDIA_TYPES[q.format]);
    const request = {
      since_us: q.since_us ?? 0,
      until_us: q.until_us ?? 0,
      flow_ids: q.flow_ids ?? [],
      format: q.format,
      ips: q.ips ?? [],
      ports: q.ports ?? [],
      protocol: q.protocol ? PROTOCOL[q.protocol] : 'L4_PROTOCOL_UNSPECIFIED',
      snapshot: q.snapshot ?? '',
    };
    try {
      const totals = await this.streamExport(w, request, file, ctx.signal, onProgress);
      if (totals.bytes !== file.bytes) {
        throw new TrafficSourceError(ERROR_CODES.INTERNAL, `worker ${node} announced ${totals.bytes} bytes but sent ${file.bytes}`);
      }
      const d = await file.finish();
      return { url: d.url, name: d.name, bytes: d.bytes, packets: totals.packets, format: q.format, expires_at_ms: d.expiresAtMs, nodes: this.coverage(node) };
    } catch (err) {
      file.abort();
      throw err;
    }
  }

  private streamExport(
    w: WorkerConnection,
    request: object,
    file: PendingDownload,
    signal: AbortSignal,
    onProgress?: (p: PcapProgress) => void,
  ): Promise<{ packets: number; bytes: number }> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(new TrafficSourceError(ERROR_CODES.CANCELLED, 'the request was cancelled'));
        return;
      }
      const call = w.client.ExportPcap(request);
      let packets = 0;
      let done: { packets: number; bytes: number } | undefined;
      let settled = false;
      let idle: NodeJS.Timeout | undefined;
      const finish = (err?: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(idle);
        signal.removeEventListener('abort', onAbort);
        if (err === undefined && done) {
          resolve(done);
          return;
        }
        call.cancel();
        reject(err ?? new TrafficSourceError(ERROR_CODES.INTERNAL, `worker at ${w.address} ended the export without its final chunk`));
      };
      const armIdle = (): void => {
        clearTimeout(idle);
        idle = setTimeout(
          () => finish(new TrafficSourceError(ERROR_CODES.DEADLINE_EXCEEDED, `worker ${w.node ?? w.address} sent nothing for ${this.deadlineMs} ms during the export`)),
          this.deadlineMs,
        );
      };
      const onAbort = (): void => finish(new TrafficSourceError(ERROR_CODES.CANCELLED, 'the request was cancelled'));
      signal.addEventListener('abort', onAbort, { once: true });
      armIdle();
      call.on('data', (chunk: PcapChunk) => {
        if (settled) return;
        armIdle();
        try {
          if (chunk.data.length > 0 && !file.write(chunk.data)) {
            // Back-pressure: let the file catch up before reading more from the worker. The
            // worker is not to blame for the wait, so the idle clock stops meanwhile.
            call.pause();
            clearTimeout(idle);
            file.onDrain(() => {
              if (settled) return;
              armIdle();
              call.resume();
            });
          }
        } catch (err) {
          finish(err);
          return;
        }
        packets += chunk.packets;
        if (chunk.done) done = { packets: chunk.total_packets, bytes: chunk.total_bytes };
        onProgress?.({ bytes: file.bytes, packets });
      });
      call.on('error', (err) => finish(toSourceError(err, w)));
      call.on('end', () => finish());
    });
  }

  close(): void {
    for (const w of this.workers) w.client.close();
  }
}
