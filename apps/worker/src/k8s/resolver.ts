import { UNRESOLVED, workloadOf, type Identity, type IdentityReason, type NamespacedName, type Workload } from './identity';
import type { EndpointSliceInfo, KubeObject, NodeInfo, PodInfo, ServiceInfo } from './objects';

/**
 * IP -> Kubernetes identity at a point in time.
 *
 * Pod IPs are reused, so every address keeps a short, sorted list of disjoint intervals
 * [from, to) in µs since the epoch, each owned by one pod (or Service, or node). `resolve(ip, t)`
 * is one Map lookup by the canonical address text plus a binary search, and returns a shared,
 * frozen identity that is rebuilt only after the cluster changed: it allocates nothing.
 *
 * Precedence at one time: a pod's own IP, else a Service ClusterIP, else a node's InternalIP or
 * ExternalIP. hostNetwork pods are never indexed by IP (they share their node's address); the
 * node's identity names them and says `host-network-ambiguous`.
 *
 * Two owners never hold one address at once: when a new interval overlaps an old one, a finished
 * old owner keeps its span and the new one starts when it ended; an old owner still open-ended is
 * cut where the new one starts (its deletion was missed). Both count as `overlapsTrimmed`.
 *
 * Memory is bounded: at most `maxIntervalsPerIp` intervals per address (the oldest go first) and
 * `prune(nowUs)` forgets everything that ended before `nowUs - retentionUs`.
 */

export interface ClusterResolverOptions {
  /** Intervals kept per address and kind; the oldest is dropped beyond it. Default 16. */
  maxIntervalsPerIp?: number;
  /** History kept by `prune(nowUs)`: intervals that ended before `nowUs - retentionUs` go. Default 24 h. */
  retentionUs?: number;
}

export const DEFAULT_MAX_INTERVALS_PER_IP = 16;
export const DEFAULT_RETENTION_US = 24 * 3600 * 1e6;

export interface ResolverStats {
  /** Addresses with at least one interval. */
  ips: number;
  intervals: number;
  pods: number;
  services: number;
  nodes: number;
  endpointSlices: number;
  lookups: number;
  resolved: Record<'pod' | 'service' | 'node', number>;
  /** Lookups by reason; `host-network-ambiguous` ones are node answers, also counted in `resolved.node`. */
  unresolved: Record<IdentityReason, number>;
  overlapsTrimmed: number;
  droppedByCap: number;
  pruned: number;
  /** Times before this (µs) may have been forgotten; 0 before the first prune. */
  horizonUs: number;
}

export interface WorkloadPod {
  name: string;
  namespace: string;
  node: string;
  ips: string[];
  hostNetwork: boolean;
  labels: Readonly<Record<string, string>>;
  workload?: Workload;
  services: string[];
  fromUs: number;
  toUs?: number;
}

export interface WorkloadService {
  name: string;
  namespace: string;
  type: string;
  clusterIPs: string[];
  selector?: Readonly<Record<string, string>>;
  labels: Readonly<Record<string, string>>;
}

export interface WorkloadNode {
  name: string;
  ips: string[];
  labels: Readonly<Record<string, string>>;
}

/** What `list_workloads` lists: objects alive at one time (or now, when not given). */
export interface Workloads {
  namespaces: string[];
  pods: WorkloadPod[];
  services: WorkloadService[];
  nodes: WorkloadNode[];
}

class PodRecord {
  /** The membership generation `identity` was built in; the pod's own changes clear `identity`. */
  gen = -1;
  identity?: Identity;
  /** Addresses this pod is indexed under (never for hostNetwork pods). */
  indexed: string[] = [];
  toUs = Infinity;
  deleted = false;
  workload: Workload | undefined;
  constructor(public info: PodInfo) {
    this.workload = workloadOf(info.owners, info.labels);
  }
  get key(): string {
    return `${this.info.namespace}/${this.info.name}`;
  }
}

class ServiceRecord {
  /** Depends on the Service alone: cleared when it changes. */
  identity?: Identity;
  indexed: string[] = [];
  toUs = Infinity;
  deleted = false;
  constructor(public info: ServiceInfo) {}
  get key(): string {
    return `${this.info.namespace}/${this.info.name}`;
  }
}

class NodeRecord {
  /** Depends on the node and its hostNetwork pods: cleared when either changes. */
  identity?: Identity;
  /** The identity naming every hostNetwork pod of the node. */
  ambiguous?: Identity;
  indexed: string[] = [];
  toUs = Infinity;
  deleted = false;
  constructor(public info: NodeInfo) {}
}

type Owner = PodRecord | ServiceRecord | NodeRecord;

/**
 * Intervals sorted by start, disjoint: `span` interleaves [from0, to0, from1, to1, ...] so that
 * a lookup reads one contiguous array of doubles, `owner[i]` owns interval i.
 */
class Timeline<O extends Owner> {
  span: number[] = [];
  owner: O[] = [];

  get length(): number {
    return this.owner.length;
  }

  fromAt(i: number): number {
    return this.span[2 * i]!;
  }

  toAt(i: number): number {
    return this.span[2 * i + 1]!;
  }

  setTo(i: number, t: number): void {
    this.span[2 * i + 1] = t;
  }

  /** The owner at time t, or undefined. */
  at(t: number): O | undefined {
    const span = this.span;
    let lo = 0;
    let hi = this.owner.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (span[2 * mid]! <= t) lo = mid + 1;
      else hi = mid;
    }
    return lo > 0 && t < span[2 * lo - 1]! ? this.owner[lo - 1] : undefined;
  }

  /** Index of the first interval starting after t (where an interval starting at t goes). */
  upperBound(t: number): number {
    let lo = 0;
    let hi = this.owner.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.span[2 * mid]! <= t) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  insertAt(i: number, from: number, to: number, o: O): void {
    this.span.splice(2 * i, 0, from, to);
    this.owner.splice(i, 0, o);
  }

  removeAt(i: number): void {
    this.span.splice(2 * i, 2);
    this.owner.splice(i, 1);
  }

  indexOf(o: O): number {
    return this.owner.indexOf(o);
  }
}

interface Slot {
  pod?: Timeline<PodRecord>;
  service?: Timeline<ServiceRecord>;
  node?: Timeline<NodeRecord>;
}

const byName = (a: NamespacedName, b: NamespacedName): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : 0);

function matches(selector: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>>): boolean {
  for (const k in selector) if (labels[k] !== selector[k]) return false;
  return true;
}

/** The time-aware IP resolver. Feed it objects (`apply`/`remove`), then `resolve(ip, tUs)`. */
export class ClusterResolver {
  readonly maxIntervalsPerIp: number;
  readonly retentionUs: number;

  private readonly slots = new Map<string, Slot>();
  private readonly pods = new Map<string, PodRecord>();
  private readonly services = new Map<string, ServiceRecord>();
  /** Live Services by `namespace/name`, for EndpointSlices and selectors. */
  private readonly servicesByName = new Map<string, ServiceRecord>();
  private readonly nodes = new Map<string, NodeRecord>();
  private readonly slices = new Map<string, EndpointSliceInfo>();
  /** hostNetwork pods by node name (the node object may arrive after its pods). */
  private readonly hostPods = new Map<string, Set<PodRecord>>();

  /**
   * Bumped when Services or EndpointSlices change, which changes which Services pods back: pod
   * identities built in an older generation are rebuilt on use. A pod's own change clears only
   * its own identity, so pod churn does not make every other pod's identity rebuild.
   */
  private membershipGen = 0;
  private sliceDirty = true;
  private servicesByPodKey = new Map<string, ServiceRecord[]>();
  private servicesByAddress = new Map<string, ServiceRecord[]>();
  /** Live Services with a selector and no EndpointSlice, by namespace: their members come from the selector. */
  private selectorServices = new Map<string, ServiceRecord[]>();

  private lookups = 0;
  private readonly resolvedCounts = { pod: 0, service: 0, node: 0 };
  private readonly unresolvedCounts: Record<IdentityReason, number> = { 'not-in-cluster-map': 0, 'no-pod-at-that-time': 0, 'before-retention-horizon': 0, 'host-network-ambiguous': 0 };
  private overlapsTrimmed = 0;
  private droppedByCap = 0;
  private prunedCount = 0;
  private horizonUs = 0;

  constructor(opts: ClusterResolverOptions = {}) {
    const max = opts.maxIntervalsPerIp ?? DEFAULT_MAX_INTERVALS_PER_IP;
    const retention = opts.retentionUs ?? DEFAULT_RETENTION_US;
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`maxIntervalsPerIp must be a positive integer, got ${max}`);
    if (!(retention > 0)) throw new RangeError(`retentionUs must be positive, got ${retention}`);
    this.maxIntervalsPerIp = max;
    this.retentionUs = retention;
  }

  /**
   * The identity of `ip` (canonical text, as capture's `formatIp` prints it) at `tUs` (µs since
   * the epoch). Never throws; an address nothing explains comes back as kind `external` with a
   * reason.
   */
  resolve(ip: string, tUs: number): Identity {
    this.lookups++;
    const slot = this.slots.get(ip);
    if (slot === undefined) return this.miss('not-in-cluster-map');
    if (slot.pod !== undefined) {
      const p = slot.pod.at(tUs);
      if (p !== undefined) {
        this.resolvedCounts.pod++;
        return p.identity !== undefined && p.gen === this.membershipGen ? p.identity : this.podIdentity(p);
      }
    }
    if (slot.service !== undefined) {
      const s = slot.service.at(tUs);
      if (s !== undefined) {
        this.resolvedCounts.service++;
        return s.identity ?? this.serviceIdentity(s);
      }
    }
    if (slot.node !== undefined) {
      const n = slot.node.at(tUs);
      if (n !== undefined) {
        const id = this.nodeIdentity(n, tUs);
        if (id.reason === 'host-network-ambiguous') this.unresolvedCounts['host-network-ambiguous']++;
        this.resolvedCounts.node++;
        return id;
      }
    }
    return this.miss(tUs < this.horizonUs ? 'before-retention-horizon' : 'no-pod-at-that-time');
  }

  private miss(reason: Exclude<IdentityReason, 'host-network-ambiguous'>): Identity {
    this.unresolvedCounts[reason]++;
    return UNRESOLVED[reason];
  }

  /** Adds or updates an object. `atUs` is when the change was seen (ends intervals of addresses a pod lost). */
  apply(o: KubeObject, atUs: number): void {
    switch (o.kind) {
      case 'Pod':
        return this.upsertPod(o.value, atUs);
      case 'Service':
        return this.upsertService(o.value, atUs);
      case 'Node':
        return this.upsertNode(o.value, atUs);
      case 'EndpointSlice':
        return this.upsertEndpointSlice(o.value);
    }
  }

  /** Removes an object: its intervals end at `atUs` (the deletion's time), or earlier if they already had. */
  remove(o: KubeObject, atUs: number): void {
    switch (o.kind) {
      case 'Pod':
        return this.deletePod(o.value, atUs);
      case 'Service':
        return this.deleteService(o.value, atUs);
      case 'Node':
        return this.deleteNode(o.value, atUs);
      case 'EndpointSlice':
        return this.deleteEndpointSlice(o.value);
    }
  }

  upsertPod(info: PodInfo, atUs: number): void {
    let rec = this.pods.get(info.uid);
    if (rec === undefined) {
      rec = new PodRecord(info);
      this.pods.set(info.uid, rec);
    } else {
      if (rec.info.nodeName !== info.nodeName || rec.info.hostNetwork !== info.hostNetwork) this.hostPods.get(rec.info.nodeName)?.delete(rec);
      if (rec.info.hostNetwork) this.invalidateNode(rec.info.nodeName);
      rec.info = info;
      rec.workload = workloadOf(info.owners, info.labels);
    }
    const end = Math.min(info.deletionUs ?? Infinity, info.finishedUs ?? Infinity);
    rec.toUs = rec.deleted ? Math.min(rec.toUs, end) : end;
    rec.identity = undefined;
    if (info.hostNetwork) {
      this.endAll(rec, (s) => s.pod, atUs);
      rec.indexed = [];
      if (info.nodeName !== '') {
        let set = this.hostPods.get(info.nodeName);
        if (set === undefined) this.hostPods.set(info.nodeName, (set = new Set()));
        set.add(rec);
        this.invalidateNode(info.nodeName);
      }
    } else {
      this.reindex(rec, info.ips, info.fromUs, rec.toUs, atUs, (s) => (s.pod ??= new Timeline<PodRecord>()));
    }
  }

  deletePod(info: PodInfo, atUs: number): void {
    if (!this.pods.has(info.uid)) this.upsertPod(info, atUs);
    const rec = this.pods.get(info.uid)!;
    rec.deleted = true;
    rec.toUs = Math.min(rec.toUs, atUs);
    for (const ip of rec.indexed) this.setEnd(this.slots.get(ip)?.pod, rec, rec.toUs);
    rec.identity = undefined;
    if (rec.info.hostNetwork) this.invalidateNode(rec.info.nodeName);
  }

  upsertService(info: ServiceInfo, atUs: number): void {
    let rec = this.services.get(info.uid);
    if (rec === undefined) {
      rec = new ServiceRecord(info);
      this.services.set(info.uid, rec);
    } else {
      if (this.servicesByName.get(rec.key) === rec) this.servicesByName.delete(rec.key);
      rec.info = info;
    }
    if (!rec.deleted) this.servicesByName.set(rec.key, rec);
    rec.toUs = rec.deleted ? Math.min(rec.toUs, info.deletionUs ?? Infinity) : (info.deletionUs ?? Infinity);
    this.reindex(rec, info.clusterIPs, info.fromUs, rec.toUs, atUs, (s) => (s.service ??= new Timeline<ServiceRecord>()));
    rec.identity = undefined;
    this.membershipChanged();
  }

  deleteService(info: ServiceInfo, atUs: number): void {
    if (!this.services.has(info.uid)) this.upsertService(info, atUs);
    const rec = this.services.get(info.uid)!;
    rec.deleted = true;
    if (this.servicesByName.get(rec.key) === rec) this.servicesByName.delete(rec.key);
    rec.toUs = Math.min(rec.toUs, atUs);
    for (const ip of rec.indexed) this.setEnd(this.slots.get(ip)?.service, rec, rec.toUs);
    rec.identity = undefined;
    this.membershipChanged();
  }

  upsertNode(info: NodeInfo, atUs: number): void {
    let rec = this.nodes.get(info.name);
    if (rec === undefined || rec.info.uid !== info.uid) {
      // A node re-registered under the same name is a new node; the old one ends here.
      if (rec !== undefined) this.deleteNode(rec.info, Math.min(atUs, info.fromUs));
      rec = new NodeRecord(info);
      this.nodes.set(info.name, rec);
    } else {
      rec.info = info;
    }
    rec.toUs = info.deletionUs ?? Infinity;
    this.reindex(rec, info.ips, info.fromUs, rec.toUs, atUs, (s) => (s.node ??= new Timeline<NodeRecord>()));
    this.invalidateNode(info.name);
  }

  deleteNode(info: NodeInfo, atUs: number): void {
    const rec = this.nodes.get(info.name);
    if (rec === undefined || rec.info.uid !== info.uid) return;
    rec.deleted = true;
    rec.toUs = Math.min(rec.toUs, atUs);
    for (const ip of rec.indexed) this.setEnd(this.slots.get(ip)?.node, rec, rec.toUs);
    this.invalidateNode(info.name);
  }

  upsertEndpointSlice(info: EndpointSliceInfo): void {
    this.slices.set(info.uid, info);
    this.membershipChanged();
  }

  deleteEndpointSlice(info: EndpointSliceInfo): void {
    if (this.slices.delete(info.uid)) this.membershipChanged();
  }

  /**
   * Forgets what ended before `nowUs - retentionUs`: intervals, then deleted objects nothing
   * refers to any more. Returns the number of intervals dropped. Lookups before the horizon
   * then say `before-retention-horizon`.
   */
  prune(nowUs: number): number {
    const horizon = nowUs - this.retentionUs;
    if (horizon <= this.horizonUs) return 0;
    this.horizonUs = horizon;
    let dropped = 0;
    const cut = (tl: Timeline<Owner> | undefined): void => {
      if (tl === undefined) return;
      for (let i = tl.length - 1; i >= 0; i--) {
        if (tl.toAt(i) <= horizon) {
          tl.removeAt(i);
          dropped++;
        }
      }
    };
    for (const [ip, slot] of this.slots) {
      cut(slot.pod);
      cut(slot.service);
      cut(slot.node);
      if (slot.pod?.length === 0) delete slot.pod;
      if (slot.service?.length === 0) delete slot.service;
      if (slot.node?.length === 0) delete slot.node;
      if (slot.pod === undefined && slot.service === undefined && slot.node === undefined) this.slots.delete(ip);
    }
    for (const [uid, p] of this.pods) {
      if ((p.deleted || p.toUs !== Infinity) && p.toUs <= horizon) {
        this.pods.delete(uid);
        if (this.hostPods.get(p.info.nodeName)?.delete(p) === true) this.invalidateNode(p.info.nodeName);
      }
    }
    for (const [uid, s] of this.services) if (s.deleted && s.toUs <= horizon) this.services.delete(uid);
    for (const [name, n] of this.nodes) if (n.deleted && n.toUs <= horizon) this.nodes.delete(name);
    this.prunedCount += dropped;
    return dropped;
  }

  stats(): ResolverStats {
    let intervals = 0;
    for (const slot of this.slots.values()) intervals += (slot.pod?.length ?? 0) + (slot.service?.length ?? 0) + (slot.node?.length ?? 0);
    return {
      ips: this.slots.size,
      intervals,
      pods: this.pods.size,
      services: this.services.size,
      nodes: this.nodes.size,
      endpointSlices: this.slices.size,
      lookups: this.lookups,
      resolved: { ...this.resolvedCounts },
      unresolved: { ...this.unresolvedCounts },
      overlapsTrimmed: this.overlapsTrimmed,
      droppedByCap: this.droppedByCap,
      pruned: this.prunedCount,
      horizonUs: this.horizonUs,
    };
  }

  /**
   * Pods, Services, namespaces and nodes alive at `atUs`, or, without it, those not deleted (a
   * finished Job pod is not alive). Sorted by namespace and name.
   */
  workloads(atUs?: number): Workloads {
    const alive = (r: { toUs: number; deleted: boolean; info: { fromUs: number } }): boolean =>
      atUs === undefined ? !r.deleted && r.toUs === Infinity : r.info.fromUs <= atUs && atUs < r.toUs;
    this.refreshSliceIndex();
    const namespaces = new Set<string>();
    const pods: WorkloadPod[] = [];
    for (const p of this.pods.values()) {
      if (!alive(p)) continue;
      const i = p.info;
      namespaces.add(i.namespace);
      pods.push({
        name: i.name,
        namespace: i.namespace,
        node: i.nodeName,
        ips: [...i.ips],
        hostNetwork: i.hostNetwork,
        labels: i.labels,
        ...(p.workload ? { workload: p.workload } : {}),
        services: this.servicesOf(p).map((s) => s.name),
        fromUs: i.fromUs,
        ...(p.toUs !== Infinity ? { toUs: p.toUs } : {}),
      });
    }
    const services: WorkloadService[] = [];
    for (const s of this.services.values()) {
      if (!alive(s)) continue;
      const i = s.info;
      namespaces.add(i.namespace);
      services.push({ name: i.name, namespace: i.namespace, type: i.type, clusterIPs: [...i.clusterIPs], ...(i.selector ? { selector: i.selector } : {}), labels: i.labels });
    }
    const nodes: WorkloadNode[] = [];
    for (const n of this.nodes.values()) if (alive(n)) nodes.push({ name: n.info.name, ips: [...n.info.ips], labels: n.info.labels });
    const order = (a: { namespace: string; name: string }, b: { namespace: string; name: string }): number =>
      a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
    pods.sort(order);
    services.sort(order);
    nodes.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return { namespaces: [...namespaces].sort(), pods, services, nodes };
  }

  private membershipChanged(): void {
    this.sliceDirty = true;
    this.membershipGen++;
  }

  private invalidateNode(name: string): void {
    const n = this.nodes.get(name);
    if (n === undefined) return;
    n.identity = undefined;
    n.ambiguous = undefined;
  }

  /** Indexes `owner` under exactly `ips` with [from, to); addresses it lost end at `atUs`. */
  private reindex<O extends Owner>(owner: O, ips: readonly string[], from: number, to: number, atUs: number, timeline: (s: Slot) => Timeline<O>): void {
    for (const ip of owner.indexed) {
      if (ips.includes(ip)) continue;
      const slot = this.slots.get(ip);
      if (slot !== undefined) this.setEnd(timeline(slot), owner, Math.min(to, atUs));
    }
    for (const ip of ips) {
      let slot = this.slots.get(ip);
      if (slot === undefined) this.slots.set(ip, (slot = {}));
      const tl = timeline(slot);
      if (owner.indexed.includes(ip) && tl.indexOf(owner) >= 0) this.setEnd(tl, owner, to);
      else this.insert(tl, owner, from, to);
    }
    owner.indexed = [...ips];
  }

  private endAll(owner: PodRecord, timeline: (s: Slot) => Timeline<PodRecord> | undefined, atUs: number): void {
    for (const ip of owner.indexed) {
      const slot = this.slots.get(ip);
      if (slot !== undefined) this.setEnd(timeline(slot), owner, atUs);
    }
  }

  private insert<O extends Owner>(tl: Timeline<O>, owner: O, from: number, to: number): void {
    let f = from;
    let t = to;
    let i = tl.upperBound(f);
    if (i > 0 && tl.toAt(i - 1) > f) {
      this.overlapsTrimmed++;
      if (tl.toAt(i - 1) === Infinity) {
        // The earlier owner's end was never seen: the new owner's arrival is the best bound.
        tl.setTo(i - 1, f);
        if (tl.fromAt(i - 1) >= f) {
          tl.removeAt(i - 1);
          i--;
        }
      } else {
        f = tl.toAt(i - 1);
      }
    }
    if (i < tl.length && t > tl.fromAt(i)) {
      this.overlapsTrimmed++;
      t = tl.fromAt(i);
    }
    if (f >= t) return;
    tl.insertAt(i, f, t, owner);
    if (tl.length > this.maxIntervalsPerIp) {
      tl.removeAt(0);
      this.droppedByCap++;
    }
  }

  /** Moves the end of `owner`'s interval to `t`, never past the next owner's start. */
  private setEnd<O extends Owner>(tl: Timeline<O> | undefined, owner: O, t: number): void {
    if (tl === undefined) return;
    const j = tl.indexOf(owner);
    if (j < 0) return;
    const next = j + 1 < tl.length ? tl.fromAt(j + 1) : Infinity;
    const end = Math.min(t, next);
    if (end <= tl.fromAt(j)) tl.removeAt(j);
    else tl.setTo(j, end);
  }

  private refreshSliceIndex(): void {
    if (!this.sliceDirty) return;
    this.sliceDirty = false;
    const byPod = new Map<string, ServiceRecord[]>();
    const byAddr = new Map<string, ServiceRecord[]>();
    const sliced = new Set<string>();
    const add = (m: Map<string, ServiceRecord[]>, k: string, s: ServiceRecord): void => {
      const l = m.get(k);
      if (l === undefined) m.set(k, [s]);
      else if (!l.includes(s)) l.push(s);
    };
    for (const slice of this.slices.values()) {
      if (slice.service === undefined) continue;
      const svc = this.servicesByName.get(`${slice.namespace}/${slice.service}`);
      if (svc === undefined) continue;
      sliced.add(svc.key);
      const isIp = slice.addressType === 'IPv4' || slice.addressType === 'IPv6';
      for (const ep of slice.endpoints) {
        if (ep.targetRef !== undefined && ep.targetRef.kind === 'Pod') add(byPod, `${ep.targetRef.namespace}/${ep.targetRef.name}`, svc);
        else if (isIp) for (const a of ep.addresses) add(byAddr, a, svc);
      }
    }
    const bySelector = new Map<string, ServiceRecord[]>();
    for (const svc of this.servicesByName.values()) {
      if (svc.info.selector === undefined || sliced.has(svc.key)) continue;
      const l = bySelector.get(svc.info.namespace);
      if (l === undefined) bySelector.set(svc.info.namespace, [svc]);
      else l.push(svc);
    }
    this.servicesByPodKey = byPod;
    this.servicesByAddress = byAddr;
    this.selectorServices = bySelector;
  }

  /** The Services a pod backs: EndpointSlices for Services that have them, else selectors. */
  private servicesOf(p: PodRecord): NamespacedName[] {
    this.refreshSliceIndex();
    const found = new Set<ServiceRecord>(this.servicesByPodKey.get(p.key));
    for (const ip of p.info.ips) for (const s of this.servicesByAddress.get(ip) ?? []) found.add(s);
    for (const s of this.selectorServices.get(p.info.namespace) ?? []) if (matches(s.info.selector!, p.info.labels)) found.add(s);
    return [...found].map((s) => Object.freeze({ name: s.info.name, namespace: s.info.namespace })).sort(byName);
  }

  private podIdentity(p: PodRecord): Identity {
    const i = p.info;
    const services = Object.freeze(this.servicesOf(p));
    const id: Identity = {
      kind: 'pod',
      name: i.name,
      namespace: i.namespace,
      pod: Object.freeze({ name: i.name, namespace: i.namespace }),
      ...(services[0] !== undefined ? { service: services[0], services } : {}),
      ...(i.nodeName !== '' ? { node: Object.freeze({ name: i.nodeName }) } : {}),
      labels: i.labels,
      ...(p.workload !== undefined ? { workload: Object.freeze(p.workload) } : {}),
    };
    p.identity = Object.freeze(id);
    p.gen = this.membershipGen;
    return p.identity;
  }

  private serviceIdentity(s: ServiceRecord): Identity {
    const i = s.info;
    const ref = Object.freeze({ name: i.name, namespace: i.namespace });
    s.identity = Object.freeze<Identity>({ kind: 'service', name: i.name, namespace: i.namespace, service: ref, services: Object.freeze([ref]), labels: i.labels });
    return s.identity;
  }

  private nodeIdentity(n: NodeRecord, t: number): Identity {
    if (n.identity === undefined) {
      const base: Identity = { kind: 'node', name: n.info.name, namespace: '', node: Object.freeze({ name: n.info.name }), labels: n.info.labels };
      n.identity = Object.freeze(base);
      const all = [...(this.hostPods.get(n.info.name) ?? [])];
      n.ambiguous = all.length > 0 ? this.ambiguousNode(base, all) : undefined;
    }
    const pods = this.hostPods.get(n.info.name);
    if (pods === undefined || pods.size === 0) return n.identity;
    let present = 0;
    for (const p of pods) if (p.info.fromUs <= t && t < p.toUs) present++;
    if (present === 0) return n.identity;
    if (present === pods.size && n.ambiguous !== undefined) return n.ambiguous;
    return this.ambiguousNode(n.identity, [...pods].filter((p) => p.info.fromUs <= t && t < p.toUs));
  }

  private ambiguousNode(base: Identity, pods: PodRecord[]): Identity {
    const names = pods.map((p) => Object.freeze({ name: p.info.name, namespace: p.info.namespace })).sort(byName);
    return Object.freeze<Identity>({ ...base, hostNetworkPods: Object.freeze(names), reason: 'host-network-ambiguous' });
  }
}
