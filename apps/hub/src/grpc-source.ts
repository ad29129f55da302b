import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import {
  ERROR_CODES,
  PCAP_MEDIA_TYPES,
  TrafficSourceError,
  type ApiCall,
  type ApiCallDetail,
  type ApiCallList,
  type ApiCallQuery,
  type ApiCallCount,
  type ApiStatsQuery,
  type ApiStatsReport,
  type BoundariesReport,
  type CallContext,
  type CaptureProgress,
  type CaptureRequest,
  type CaptureResult,
  type NodeCapture,
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
import type { DirectionStats, IpInfo, IpList, IpQuery, WorkloadInfo, WorkloadKind, WorkloadList, WorkloadQuery } from '@kubeshark-mcp/mcp-core/model';
import {
  ARGUMENT_METADATA_KEY,
  createWorkerClient,
  type CaptureInfo as ProtoCapture,
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
import { StaticDiscovery, type WorkerDiscovery, type WorkerSink } from './discovery';
import { Heap, TOP_TALKER_FACTOR, decodeCompositeCursor, encodeCompositeCursor, mergeFlows, mergeGroups, mergeSummaries, nodeKey } from './merge';
import { PcapMerger } from './pcap-merge';
import { ExchangeStream, type ExchangeMethod } from './exchange';
import type { DownloadStore } from './downloads';

// Message types the proto package does not re-export, taken from the client's signatures.
type StreamMessage<F> = F extends (...args: never[]) => grpc.ClientReadableStream<infer T> ? T : never;
type UnaryResult<F> = F extends (arg: never, callback: grpc.requestCallback<infer T>) => grpc.ClientUnaryCall ? T : never;
type PcapChunk = StreamMessage<WorkerClient['ExportPcap']>;
type SnapshotInfo = UnaryResult<WorkerClient['GetSnapshot']>;
type EntryFrame = StreamMessage<WorkerClient['StreamEntries']>;
type ProtoEntry = UnaryResult<WorkerClient['GetEntry']>;
type ProtoEntryCount = UnaryResult<WorkerClient['CountEntries']>;
type ProtoWorkloads = UnaryResult<WorkerClient['ResolveWorkloads']>;
type ProtoIps = UnaryResult<WorkerClient['ResolveIps']>;

/**
 * The entry filter the workers run: the composed KFL filter and the protocol argument (a
 * validated protocol name, so it is safe to quote) as one KFL2 expression.
 */
function entryFilter(q: { kfl?: string; protocol?: string }): string {
  const parts = [...(q.kfl ? [`(${q.kfl})`] : []), ...(q.protocol ? [`protocol == ${JSON.stringify(q.protocol)}`] : [])];
  return parts.join(' && ');
}

/**
 * The summary fields of a worker entry, and the messages of a full record. Its JSON has `url`,
 * `error`, `failure` and the messages; batched summaries come without JSON, with `url`, `error`
 * and `failure` in fields of their own.
 */
function fromProtoEntry(e: ProtoEntry, cursor: string): ApiCall {
  let extra: { url?: unknown; error?: unknown; failure?: unknown; request?: unknown; response?: unknown } | undefined;
  if (e.json) {
    try {
      extra = JSON.parse(e.json) as typeof extra;
    } catch {
      // A summary without its JSON still lists.
    }
  }
  const url = extra ? extra.url : e.url;
  const error = extra ? extra.error : e.error;
  const failure = extra ? extra.failure : e.failure;
  const call: ApiCall = {
    id: e.id,
    node: e.node,
    protocol: e.protocol,
    timestamp_us: e.timestamp_us,
    elapsed_time_us: e.elapsed_time_us,
    src: endpoint(e.src),
    dst: endpoint(e.dst),
    method: e.method,
    path: e.path,
    url: typeof url === 'string' ? url : e.path,
    status_code: e.status_code,
    flow_id: e.flow_id,
    cursor,
  };
  if (typeof error === 'string' && error) call.error = error;
  if (typeof failure === 'string' && failure) call.failure = failure;
  // Full records (ApiCallQuery.full) carry the messages: headers and body previews.
  if (extra && (extra.request !== undefined || extra.response !== undefined)) call.messages = { request: extra.request ?? null, response: extra.response ?? null };
  return call;
}

/** Plain words for the socket errors grpc-js passes through, keeping the original text. */
const TRANSPORT_ERRORS: [RegExp, string][] = [
  [/ECONNRESET/, 'the connection was reset (the worker stopped or crashed mid-call)'],
  [/ECONNREFUSED|connection refused/i, 'connection refused (the worker is not running or not listening there)'],
  [/EHOSTUNREACH|ENETUNREACH|No route to host/i, 'the worker\'s address is unreachable'],
  [/ENOTFOUND|EAI_AGAIN|Name resolution failed/i, 'the worker\'s name does not resolve'],
  [/ETIMEDOUT/, 'the connection timed out'],
  [/EPIPE|Connection dropped|Call cancelled|socket hang up/i, 'the connection was lost mid-call'],
];

export function explainTransportError(raw: string): string {
  for (const [re, words] of TRANSPORT_ERRORS) if (re.test(raw)) return `${words}: ${raw}`;
  return raw;
}

/** A generated client's unary method. */
type UnaryMethod<Req, Res> = (req: Req, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => grpc.ClientUnaryCall;

/** How the hub sees one worker: reachable, unreachable, or failing in some other way. */
export type WorkerStateName = 'connected' | 'unavailable' | 'error';

export interface WorkerConnection {
  address: string;
  client: WorkerClient;
  /** The worker's node name once it has answered. */
  node?: string;
  /**
   * From the channel's connectivity (ready: connected; transient failure: unavailable) and from
   * call outcomes (deadline: unavailable; an internal failure: error). Starts unavailable until
   * the first connection or answer.
   */
  state: WorkerStateName;
  /** The last error that made the worker unavailable or failed; cleared by the next success. */
  lastError?: string;
  /** Closed when discovery removed the worker. */
  closed: boolean;
  /** Calls multiplexed over one stream (the separate RPCs when the worker has no Exchange). */
  exchange: ExchangeStream;
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

/** An endpoint with only the identity fields the worker filled (one property at a time: this runs for every row of a page). */
function endpoint(e: ProtoEndpoint | null): Flow['client'] {
  if (!e) return { ip: '', port: 0 };
  const out: Flow['client'] = { ip: e.ip, port: e.port };
  if (e.name) out.name = e.name;
  if (e.namespace) out.namespace = e.namespace;
  if (e.pod) out.pod = e.pod;
  if (e.service) out.service = e.service;
  if (e.node) out.node = e.node;
  if (e.unresolved) out.unresolved = e.unresolved;
  return out;
}

function stats(d: { packets: number; bytes: number; payload_bytes: number; tcp?: TcpHealth | null } | null): DirectionStats {
  if (!d) return { packets: 0, bytes: 0, payload_bytes: 0 };
  const out: DirectionStats = { packets: d.packets, bytes: d.bytes, payload_bytes: d.payload_bytes };
  if (d.tcp) out.tcp = { ...d.tcp };
  return out;
}

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
  // A group's ends have no port, and an address only when the grouping has one (ip pairs).
  const side = (e: ProtoEndpoint | null): Partial<Flow['client']> => {
    const { port: _p, ip, ...rest } = endpoint(e);
    return ip ? { ip, ...rest } : rest;
  };
  const client = side(g.client);
  const server = side(g.server);
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
const AGGREGATE = {
  none: 'AGGREGATE_NONE',
  ip_pair: 'AGGREGATE_IP_PAIR',
  node: 'AGGREGATE_NODE',
  namespace: 'AGGREGATE_NAMESPACE',
  pod: 'AGGREGATE_POD',
  service: 'AGGREGATE_SERVICE',
} as const;

const WORKLOAD_KIND_ORDER: Record<WorkloadKind, number> = { pod: 0, service: 1, node: 2 };

function fromProtoWorkload(w: ProtoWorkloads['workloads'][number]): WorkloadInfo {
  const kind: WorkloadKind = w.kind === 'service' ? 'service' : w.kind === 'node' ? 'node' : 'pod';
  return {
    kind,
    name: w.name,
    namespace: w.namespace,
    ips: [...w.ips],
    ...(kind === 'pod' && w.node ? { node: w.node } : {}),
    ...(w.owner_kind ? { owner: { kind: w.owner_kind, name: w.owner_name } } : {}),
    labels: { ...w.labels },
    ...(kind === 'pod' ? { services: [...w.services] } : {}),
    ...(w.type ? { type: w.type } : {}),
    ...(w.host_network ? { host_network: true } : {}),
  };
}

function fromProtoIdentity(i: ProtoIps['identities'][number]): IpInfo {
  const kind = i.kind === 'pod' || i.kind === 'service' || i.kind === 'node' ? i.kind : 'external';
  return {
    ip: i.ip,
    kind,
    ...(i.name ? { name: i.name } : {}),
    ...(i.namespace ? { namespace: i.namespace } : {}),
    ...(i.pod ? { pod: i.pod } : {}),
    ...(i.service ? { service: i.service } : {}),
    ...(i.services.length ? { services: [...i.services] } : {}),
    ...(i.node ? { node: i.node } : {}),
    ...(i.owner_kind ? { owner: { kind: i.owner_kind, name: i.owner_name } } : {}),
    ...(Object.keys(i.labels).length ? { labels: { ...i.labels } } : {}),
    ...(i.reason ? { reason: i.reason } : {}),
    at_us: i.at_us,
    ...(i.first_seen_us ? { flows: i.flows, first_seen_us: i.first_seen_us, last_seen_us: i.last_seen_us } : {}),
  };
}

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

const fromProtoCapture = (c: ProtoCapture, node: string): NodeCapture => ({
  node: c.node || node,
  state: c.state,
  packets: c.packets,
  bytes: c.bytes,
  started_at_us: c.started_at_us,
  ended_at_us: c.ended_at_us,
  filter: c.filter,
  pod_ips: c.pod_ips,
  ...(c.error ? { error: c.error } : {}),
  ...(c.note ? { note: c.note } : {}),
  ...(c.snapshot ? { snapshot: c.snapshot } : {}),
});

/** How often a running capture is polled for progress. */
export const CAPTURE_POLL_MS = 1000;
/** A node still running this long after the duration is stopped by the hub (its timer should have ended it). */
export const CAPTURE_GRACE_MS = 10_000;

/** "cap-20240501T141500Z-a1b2c3": one id for every node, also the name of the snapshots that keep the packets. */
export const newCaptureId = (now = Date.now()): string => `cap-${compactTime(now)}-${randomBytes(3).toString('hex')}`;

/** Waits `ms`, or less if the signal fires. */
const pause = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });

const evicted = (s: WorkerStatus): number => Number((s as { flows_evicted?: number }).flows_evicted ?? 0);

/** 2024-05-01T14:15:00.123Z -> 20240501T141500Z, for file names. */
const compactTime = (ms: number): string => new Date(ms).toISOString().replace(/\.\d+/, '').replace(/[-:]/g, '');

/** Rows asked of a worker per ListFlows call when the hub needs more (the worker's own cap). */
export const WORKER_MAX_ROWS = 10_000;

/** Per-input bytes a PCAP merge holds before it pauses that worker's stream. */
const MERGE_QUEUE_BYTES = 4 * 1024 * 1024;

const cancelled = (): TrafficSourceError => new TrafficSourceError(ERROR_CODES.CANCELLED, 'the request was cancelled');

/** Codes that say the worker answered (the query was at fault), so it is reachable. */
const ANSWERED: ReadonlySet<string> = new Set([
  ERROR_CODES.INVALID_ARGUMENT,
  ERROR_CODES.NOT_FOUND,
  ERROR_CODES.ALREADY_EXISTS,
  ERROR_CODES.FAILED_PRECONDITION,
  ERROR_CODES.RESOURCE_EXHAUSTED,
  ERROR_CODES.UNIMPLEMENTED,
]);

const isUnreachable = (e: TrafficSourceError): boolean => e.code === ERROR_CODES.UNAVAILABLE || e.code === ERROR_CODES.DEADLINE_EXCEEDED;

/** One worker's part of a fan-out. */
export interface WorkerResult<T> {
  worker: WorkerConnection;
  value: T;
}

interface WorkerFailure {
  worker: WorkerConnection;
  error: TrafficSourceError;
}

/**
 * TrafficSource over the worker gRPC API, for any number of workers. Workers come from a
 * discovery source (a static list, DNS, or anything implementing `WorkerDiscovery`); each has
 * one gRPC channel that reconnects with backoff by itself, and a tracked state.
 *
 * Every query fans out to every worker in parallel (`fanOut`), each call with the deadline and
 * cancelled with the MCP request; the answers are merged exactly (see merge.ts) and carry the
 * coverage: which nodes answered, which were unavailable or failed, and why. A dead or slow
 * worker costs at most the deadline and yields a partial answer; only when every worker fails
 * does a call throw.
 *
 * With a download store it also exports PCAP: the workers' streams are merged in timestamp
 * order into one file on the hub, served by the download routes. Without one, `exportPcap` is
 * absent and the tool is not offered.
 */
export class GrpcTrafficSource implements TrafficSource, WorkerSink {
  private readonly connections = new Map<string, WorkerConnection>();
  private readonly discovery: WorkerDiscovery;
  readonly exportPcap?: (query: PcapQuery, ctx: CallContext, onProgress?: (progress: PcapProgress) => void) => Promise<PcapExport>;

  constructor(
    workers: readonly string[] | WorkerDiscovery,
    private readonly deadlineMs: number,
    downloads?: DownloadStore,
  ) {
    this.discovery = Array.isArray(workers) ? new StaticDiscovery(workers as readonly string[]) : (workers as WorkerDiscovery);
    if (downloads) this.exportPcap = (query, ctx, onProgress) => this.exportToDownload(downloads, query, ctx, onProgress);
    this.discovery.start(this);
  }

  /** The workers known now, in the order they were added. */
  get workers(): WorkerConnection[] {
    return [...this.connections.values()];
  }

  /** How workers are found, for logs and /healthz. */
  get discoveryDescription(): string {
    return this.discovery.description;
  }

  /** WorkerSink: opens a channel to a new worker (and starts connecting right away). */
  add(address: string): void {
    if (this.connections.has(address)) return;
    const client = createWorkerClient(address, grpc.credentials.createInsecure(), {
      // Reconnect quickly after a worker restart rather than waiting out a long backoff.
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 5000,
    });
    const w: WorkerConnection = {
      address,
      client,
      state: 'unavailable',
      lastError: 'not connected yet',
      closed: false,
      exchange: new ExchangeStream(client),
    };
    this.connections.set(address, w);
    this.watch(w);
  }

  /** WorkerSink: closes a removed worker's channel; calls under way on it fail as unavailable. */
  remove(address: string): void {
    const w = this.connections.get(address);
    if (!w) return;
    this.connections.delete(address);
    w.closed = true;
    w.exchange.close();
    w.client.close();
  }

  /** Follows the channel's connectivity so a worker's state is right between calls too. */
  private watch(w: WorkerConnection): void {
    const channel = w.client.getChannel();
    const follow = (): void => {
      if (w.closed) return;
      const s = channel.getConnectivityState(false);
      if (s === grpc.connectivityState.SHUTDOWN) return;
      if (s === grpc.connectivityState.READY) this.mark(w);
      else if (s === grpc.connectivityState.TRANSIENT_FAILURE && w.state === 'connected') {
        w.state = 'unavailable';
        w.lastError = 'connection lost; reconnecting';
      }
      channel.watchConnectivityState(s, Infinity, follow);
    };
    channel.getConnectivityState(true);
    follow();
  }

  /** Records a call's outcome in the worker's state. */
  private mark(w: WorkerConnection, err?: TrafficSourceError): void {
    if (!err || ANSWERED.has(err.code)) {
      w.state = 'connected';
      delete w.lastError;
      return;
    }
    if (err.code === ERROR_CODES.CANCELLED) return;
    w.state = isUnreachable(err) ? 'unavailable' : 'error';
    w.lastError = this.reason(err);
  }

  /** Why a worker failed, without naming it (coverage names the node), in words first and the transport's text after. */
  private reason(e: TrafficSourceError): string {
    if (e.code === ERROR_CODES.DEADLINE_EXCEEDED) return `no answer within the deadline (${this.deadlineMs} ms)`;
    const cause = e.cause as Partial<grpc.ServiceError> | undefined;
    const raw = (cause && typeof cause === 'object' && (cause.details || cause.message)) || e.message;
    return explainTransportError(raw);
  }

  private nameOf(w: WorkerConnection): string {
    return w.node ?? w.address;
  }

  /**
   * Calls one unary method with a deadline, cancellation and error translation: over the
   * worker's Exchange stream when it can take the call, else as a call of its own.
   */
  private async unary<Req, Res>(
    worker: WorkerConnection,
    method: UnaryMethod<Req, Res>,
    req: Req,
    signal?: AbortSignal,
    deadlineMs = this.deadlineMs,
  ): Promise<Res> {
    return this.recorded(worker, () => this.oneUnary(worker, method, req, signal, deadlineMs));
  }

  /** Runs calls to a worker: their outcome goes into its state, their errors become TrafficSource errors. */
  private async recorded<T>(worker: WorkerConnection, run: () => Promise<T>): Promise<T> {
    let res: T;
    try {
      res = await run();
    } catch (err) {
      const e = err instanceof TrafficSourceError ? err : toSourceError(err, worker);
      this.mark(worker, e);
      throw e;
    }
    this.mark(worker);
    return res;
  }

  /** The call over Exchange when the worker's stream can take it, else on its own; rejects with the grpc-js error. */
  private async oneUnary<Req, Res>(
    worker: WorkerConnection,
    method: UnaryMethod<Req, Res>,
    req: Req,
    signal: AbortSignal | undefined,
    deadlineMs: number,
  ): Promise<Res> {
    let res: Res | undefined;
    if (!(await worker.exchange.tryCall(method as unknown as ExchangeMethod, req, deadlineMs, (m) => (res = m as Res), signal))) {
      return this.separateUnary(worker, method, req, signal, deadlineMs);
    }
    if (res === undefined) throw new Error('empty response');
    return res;
  }

  /** A unary call of its own: resolves with the response or rejects with the grpc-js error. */
  private separateUnary<Req, Res>(
    worker: WorkerConnection,
    method: UnaryMethod<Req, Res>,
    req: Req,
    signal: AbortSignal | undefined,
    deadlineMs: number,
  ): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      if (signal?.aborted) {
        reject(cancelled());
        return;
      }
      const call = method.call(worker.client, req, { deadline: Date.now() + deadlineMs }, (err, res) => {
        signal?.removeEventListener('abort', onAbort);
        if (err || !res) reject(err ?? new Error('empty response'));
        else resolve(res);
      });
      const onAbort = (): void => call.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Runs `run` on every worker (or the given ones) in parallel and collects the answers with the
   * coverage. Each run makes its own calls with the deadline and the request's signal, so the
   * whole fan-out takes at most about one deadline per call a run makes. Failures become
   * coverage entries (unavailable or error, with the reason); if every worker failed, the
   * failures are thrown as one TrafficSourceError. A cancelled request throws `cancelled`.
   */
  private async fanOut<T>(
    run: (w: WorkerConnection) => Promise<T>,
    signal: AbortSignal,
    workers: readonly WorkerConnection[] = this.workers,
  ): Promise<{ results: WorkerResult<T>[]; nodes: NodeCoverage[] }> {
    if (signal.aborted) throw cancelled();
    if (workers.length === 0) {
      throw new TrafficSourceError(ERROR_CODES.UNAVAILABLE, `no workers are known (discovery: ${this.discovery.description}); is the worker DaemonSet running?`);
    }
    const settled = await Promise.allSettled(workers.map((w) => run(w)));
    if (signal.aborted) throw cancelled();
    const results: WorkerResult<T>[] = [];
    const failures: WorkerFailure[] = [];
    const nodes: NodeCoverage[] = [];
    settled.forEach((s, i) => {
      const worker = workers[i]!;
      if (s.status === 'fulfilled') {
        results.push({ worker, value: s.value });
        nodes.push({ node: this.nameOf(worker), state: 'ok' });
        return;
      }
      const error = s.reason instanceof TrafficSourceError ? s.reason : toSourceError(s.reason, worker);
      failures.push({ worker, error });
      nodes.push({ node: this.nameOf(worker), state: isUnreachable(error) ? 'unavailable' : 'error', message: this.reason(error) });
    });
    if (results.length === 0) throw this.allFailed(failures);
    return { results, nodes };
  }

  /**
   * One error for a call every worker failed: one worker's error as it is; the same error from
   * several workers once (a bad argument, say); otherwise the distinct reasons, each once, with
   * the nodes that gave it.
   */
  private allFailed(failures: readonly WorkerFailure[]): TrafficSourceError {
    const first = failures[0]!.error;
    if (failures.length === 1 || failures.every((f) => f.error.message === first.message)) return first;
    const byReason = new Map<string, string[]>();
    for (const f of failures) {
      const key = `${f.error.code}: ${this.reason(f.error)}`;
      byReason.set(key, [...(byReason.get(key) ?? []), this.nameOf(f.worker)]);
    }
    const code = failures.every((f) => f.error.code === first.code) ? first.code : ERROR_CODES.UNAVAILABLE;
    const field = failures.every((f) => f.error.field === first.field) ? first.field : undefined;
    const what = code === ERROR_CODES.UNAVAILABLE || code === ERROR_CODES.DEADLINE_EXCEEDED ? 'no worker could answer' : 'every worker failed';
    const parts = [...byReason].map(([reason, nodes]) => `${nodes.length === 1 ? `worker ${nodes[0]}` : `workers ${nodes.join(', ')}`}: ${reason}`);
    return new TrafficSourceError(code, `${what}: ${parts.join('; ')}`, { cause: first, ...(field ? { field } : {}) });
  }

  async listFlows(q: FlowQuery, ctx: CallContext): Promise<FlowList> {
    const offset = q.offset ?? 0;
    const want = offset + q.limit;
    const aggregated = q.aggregate !== 'none';
    const base = {
      ip: q.ip ?? '',
      port: q.port ?? 0,
      protocol: q.protocol ? PROTOCOL[q.protocol] : 'L4_PROTOCOL_UNSPECIFIED',
      aggregate: AGGREGATE[q.aggregate],
      since_us: q.since_us ?? 0,
      until_us: q.until_us ?? 0,
      order_by: q.order_by,
      kfl: q.kfl ?? '',
    };
    type Res = { node: string; flows: ProtoFlow[]; groups: ProtoGroup[]; total: number };
    const workers = this.workers;
    if (workers.length === 1) {
      // One worker: its own page is the answer.
      const { results, nodes } = await this.fanOut(async (w) => {
        const r = (await this.unary(w, w.client.ListFlows as never, { ...base, limit: q.limit, offset }, ctx.signal)) as Res;
        w.node = r.node || w.node;
        return r;
      }, ctx.signal, workers);
      const r = results[0]!.value;
      return { flows: r.flows.map(fromProtoFlow), groups: r.groups.map(fromProtoGroup), total: r.total, nodes };
    }
    // Several: each worker's first `offset + limit` rows in order (all of its groups when
    // aggregating, since a group's counters add over workers), paged at the worker's cap.
    const { results, nodes } = await this.fanOut(async (w) => {
      const flows: Flow[] = [];
      const groups: FlowGroup[] = [];
      let total = 0;
      for (let at = 0; ; ) {
        const limit = aggregated ? WORKER_MAX_ROWS : Math.min(WORKER_MAX_ROWS, want - at);
        const r = (await this.unary(w, w.client.ListFlows as never, { ...base, limit, offset: at }, ctx.signal)) as Res;
        w.node = r.node || w.node;
        total = r.total;
        flows.push(...r.flows.map(fromProtoFlow));
        groups.push(...r.groups.map(fromProtoGroup));
        const got = r.flows.length + r.groups.length;
        at += got;
        if (got < limit || at >= total || (!aggregated && at >= want)) break;
      }
      return { flows, groups, total };
    }, ctx.signal, workers);
    if (aggregated) {
      const merged = mergeGroups(results.map((r) => r.value.groups), q.order_by);
      return { flows: [], groups: merged.slice(offset, want), total: merged.length, nodes };
    }
    return {
      flows: mergeFlows(results.map((r) => r.value.flows), q.order_by, offset, q.limit),
      groups: [],
      total: results.reduce((n, r) => n + r.value.total, 0),
      nodes,
    };
  }

  async getFlowSummary(q: SummaryQuery, ctx: CallContext): Promise<FlowSummary> {
    const workers = this.workers;
    // Several workers: ask each for more talkers than asked, so the recomputed top is right
    // unless a talker sits just below several workers' cuts (see mergeSummaries).
    const top = workers.length === 1 ? q.top : Math.min(q.top * TOP_TALKER_FACTOR, 1000);
    const req = {
      protocol: q.protocol ? PROTOCOL[q.protocol] : 'L4_PROTOCOL_UNSPECIFIED',
      since_us: q.since_us ?? 0,
      until_us: q.until_us ?? 0,
      top,
      kfl: q.kfl ?? '',
    };
    const { results, nodes } = await this.fanOut(async (w) => {
      const s = (await this.unary(w, w.client.GetFlowSummary as never, req, ctx.signal)) as ProtoSummary;
      w.node = s.node || w.node;
      return fromProtoSummary(s);
    }, ctx.signal, workers);
    const parts = results.map((r) => r.value);
    const merged = parts.length === 1 ? parts[0]! : mergeSummaries(parts, q.top);
    return { ...merged, nodes };
  }

  /** Each worker's status, or why it could not be read; for /healthz, /readyz and get_status. */
  async workerStatuses(
    deadlineMs = 2000,
    signal?: AbortSignal,
  ): Promise<{ address: string; node?: string; state: WorkerStateName; error?: string; status?: WorkerStatus }[]> {
    return Promise.all(
      this.workers.map(async (w) => {
        try {
          const status = (await this.unary(w, w.client.GetStatus as never, {}, signal, deadlineMs)) as WorkerStatus;
          w.node = status.node;
          return { address: w.address, node: status.node, state: 'connected' as const, status };
        } catch (err) {
          const e = err as TrafficSourceError;
          return {
            address: w.address,
            ...(w.node ? { node: w.node } : {}),
            state: isUnreachable(e) ? ('unavailable' as const) : ('error' as const),
            error: e.message,
          };
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
          ...(status.kubernetes
            ? {
                kubernetes: {
                  source: status.kubernetes.source,
                  state: status.kubernetes.state,
                  detail: status.kubernetes.detail,
                  pods: status.kubernetes.pods,
                  services: status.kubernetes.services,
                  nodes: status.kubernetes.nodes,
                  endpoint_slices: status.kubernetes.endpoint_slices,
                  errors: [...status.kubernetes.errors],
                  last_sync_us: status.kubernetes.last_sync_us,
                },
              }
            : {}),
          ...(status.targeting
            ? {
                targeting: {
                  namespaces: [...status.targeting.namespaces],
                  excluded_namespaces: [...status.targeting.excluded_namespaces],
                  pod_regex: status.targeting.pod_regex,
                  pods: status.targeting.pods,
                  pod_ips: status.targeting.pod_ips,
                  scope: status.targeting.scope,
                  mode: status.targeting.mode,
                  target_filter: status.targeting.target_filter,
                  filter: status.targeting.filter,
                  checked_at_us: status.targeting.checked_at_us,
                  updated_at_us: status.targeting.updated_at_us,
                  updates: status.targeting.updates,
                  ...(status.targeting.warning ? { warning: status.targeting.warning } : {}),
                },
              }
            : {}),
        };
      }),
    };
  }


  /** Per node, its data windows; a worker that does not answer is reported, not thrown. */
  async getDataBoundaries(ctx: CallContext): Promise<BoundariesReport> {
    const workers = this.workers;
    const settled = await Promise.allSettled(workers.map((w) => this.unary(w, w.client.GetDataBoundaries as never, {}, ctx.signal) as Promise<ProtoBoundaries>));
    if (ctx.signal.aborted) throw cancelled();
    const report: BoundariesReport = { boundaries: [], nodes: [] };
    settled.forEach((s, i) => {
      const w = workers[i]!;
      if (s.status === 'fulfilled') {
        w.node = s.value.node || w.node;
        report.boundaries.push(fromProtoBoundaries(s.value, this.nameOf(w)));
        report.nodes.push({ node: this.nameOf(w), state: 'ok' });
      } else {
        const e = s.reason as TrafficSourceError;
        report.nodes.push({ node: this.nameOf(w), state: isUnreachable(e) ? 'unavailable' : 'error', message: e.message });
      }
    });
    return report;
  }

  /** The worker's node name, asking it once if no answer has told us yet. */
  private async nodeOf(w: WorkerConnection, signal: AbortSignal): Promise<string> {
    if (!w.node) {
      const b = (await this.unary(w, w.client.GetDataBoundaries as never, {}, signal)) as ProtoBoundaries;
      w.node = b.node || undefined;
    }
    return this.nameOf(w);
  }

  /** The same snapshot is made on every worker; the result lists each node's, failures in the coverage. */
  async createSnapshot(r: SnapshotRequest, ctx: CallContext): Promise<SnapshotResult> {
    const req = { name: r.name, since_us: r.since_us ?? 0, until_us: r.until_us ?? 0 };
    const { results, nodes } = await this.fanOut(async (w) => {
      const node = await this.nodeOf(w, ctx.signal);
      const s = (await this.unary(w, w.client.CreateSnapshot as never, req, ctx.signal, this.deadlineMs * SNAPSHOT_DEADLINE_FACTOR)) as SnapshotInfo;
      return fromProtoSnapshot(s, node);
    }, ctx.signal);
    return snapshotResult(results.map((x) => x.value), nodes);
  }

  /**
   * A targeted capture on every worker under one id: started everywhere (a worker that refuses or
   * cannot be reached is in the coverage), then polled every CAPTURE_POLL_MS for progress until
   * every node has ended it. Cancelling the request stops it on every node that started it
   * (the packets so far are kept as the snapshot) and rejects as cancelled. A node still running
   * well past the duration is stopped; one that stops answering is reported unavailable with the
   * last counts it gave.
   */
  async captureTraffic(r: CaptureRequest, ctx: CallContext, onProgress?: (p: CaptureProgress) => void): Promise<CaptureResult> {
    const id = newCaptureId();
    const req = { id, bpf: r.bpf ?? '', namespaces: r.namespaces ?? [], pod_regex: r.pod_regex ?? '', duration_s: r.duration_s, max_bytes: r.max_bytes };
    const t0 = Date.now();
    const durationMs = r.duration_s * 1000;
    const stopAll = async (): Promise<void> => {
      // Every worker, not only those whose start was answered: a start cancelled in flight may
      // still have begun there (a worker without the capture answers not_found, ignored). Not with
      // the request's signal: it has fired, and the stops must still go out.
      await Promise.allSettled(this.workers.map((w) => this.unary(w, w.client.StopCapture as never, { id })));
    };
    try {
      const { results, nodes } = await this.fanOut(async (w) => {
        const node = await this.nodeOf(w, ctx.signal);
        const info = (await this.unary(w, w.client.StartCapture as never, req, ctx.signal)) as ProtoCapture;
        return fromProtoCapture(info, node);
      }, ctx.signal);
      const lanes = results.map((x) => ({ w: x.worker, capture: x.value, coverage: nodes.find((n) => n.node === this.nameOf(x.worker))! }));
      const report = (): void => {
        const running = lanes.filter((l) => l.capture.state === 'running').length;
        onProgress?.({
          elapsed_ms: Date.now() - t0,
          duration_ms: durationMs,
          packets: lanes.reduce((n, l) => n + l.capture.packets, 0),
          bytes: lanes.reduce((n, l) => n + l.capture.bytes, 0),
          running,
        });
      };
      report();
      let overdue = false;
      while (lanes.some((l) => l.capture.state === 'running')) {
        await pause(CAPTURE_POLL_MS, ctx.signal);
        if (ctx.signal.aborted) throw cancelled();
        overdue = Date.now() - t0 > durationMs + CAPTURE_GRACE_MS;
        await Promise.all(
          lanes
            .filter((l) => l.capture.state === 'running')
            .map(async (l) => {
              try {
                const info = overdue
                  ? ((await this.unary(l.w, l.w.client.StopCapture as never, { id }, ctx.signal)) as ProtoCapture)
                  : ((await this.unary(l.w, l.w.client.ListCaptures as never, {}, ctx.signal)) as { captures: ProtoCapture[] }).captures.find((c) => c.id === id);
                if (!info) throw new TrafficSourceError(ERROR_CODES.NOT_FOUND, `the worker no longer lists capture ${id} (restarted?)`);
                l.capture = fromProtoCapture(info, l.capture.node);
              } catch (err) {
                const e = err instanceof TrafficSourceError ? err : toSourceError(err, l.w);
                if (e.code === ERROR_CODES.CANCELLED) return;
                // A node that cannot answer past the duration is given up on, with its last counts.
                if (overdue || e.code === ERROR_CODES.NOT_FOUND) {
                  l.capture = { ...l.capture, state: 'failed', error: this.reason(e) };
                  l.coverage.state = isUnreachable(e) ? 'unavailable' : 'error';
                  l.coverage.message = this.reason(e);
                }
              }
            }),
        );
        if (ctx.signal.aborted) throw cancelled();
        report();
      }
      return { id, captures: lanes.map((l) => l.capture), nodes };
    } catch (err) {
      if (ctx.signal.aborted) {
        await stopAll();
        throw cancelled();
      }
      throw err;
    }
  }

  /** Every node's snapshots, with their node. */
  async listSnapshots(ctx: CallContext): Promise<SnapshotList> {
    const { results, nodes } = await this.fanOut(async (w) => {
      const node = await this.nodeOf(w, ctx.signal);
      const res = (await this.unary(w, w.client.ListSnapshots as never, {}, ctx.signal)) as { snapshots: SnapshotInfo[] };
      return res.snapshots.map((s) => fromProtoSnapshot(s, node));
    }, ctx.signal);
    const snapshots = results.flatMap((x) => x.value).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
    return { snapshots, nodes };
  }

  /**
   * Runs a per-worker snapshot call on every worker; a worker without the snapshot (not_found)
   * is not a failure. When no worker has it, the (first) not_found is thrown.
   */
  private async onEveryHolder<T>(
    name: string,
    ctx: CallContext,
    run: (w: WorkerConnection, node: string) => Promise<T>,
    workers: readonly WorkerConnection[] = this.workers,
  ): Promise<{ found: T[]; nodes: NodeCoverage[] }> {
    let missing: TrafficSourceError | undefined;
    const { results, nodes } = await this.fanOut(async (w) => {
      const node = await this.nodeOf(w, ctx.signal);
      try {
        return { value: await run(w, node) };
      } catch (err) {
        if (err instanceof TrafficSourceError && err.code === ERROR_CODES.NOT_FOUND) {
          missing ??= err;
          return undefined;
        }
        throw err;
      }
    }, ctx.signal, workers);
    const found = results.flatMap((x) => (x.value ? [x.value.value] : []));
    if (found.length === 0) throw missing ?? new TrafficSourceError(ERROR_CODES.NOT_FOUND, `no snapshot named "${name}" on any node`, { field: 'name' });
    return { found, nodes };
  }

  /** The snapshot on every node that has it. */
  async getSnapshot(name: string, ctx: CallContext): Promise<SnapshotResult> {
    const { found, nodes } = await this.onEveryHolder(name, ctx, async (w, node) => fromProtoSnapshot((await this.unary(w, w.client.GetSnapshot as never, { name }, ctx.signal)) as SnapshotInfo, node));
    return snapshotResult(found, nodes);
  }

  /** Deletes the snapshot on every node that has it. */
  async deleteSnapshot(name: string, ctx: CallContext): Promise<{ nodes: NodeCoverage[] }> {
    const { nodes } = await this.onEveryHolder(name, ctx, async (w) => {
      await this.unary(w, w.client.DeleteSnapshot as never, { name }, ctx.signal);
      return true;
    });
    return { nodes };
  }

  /**
   * API calls over StreamEntries, merged exactly across workers: each worker streams its entries
   * in time order from where the last page left it, and a k-way merge by (timestamp, node,
   * worker order) picks the next one. The source cursor is composite (merge.ts): per node, the
   * worker cursor of the last entry consumed from it, so the next page continues right after the
   * last call returned with no duplicate or gap, however the workers interleave.
   *
   * The workers have no protocol filter: with one, each worker is read in batches and the hub
   * skips entries of other protocols (their positions still advance). The merge stops at one
   * call more than the limit, which says whether more match.
   */
  async listApiCalls(q: ApiCallQuery, ctx: CallContext): Promise<ApiCallList> {
    const positions = q.after ? decodeCompositeCursor(q.after) : new Map<string, string>();
    if (!positions) throw new TrafficSourceError(ERROR_CODES.INVALID_ARGUMENT, `cursor "${q.after}" is not one this hub issued`, { field: 'after' });
    const batch = q.limit + 1;
    const kfl = entryFilter(q);
    const request = (cursor: string) => ({ kfl, since_us: q.since_us ?? 0, until_us: q.until_us ?? 0, limit: batch, cursor, follow: false, full: q.full ?? false, batch: true });
    interface Lane {
      w: WorkerConnection;
      node: string;
      /** The node's key in composite cursors. */
      key: string;
      frames: EntryFrame[];
      i: number;
      /** The worker has nothing after its last frame. */
      done: boolean;
      /** Worker cursor of the last frame read (not necessarily consumed). */
      last: string;
    }
    const read = async (lane: Lane): Promise<void> => {
      const frames = (await this.collectEntries(lane.w, request(lane.last), ctx.signal)).filter((f) => f.entry);
      lane.frames = frames;
      lane.i = 0;
      lane.done = frames.length < batch;
      if (frames.length) lane.last = frames[frames.length - 1]!.cursor;
      const node = frames[0]?.entry?.node;
      if (node) lane.w.node = node;
    };
    const { results, nodes } = await this.fanOut(async (w) => {
      const node = await this.nodeOf(w, ctx.signal);
      const lane: Lane = { w, node, key: nodeKey(node), frames: [], i: 0, done: false, last: positions.get(nodeKey(node)) ?? '' };
      await read(lane);
      return lane;
    }, ctx.signal);
    const headOf = (l: Lane): ProtoEntry => l.frames[l.i]!.entry!;
    const heap = new Heap<Lane>((a, b) => {
      const x = headOf(a).timestamp_us;
      const y = headOf(b).timestamp_us;
      return x < y || (x === y && (a.node < b.node || (a.node === b.node && a.w.address < b.w.address)));
    });
    for (const { value } of results) if (value.frames.length) heap.push(value);
    const at = new Map(positions);
    const calls: ApiCall[] = [];
    while (heap.size > 0 && calls.length <= q.limit) {
      const lane = heap.pop()!;
      const f = lane.frames[lane.i++]!;
      at.set(lane.key, f.cursor);
      calls.push(fromProtoEntry(f.entry!, encodeCompositeCursor(at)));
      if (lane.i >= lane.frames.length && !lane.done && calls.length <= q.limit) {
        try {
          await read(lane);
        } catch (err) {
          const e = err as TrafficSourceError;
          if (e.code === ERROR_CODES.CANCELLED) throw e;
          // The worker failed mid-merge: what it gave so far stays; the coverage says so.
          const n = nodes.findIndex((c) => c.node === lane.node);
          const failed: NodeCoverage = { node: lane.node, state: isUnreachable(e) ? 'unavailable' : 'error', message: this.reason(e) };
          if (n >= 0) nodes[n] = failed;
          continue;
        }
      }
      if (lane.i < lane.frames.length) heap.push(lane);
    }
    const more = calls.length > q.limit;
    return { calls: calls.slice(0, q.limit), more, nodes };
  }

  /**
   * One API call. Ids are "<node>/<flow>/<index>": the call goes to the worker of that node; when
   * no worker is known by that name yet, every worker is asked and the one that has it answers.
   */
  async getApiCall(id: string, ctx: CallContext): Promise<ApiCallDetail> {
    const node = id.split('/')[0] ?? '';
    const target = this.workers.find((w) => w.node === node);
    const ask = async (w: WorkerConnection): Promise<ProtoEntry> => {
      const e = (await this.unary(w, w.client.GetEntry as never, { id, include_payload: false }, ctx.signal)) as ProtoEntry;
      w.node = e.node || w.node;
      return e;
    };
    let found: { w: WorkerConnection; e: ProtoEntry } | undefined;
    let nodes: NodeCoverage[];
    if (target) {
      found = { w: target, e: await ask(target) };
      nodes = [{ node: this.nameOf(target), state: 'ok' }];
    } else {
      let missing: TrafficSourceError | undefined;
      const all = await this.fanOut(async (w) => {
        try {
          return await ask(w);
        } catch (err) {
          if (err instanceof TrafficSourceError && err.code === ERROR_CODES.NOT_FOUND) {
            missing ??= err;
            return undefined;
          }
          throw err;
        }
      }, ctx.signal);
      const hit = all.results.find((r) => r.value);
      if (!hit) {
        const down = all.nodes.filter((n) => n.state !== 'ok');
        if (down.length === 0) throw missing ?? new TrafficSourceError(ERROR_CODES.NOT_FOUND, `no entry "${id}"`, { field: 'id' });
        throw new TrafficSourceError(ERROR_CODES.NOT_FOUND, `no entry "${id}" on the nodes that answered; not asked: ${down.map((n) => `${n.node} (${n.message ?? n.state})`).join(', ')}`, { field: 'id' });
      }
      found = { w: hit.worker, e: hit.value! };
      nodes = [{ node: this.nameOf(hit.worker), state: 'ok' }];
    }
    let call: Record<string, unknown>;
    try {
      call = JSON.parse(found.e.json) as Record<string, unknown>;
    } catch {
      throw new TrafficSourceError(ERROR_CODES.INTERNAL, `worker ${this.nameOf(found.w)} sent entry "${id}" with a malformed record`);
    }
    return { call, nodes };
  }

  async getApiStats(q: ApiStatsQuery, ctx: CallContext): Promise<ApiStatsReport> {
    const req = { since_us: q.since_us ?? 0, until_us: q.until_us ?? 0, protocol: q.protocol ?? '', kfl: q.kfl ?? '', by_client: q.by_client ?? false };
    const workers = this.workers;
    const { results, nodes } = await this.fanOut(async (w) => {
      const res = (await this.unary(w, w.client.GetApiStats as never, req, ctx.signal)) as ProtoApiStats;
      w.node = res.node || w.node;
      return res;
    }, ctx.signal, workers);
    return { ...mergeApiStats(results.map((r) => r.value)), nodes };
  }

  /** Per node, how many entries the filter selects in the window (CountEntries on every worker). */
  async countApiCalls(q: { since_us?: number; until_us?: number; kfl?: string }, ctx: CallContext): Promise<ApiCallCount> {
    const req = { kfl: q.kfl ?? '', since_us: q.since_us ?? 0, until_us: q.until_us ?? 0, limit: 0, cursor: '', follow: false };
    const { results, nodes } = await this.fanOut(async (w) => {
      const c = (await this.unary(w, w.client.CountEntries as never, req, ctx.signal)) as ProtoEntryCount;
      w.node = c.node || w.node;
      return c;
    }, ctx.signal);
    return {
      counts: results.map(({ value: c }) => ({ node: c.node, scanned: c.scanned, matched: c.matched, errors: c.errors, ...(c.last_error ? { last_error: c.last_error } : {}) })),
      nodes,
    };
  }

  /**
   * Pods, Services and nodes from every worker's resolver: the union, de-duplicated by kind,
   * namespace and name (workers of one cluster see the same objects; the first answer wins).
   * Workers without a Kubernetes source answer FAILED_PRECONDITION, which the coverage reports
   * (and which is the error when no worker has one).
   */
  async listWorkloads(q: WorkloadQuery, ctx: CallContext): Promise<WorkloadList> {
    const req = { namespace: q.namespace ?? '', at_us: q.at_us ?? 0 };
    const { results, nodes } = await this.fanOut(async (w) => {
      const r = (await this.unary(w, w.client.ResolveWorkloads as never, req, ctx.signal)) as ProtoWorkloads;
      w.node = r.node || w.node;
      return r;
    }, ctx.signal);
    const byKey = new Map<string, WorkloadInfo>();
    const namespaces = new Set<string>();
    for (const { value } of results) {
      for (const n of value.namespaces) namespaces.add(n);
      for (const pw of value.workloads) {
        const key = `${pw.kind}\u0000${pw.namespace}\u0000${pw.name}`;
        if (!byKey.has(key)) byKey.set(key, fromProtoWorkload(pw));
      }
    }
    const order = (a: WorkloadInfo, b: WorkloadInfo): number =>
      WORKLOAD_KIND_ORDER[a.kind] - WORKLOAD_KIND_ORDER[b.kind] || (a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    return { workloads: [...byKey.values()].sort(order), namespaces: [...namespaces].sort(), nodes };
  }

  /**
   * Who addresses are, from every worker's resolver. Given addresses: one answer each (the first
   * worker that names it, else the first answer), in request order. Addresses from flows: the
   * union over the workers, flow counts added, first and last seen widened, each resolved at its
   * earliest flow; ordered by flows, then address.
   */
  async resolveIps(q: IpQuery, ctx: CallContext): Promise<IpList> {
    const req = {
      ips: q.ips ?? [],
      at_us: q.at_us ?? 0,
      from_flows: q.from_flows ?? false,
      since_us: q.since_us ?? 0,
      until_us: q.until_us ?? 0,
      unresolved_only: q.unresolved_only ?? false,
    };
    const { results, nodes } = await this.fanOut(async (w) => {
      const r = (await this.unary(w, w.client.ResolveIps as never, req, ctx.signal)) as ProtoIps;
      w.node = r.node || w.node;
      return r;
    }, ctx.signal);
    const given = new Map<string, IpInfo>();
    const seen = new Map<string, IpInfo>();
    for (const { value } of results) {
      for (const pi of value.identities) {
        const info = fromProtoIdentity(pi);
        if (info.flows === undefined) {
          const had = given.get(info.ip);
          if (had === undefined || (had.kind === 'external' && info.kind !== 'external')) given.set(info.ip, info);
          continue;
        }
        const had = seen.get(info.ip);
        if (had === undefined) {
          seen.set(info.ip, info);
          continue;
        }
        const flows = (had.flows ?? 0) + info.flows;
        const first = Math.min(had.first_seen_us ?? Infinity, info.first_seen_us ?? Infinity);
        const last = Math.max(had.last_seen_us ?? 0, info.last_seen_us ?? 0);
        const base = (info.first_seen_us ?? Infinity) < (had.first_seen_us ?? Infinity) ? info : had;
        seen.set(info.ip, { ...base, flows, first_seen_us: first, last_seen_us: last });
      }
    }
    const fromFlows = [...seen.values()].sort((a, b) => (b.flows ?? 0) - (a.flows ?? 0) || (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0));
    return { ips: [...given.values(), ...fromFlows], nodes };
  }

  /**
   * One StreamEntries call read to its end, within the deadline; cancelled with the request.
   * Over the worker's Exchange stream when it can take the call, else as a call of its own.
   */
  private async collectEntries(w: WorkerConnection, request: object, signal: AbortSignal): Promise<EntryFrame[]> {
    const frames: EntryFrame[] = [];
    let bad: TrafficSourceError | undefined;
    const onFrame = (f: EntryFrame): void => {
      if (bad) return;
      if (!f.batch) {
        frames.push(f);
        return;
      }
      // A batch frame: its entries one frame each, as a worker that does not batch sends them.
      const { entries, cursors } = f.batch;
      if (cursors.length !== entries.length) {
        bad = new TrafficSourceError(ERROR_CODES.INTERNAL, `worker ${w.address} sent a batch of ${entries.length} entries with ${cursors.length} cursors`);
        return;
      }
      for (let i = 0; i < entries.length; i++) frames.push({ entry: entries[i]!, cursor: cursors[i]! } as EntryFrame);
    };
    return this.recorded(w, async () => {
      if (signal.aborted) throw cancelled();
      // Pages with bodies (full) can be megabytes: they get a call of their own rather than
      // hold up the other calls sharing the Exchange stream.
      const full = (request as { full?: boolean }).full === true;
      if (full || !(await w.exchange.tryCall(w.client.StreamEntries as unknown as ExchangeMethod, request, this.deadlineMs, onFrame as (m: unknown) => void, signal))) {
        await this.separateEntries(w, request, signal, onFrame, () => bad !== undefined);
      }
      if (bad) throw bad;
      return frames;
    });
  }

  /** A StreamEntries call of its own, its frames to `onFrame`; `stop` ends it early. */
  private separateEntries(w: WorkerConnection, request: object, signal: AbortSignal, onFrame: (f: EntryFrame) => void, stop: () => boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      const call = w.client.StreamEntries(request, { deadline: Date.now() + this.deadlineMs });
      let settled = false;
      const finish = (err?: unknown): void => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        if (err === undefined) resolve();
        else {
          call.cancel();
          reject(err);
        }
      };
      const onAbort = (): void => finish(cancelled());
      signal.addEventListener('abort', onAbort, { once: true });
      call.on('data', (f: EntryFrame) => {
        if (settled) return;
        onFrame(f);
        if (stop()) {
          finish();
          call.cancel();
        }
      });
      call.on('error', (err) => finish(err));
      call.on('end', () => finish());
    });
  }

  /**
   * Exports into a download file. Flow ids name their node, so an export of flows goes to those
   * nodes' workers only; otherwise every worker takes part. One worker's stream is written as it
   * comes; several are merged in timestamp order (PcapMerger). The streams have no overall
   * deadline (a large export takes as long as it takes) but each worker must send something
   * within every deadline period; the hub's size limit, a cancelled request or any failure ends
   * every call and deletes the partial file. A worker that fails during a merged export fails the
   * export: a capture silently missing a node's packets would mislead.
   */
  private async exportToDownload(downloads: DownloadStore, q: PcapQuery, ctx: CallContext, onProgress?: (p: PcapProgress) => void): Promise<PcapExport> {
    let workers = this.workers;
    if (q.flow_ids?.length && workers.length > 1) {
      // Learn node names first (once per worker), so flow ids can be routed.
      await Promise.allSettled(workers.map((w) => this.nodeOf(w, ctx.signal)));
      const owners = new Set(q.flow_ids.map((id) => id.split('/')[0]));
      const chosen = workers.filter((w) => w.node !== undefined && owners.has(w.node));
      if (chosen.length === 0) {
        throw new TrafficSourceError(
          ERROR_CODES.INVALID_ARGUMENT,
          `no worker is node ${[...owners].join(' or ')} (flow ids are "<node>/<index>"; known nodes: ${workers.map((w) => this.nameOf(w)).join(', ')})`,
          { field: 'flow_ids' },
        );
      }
      workers = chosen;
    }
    if (q.snapshot && workers.length > 1) {
      // Only the nodes that hold the snapshot take part (not_found when none does).
      const name = q.snapshot;
      const { found } = await this.onEveryHolder(name, ctx, async (w) => {
        await this.unary(w, w.client.GetSnapshot as never, { name }, ctx.signal);
        return w;
      }, workers);
      workers = found;
    }
    if (workers.length === 0) {
      throw new TrafficSourceError(ERROR_CODES.UNAVAILABLE, `no workers are known (discovery: ${this.discovery.description})`);
    }
    const request = (w: WorkerConnection) => ({
      since_us: q.since_us ?? 0,
      until_us: q.until_us ?? 0,
      flow_ids: (q.flow_ids ?? []).filter((id) => workers.length === 1 || id.split('/')[0] === w.node),
      // Several workers are merged from pcapng, which carries any mix of link types.
      format: workers.length === 1 ? q.format : 'pcapng',
      ips: q.ips ?? [],
      ports: q.ports ?? [],
      protocol: q.protocol ? PROTOCOL[q.protocol] : 'L4_PROTOCOL_UNSPECIFIED',
      snapshot: q.snapshot ?? '',
      kfl: q.kfl ?? '',
    });
    if (workers.length === 1) {
      const w = workers[0]!;
      const node = await this.nodeOf(w, ctx.signal);
      const file = downloads.begin(`kubeshark-${this.stem(node, q)}.${q.format}`, PCAP_MEDIA_TYPES[q.format]);
      let packets = 0;
      try {
        const totals = await this.streamExport(w, request(w), { write: (b) => file.write(b), onDrain: (fn) => file.onDrain(fn) }, ctx.signal, (n) => {
          packets += n;
          onProgress?.({ bytes: file.bytes, packets });
        });
        if (totals.bytes !== totals.received) {
          throw new TrafficSourceError(ERROR_CODES.INTERNAL, `worker ${node} announced ${totals.bytes} bytes but sent ${totals.received}`);
        }
        const d = await file.finish();
        return { url: d.url, name: d.name, bytes: d.bytes, packets: totals.packets, format: q.format, expires_at_ms: d.expiresAtMs, nodes: [{ node, state: 'ok' }] };
      } catch (err) {
        file.abort();
        throw err;
      }
    }
    const names = await Promise.all(workers.map((w) => this.nodeOf(w, ctx.signal).catch(() => this.nameOf(w))));
    const file = downloads.begin(`kubeshark-${this.stem(`${names.length}-nodes`, q)}.${q.format}`, PCAP_MEDIA_TYPES[q.format]);
    const stop = new AbortController();
    const onAbort = (): void => stop.abort();
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    // Output back-pressure pauses every input until the file drains.
    let outputBlocked = false;
    const waiting: (() => void)[] = [];
    const merger = new PcapMerger(names, q.format, (chunk) => {
      if (!file.write(chunk) && !outputBlocked) {
        outputBlocked = true;
        file.onDrain(() => {
          outputBlocked = false;
          for (const fn of waiting.splice(0)) fn();
        });
      }
    });
    try {
      const parts = workers.map((w, i) =>
        this.streamExport(
          w,
          request(w),
          {
            write: (b) => {
              merger.push(i, b);
              // Pause this input while the file is behind or while it runs far ahead of the others.
              return !outputBlocked && merger.queuedBytes(i) < MERGE_QUEUE_BYTES;
            },
            onDrain: (fn) => {
              const retry = (): void => {
                if (stop.signal.aborted) return;
                if (outputBlocked) waiting.push(retry);
                else if (merger.queuedBytes(i) >= MERGE_QUEUE_BYTES) setTimeout(retry, 5);
                else fn();
              };
              retry();
            },
          },
          stop.signal,
          () => onProgress?.({ bytes: file.bytes, packets: merger.packets }),
        ).then((totals) => {
          if (totals.bytes !== totals.received) throw new TrafficSourceError(ERROR_CODES.INTERNAL, `worker ${names[i]} announced ${totals.bytes} bytes but sent ${totals.received}`);
          merger.end(i);
          return totals;
        }),
      );
      // The first failure stops every other stream.
      const settled = await Promise.all(parts.map((p) => p.catch((err: unknown) => {
        stop.abort();
        throw err;
      }))).catch(async (err: unknown) => {
        await Promise.allSettled(parts);
        throw ctx.signal.aborted ? cancelled() : err;
      });
      merger.finish();
      const packets = settled.reduce((n, t) => n + t.packets, 0);
      if (merger.packets !== packets) throw new TrafficSourceError(ERROR_CODES.INTERNAL, `the workers announced ${packets} packets but the merge wrote ${merger.packets}`);
      const d = await file.finish();
      return { url: d.url, name: d.name, bytes: d.bytes, packets, format: q.format, expires_at_ms: d.expiresAtMs, nodes: names.map((node) => ({ node, state: 'ok' as const })) };
    } catch (err) {
      file.abort();
      // A worker's capture the merge cannot read is the hub's failure to report, not a crash.
      throw err instanceof TrafficSourceError ? err : new TrafficSourceError(ERROR_CODES.INTERNAL, `merging the workers' captures failed: ${(err as Error).message}`, { cause: err });
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
    }
  }

  private stem(node: string, q: PcapQuery): string {
    return q.snapshot ? `${node}-${q.snapshot}` : `${node}-${compactTime(q.since_us !== undefined ? q.since_us / 1000 : Date.now())}`;
  }

  /**
   * One worker's ExportPcap stream into `out`. `out.write` returning false pauses the stream
   * until `out.onDrain` calls back; meanwhile the idle clock stops (the worker is not to blame).
   */
  private streamExport(
    w: WorkerConnection,
    request: object,
    out: { write: (chunk: Buffer) => boolean; onDrain: (fn: () => void) => void },
    signal: AbortSignal,
    onChunk: (packets: number) => void,
  ): Promise<{ packets: number; bytes: number; received: number }> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(cancelled());
        return;
      }
      const call = w.client.ExportPcap(request);
      let received = 0;
      let done: { packets: number; bytes: number } | undefined;
      let settled = false;
      let idle: NodeJS.Timeout | undefined;
      const finish = (err?: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(idle);
        signal.removeEventListener('abort', onAbort);
        if (err === undefined && done) {
          this.mark(w);
          resolve({ ...done, received });
          return;
        }
        call.cancel();
        if (err instanceof TrafficSourceError) this.mark(w, err);
        reject(err ?? new TrafficSourceError(ERROR_CODES.INTERNAL, `worker at ${w.address} ended the export without its final chunk`));
      };
      const armIdle = (): void => {
        clearTimeout(idle);
        idle = setTimeout(
          () => finish(new TrafficSourceError(ERROR_CODES.DEADLINE_EXCEEDED, `worker ${this.nameOf(w)} sent nothing for ${this.deadlineMs} ms during the export`)),
          this.deadlineMs,
        );
      };
      const onAbort = (): void => finish(cancelled());
      signal.addEventListener('abort', onAbort, { once: true });
      armIdle();
      call.on('data', (chunk: PcapChunk) => {
        if (settled) return;
        armIdle();
        try {
          received += chunk.data.length;
          if (chunk.data.length > 0 && !out.write(Buffer.from(chunk.data))) {
            call.pause();
            clearTimeout(idle);
            out.onDrain(() => {
              if (settled) return;
              armIdle();
              call.resume();
            });
          }
        } catch (err) {
          finish(err);
          return;
        }
        if (chunk.done) done = { packets: chunk.total_packets, bytes: chunk.total_bytes };
        onChunk(chunk.packets);
      });
      call.on('error', (err) => finish(toSourceError(err, w)));
      call.on('end', () => finish());
    });
  }

  close(): void {
    this.discovery.stop();
    for (const address of [...this.connections.keys()]) this.remove(address);
  }
}

/** A snapshot result over nodes: `snapshot` is the first node's, `snapshots` every node's. */
function snapshotResult(found: Snapshot[], nodes: NodeCoverage[]): SnapshotResult {
  const snapshots = [...found].sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  return { snapshot: snapshots[0]!, snapshots, nodes };
}

const talker = (t: ProtoTalker) => ({
  ip: t.ip,
  tx_packets: t.tx_packets,
  rx_packets: t.rx_packets,
  tx_bytes: t.tx_bytes,
  rx_bytes: t.rx_bytes,
  flows: t.flows,
});

const totals = (p: { flows: number; packets: number; bytes: number } | null) => ({ flows: p?.flows ?? 0, packets: p?.packets ?? 0, bytes: p?.bytes ?? 0 });

function fromProtoSummary(s: ProtoSummary): Omit<FlowSummary, 'nodes'> {
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
    // Only workers with a Kubernetes source fill these.
    ...(s.by_namespace.length ? { by_namespace: s.by_namespace.map((n) => ({ namespace: n.namespace, flows: n.flows, packets: n.packets, bytes: n.bytes })) } : {}),
    ...(s.cross_namespace.length ? { cross_namespace: s.cross_namespace.map((n) => ({ src_namespace: n.src_namespace, dst_namespace: n.dst_namespace, flows: n.flows, bytes: n.bytes })) } : {}),
  };
}
