import {
  FlowQueryError,
  FlowTracker,
  aggregateByIpPair,
  aggregateFlows,
  orderFlows,
  pageFlows,
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
import type { GrpcJsonDecoder } from '@kubeshark-mcp/dissectors';
import type { Endpoint, Flow } from '@kubeshark-mcp/mcp-core/model';
import type { FlowGroup, FlowSummary } from '@kubeshark-mcp/mcp-core/model';
import { EntryStore, L7Pipeline, type L7Options } from './entries';
import { ExportError, exportPackets, type ExportFilter, type ExportFormat, type FlowSelector } from './export';
import path from 'node:path';
import { CaptureSessions, type CaptureDefaults, type TargetPods } from './capture-sessions';
import { LiveCapture, hostFilter, type HostFilter, type LiveCaptureOptions, type LiveState, type LiveStatus } from './live';
import { flowToModel, groupToModel, summaryToModel } from './model';
import { compileKfl, entryRecord, flowRecord } from './kfl-record';
import type { PacketStore } from './store';
import { SnapshotStore, type SnapshotInfo } from './snapshots';
import { IdentityLookup, canonicalIp, type ClusterResolver, type Identity, type KubeSource, type Workloads } from './k8s';

/** What FAILED_PRECONDITION says when a Kubernetes answer is asked of a worker without a source. */
export const NO_KUBERNETES = 'no Kubernetes source configured (--cluster-map or --kube-watch)';

/** One address and who it is (ResolveIps). */
export interface IpIdentityResult {
  ip: string;
  atUs: number;
  identity: Identity;
  /** from_flows only. */
  flows?: number;
  firstUs?: number;
  lastUs?: number;
}

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
  /** namespace, pod, service: by the server's identity at the flow's first packet (needs a Kubernetes source). */
  aggregate: 'none' | 'ip_pair' | 'node' | 'namespace' | 'pod' | 'service';
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

/** Which pods live capture is limited to (serve --target-namespaces, --exclude-namespaces, --target-pod-regex). */
export interface TargetingConfig {
  /** Empty: every namespace (but the excluded). */
  namespaces: string[];
  excludeNamespaces: string[];
  /** Pod names must match (JavaScript regular expression). */
  podRegex?: string;
  /** How often the pod set is recomputed (default 5000 ms). */
  intervalMs?: number;
}

/** Targeting as GetStatus reports it. */
export interface TargetingState {
  namespaces: string[];
  excludeNamespaces: string[];
  podRegex: string;
  pods: number;
  podIps: number;
  scope: 'node' | 'cluster';
  mode: HostFilter['mode'];
  /** The targeting part of the filter, and the whole filter tcpdump runs with. */
  targetFilter: string;
  filter: string;
  checkedAtUs: number;
  updatedAtUs: number;
  updates: number;
  warning?: string;
}

/** Parenthesised parts AND-ed; empty parts left out. */
const andFilters = (...parts: (string | undefined)[]): string | undefined => {
  const kept = parts.map((p) => p?.trim() ?? '').filter((p) => p !== '');
  return kept.length ? kept.map((p) => (kept.length > 1 ? `(${p})` : p)).join(' and ') : undefined;
};

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
  /** Decodes gRPC messages of the calls GetEntry returns; absent without a descriptor set. */
  readonly grpcDecoder?: GrpcJsonDecoder;
  private readonly l7?: L7Pipeline;
  private expiryTimer: NodeJS.Timeout | undefined;
  /** Kubernetes identities (a cluster map or a watch); without one, endpoints stay bare addresses. */
  kube?: KubeSource;
  /** Targeted captures (StartCapture); absent until `configureCaptures`. */
  captures?: CaptureSessions;
  private targeting?: { config: TargetingConfig; regex?: RegExp; live: LiveCapture; userBpf?: string; state: TargetingState; timer: NodeJS.Timeout; busy: boolean; again?: boolean; soon?: NodeJS.Timeout };

  constructor(
    readonly node: string,
    readonly version: string,
    /** Raw packets for export and snapshots; without it those calls are refused. */
    readonly store?: PacketStore,
    readonly snapshots?: SnapshotStore,
    /** Flow table limits; the defaults keep every flow, and number UDP conversations as tshark does. */
    flowOptions: FlowTrackerOptions = {},
    /** Dissect API calls into an entry store of this many entries; 0 turns L7 off. */
    maxEntries = 100_000,
    /** Body bytes kept per message and extra port hints per protocol. */
    l7Options: L7Options = {},
  ) {
    this.grpcDecoder = l7Options.grpcDecoder;
    if (maxEntries > 0) {
      this.entries = new EntryStore(maxEntries);
      this.l7 = new L7Pipeline(node, this.entries, l7Options);
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
        // Flows, reassembly, the dissectors and the packet store keep nothing of a packet past
        // its callback (they copy what they hold), so the file is read into reused buffers, in
        // 4 MiB reads (fewer trips to the thread pool; 12 MiB of buffers while a file replays).
        const result = await readCaptureFile(
          st.name,
          (p) => {
            st.packets++;
            this.onPacket(p);
          },
          { reuseChunks: true, chunkSize: 4 << 20 },
        );
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
    this.startExpiry();
    await capture.start();
    return capture;
  }

  /**
   * Live capture limited to the targeted pods: a BPF filter from their addresses (AND-ed with the
   * user's), recomputed every `intervalMs` from the resolver; when the set changes tcpdump is
   * restarted with the new filter. Needs a Kubernetes source.
   */
  async startTargetedLive(options: LiveCaptureOptions, config: TargetingConfig): Promise<LiveCapture> {
    this.requireKube();
    let regex: RegExp | undefined;
    if (config.podRegex) {
      try {
        regex = new RegExp(config.podRegex);
      } catch (err) {
        throw new QueryError('pod_regex', `the pod regex is not a valid regular expression: ${(err as Error).message}`);
      }
    }
    const first = this.targetPods(config.namespaces, config.excludeNamespaces, regex);
    const hf = hostFilter(first.ips);
    const now = Date.now() * 1000;
    const live = await this.startLive({ ...options, ...((b) => (b ? { bpf: b } : {}))(andFilters(hf.expr, options.bpf)) });
    const state: TargetingState = {
      namespaces: [...config.namespaces],
      excludeNamespaces: [...config.excludeNamespaces],
      podRegex: config.podRegex ?? '',
      pods: first.pods,
      podIps: first.ips.length,
      scope: first.scope,
      mode: hf.mode,
      targetFilter: hf.expr,
      filter: live.filter,
      checkedAtUs: now,
      updatedAtUs: now,
      updates: 0,
      ...(hf.warning ? { warning: hf.warning } : {}),
    };
    const timer = setInterval(() => void this.retarget(), config.intervalMs ?? 5000);
    timer.unref();
    this.targeting = { config, ...(regex ? { regex } : {}), live, ...(options.bpf ? { userBpf: options.bpf } : {}), state, timer, busy: false };
    return live;
  }

  /** Recomputes the targeted pods; a changed address set rebuilds the filter (one rebuild at a time). */
  async retarget(): Promise<void> {
    const t = this.targeting;
    if (!t || !this.kube) return;
    if (t.busy) {
      // A change seen during a rebuild is not lost: one more pass follows it.
      t.again = true;
      return;
    }
    t.busy = true;
    try {
      const target = this.targetPods(t.config.namespaces, t.config.excludeNamespaces, t.regex);
      const hf = hostFilter(target.ips);
      t.state.checkedAtUs = Date.now() * 1000;
      t.state.pods = target.pods;
      t.state.podIps = target.ips.length;
      t.state.scope = target.scope;
      if (hf.expr === t.state.targetFilter) return;
      await t.live.setBpf(andFilters(hf.expr, t.userBpf));
      t.state.mode = hf.mode;
      t.state.targetFilter = hf.expr;
      t.state.filter = t.live.filter;
      t.state.updatedAtUs = Date.now() * 1000;
      t.state.updates++;
      if (hf.warning) t.state.warning = hf.warning;
      else delete t.state.warning;
    } catch (err) {
      t.state.warning = `the filter could not be updated: ${(err as Error).message}`;
    } finally {
      t.busy = false;
      if (t.again) {
        t.again = false;
        void this.retarget();
      }
    }
  }

  /**
   * Recomputes the targeted pods shortly (debounced: a burst of pod events rebuilds the filter
   * once), for sources that say when pods change (a watch) instead of waiting for the next check.
   */
  retargetSoon(delayMs = 250): void {
    const t = this.targeting;
    if (!t || t.soon) return;
    t.soon = setTimeout(() => {
      t.soon = undefined;
      void this.retarget();
    }, delayMs);
    t.soon.unref();
  }

  targetingStatus(): TargetingState | undefined {
    const t = this.targeting;
    return t ? { ...t.state, namespaces: [...t.state.namespaces], excludeNamespaces: [...t.state.excludeNamespaces], filter: t.live.filter } : undefined;
  }

  /**
   * The addresses of the pods in `namespaces` (empty: all) but not in `exclude`, whose names
   * match `regex`: on this node when the resolver knows it (pods there, or a Node object of that
   * name), else in the whole cluster. Host-network pods are left out: their address is the
   * node's, and targeting it would capture everything on the node.
   */
  targetPods(namespaces: readonly string[], exclude: readonly string[], regex: RegExp | undefined): TargetPods {
    const w = this.requireKube().resolver.workloads();
    const known = w.pods.some((p) => p.node === this.node) || w.nodes.some((n) => n.name === this.node);
    const pods = w.pods.filter(
      (p) =>
        !p.hostNetwork &&
        (!known || p.node === this.node) &&
        (namespaces.length === 0 || namespaces.includes(p.namespace)) &&
        !exclude.includes(p.namespace) &&
        (regex === undefined || regex.test(p.name)),
    );
    return { pods: pods.length, ips: [...new Set(pods.flatMap((p) => p.ips))].sort(), scope: known ? 'node' : 'cluster' };
  }

  /**
   * Enables targeted captures (StartCapture): sessions run tcpdump with these settings and keep
   * their packets as snapshots, so a data directory is needed. A worker without live capture of
   * its own also feeds the captured packets into its flows, API calls and packet store (with live
   * capture they are seen there already); not while files are being replayed, whose streams the
   * wall-clock expiry of live traffic would cut.
   */
  configureCaptures(defaults: CaptureDefaults): CaptureSessions {
    const snapshots = this.requireSnapshots();
    this.captures = new CaptureSessions({
      node: this.node,
      dir: path.join(path.dirname(snapshots.dir), 'captures'),
      snapshots,
      defaults,
      targets: (namespaces, regex) => (this.kube ? this.targetPods(namespaces, [], regex) : undefined),
      feed: (p) => {
        if (this.live.length > 0 || this.files.some((f) => f.state === 'pending' || f.state === 'replaying')) return;
        this.startExpiry();
        this.onPacket(p);
      },
    });
    return this.captures;
  }

  private startExpiry(): void {
    if (this.l7 && !this.expiryTimer) {
      this.expiryTimer = setInterval(() => this.expireEntries(), 1000);
      this.expiryTimer.unref();
    }
  }

  requireCaptures(): CaptureSessions {
    if (!this.captures) throw new QueryError('capture', 'this worker was started without a data directory for captures, so it cannot run targeted captures');
    return this.captures;
  }

  /** The resolver of the Kubernetes source, if any. */
  get resolver(): ClusterResolver | undefined {
    return this.kube?.resolver;
  }

  /** A per-call identity lookup (undefined without a Kubernetes source). */
  identities(): IdentityLookup | undefined {
    return this.kube ? new IdentityLookup(this.kube.resolver) : undefined;
  }

  requireKube(): KubeSource {
    if (!this.kube) throw new QueryError('kubernetes', NO_KUBERNETES);
    return this.kube;
  }

  /** Stops live captures, the Kubernetes watch, and closes the packet store. */
  async close(): Promise<void> {
    if (this.expiryTimer) clearInterval(this.expiryTimer);
    this.expiryTimer = undefined;
    if (this.targeting) {
      clearInterval(this.targeting.timer);
      clearTimeout(this.targeting.soon);
    }
    await this.captures?.close();
    await this.kube?.close();
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
    const ids = this.identities();
    const flows = selectFlows(this.tracker.flows, { ...(sinceUs ? { sinceUs } : {}), ...(untilUs ? { untilUs } : {}) }).map((f) => flowToModel(f, this.node, ids));
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
    if (q.aggregate === 'none' && !q.kfl?.trim()) {
      // A page of single flows: sorted on the table's columns, only the page materialised.
      const filter: FlowFilter = {
        ...(q.ip ? { ip: q.ip } : {}),
        ...(q.port ? { port: q.port } : {}),
        ...(q.protocol ? { protocol: q.protocol } : {}),
        ...(q.sinceUs ? { sinceUs: q.sinceUs } : {}),
        ...(q.untilUs ? { untilUs: q.untilUs } : {}),
      };
      let page: { flows: FlowRecord[]; total: number };
      try {
        page = pageFlows(this.tracker.flows, filter, q.orderBy, q.offset ?? 0, q.limit);
      } catch (err) {
        if (err instanceof FlowQueryError) throw new QueryError(err.field, err.message);
        throw err;
      }
      const ids = this.identities();
      return { flows: page.flows.map((f) => flowToModel(f, this.node, ids)), groups: [], total: page.total };
    }
    const byIdentity = q.aggregate === 'namespace' || q.aggregate === 'pod' || q.aggregate === 'service';
    const resolver = byIdentity ? this.requireKube().resolver : undefined;
    const flows = this.select(q);
    const offset = q.offset ?? 0;
    if (q.aggregate === 'namespace' || q.aggregate === 'pod' || q.aggregate === 'service') {
      const by = q.aggregate;
      const servers = new Map<string, Partial<Endpoint>>();
      const groups = aggregateFlows(
        flows,
        (f) => {
          const id = resolver!.resolve(f.server.ip, timestampUs(f.firstSeen));
          const { key, server } = identityGroup(by, f.server.ip, id);
          if (!servers.has(key)) servers.set(key, server);
          return { key, client: {}, server: server.ip !== undefined ? { ip: server.ip } : {} };
        },
        q.orderBy,
      );
      return {
        flows: [],
        groups: groups.slice(offset, offset + q.limit).map((g) => ({ ...groupToModel(g), server: servers.get(g.key) ?? {} })),
        total: groups.length,
      };
    }
    if (q.aggregate !== 'none') {
      const groups = q.aggregate === 'ip_pair' ? aggregateByIpPair(flows, q.orderBy) : aggregateFlows(flows, () => ({ key: this.node, client: {}, server: {} }), q.orderBy);
      const page = groups.slice(offset, offset + q.limit).map(groupToModel);
      const ids = q.aggregate === 'ip_pair' ? this.identities() : undefined;
      if (ids) {
        // Both ends of an address pair named as they were at the pair's first packet (the service map labels them so).
        for (const g of page) {
          if (g.client.ip) g.client = { ...g.client, ...ids.endpoint(g.client.ip, g.first_seen_us) };
          if (g.server.ip) g.server = { ...g.server, ...ids.endpoint(g.server.ip, g.first_seen_us) };
        }
      }
      return { flows: [], groups: page, total: groups.length };
    }
    orderFlows(flows, q.orderBy);
    const ids = this.identities();
    return { flows: flows.slice(offset, offset + q.limit).map((f) => flowToModel(f, this.node, ids)), groups: [], total: flows.length };
  }

  /** Pods, Services and nodes the resolver knows (alive at `atUs`, else now), optionally of one namespace. */
  workloads(namespace: string | undefined, atUs: number | undefined): Workloads {
    const w = this.requireKube().resolver.workloads(atUs);
    if (!namespace) return w;
    return {
      namespaces: w.namespaces.filter((n) => n === namespace),
      pods: w.pods.filter((p) => p.namespace === namespace),
      services: w.services.filter((s) => s.namespace === namespace),
      nodes: [],
    };
  }

  /**
   * Who addresses are: `ips` at `atUs` (default now), and with `fromFlows` every address seen in
   * the flows of the window, resolved at the first packet it was seen in, with its flow count.
   */
  resolveIps(q: { ips: readonly string[]; atUs?: number; fromFlows?: boolean; sinceUs?: number; untilUs?: number; unresolvedOnly?: boolean }): IpIdentityResult[] {
    const resolver = this.requireKube().resolver;
    const at = q.atUs || Date.now() * 1000;
    const out: IpIdentityResult[] = [];
    for (const raw of q.ips) {
      const ip = canonicalIp(raw);
      if (ip === undefined) throw new QueryError('ips', `"${raw}" is not an IPv4 or IPv6 address`);
      out.push({ ip, atUs: at, identity: resolver.resolve(ip, at) });
    }
    if (q.fromFlows) {
      const seen = new Map<string, { flows: number; first: number; last: number }>();
      const window = { ...(q.sinceUs ? { sinceUs: q.sinceUs } : {}), ...(q.untilUs ? { untilUs: q.untilUs } : {}) };
      let flows: FlowRecord[];
      try {
        flows = selectFlows(this.tracker.flows, window);
      } catch (err) {
        if (err instanceof FlowQueryError) throw new QueryError(err.field, err.message);
        throw err;
      }
      for (const f of flows) {
        const first = timestampUs(f.firstSeen);
        const last = timestampUs(f.lastSeen);
        for (const ip of f.client.ip === f.server.ip ? [f.client.ip] : [f.client.ip, f.server.ip]) {
          const s = seen.get(ip);
          if (s === undefined) seen.set(ip, { flows: 1, first, last });
          else {
            s.flows++;
            if (first < s.first) s.first = first;
            if (last > s.last) s.last = last;
          }
        }
      }
      const found: IpIdentityResult[] = [];
      for (const [ip, s] of seen) {
        const identity = resolver.resolve(ip, s.first);
        if (q.unresolvedOnly && identity.kind !== 'external') continue;
        found.push({ ip, atUs: s.first, identity, flows: s.flows, firstUs: s.first, lastUs: s.last });
      }
      found.sort((a, b) => b.flows! - a.flows! || (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0));
      out.push(...found);
    }
    return out;
  }

  summary(filter: FlowQuery, top: number): Omit<FlowSummary, 'nodes'> {
    const flows = this.select(filter);
    const out = summaryToModel(summarizeFlows(flows, top));
    const resolver = this.kube?.resolver;
    return resolver ? { ...out, ...namespaceTraffic(flows, (ip, tUs) => resolver.resolve(ip, tUs).namespace ?? '', top) } : out;
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
    const resolver = this.resolver;
    return compiled ? flows.filter((f) => compiled.matches(flowRecord(f, this.node, resolver))) : flows;
  }

  /**
   * The flows a KFL filter selects in a time window: flows matching it as flows, and the flows
   * of the API calls matching it. Their packets are what an export with that filter contains.
   */
  private flowsForKfl(kfl: string, sinceUs: number | undefined, untilUs: number | undefined): FlowRecord[] {
    const compiled = compileKfl(kfl)!;
    const window = { ...(sinceUs ? { sinceUs } : {}), ...(untilUs ? { untilUs } : {}) };
    const byIndex = new Map<number, FlowRecord>();
    const resolver = this.resolver;
    for (const f of selectFlows(this.tracker.flows, window)) if (compiled.matches(flowRecord(f, this.node, resolver))) byIndex.set(f.index, f);
    if (this.entries) {
      for (const s of this.entries.query({ ...window, match: (e) => compiled.matches(entryRecord(e, resolver)) }).entries) {
        const index = Number(s.flow_id.slice(s.flow_id.lastIndexOf('/') + 1));
        if (byIndex.has(index)) continue;
        const row = this.tracker.flows.rowOf(index);
        if (row >= 0) byIndex.set(index, this.tracker.flows.get(row));
      }
    }
    return [...byIndex.values()];
  }
}

/**
 * The group of a flow whose server has identity `id`: by namespace ("production"), pod
 * ("production/user-service-0") or Service ("production/user-service"). A server without one
 * (an external address, a node for pod/namespace) groups under its bare address.
 */
function identityGroup(by: 'namespace' | 'pod' | 'service', ip: string, id: Identity): { key: string; server: Partial<Endpoint> } {
  if (by === 'namespace' && id.namespace) return { key: id.namespace, server: { namespace: id.namespace } };
  if (by === 'pod' && id.pod) {
    return { key: `${id.pod.namespace}/${id.pod.name}`, server: { name: id.pod.name, namespace: id.pod.namespace, pod: id.pod.name, ...(id.node ? { node: id.node.name } : {}) } };
  }
  if (by === 'service' && id.service) return { key: `${id.service.namespace}/${id.service.name}`, server: { namespace: id.service.namespace, service: id.service.name } };
  return { key: ip, server: { ip } };
}

/**
 * Traffic per namespace (a flow counts once for each distinct namespace of its ends; '' = an
 * address outside the cluster) and client -> server namespace pairs that differ, biggest by bytes
 * first, at most `top` of each.
 */
export function namespaceTraffic(
  flows: readonly FlowRecord[],
  namespaceOf: (ip: string, tUs: number) => string,
  top: number,
): { by_namespace: NonNullable<FlowSummary['by_namespace']>; cross_namespace: NonNullable<FlowSummary['cross_namespace']> } {
  const byNs = new Map<string, { namespace: string; flows: number; packets: number; bytes: number }>();
  const pairs = new Map<string, { src_namespace: string; dst_namespace: string; flows: number; bytes: number }>();
  for (const f of flows) {
    const t = timestampUs(f.firstSeen);
    const c = namespaceOf(f.client.ip, t);
    const sv = namespaceOf(f.server.ip, t);
    const packets = f.clientToServer.packets + f.serverToClient.packets;
    const bytes = f.clientToServer.bytes + f.serverToClient.bytes;
    for (const ns of c === sv ? [c] : [c, sv]) {
      const e = byNs.get(ns) ?? { namespace: ns, flows: 0, packets: 0, bytes: 0 };
      e.flows++;
      e.packets += packets;
      e.bytes += bytes;
      byNs.set(ns, e);
    }
    if (c !== sv) {
      const key = `${c}\u0000${sv}`;
      const e = pairs.get(key) ?? { src_namespace: c, dst_namespace: sv, flows: 0, bytes: 0 };
      e.flows++;
      e.bytes += bytes;
      pairs.set(key, e);
    }
  }
  const order = <T extends { bytes: number }>(xs: T[], name: (x: T) => string): T[] => xs.sort((a, b) => b.bytes - a.bytes || (name(a) < name(b) ? -1 : name(a) > name(b) ? 1 : 0)).slice(0, top);
  return {
    by_namespace: order([...byNs.values()], (x) => x.namespace),
    cross_namespace: order([...pairs.values()], (x) => `${x.src_namespace}\u0000${x.dst_namespace}`),
  };
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
