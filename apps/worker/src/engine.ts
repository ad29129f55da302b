import {
  FlowQueryError,
  FlowTracker,
  aggregateByIpPair,
  aggregateFlows,
  orderFlows,
  readCaptureFile,
  selectFlows,
  summarizeFlows,
  timestampUs,
  type FlowFilter,
  type FlowOrder,
  type FlowRecord,
  type FlowTrackerOptions,
  type RawPacket,
  type TrackerStats,
} from '@kubeshark-mcp/capture';
import type { Flow } from '@kubeshark-mcp/mcp-core/model';
import type { FlowGroup, FlowSummary } from '@kubeshark-mcp/mcp-core/model';
import { EntryStore, L7Pipeline } from './entries';
import { ExportError, exportPackets, type ExportFilter, type ExportFormat, type FlowSelector } from './export';
import { LiveCapture, type LiveCaptureOptions, type LiveState, type LiveStatus } from './live';
import { flowToModel, groupToModel, summaryToModel } from './model';
import { compileKfl, entryRecord, flowRecord } from './kfl-record';
import type { PacketStore } from './store';
import { SnapshotStore, type SnapshotInfo } from './snapshots';

export interface SourceState {
  kind: 'file' | 'interface';
  name: string;
  state: 'pending' | 'replaying' | 'done' | 'failed' | LiveState;
  error?: string;
  packets: number;
  bytes: number;
  /** Interfaces only. */
  live?: Omit<LiveStatus, 'interface' | 'state' | 'error' | 'packets' | 'bytes'>;
}

/** The flow filters of the capture package, plus a KFL filter over flow fields. */
export interface FlowQuery extends FlowFilter {
  kfl?: string;
}

export interface FlowListQuery extends FlowQuery {
  aggregate: 'none' | 'ip_pair' | 'node';
  orderBy: FlowOrder;
  limit: number;
  /** Rows to skip (in `orderBy` order) before the limit applies; default 0. */
  offset?: number;
}

export interface FlowListResult {
  flows: Flow[];
  groups: FlowGroup[];
  total: number;
}

/** Raised for a query the engine refuses; carries the argument at fault. */
export class QueryError extends Error {
  override readonly name = 'QueryError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The worker's data: one flow tracker fed by its capture sources, and the queries over it.
 * Single-threaded by design: replay runs in the event loop in chunks, queries see a
 * consistent table between chunks.
 */
export class WorkerEngine {
  readonly tracker: FlowTracker;
  private readonly files: SourceState[] = [];
  private readonly live: LiveCapture[] = [];
  readonly startedAtUs = Date.now() * 1000;
  /** Every captured or replayed packet goes through here: flows, and the packet store. */
  private readonly onPacket: (p: RawPacket) => void;
  /** API calls (L7 entries); absent when the engine was built without them. */
  readonly entries?: EntryStore;
  private readonly l7?: L7Pipeline;
  private expiryTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly node: string,
    readonly version: string,
    /** Raw packets for export and snapshots; without it those calls are refused. */
    readonly store?: PacketStore,
    readonly snapshots?: SnapshotStore,
    /** Flow table limits; the defaults keep every flow, and number UDP conversations as tshark does. */
    flowOptions: FlowTrackerOptions = {},
    /** Dissect API calls (HTTP/1.x, DNS) into an entry store of this many entries; 0 turns L7 off. */
    maxEntries = 100_000,
  ) {
    if (maxEntries > 0) {
      this.entries = new EntryStore(maxEntries);
      this.l7 = new L7Pipeline(node, this.entries);
      this.tracker = new FlowTracker({ ...flowOptions, tcpConsumer: this.l7.tcpConsumer, onUdp: this.l7.onUdp });
      this.l7.bind(this.tracker.flows);
    } else {
      this.tracker = new FlowTracker(flowOptions);
    }
    const track = this.tracker.onPacket;
    this.onPacket = store
      ? (p) => {
          track(p);
          store.append(p);
        }
      : track;
  }

  /** Replays capture files one after another. Format errors are recorded, never thrown. */
  async replay(files: string[], onError?: (file: string, message: string) => void): Promise<void> {
    const states = files.map((name): SourceState => ({ kind: 'file', name, state: 'pending', packets: 0, bytes: 0 }));
    this.files.push(...states);
    for (const st of states) {
      st.state = 'replaying';
      try {
        const result = await readCaptureFile(st.name, (p) => {
          st.packets++;
          this.onPacket(p);
        });
        st.bytes = result.bytes;
        if (result.error) {
          st.state = 'failed';
          st.error = result.error.message;
          onError?.(st.name, result.error.message);
        } else {
          st.state = 'done';
        }
      } catch (err) {
        st.state = 'failed';
        st.error = (err as Error).message;
        onError?.(st.name, st.error);
      }
    }
    this.flushEntries();
  }

  /** End of input: every TCP stream ends and waiting DNS queries become entries. */
  flushEntries(): void {
    this.tracker.flushStreams();
    this.l7?.flush();
  }

  /** Live capture: ends idle streams and times out DNS queries by the wall clock. */
  private expireEntries(): void {
    const ms = Date.now();
    const sec = Math.floor(ms / 1000);
    const nsec = (ms % 1000) * 1e6;
    this.tracker.expireStreams(sec, nsec);
    this.l7?.advance(sec, nsec);
  }

  /**
   * Starts capturing on an interface with tcpdump. Resolves once it listens; rejects with a
   * message saying how to fix a configuration problem (no tcpdump, no permission, bad filter).
   */
  async startLive(options: LiveCaptureOptions): Promise<LiveCapture> {
    const capture = new LiveCapture(options, this.onPacket);
    this.live.push(capture);
    if (this.l7 && !this.expiryTimer) {
      this.expiryTimer = setInterval(() => this.expireEntries(), 1000);
      this.expiryTimer.unref();
    }
    await capture.start();
    return capture;
  }

  /** Stops live captures and closes the packet store. */
  async close(): Promise<void> {
    if (this.expiryTimer) clearInterval(this.expiryTimer);
    this.expiryTimer = undefined;
    await Promise.all(this.live.map((c) => c.stop()));
    this.store?.close();
  }

  /**
   * Streams the packets matching `filter` (from the store, or from a snapshot) as a capture
   * file. `flowIds` are "<node>/<index>" ids as flows carry them.
   */
  async exportPcap(
    request: { filter: ExportFilter; flowIds: string[]; format: ExportFormat; snapshot?: string; kfl?: string },
    write: (chunk: Buffer, packets: number) => Promise<void> | void,
    signal?: AbortSignal,
  ): Promise<{ packets: number; bytes: number }> {
    let files: string[];
    let flows: FlowSelector[] = [];
    if (request.kfl?.trim() && request.snapshot) throw new QueryError('kfl', 'a KFL filter cannot select from a snapshot yet; pass flow_ids (from get_snapshot / list_l4_flows) instead');
    if (request.snapshot) {
      const snaps = this.requireSnapshots();
      files = [snaps.packetFile(request.snapshot)];
      if (request.flowIds.length) {
        const byId = new Map(snaps.flows(request.snapshot).map((f) => [f.id, f]));
        flows = request.flowIds.map((id) => {
          const f = byId.get(id);
          if (!f) throw new QueryError('flow_ids', `flow "${id}" is not in snapshot "${request.snapshot}"`);
          return selectorOf(f);
        });
      }
    } else {
      if (!this.store) throw new QueryError('store', 'this worker keeps no packets (started without a data directory), so there is nothing to export');
      files = this.store.segmentsFor(request.filter.sinceUs, request.filter.untilUs).map((s) => s.file);
      flows = request.flowIds.map((id) => selectorOf(this.flowById(id)));
      if (request.kfl?.trim()) {
        const selected = this.flowsForKfl(request.kfl, request.filter.sinceUs, request.filter.untilUs).map(selectorOf);
        // With flow_ids as well, a packet must be in both selections.
        flows = flows.length ? flows.filter((a) => selected.some((b) => sameSelector(a, b))) : selected;
        // Nothing selected: an empty capture, not everything.
        if (flows.length === 0) files = [];
      }
    }
    try {
      return await exportPackets(files, { ...request.filter, ...(flows.length ? { flows } : {}) }, request.format, write, signal);
    } catch (err) {
      if (err instanceof ExportError) throw new QueryError(err.field, err.message);
      throw err;
    }
  }

  /** Freezes [sinceUs, untilUs] (packets and the flows active in it) under `name`. */
  async createSnapshot(name: string, sinceUs: number, untilUs: number): Promise<SnapshotInfo> {
    const snaps = this.requireSnapshots();
    if (!this.store) throw new QueryError('store', 'this worker keeps no packets (started without a data directory), so it cannot snapshot them');
    SnapshotStore.validateName(name);
    if (sinceUs && untilUs && untilUs < sinceUs) throw new QueryError('until_us', 'until_us is before since_us');
    const flows = selectFlows(this.tracker.flows, { ...(sinceUs ? { sinceUs } : {}), ...(untilUs ? { untilUs } : {}) }).map((f) => flowToModel(f, this.node));
    const files = this.store.segmentsFor(sinceUs, untilUs).map((s) => s.file);
    return snaps.create(name, sinceUs, untilUs, (write) => exportPackets(files, { sinceUs, untilUs }, 'pcapng', (chunk) => write(chunk)), flows);
  }

  requireSnapshots(): SnapshotStore {
    if (!this.snapshots) throw new QueryError('snapshot', 'this worker has no data directory, so it keeps no snapshots');
    return this.snapshots;
  }

  private flowById(id: string): FlowRecord {
    const m = /^(.*)\/(\d+)$/.exec(id);
    if (!m || m[1] !== this.node) throw new QueryError('flow_ids', `"${id}" is not a flow of node ${this.node} (ids look like ${this.node}/12)`);
    const row = this.tracker.flows.rowOf(Number(m[2]));
    if (row < 0) throw new QueryError('flow_ids', `no flow "${id}" (it may have been dropped by the flow limits)`);
    return this.tracker.flows.get(row);
  }

  /** Every capture source with its progress: files replayed and interfaces captured. */
  sources(): SourceState[] {
    return [
      ...this.files.map((f) => ({ ...f })),
      ...this.live.map((c): SourceState => {
        const { interface: name, state, error, packets, bytes, ...live } = c.status();
        return { kind: 'interface', name, state, packets, bytes, live, ...(error ? { error } : {}) };
      }),
    ];
  }

  stats(): TrackerStats {
    return this.tracker.stats();
  }

  listFlows(q: FlowListQuery): FlowListResult {
    const flows = this.select(q);
    const offset = q.offset ?? 0;
    if (q.aggregate !== 'none') {
      const groups = q.aggregate === 'ip_pair' ? aggregateByIpPair(flows, q.orderBy) : aggregateFlows(flows, () => ({ key: this.node, client: {}, server: {} }), q.orderBy);
      return { flows: [], groups: groups.slice(offset, offset + q.limit).map(groupToModel), total: groups.length };
    }
    orderFlows(flows, q.orderBy);
    return { flows: flows.slice(offset, offset + q.limit).map((f) => flowToModel(f, this.node)), groups: [], total: flows.length };
  }

  summary(filter: FlowQuery, top: number): Omit<FlowSummary, 'nodes'> {
    return summaryToModel(summarizeFlows(this.select(filter), top));
  }

  private select(filter: FlowQuery): FlowRecord[] {
    const { kfl, ...rest } = filter;
    const compiled = compileKfl(kfl);
    let flows: FlowRecord[];
    try {
      flows = selectFlows(this.tracker.flows, rest);
    } catch (err) {
      if (err instanceof FlowQueryError) throw new QueryError(err.field, err.message);
      throw err;
    }
    return compiled ? flows.filter((f) => compiled.matches(flowRecord(f, this.node))) : flows;
  }

  /**
   * The flows a KFL filter selects in a time window: flows matching it as flows, and the flows
   * of the API calls matching it. Their packets are what an export with that filter contains.
   */
  private flowsForKfl(kfl: string, sinceUs: number | undefined, untilUs: number | undefined): FlowRecord[] {
    const compiled = compileKfl(kfl)!;
    const window = { ...(sinceUs ? { sinceUs } : {}), ...(untilUs ? { untilUs } : {}) };
    const byIndex = new Map<number, FlowRecord>();
    for (const f of selectFlows(this.tracker.flows, window)) if (compiled.matches(flowRecord(f, this.node))) byIndex.set(f.index, f);
    if (this.entries) {
      for (const s of this.entries.query({ ...window, match: (e) => compiled.matches(entryRecord(e)) }).entries) {
        const index = Number(s.flow_id.slice(s.flow_id.lastIndexOf('/') + 1));
        if (byIndex.has(index)) continue;
        const row = this.tracker.flows.rowOf(index);
        if (row >= 0) byIndex.set(index, this.tracker.flows.get(row));
      }
    }
    return [...byIndex.values()];
  }
}

function sameSelector(a: FlowSelector, b: FlowSelector): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The packets of a flow: its endpoints and protocol within its first and last packet. */
function selectorOf(f: FlowRecord | Flow): FlowSelector {
  if ('index' in f) {
    return {
      protocol: f.protocol,
      a: f.client,
      b: f.server,
      sinceUs: timestampUs(f.firstSeen),
      untilUs: timestampUs(f.lastSeen),
    };
  }
  return { protocol: f.protocol, a: { ip: f.client.ip, port: f.client.port }, b: { ip: f.server.ip, port: f.server.port }, sinceUs: f.first_seen_us, untilUs: f.last_seen_us };
}
