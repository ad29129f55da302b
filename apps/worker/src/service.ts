import * as grpc from '@grpc/grpc-js';
import type { GrpcJsonDecoder } from '@kubeshark-mcp/dissectors';
import { ARGUMENT_METADATA_KEY, workerServiceDefinition, type WorkerHandlers } from '@kubeshark-mcp/proto';
import type { Flow, FlowGroup } from '@kubeshark-mcp/mcp-core/model';
import { QueryError, type WorkerEngine } from './engine';
import { apiStats } from './api-stats';
import { CursorError, endpointAt, entryDetail, entrySummary, type StoredEntry } from './entries';
import { compileKfl, entryRecord } from './kfl-record';
import { exchangeHandler, type ExchangeHandler } from './exchange';
import { SnapshotError, type SnapshotInfo } from './snapshots';
import { CaptureError, type CaptureInfo } from './capture-sessions';
import type { Identity, IdentityLookup } from './k8s';

export { ARGUMENT_METADATA_KEY };

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

class UnimplementedError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}
const unimplementedError = (field: string, message: string): UnimplementedError => new UnimplementedError(field, message);

/** The one place where worker errors become gRPC statuses. */
function toStatus(err: unknown): Partial<grpc.StatusObject> {
  if (err instanceof QueryError) {
    if (err.field === 'store' || err.field === 'snapshot' || err.field === 'kubernetes' || err.field === 'capture') return { code: grpc.status.FAILED_PRECONDITION, details: err.message };
    return invalid(err.field, err.message);
  }
  if (err instanceof SnapshotError) {
    const code = err.code === 'not-found' ? grpc.status.NOT_FOUND : err.code === 'exists' ? grpc.status.ALREADY_EXISTS : grpc.status.INVALID_ARGUMENT;
    const status: Partial<grpc.StatusObject> = { code, details: err.message };
    if (code === grpc.status.INVALID_ARGUMENT) status.metadata = invalid('name', err.message).metadata!;
    return status;
  }
  if (err instanceof CaptureError) {
    if (err.code === 'invalid') return invalid(err.field ?? 'capture', err.message);
    const code = { exists: grpc.status.ALREADY_EXISTS, 'not-found': grpc.status.NOT_FOUND, precondition: grpc.status.FAILED_PRECONDITION, exhausted: grpc.status.RESOURCE_EXHAUSTED }[err.code];
    return { code, details: err.message };
  }
  if (err instanceof UnimplementedError) return { code: grpc.status.UNIMPLEMENTED, details: err.message };
  return { code: grpc.status.INTERNAL, details: (err as Error).message ?? String(err) };
}

const snapshotMessage = (s: SnapshotInfo) => ({
  name: s.name,
  since_us: s.sinceUs,
  until_us: s.untilUs,
  bytes: s.bytes,
  packets: s.packets,
  state: s.state,
  created_at_us: s.createdAtUs,
  flows: s.flows,
});

const captureMessage = (c: CaptureInfo) => ({
  id: c.id,
  state: c.state,
  packets: c.packets,
  bytes: c.bytes,
  started_at_us: c.startedAtUs,
  ended_at_us: c.endedAtUs,
  error: c.error ?? '',
  filter: c.filter,
  interface: c.interface,
  duration_s: c.durationS,
  max_bytes: c.maxBytes,
  pod_ips: c.podIps,
  note: c.note ?? '',
  snapshot: c.snapshot ?? '',
  node: c.node,
});

function targetingMessage(engine: WorkerEngine) {
  const t = engine.targetingStatus();
  if (!t) return {};
  return {
    targeting: {
      namespaces: t.namespaces,
      excluded_namespaces: t.excludeNamespaces,
      pod_regex: t.podRegex,
      pods: t.pods,
      pod_ips: t.podIps,
      scope: t.scope,
      mode: t.mode,
      target_filter: t.targetFilter,
      filter: t.filter,
      checked_at_us: t.checkedAtUs,
      updated_at_us: t.updatedAtUs,
      updates: t.updates,
      warning: t.warning ?? '',
    },
  };
}

function unimplemented(what: string): Partial<grpc.StatusObject> {
  return { code: grpc.status.UNIMPLEMENTED, details: `${what} is not implemented by this worker version yet` };
}

/** Entries per StreamEntries batch frame, and the JSON bytes after which a batch is closed (far below gRPC's 4 MiB message limit). */
const BATCH_ENTRIES = 256;
const BATCH_BYTES = 512 * 1024;

/**
 * An entry as StreamEntries and GetEntry send it; `json` is the full record (`detail`), the
 * summary, or nothing (`bare`: batched summaries, whose fields carry all of the summary).
 */
const toProtoEntry = (s: StoredEntry, detail: boolean, ids?: IdentityLookup, grpcDecoder?: GrpcJsonDecoder, bare = false) => {
  const e = s.entry;
  // Unbatched summaries carry the summary as JSON too: its endpoints serve both.
  const summary = detail || bare ? undefined : entrySummary(s, ids);
  return {
    id: s.id,
    node: s.node,
    timestamp_us: e.timestamp,
    elapsed_time_us: e.elapsed_time,
    protocol: e.protocol,
    src: summary ? summary.src : endpointAt(s.src, s, ids),
    dst: summary ? summary.dst : endpointAt(s.dst, s, ids),
    method: e.method,
    path: e.path,
    status_code: e.status_code,
    flow_id: s.flow_id,
    url: e.url,
    error: e.error ?? '',
    failure: e.failure ?? '',
    json: summary ? JSON.stringify(summary) : detail ? JSON.stringify(entryDetail(s, ids, grpcDecoder)) : '',
  };
};

const AGGREGATES = {
  AGGREGATE_NONE: 'none',
  AGGREGATE_IP_PAIR: 'ip_pair',
  AGGREGATE_NODE: 'node',
  AGGREGATE_NAMESPACE: 'namespace',
  AGGREGATE_POD: 'pod',
  AGGREGATE_SERVICE: 'service',
} as const;

/** An identity as ResolveIps sends it. */
function identityMessage(ip: string, atUs: number, id: Identity, seen?: { flows?: number; firstUs?: number; lastUs?: number }) {
  return {
    ip,
    kind: id.kind,
    name: id.name,
    namespace: id.namespace,
    pod: id.pod?.name ?? '',
    service: id.service?.name ?? '',
    services: (id.services ?? []).map((x) => x.name),
    node: id.node?.name ?? '',
    labels: { ...id.labels },
    owner_kind: id.workload?.kind ?? '',
    owner_name: id.workload?.name ?? '',
    reason: id.reason ?? '',
    flows: seen?.flows ?? 0,
    first_seen_us: seen?.firstUs ?? 0,
    last_seen_us: seen?.lastUs ?? 0,
    at_us: atUs,
  };
}

const toProtoFlow = (f: Flow) => ({ ...f, protocol: f.protocol.toUpperCase() as Protocol });
const toProtoGroup = (g: FlowGroup) => g;

/** The service's handlers but Exchange (which runs them): the typed methods only, without the index signature. */
type CallHandlers = { [K in keyof WorkerHandlers as string extends K ? never : K extends 'Exchange' ? never : K]: WorkerHandlers[K] };

/** gRPC handlers over the engine. Calls of later milestones answer UNIMPLEMENTED, never fake data. */
export function workerHandlers(engine: WorkerEngine): WorkerHandlers {
  const guard = <T>(fn: () => T | Promise<T>, callback: grpc.sendUnaryData<T>): void => {
    Promise.resolve()
      .then(fn)
      .then(
        (res) => callback(null, res),
        (err: unknown) => callback(toStatus(err)),
      );
  };
  const boundaries = () => {
    const s = engine.stats();
    const store = engine.store?.stats();
    return {
      node: engine.node,
      flows: { oldest_us: s.oldestUs, newest_us: s.newestUs },
      entries: (() => {
        const w = engine.entries?.window();
        return { oldest_us: w?.oldestUs ?? 0, newest_us: w?.newestUs ?? 0 };
      })(),
      packets: { oldest_us: store?.oldestUs ?? 0, newest_us: store?.newestUs ?? 0 },
    };
  };

  const handlers: CallHandlers = {
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
          flows_tracked: s.flows,
          flows_evicted: s.flowsEvicted,
          entries_stored: engine.entries?.size ?? 0,
          entries_evicted: engine.entries?.evicted ?? 0,
          boundaries: boundaries(),
          ...(engine.kube ? { kubernetes: kubernetesStatus(engine) } : {}),
          ...targetingMessage(engine),
        };
      }, callback);
    },
    GetDataBoundaries(_call, callback) {
      guard(boundaries, callback);
    },
    ListFlows(call, callback) {
      const r = call.request;
      const aggregate = AGGREGATES[r.aggregate as keyof typeof AGGREGATES];
      if (aggregate === undefined) {
        callback(invalid('aggregate', `unknown aggregate ${String(r.aggregate)}`));
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
          aggregate,
          orderBy: orderBy as 'bytes',
          limit: Math.min(r.limit || DEFAULT_LIMIT, MAX_LIMIT),
          ...(r.offset ? { offset: r.offset } : {}),
          ...(r.ip ? { ip: r.ip } : {}),
          ...(r.port ? { port: r.port } : {}),
          ...(protocol ? { protocol } : {}),
          ...(r.since_us ? { sinceUs: r.since_us } : {}),
          ...(r.until_us ? { untilUs: r.until_us } : {}),
          ...(r.kfl ? { kfl: r.kfl } : {}),
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
            ...(r.kfl ? { kfl: r.kfl } : {}),
          },
          Math.min(r.top || 10, 1000),
        );
        return { node: engine.node, ...s };
      }, callback);
    },
    StreamEntries(call) {
      const r = call.request;
      const fail = (err: unknown): void => {
        call.emit('error', toStatus(err));
      };
      if (r.follow) return fail(unimplementedError('follow', 'follow (streaming new entries as they arrive) is not implemented yet; page with limit and cursor instead'));
      const store = engine.entries;
      if (!store) return fail(unimplementedError('entries', 'this worker was started without L7 dissection, so it keeps no entries'));
      if (r.since_us && r.until_us && r.until_us < r.since_us) return fail(new QueryError('until_us', 'until_us is before since_us'));
      let res: ReturnType<typeof store.query>;
      try {
        const filter = compileKfl(r.kfl);
        const resolver = engine.resolver;
        res = store.query({ sinceUs: r.since_us, untilUs: r.until_us, limit: r.limit, cursor: r.cursor, ...(filter ? { match: (e) => filter.matches(entryRecord(e, resolver)) } : {}) });
      } catch (err) {
        return fail(err instanceof CursorError ? new QueryError('cursor', err.message) : err);
      }
      let i = 0;
      const ids = engine.identities();
      const cursorOf = (s: StoredEntry): string => `${s.entry.timestamp}_${s.seq}`;
      type Frame = Parameters<typeof call.write>[0];
      const next = (): Frame => {
        const s = res.entries[i++]!;
        if (!r.batch) return { entry: toProtoEntry(s, r.full, ids), cursor: cursorOf(s) };
        // A batch: up to BATCH_ENTRIES entries or about BATCH_BYTES of their JSON, whichever comes first.
        const entries = [toProtoEntry(s, r.full, ids, undefined, true)];
        const cursors = [cursorOf(s)];
        let bytes = entries[0]!.json.length;
        while (i < res.entries.length && entries.length < BATCH_ENTRIES && bytes < BATCH_BYTES) {
          const t = res.entries[i++]!;
          const e = toProtoEntry(t, r.full, ids, undefined, true);
          entries.push(e);
          cursors.push(cursorOf(t));
          bytes += e.json.length;
        }
        return { batch: { entries, cursors } };
      };
      const pump = (): void => {
        while (i < res.entries.length) {
          if (!call.write(next())) {
            call.once('drain', pump);
            return;
          }
        }
        call.end();
      };
      pump();
    },
    GetEntry(call, callback) {
      const store = engine.entries;
      if (!store) return callback(unimplemented('GetEntry on a worker without L7 dissection'));
      const s = store.get(call.request.id);
      if (!s) return callback({ code: grpc.status.NOT_FOUND, details: `no entry "${call.request.id}" (ids look like ${engine.node}/<flow>/<index>; it may have been evicted)` });
      // Only here are gRPC messages decoded: one call at a time. StreamEntries' full rows (up to
      // a page of them) carry body previews, not decoded messages.
      callback(null, toProtoEntry(s, true, engine.identities(), engine.grpcDecoder));
    },
    GetApiStats(call, callback) {
      const r = call.request;
      const store = engine.entries;
      if (!store) return callback(unimplemented('GetApiStats on a worker without L7 dissection'));
      if (r.since_us && r.until_us && r.until_us < r.since_us) return callback(toStatus(new QueryError('until_us', 'until_us is before since_us')));
      let filter: ReturnType<typeof compileKfl>;
      try {
        filter = compileKfl(r.kfl);
      } catch (err) {
        return callback(toStatus(err));
      }
      const resolver = engine.resolver;
      const { entries } = store.query({ sinceUs: r.since_us, untilUs: r.until_us, ...(filter ? { match: (e) => filter.matches(entryRecord(e, resolver)) } : {}) });
      const selected = r.protocol ? entries.filter((s) => s.entry.protocol === r.protocol) : entries;
      const ids = engine.identities();
      const groups = apiStats(selected, ids, r.by_client).map((g) => ({
        ...(g.src ? { src: { ...g.src, ...(ids && g.src.ip ? ids.endpoint(g.src.ip, g.firstUs) : {}) } } : {}),
        service: g.service,
        dst: g.dst,
        protocol: g.protocol,
        method: g.method,
        endpoint: g.endpoint,
        requests: g.requests,
        failures: g.failures,
        unanswered: g.unanswered,
        statuses: g.statuses,
        latency: { count: g.latency.count, p50_us: g.latency.p50Us, p90_us: g.latency.p90Us, p99_us: g.latency.p99Us, sketch: g.latencySketch.toBytes() },
        first_us: g.firstUs,
        last_us: g.lastUs,
      }));
      callback(null, { node: engine.node, groups, entries: selected.length });
    },
    CountEntries(call, callback) {
      const r = call.request;
      const store = engine.entries;
      if (!store) return callback(unimplemented('CountEntries on a worker without L7 dissection'));
      if (r.since_us && r.until_us && r.until_us < r.since_us) return callback(toStatus(new QueryError('until_us', 'until_us is before since_us')));
      guard(() => {
        const filter = compileKfl(r.kfl);
        const before = filter ? filter.stats.errors : 0;
        const resolver = engine.resolver;
        const res = store.query({ sinceUs: r.since_us, untilUs: r.until_us, ...(filter ? { match: (e) => filter.matches(entryRecord(e, resolver)) } : {}) });
        return {
          node: engine.node,
          scanned: res.scanned,
          matched: res.entries.length,
          errors: filter ? filter.stats.errors - before : 0,
          last_error: filter?.stats.lastError ?? '',
        };
      }, callback);
    },
    StartCapture(call, callback) {
      const r = call.request;
      guard(
        async () =>
          captureMessage(
            await engine.requireCaptures().start({
              id: r.id,
              bpf: r.bpf,
              namespaces: r.namespaces,
              podRegex: r.pod_regex,
              durationS: r.duration_s,
              maxBytes: r.max_bytes,
            }),
          ),
        callback,
      );
    },
    StopCapture(call, callback) {
      guard(async () => captureMessage(await engine.requireCaptures().stop(call.request.id)), callback);
    },
    ListCaptures(_call, callback) {
      guard(() => ({ captures: (engine.captures?.list() ?? []).map(captureMessage) }), callback);
    },
    ExportPcap(call) {
      const r = call.request;
      const fail = (err: unknown): void => {
        call.emit('error', toStatus(err));
      };
      if (r.bpf) return fail(unimplementedError('bpf', 'BPF filters on export are not implemented yet; filter by time, ips, ports, protocol or flow_ids'));
      const format = r.format || 'pcapng';
      if (format !== 'pcapng' && format !== 'pcap') return fail(new QueryError('format', `format must be "pcapng" or "pcap" (got "${format}")`));
      const abort = new AbortController();
      call.on('cancelled', () => abort.abort());
      const protocol = protocolFilter(r.protocol);
      const write = (chunk: Buffer, packets: number): Promise<void> | void => {
        if (call.write({ data: chunk, packets })) return;
        return new Promise((resolve) => call.once('drain', resolve));
      };
      engine
        .exportPcap(
          {
            filter: {
              ...(r.since_us ? { sinceUs: r.since_us } : {}),
              ...(r.until_us ? { untilUs: r.until_us } : {}),
              ...(r.ips.length ? { ips: r.ips } : {}),
              ...(r.ports.length ? { ports: r.ports } : {}),
              ...(protocol ? { protocol } : {}),
            },
            flowIds: r.flow_ids,
            format,
            ...(r.kfl ? { kfl: r.kfl } : {}),
            ...(r.snapshot ? { snapshot: r.snapshot } : {}),
          },
          write,
          abort.signal,
        )
        .then(
          (totals) => {
            call.write({ data: Buffer.alloc(0), packets: 0, done: true, total_packets: totals.packets, total_bytes: totals.bytes });
            call.end();
          },
          (err: unknown) => {
            if (!abort.signal.aborted) fail(err);
          },
        );
    },
    CreateSnapshot(call, callback) {
      const r = call.request;
      guard(async () => snapshotMessage(await engine.createSnapshot(r.name, r.since_us, r.until_us)), callback);
    },
    ListSnapshots(_call, callback) {
      guard(() => ({ snapshots: engine.requireSnapshots().list().map(snapshotMessage) }), callback);
    },
    GetSnapshot(call, callback) {
      guard(() => snapshotMessage(engine.requireSnapshots().get(call.request.name)), callback);
    },
    DeleteSnapshot(call, callback) {
      guard(() => {
        engine.requireSnapshots().delete(call.request.name);
        return {};
      }, callback);
    },
    ResolveWorkloads(call, callback) {
      const r = call.request;
      guard(() => {
        const w = engine.workloads(r.namespace || undefined, r.at_us || undefined);
        const owner = (x: { workload?: { kind: string; name: string } }) => ({ owner_kind: x.workload?.kind ?? '', owner_name: x.workload?.name ?? '' });
        return {
          node: engine.node,
          namespaces: w.namespaces,
          workloads: [
            ...w.pods.map((p) => ({ kind: 'pod', name: p.name, namespace: p.namespace, ips: p.ips, node: p.node, ...owner(p), labels: { ...p.labels }, services: p.services, type: '', host_network: p.hostNetwork })),
            ...w.services.map((x) => ({ kind: 'service', name: x.name, namespace: x.namespace, ips: x.clusterIPs, node: '', owner_kind: '', owner_name: '', labels: { ...x.labels }, services: [], type: x.type, host_network: false })),
            ...w.nodes.map((n) => ({ kind: 'node', name: n.name, namespace: '', ips: n.ips, node: n.name, owner_kind: '', owner_name: '', labels: { ...n.labels }, services: [], type: '', host_network: false })),
          ],
        };
      }, callback);
    },
    ResolveIps(call, callback) {
      const r = call.request;
      guard(() => {
        const found = engine.resolveIps({
          ips: r.ips,
          ...(r.at_us ? { atUs: r.at_us } : {}),
          fromFlows: r.from_flows,
          ...(r.since_us ? { sinceUs: r.since_us } : {}),
          ...(r.until_us ? { untilUs: r.until_us } : {}),
          unresolvedOnly: r.unresolved_only,
        });
        return {
          node: engine.node,
          endpoints: found.map((x) => {
            const id = x.identity;
            return {
              ip: x.ip,
              port: 0,
              name: id.name,
              namespace: id.namespace,
              pod: id.pod?.name ?? '',
              service: id.service?.name ?? '',
              node: id.node?.name ?? '',
              unresolved: id.kind === 'external' ? (id.reason ?? '') : '',
            };
          }),
          identities: found.map((x) => identityMessage(x.ip, x.atUs, x.identity, x)),
        };
      }, callback);
    },
  };
  return { ...handlers, Exchange: exchangeHandler(workerServiceDefinition(), handlers as unknown as Record<string, ExchangeHandler>) };
}

function kubernetesStatus(engine: WorkerEngine) {
  const k = engine.kube!.status();
  return {
    source: k.source,
    state: k.state,
    detail: k.detail,
    pods: k.pods,
    services: k.services,
    nodes: k.nodes,
    endpoint_slices: k.endpointSlices,
    errors: k.errors,
    last_sync_us: k.lastSyncUs,
    ips: k.ips,
    lookups: k.lookups,
    resolved: k.resolved,
    unresolved: k.unresolved,
  };
}
