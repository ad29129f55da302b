import { formatIp, parseIp } from '@kubeshark-mcp/capture';
import type { OwnerRef } from './identity';

/**
 * The few fields of Pods, Services, Nodes and EndpointSlices the resolver needs, checked and
 * normalised once, whether they come from a cluster map file or from the API server. Field names
 * are the Kubernetes API's (core/v1 and discovery.k8s.io/v1). Anything malformed becomes an
 * `ObjectError` naming the offending field's path, never a crash further down.
 */

export interface PodInfo {
  uid: string;
  namespace: string;
  name: string;
  labels: Readonly<Record<string, string>>;
  owners: OwnerRef[];
  /** `spec.nodeName`; '' while unscheduled. */
  nodeName: string;
  hostNetwork: boolean;
  /** Canonical text (RFC 5952 for IPv6), from `status.podIPs`, else `status.podIP`. */
  ips: string[];
  phase: string;
  /** µs since the epoch: `metadata.creationTimestamp`, else `status.startTime`. */
  fromUs: number;
  /** `metadata.deletionTimestamp`, when set. */
  deletionUs?: number;
  /**
   * For a pod in phase Succeeded or Failed: when its last container finished. The kubelet frees a
   * finished pod's IP while the pod object stays, so the IP can be reused long before deletion.
   */
  finishedUs?: number;
}

export interface ServiceInfo {
  uid: string;
  namespace: string;
  name: string;
  labels: Readonly<Record<string, string>>;
  /** `spec.selector`; undefined (not empty) for a Service without one. */
  selector?: Readonly<Record<string, string>>;
  /** `spec.clusterIPs` (else `spec.clusterIP`), without `None` (headless). */
  clusterIPs: string[];
  type: string;
  fromUs: number;
  deletionUs?: number;
}

export interface NodeInfo {
  uid: string;
  name: string;
  labels: Readonly<Record<string, string>>;
  /** InternalIP and ExternalIP addresses of `status.addresses`. */
  ips: string[];
  fromUs: number;
  deletionUs?: number;
}

export interface SliceEndpoint {
  addresses: string[];
  /** `conditions.ready`; nil means ready, as the API documents. */
  ready: boolean;
  targetRef?: { kind: string; name: string; namespace: string };
  nodeName?: string;
}

export interface EndpointSliceInfo {
  uid: string;
  namespace: string;
  name: string;
  /** The `kubernetes.io/service-name` label: the Service the slice belongs to. */
  service?: string;
  addressType: string;
  endpoints: SliceEndpoint[];
}

export type KubeObject =
  | { kind: 'Pod'; value: PodInfo }
  | { kind: 'Service'; value: ServiceInfo }
  | { kind: 'Node'; value: NodeInfo }
  | { kind: 'EndpointSlice'; value: EndpointSliceInfo };

export type KubeKind = KubeObject['kind'];
export const KUBE_KINDS: readonly KubeKind[] = ['Pod', 'Service', 'Node', 'EndpointSlice'];

/** A malformed object or field; `path` is where, e.g. `items[3].status.podIPs[1].ip`. */
export class ObjectError extends Error {
  constructor(
    readonly path: string,
    readonly detail: string,
  ) {
    super(`${path}: ${detail}`);
    this.name = 'ObjectError';
  }
}

type Json = Record<string, unknown>;

export const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function obj(v: unknown, path: string): Json {
  if (!isObject(v)) throw new ObjectError(path, `expected an object, got ${describe(v)}`);
  return v;
}

function optObj(v: unknown, path: string): Json | undefined {
  return v === undefined || v === null ? undefined : obj(v, path);
}

function str(v: unknown, path: string): string {
  if (typeof v !== 'string') throw new ObjectError(path, `expected a string, got ${describe(v)}`);
  return v;
}

function optStr(v: unknown, path: string): string | undefined {
  return v === undefined || v === null ? undefined : str(v, path);
}

function optArr(v: unknown, path: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new ObjectError(path, `expected an array, got ${describe(v)}`);
  return v;
}

function stringMap(v: unknown, path: string): Readonly<Record<string, string>> {
  const o = optObj(v, path);
  if (!o) return Object.freeze({});
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(o)) out[k] = str(x, `${path}.${k}`);
  return Object.freeze(out);
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `"${v.length > 40 ? `${v.slice(0, 40)}...` : v}"`;
  return typeof v;
}

/** Canonical text of an IP address (what capture's formatIp prints), or undefined. */
export function canonicalIp(text: string): string | undefined {
  const w = parseIp(text);
  return w ? formatIp(w.version, w.w0, w.w1, w.w2, w.w3) : undefined;
}

function ip(v: unknown, path: string): string {
  const s = str(v, path);
  const c = canonicalIp(s);
  if (c === undefined) throw new ObjectError(path, `not an IP address: ${describe(s)}`);
  return c;
}

const RFC3339 = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/i;

/** Microseconds since the epoch of an RFC 3339 time (`Time` and `MicroTime` of the API). */
export function parseTimeUs(text: string): number | undefined {
  const m = RFC3339.exec(text);
  if (!m) return undefined;
  const ms = Date.parse(`${m[1]!}${m[3]!.toUpperCase()}`);
  if (Number.isNaN(ms)) return undefined;
  const frac = m[2] ? Math.floor(Number(m[2].padEnd(6, '0').slice(0, 6))) : 0;
  return ms * 1000 + frac;
}

function optTime(v: unknown, path: string): number | undefined {
  const s = optStr(v, path);
  if (s === undefined || s === '') return undefined;
  const t = parseTimeUs(s);
  if (t === undefined) throw new ObjectError(path, `not an RFC 3339 time: ${describe(s)}`);
  return t;
}

interface Meta {
  uid: string;
  name: string;
  namespace: string;
  labels: Readonly<Record<string, string>>;
  createdUs?: number;
  deletionUs?: number;
  owners: OwnerRef[];
}

function meta(o: Json, path: string, namespaced: boolean): Meta {
  const m = obj(o.metadata, `${path}.metadata`);
  const name = str(m.name, `${path}.metadata.name`);
  if (name === '') throw new ObjectError(`${path}.metadata.name`, 'empty name');
  const namespace = namespaced ? str(m.namespace, `${path}.metadata.namespace`) : '';
  const owners = optArr(m.ownerReferences, `${path}.metadata.ownerReferences`).map((r, i) => {
    const rp = `${path}.metadata.ownerReferences[${i}]`;
    const ro = obj(r, rp);
    const controller = ro.controller;
    return { kind: str(ro.kind, `${rp}.kind`), name: str(ro.name, `${rp}.name`), ...(controller === true ? { controller: true } : {}) };
  });
  const createdUs = optTime(m.creationTimestamp, `${path}.metadata.creationTimestamp`);
  const deletionUs = optTime(m.deletionTimestamp, `${path}.metadata.deletionTimestamp`);
  return {
    // A cluster map written by hand may omit uids; namespace/name identifies the object then.
    uid: optStr(m.uid, `${path}.metadata.uid`) ?? `${namespace}/${name}`,
    name,
    namespace,
    labels: stringMap(m.labels, `${path}.metadata.labels`),
    ...(createdUs !== undefined ? { createdUs } : {}),
    ...(deletionUs !== undefined ? { deletionUs } : {}),
    owners,
  };
}

function needFrom(m: Meta, alt: number | undefined, path: string, field: string): number {
  const t = m.createdUs ?? alt;
  if (t === undefined) throw new ObjectError(`${path}.metadata.creationTimestamp`, `missing: the resolver needs to know since when the ${field} exists`);
  return t;
}

function parsePod(o: Json, path: string): PodInfo {
  const m = meta(o, path, true);
  const spec = optObj(o.spec, `${path}.spec`) ?? {};
  const status = optObj(o.status, `${path}.status`) ?? {};
  const startUs = optTime(status.startTime, `${path}.status.startTime`);
  const ips: string[] = [];
  const podIPs = optArr(status.podIPs, `${path}.status.podIPs`);
  podIPs.forEach((p, i) => {
    const a = ip(obj(p, `${path}.status.podIPs[${i}]`).ip, `${path}.status.podIPs[${i}].ip`);
    if (!ips.includes(a)) ips.push(a);
  });
  if (ips.length === 0) {
    const one = optStr(status.podIP, `${path}.status.podIP`);
    if (one) ips.push(ip(one, `${path}.status.podIP`));
  }
  const phase = optStr(status.phase, `${path}.status.phase`) ?? '';
  let finishedUs: number | undefined;
  if (phase === 'Succeeded' || phase === 'Failed') {
    optArr(status.containerStatuses, `${path}.status.containerStatuses`).forEach((c, i) => {
      const cp = `${path}.status.containerStatuses[${i}]`;
      const state = optObj(obj(c, cp).state, `${cp}.state`);
      const term = state ? optObj(state.terminated, `${cp}.state.terminated`) : undefined;
      const fin = term ? optTime(term.finishedAt, `${cp}.state.terminated.finishedAt`) : undefined;
      if (fin !== undefined && (finishedUs === undefined || fin > finishedUs)) finishedUs = fin;
    });
  }
  const hostNetwork = spec.hostNetwork;
  if (hostNetwork !== undefined && typeof hostNetwork !== 'boolean') throw new ObjectError(`${path}.spec.hostNetwork`, `expected a boolean, got ${describe(hostNetwork)}`);
  return {
    uid: m.uid,
    namespace: m.namespace,
    name: m.name,
    labels: m.labels,
    owners: m.owners,
    nodeName: optStr(spec.nodeName, `${path}.spec.nodeName`) ?? '',
    hostNetwork: hostNetwork === true,
    ips,
    phase,
    fromUs: needFrom(m, startUs, path, 'pod'),
    ...(m.deletionUs !== undefined ? { deletionUs: m.deletionUs } : {}),
    ...(finishedUs !== undefined ? { finishedUs } : {}),
  };
}

function parseService(o: Json, path: string): ServiceInfo {
  const m = meta(o, path, true);
  const spec = optObj(o.spec, `${path}.spec`) ?? {};
  const ips: string[] = [];
  const add = (v: unknown, p: string): void => {
    const s = str(v, p);
    if (s === '' || s === 'None') return;
    const a = ip(s, p);
    if (!ips.includes(a)) ips.push(a);
  };
  const list = optArr(spec.clusterIPs, `${path}.spec.clusterIPs`);
  list.forEach((v, i) => add(v, `${path}.spec.clusterIPs[${i}]`));
  if (list.length === 0 && spec.clusterIP !== undefined && spec.clusterIP !== null) add(spec.clusterIP, `${path}.spec.clusterIP`);
  const sel = spec.selector === undefined || spec.selector === null ? undefined : stringMap(spec.selector, `${path}.spec.selector`);
  return {
    uid: m.uid,
    namespace: m.namespace,
    name: m.name,
    labels: m.labels,
    // An empty selector selects nothing for a Service (the API treats it as "no selector").
    ...(sel && Object.keys(sel).length > 0 ? { selector: sel } : {}),
    clusterIPs: ips,
    type: optStr(spec.type, `${path}.spec.type`) ?? 'ClusterIP',
    fromUs: needFrom(m, undefined, path, 'Service'),
    ...(m.deletionUs !== undefined ? { deletionUs: m.deletionUs } : {}),
  };
}

function parseNode(o: Json, path: string): NodeInfo {
  const m = meta(o, path, false);
  const status = optObj(o.status, `${path}.status`) ?? {};
  const ips: string[] = [];
  optArr(status.addresses, `${path}.status.addresses`).forEach((a, i) => {
    const ap = `${path}.status.addresses[${i}]`;
    const ao = obj(a, ap);
    const type = str(ao.type, `${ap}.type`);
    if (type !== 'InternalIP' && type !== 'ExternalIP') return;
    const addr = ip(ao.address, `${ap}.address`);
    if (!ips.includes(addr)) ips.push(addr);
  });
  return {
    uid: m.uid,
    name: m.name,
    labels: m.labels,
    ips,
    fromUs: needFrom(m, undefined, path, 'node'),
    ...(m.deletionUs !== undefined ? { deletionUs: m.deletionUs } : {}),
  };
}

function parseEndpointSlice(o: Json, path: string): EndpointSliceInfo {
  const m = meta(o, path, true);
  const addressType = str(o.addressType, `${path}.addressType`);
  const isIp = addressType === 'IPv4' || addressType === 'IPv6';
  const endpoints = optArr(o.endpoints, `${path}.endpoints`).map((e, i): SliceEndpoint => {
    const ep = `${path}.endpoints[${i}]`;
    const eo = obj(e, ep);
    const addrs = optArr(eo.addresses, `${ep}.addresses`);
    // FQDN slices carry names, not addresses: kept for completeness, never matched to an IP.
    const addresses = addrs.map((a, j) => (isIp ? ip(a, `${ep}.addresses[${j}]`) : str(a, `${ep}.addresses[${j}]`)));
    const cond = optObj(eo.conditions, `${ep}.conditions`);
    const ready = cond?.ready;
    if (ready !== undefined && ready !== null && typeof ready !== 'boolean') throw new ObjectError(`${ep}.conditions.ready`, `expected a boolean, got ${describe(ready)}`);
    const tr = optObj(eo.targetRef, `${ep}.targetRef`);
    const nodeName = optStr(eo.nodeName, `${ep}.nodeName`);
    return {
      addresses,
      ready: ready !== false,
      ...(tr
        ? {
            targetRef: {
              kind: optStr(tr.kind, `${ep}.targetRef.kind`) ?? '',
              name: str(tr.name, `${ep}.targetRef.name`),
              namespace: optStr(tr.namespace, `${ep}.targetRef.namespace`) ?? m.namespace,
            },
          }
        : {}),
      ...(nodeName !== undefined ? { nodeName } : {}),
    };
  });
  const service = m.labels['kubernetes.io/service-name'];
  return { uid: m.uid, namespace: m.namespace, name: m.name, ...(service !== undefined ? { service } : {}), addressType, endpoints };
}

/**
 * Parses one API object. `kind` is the object's own `kind` when it has one (kubectl's output),
 * else `hint` (items of an API list response such as a PodList carry no kind). Returns undefined
 * for a kind the resolver does not use; throws `ObjectError` for a malformed object.
 */
export function parseKubeObject(raw: unknown, path: string, hint?: KubeKind): KubeObject | { kind: 'unknown'; name: string } {
  const o = obj(raw, path);
  const declared = optStr(o.kind, `${path}.kind`);
  const kind = declared ?? hint;
  if (kind === undefined) throw new ObjectError(`${path}.kind`, 'missing, and the list it came from does not say');
  if (o.apiVersion !== undefined && o.apiVersion !== null) str(o.apiVersion, `${path}.apiVersion`);
  switch (kind) {
    case 'Pod':
      return { kind, value: parsePod(o, path) };
    case 'Service':
      return { kind, value: parseService(o, path) };
    case 'Node':
      return { kind, value: parseNode(o, path) };
    case 'EndpointSlice':
      return { kind, value: parseEndpointSlice(o, path) };
    default:
      return { kind: 'unknown', name: kind };
  }
}
