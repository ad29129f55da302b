/**
 * The Kubernetes identity of an IP address at one moment, in KFL2's vocabulary: an entry's or a
 * flow's `src`/`dst` exposes `name`, `namespace`, `pod.name`, `pod.namespace`, `service.name`,
 * `service.namespace`, `node.name` and the peer's labels, and this object nests the same way so
 * that wiring it in is a copy, not a translation.
 *
 * Identities handed out by the resolver are shared and frozen: `resolve` is called per flow and
 * per entry and must not allocate, so callers must not mutate them.
 */

/** What an address belongs to. `external` is every address the cluster map does not explain. */
export type IdentityKind = 'pod' | 'service' | 'node' | 'external';

/**
 * Why an identity is not (or not exactly) a pod:
 * - `not-in-cluster-map`: the address never belonged to a pod, Service or node we know of.
 * - `no-pod-at-that-time`: the address did belong to something, but not at the asked time
 *   (before the first owner appeared, between two owners, or after the last one left).
 * - `before-retention-horizon`: the asked time is older than the history the resolver keeps.
 * - `host-network-ambiguous`: the address is a node's, and hostNetwork pods were running on that
 *   node at that time; they share its address, so the traffic may be theirs or the node's own.
 *   The identity is the node's and `hostNetworkPods` names the candidates.
 */
export type IdentityReason = 'not-in-cluster-map' | 'no-pod-at-that-time' | 'before-retention-horizon' | 'host-network-ambiguous';

export const IDENTITY_REASONS: readonly IdentityReason[] = ['not-in-cluster-map', 'no-pod-at-that-time', 'before-retention-horizon', 'host-network-ambiguous'];

/** Controllers a pod is attributed to. A ReplicaSet owned by a Deployment is reported as the Deployment. */
export type WorkloadKind = 'Deployment' | 'ReplicaSet' | 'StatefulSet' | 'DaemonSet' | 'Job' | 'ReplicationController' | 'Other';

export interface Workload {
  kind: WorkloadKind;
  name: string;
  /** The owner reference's own kind when `kind` is `Other` (a custom controller). */
  ownerKind?: string;
}

export interface NamespacedName {
  name: string;
  namespace: string;
}

export interface Identity {
  kind: IdentityKind;
  /** KFL `src.name`: the pod's name, else the Service's, else the node's; '' when external. */
  name: string;
  /** KFL `src.namespace`: the pod's, else the Service's; '' for nodes and external addresses. */
  namespace: string;
  /** KFL `src.pod.*`. */
  pod?: NamespacedName;
  /** KFL `src.service.*`: the first of `services` (by name). */
  service?: NamespacedName;
  /** Every Service the pod backs (a pod may back several), sorted by name. */
  services?: readonly NamespacedName[];
  /** KFL `src.node.name`: the node a pod runs on, or the node itself. */
  node?: { name: string };
  /** The pod's (else Service's, else node's) metadata labels. */
  labels: Readonly<Record<string, string>>;
  workload?: Workload;
  /** Node identities only: the hostNetwork pods running on the node at that time (see `host-network-ambiguous`). */
  hostNetworkPods?: readonly NamespacedName[];
  reason?: IdentityReason;
}

/** The flat identity fields of mcp-core's `Endpoint` (`name`, `namespace`, `pod`, `service`, `node`). */
export interface EndpointIdentity {
  name?: string;
  namespace?: string;
  pod?: string;
  service?: string;
  node?: string;
}

/** Flattens an identity into the `Endpoint` fields the gRPC contract and mcp-core carry. */
export function endpointFields(id: Identity): EndpointIdentity {
  const out: EndpointIdentity = {};
  if (id.name) out.name = id.name;
  if (id.namespace) out.namespace = id.namespace;
  if (id.pod) out.pod = id.pod.name;
  if (id.service) out.service = id.service.name;
  if (id.node) out.node = id.node.name;
  return out;
}

const EMPTY_LABELS: Readonly<Record<string, string>> = Object.freeze({});

/** One shared identity per reason: unresolved lookups must not allocate. */
export const UNRESOLVED: Readonly<Record<Exclude<IdentityReason, 'host-network-ambiguous'>, Identity>> = Object.freeze({
  'not-in-cluster-map': Object.freeze<Identity>({ kind: 'external', name: '', namespace: '', labels: EMPTY_LABELS, reason: 'not-in-cluster-map' }),
  'no-pod-at-that-time': Object.freeze<Identity>({ kind: 'external', name: '', namespace: '', labels: EMPTY_LABELS, reason: 'no-pod-at-that-time' }),
  'before-retention-horizon': Object.freeze<Identity>({ kind: 'external', name: '', namespace: '', labels: EMPTY_LABELS, reason: 'before-retention-horizon' }),
});

export interface OwnerRef {
  kind: string;
  name: string;
  controller?: boolean;
}

/**
 * A pod-template-hash: the decimal text of a 32-bit hash, mapped character by character onto
 * Kubernetes' "safe" alphabet (no vowels, no 0/1/3, to avoid words), so at most 10 characters,
 * and in practice at least 6 (shorter would need a hash below 100000). The lower bound keeps
 * hand-made names such as `legacy-rs` whole.
 */
const TEMPLATE_HASH = /^[bcdfghjklmnpqrstvwxz2456789]{6,10}$/;

/**
 * The workload a pod belongs to, from its controller owner reference. A ReplicaSet named
 * `<deployment>-<pod-template-hash>` is reported as that Deployment (the hash is checked against
 * the pod's `pod-template-hash` label when there is one, else against the hash alphabet). A Job
 * stays a Job even when a CronJob created it: the Job's own owner is not on the pod.
 */
export function workloadOf(owners: readonly OwnerRef[], labels: Readonly<Record<string, string>>): Workload | undefined {
  const owner = owners.find((o) => o.controller === true) ?? owners[0];
  if (!owner) return undefined;
  switch (owner.kind) {
    case 'ReplicaSet': {
      const dash = owner.name.lastIndexOf('-');
      if (dash > 0) {
        const hash = owner.name.slice(dash + 1);
        const expected = labels['pod-template-hash'];
        if (expected !== undefined ? hash === expected : TEMPLATE_HASH.test(hash)) return { kind: 'Deployment', name: owner.name.slice(0, dash) };
      }
      return { kind: 'ReplicaSet', name: owner.name };
    }
    case 'StatefulSet':
    case 'DaemonSet':
    case 'Job':
    case 'ReplicationController':
      return { kind: owner.kind, name: owner.name };
    default:
      return { kind: 'Other', name: owner.name, ownerKind: owner.kind };
  }
}
