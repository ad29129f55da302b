import * as grpc from '@grpc/grpc-js';
import {
  ERROR_CODES,
  TrafficSourceError,
  type CallContext,
  type Flow,
  type FlowGroup,
  type FlowList,
  type FlowQuery,
  type FlowSummary,
  type NodeCoverage,
  type SummaryQuery,
  type TrafficSource,
} from '@kubeshark-mcp/mcp-core';
import {
  createWorkerClient,
  type Endpoint as ProtoEndpoint,
  type Flow as ProtoFlow,
  type FlowGroup as ProtoGroup,
  type FlowSummary as ProtoSummary,
  type Talker as ProtoTalker,
  type WorkerClient,
  type WorkerStatus,
} from '@kubeshark-mcp/proto';

/** Trailing metadata key in which a worker names the request field an error refers to. */
const ARGUMENT_METADATA_KEY = 'x-argument';

export interface WorkerConnection {
  address: string;
  client: WorkerClient;
  /** The worker's node name once it has answered. */
  node?: string;
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
    case grpc.status.INVALID_ARGUMENT: {
      const field = e.metadata?.get(ARGUMENT_METADATA_KEY)[0];
      return new TrafficSourceError(ERROR_CODES.INVALID_ARGUMENT, details, { cause: err, ...(field ? { field: String(field) } : {}) });
    }
    case grpc.status.UNIMPLEMENTED:
      return new TrafficSourceError(ERROR_CODES.UNIMPLEMENTED, `${who}: ${details}`, { cause: err });
    case grpc.status.NOT_FOUND:
      return new TrafficSourceError(ERROR_CODES.NOT_FOUND, details, { cause: err });
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

const stats = (d: { packets: number; bytes: number; payload_bytes: number } | null) => ({
  packets: d?.packets ?? 0,
  bytes: d?.bytes ?? 0,
  payload_bytes: d?.payload_bytes ?? 0,
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
const AGGREGATE = { none: 'AGGREGATE_NONE', ip_pair: 'AGGREGATE_IP_PAIR' } as const;

/**
 * TrafficSource over the worker gRPC API. Every call carries a deadline and is cancelled when
 * the MCP request is. This version talks to one worker (see HubConfig.workers).
 */
export class GrpcTrafficSource implements TrafficSource {
  readonly workers: WorkerConnection[];

  constructor(
    addresses: readonly string[],
    private readonly deadlineMs: number,
  ) {
    this.workers = addresses.map((address) => ({
      address,
      client: createWorkerClient(address, grpc.credentials.createInsecure(), {
        // Reconnect quickly after a worker restart rather than waiting out a long backoff.
        'grpc.initial_reconnect_backoff_ms': 200,
        'grpc.max_reconnect_backoff_ms': 5000,
      }),
    }));
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

  /** Each worker's status, or why it could not be read; for /healthz and /readyz. */
  async workerStatuses(deadlineMs = 2000): Promise<{ address: string; node?: string; state: 'connected' | 'unavailable' | 'error'; error?: string; status?: WorkerStatus }[]> {
    return Promise.all(
      this.workers.map(async (w) => {
        try {
          const status = (await this.unary(w, w.client.GetStatus as never, {}, undefined, deadlineMs)) as WorkerStatus;
          w.node = status.node;
          return { address: w.address, node: status.node, state: 'connected' as const, status };
        } catch (err) {
          const e = err as TrafficSourceError;
          return { address: w.address, ...(w.node ? { node: w.node } : {}), state: e.code === 'unavailable' || e.code === 'deadline_exceeded' ? ('unavailable' as const) : ('error' as const), error: e.message };
        }
      }),
    );
  }

  close(): void {
    for (const w of this.workers) w.client.close();
  }
}
