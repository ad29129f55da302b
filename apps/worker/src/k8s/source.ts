import { formatClusterMapError, loadClusterMap, type ClusterMapItemError } from './cluster-map';
import { endpointFields, type EndpointIdentity, type Identity } from './identity';
import { ClusterResolver } from './resolver';
import { KubeWatcher, WATCH_RESOURCES, type KubeWatcherOptions } from './watch';

/**
 * Where a worker's Kubernetes identities come from, and how healthy that source is: the resolver
 * the engine asks, plus what GetStatus reports (`kubernetes` section).
 */
export interface KubeStatus {
  source: 'cluster-map' | 'kube-watch';
  /** Cluster maps: `loaded` or `loaded-with-errors`; watches: the watcher's state. */
  state: string;
  /** The files, or the API server URL. */
  detail: string;
  pods: number;
  services: number;
  nodes: number;
  endpointSlices: number;
  errors: string[];
  /** µs; 0 = not synced yet. */
  lastSyncUs: number;
  ips: number;
  lookups: number;
  resolved: number;
  unresolved: number;
}

export interface KubeSource {
  readonly resolver: ClusterResolver;
  status(): KubeStatus;
  /** Stops a watch; nothing for a map. */
  close(): Promise<void>;
}

function counters(resolver: ClusterResolver): Pick<KubeStatus, 'pods' | 'services' | 'nodes' | 'endpointSlices' | 'ips' | 'lookups' | 'resolved' | 'unresolved'> {
  const s = resolver.stats();
  return {
    pods: s.pods,
    services: s.services,
    nodes: s.nodes,
    endpointSlices: s.endpointSlices,
    ips: s.ips,
    lookups: s.lookups,
    resolved: s.resolved.pod + s.resolved.service + s.resolved.node,
    unresolved: s.unresolved['not-in-cluster-map'] + s.unresolved['no-pod-at-that-time'] + s.unresolved['before-retention-horizon'],
  };
}

/**
 * Loads cluster map files (kubectl `get pods,services,nodes,endpointslices -A -o json`) into one
 * resolver. Unreadable or non-JSON files throw (`ClusterMapError`); malformed items are skipped
 * and listed in `errors`, one line each with its file and path.
 */
export function clusterMapSource(files: readonly string[], nowUs = Date.now() * 1000): KubeSource & { errors: ClusterMapItemError[] } {
  const result = loadClusterMap(files, { atUs: nowUs });
  const lines = result.errors.map(formatClusterMapError);
  const unknown = Object.entries(result.unknownKinds);
  const resolver = result.resolver;
  return {
    resolver,
    errors: result.errors,
    status: () => ({
      source: 'cluster-map',
      state: lines.length ? 'loaded-with-errors' : 'loaded',
      detail: files.join(', ') + (unknown.length ? ` (skipped kinds: ${unknown.map(([k, n]) => `${k}=${n}`).join(' ')})` : ''),
      errors: lines,
      lastSyncUs: nowUs,
      ...counters(resolver),
    }),
    close: () => Promise.resolve(),
  };
}

/** A list+watch of the API server (in-cluster config unless `opts` says otherwise), started. */
export function kubeWatchSource(opts: KubeWatcherOptions): KubeSource & { watcher: KubeWatcher } {
  const resolver = new ClusterResolver();
  const watcher = new KubeWatcher(opts, resolver);
  let lastSyncUs = 0;
  watcher.onNotice((n) => {
    if (n.type === 'LISTED' || n.type === 'BOOKMARK') {
      const st = watcher.status();
      if (WATCH_RESOURCES.every((r) => st.resources[r]?.synced !== false)) lastSyncUs = Date.now() * 1000;
    }
  });
  watcher.start();
  return {
    resolver,
    watcher,
    status: () => {
      const st = watcher.status();
      const errors: string[] = [];
      for (const [r, s] of Object.entries(st.resources)) if (s?.lastError) errors.push(`${r}: ${s.lastError.message}`);
      return { source: 'kube-watch', state: st.state, detail: st.baseUrl, errors, lastSyncUs, ...counters(resolver) };
    },
    close: () => watcher.stop(),
  };
}

/** The identity fields an endpoint carries, plus why an address stayed bare. */
export interface ResolvedEndpoint extends EndpointIdentity {
  unresolved?: string;
}

/**
 * Per-call identity lookups: `resolve` is cheap and allocation-free, and the flattened fields of
 * each identity (shared, frozen objects) are built once per call, however many flows share it.
 */
export class IdentityLookup {
  private readonly fields = new Map<Identity, ResolvedEndpoint>();
  constructor(readonly resolver: ClusterResolver) {}

  identity(ip: string, tUs: number): Identity {
    return this.resolver.resolve(ip, tUs);
  }

  endpoint(ip: string, tUs: number): ResolvedEndpoint {
    const id = this.resolver.resolve(ip, tUs);
    let f = this.fields.get(id);
    if (f === undefined) {
      f = endpointFields(id);
      if (id.kind === 'external' && id.reason !== undefined) f.unresolved = id.reason;
      this.fields.set(id, f);
    }
    return f;
  }
}
