import {
  FlowQueryError,
  FlowTracker,
  aggregateByIpPair,
  orderFlows,
  readCaptureFile,
  selectFlows,
  summarizeFlows,
  type FlowFilter,
  type FlowOrder,
  type TrackerStats,
} from '@kubeshark-mcp/capture';
import type { Flow, FlowGroup, FlowSummary } from '@kubeshark-mcp/mcp-core/model';
import { LiveCapture, type LiveCaptureOptions, type LiveState, type LiveStatus } from './live';
import { flowToModel, groupToModel, summaryToModel } from './model';

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

export interface FlowListQuery extends FlowFilter {
  aggregate: 'none' | 'ip_pair';
  orderBy: FlowOrder;
  limit: number;
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
  readonly tracker = new FlowTracker();
  private readonly files: SourceState[] = [];
  private readonly live: LiveCapture[] = [];
  readonly startedAtUs = Date.now() * 1000;

  constructor(
    readonly node: string,
    readonly version: string,
  ) {}

  /** Replays capture files one after another. Format errors are recorded, never thrown. */
  async replay(files: string[], onError?: (file: string, message: string) => void): Promise<void> {
    const states = files.map((name): SourceState => ({ kind: 'file', name, state: 'pending', packets: 0, bytes: 0 }));
    this.files.push(...states);
    for (const st of states) {
      st.state = 'replaying';
      try {
        const result = await readCaptureFile(st.name, (p) => {
          st.packets++;
          this.tracker.onPacket(p);
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
  }

  /**
   * Starts capturing on an interface with tcpdump. Resolves once it listens; rejects with a
   * message saying how to fix a configuration problem (no tcpdump, no permission, bad filter).
   */
  async startLive(options: LiveCaptureOptions): Promise<LiveCapture> {
    const capture = new LiveCapture(options, this.tracker.onPacket);
    this.live.push(capture);
    await capture.start();
    return capture;
  }

  /** Stops live captures. */
  async close(): Promise<void> {
    await Promise.all(this.live.map((c) => c.stop()));
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
    if (q.aggregate === 'ip_pair') {
      const groups = aggregateByIpPair(flows, q.orderBy);
      return { flows: [], groups: groups.slice(0, q.limit).map(groupToModel), total: groups.length };
    }
    orderFlows(flows, q.orderBy);
    return { flows: flows.slice(0, q.limit).map((f) => flowToModel(f, this.node)), groups: [], total: flows.length };
  }

  summary(filter: FlowFilter, top: number): Omit<FlowSummary, 'nodes'> {
    return summaryToModel(summarizeFlows(this.select(filter), top));
  }

  private select(filter: FlowFilter) {
    try {
      return selectFlows(this.tracker.flows, filter);
    } catch (err) {
      if (err instanceof FlowQueryError) throw new QueryError(err.field, err.message);
      throw err;
    }
  }
}
