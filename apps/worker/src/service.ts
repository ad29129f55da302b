import * as grpc from '@grpc/grpc-js';
import type { WorkerHandlers } from '@kubeshark-mcp/proto';
import type { Flow, FlowGroup } from '@kubeshark-mcp/mcp-core/model';
import { QueryError, type WorkerEngine } from './engine';

/** Trailing metadata key naming the request field an INVALID_ARGUMENT refers to. */
export const ARGUMENT_METADATA_KEY = 'x-argument';

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 10_000;
const ORDERS = new Set(['bytes', 'packets', 'recent', 'oldest']);

type Protocol = 'TCP' | 'UDP' | 'L4_PROTOCOL_UNSPECIFIED';

function protocolFilter(p: string): 'tcp' | 'udp' | undefined {
  if (p === 'TCP') return 'tcp';
  if (p === 'UDP') return 'udp';
  return undefined;
}

function invalid(field: string, message: string): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata();
  metadata.set(ARGUMENT_METADATA_KEY, field);
  return { code: grpc.status.INVALID_ARGUMENT, details: message, metadata };
}

function unimplemented(what: string): Partial<grpc.StatusObject> {
  return { code: grpc.status.UNIMPLEMENTED, details: `${what} is not implemented by this worker version yet` };
}

const toProtoFlow = (f: Flow) => ({ ...f, protocol: f.protocol.toUpperCase() as Protocol });
const toProtoGroup = (g: FlowGroup) => g;

/** gRPC handlers over the engine. Calls of later milestones answer UNIMPLEMENTED, never fake data. */
export function workerHandlers(engine: WorkerEngine): WorkerHandlers {
  const guard = <T>(fn: () => T, callback: grpc.sendUnaryData<T>): void => {
    try {
      callback(null, fn());
    } catch (err) {
      if (err instanceof QueryError) callback(invalid(err.field, err.message));
      else callback({ code: grpc.status.INTERNAL, details: (err as Error).message });
    }
  };
  const boundaries = () => {
    const s = engine.stats();
    return {
      node: engine.node,
      flows: { oldest_us: s.oldestUs, newest_us: s.newestUs },
      entries: { oldest_us: 0, newest_us: 0 },
      packets: { oldest_us: 0, newest_us: 0 },
    };
  };
  const unaryUnimplemented = (what: string) => (_call: unknown, callback: grpc.sendUnaryData<never>) => callback(unimplemented(what));
  const streamUnimplemented = (what: string) => (call: grpc.ServerWritableStream<unknown, unknown>) => {
    call.emit('error', unimplemented(what));
  };

  return {
    GetStatus(_call, callback) {
      guard(() => {
        const s = engine.stats();
        return {
          node: engine.node,
          version: engine.version,
          started_at_us: engine.startedAtUs,
          sources: engine.sources().map((src) => ({
            kind: src.kind,
            name: src.name,
            state: src.state,
            error: src.error ?? '',
            packets: src.packets,
            bytes: src.bytes,
            received_by_filter: src.live?.receivedByFilter ?? 0,
            kernel_drops: src.live?.kernelDrops ?? 0,
            restarts: src.live?.restarts ?? 0,
            filter: src.live?.filter ?? '',
            gaps: (src.live?.gaps ?? []).map((g) => ({ from_us: g.fromUs, to_us: g.toUs, reason: g.reason })),
          })),
          packets_seen: s.packets,
          packets_decoded: s.decoded,
          skipped: s.skipped,
          errors: s.errors,
          flows_tracked: engine.tracker.flows.size,
          boundaries: boundaries(),
        };
      }, callback);
    },
    GetDataBoundaries(_call, callback) {
      guard(boundaries, callback);
    },
    ListFlows(call, callback) {
      const r = call.request;
      if (r.aggregate !== 'AGGREGATE_NONE' && r.aggregate !== 'AGGREGATE_IP_PAIR') {
        callback({
          code: grpc.status.UNIMPLEMENTED,
          details: `aggregate ${r.aggregate} needs Kubernetes identities, which this worker does not resolve yet; use none or ip_pair`,
        });
        return;
      }
      const orderBy = r.order_by || 'bytes';
      if (!ORDERS.has(orderBy)) {
        callback(invalid('order_by', `order_by must be one of bytes, packets, recent, oldest (got "${orderBy}")`));
        return;
      }
      guard(() => {
        const protocol = protocolFilter(r.protocol);
        const res = engine.listFlows({
          aggregate: r.aggregate === 'AGGREGATE_IP_PAIR' ? 'ip_pair' : 'none',
          orderBy: orderBy as 'bytes',
          limit: Math.min(r.limit || DEFAULT_LIMIT, MAX_LIMIT),
          ...(r.ip ? { ip: r.ip } : {}),
          ...(r.port ? { port: r.port } : {}),
          ...(protocol ? { protocol } : {}),
          ...(r.since_us ? { sinceUs: r.since_us } : {}),
          ...(r.until_us ? { untilUs: r.until_us } : {}),
        });
        return { node: engine.node, flows: res.flows.map(toProtoFlow), groups: res.groups.map(toProtoGroup), total: res.total };
      }, callback);
    },
    GetFlowSummary(call, callback) {
      const r = call.request;
      guard(() => {
        const protocol = protocolFilter(r.protocol);
        const s = engine.summary(
          {
            ...(protocol ? { protocol } : {}),
            ...(r.since_us ? { sinceUs: r.since_us } : {}),
            ...(r.until_us ? { untilUs: r.until_us } : {}),
          },
          Math.min(r.top || 10, 1000),
        );
        return { node: engine.node, ...s };
      }, callback);
    },
    StreamEntries: streamUnimplemented('StreamEntries (L7 API calls)'),
    GetEntry: unaryUnimplemented('GetEntry (L7 API calls)'),
    StartCapture: unaryUnimplemented('StartCapture'),
    StopCapture: unaryUnimplemented('StopCapture'),
    ListCaptures: unaryUnimplemented('ListCaptures'),
    ExportPcap: streamUnimplemented('ExportPcap'),
    CreateSnapshot: unaryUnimplemented('CreateSnapshot'),
    ListSnapshots: unaryUnimplemented('ListSnapshots'),
    GetSnapshot: unaryUnimplemented('GetSnapshot'),
    DeleteSnapshot: unaryUnimplemented('DeleteSnapshot'),
    ResolveWorkloads: unaryUnimplemented('ResolveWorkloads (Kubernetes resolver)'),
    ResolveIps: unaryUnimplemented('ResolveIps (Kubernetes resolver)'),
  };
}
