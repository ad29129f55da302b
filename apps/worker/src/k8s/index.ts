/**
 * The worker's Kubernetes resolver: IP -> pod / Service / node identity at a point in time, fed
 * by a cluster map file (outside a cluster) or by a list+watch of the API server (inside one).
 */
export { ClusterResolver, DEFAULT_MAX_INTERVALS_PER_IP, DEFAULT_RETENTION_US } from './resolver';
export type { ClusterResolverOptions, ResolverStats, Workloads, WorkloadPod, WorkloadService, WorkloadNode } from './resolver';
export { loadClusterMap, formatClusterMapError, ClusterMapError } from './cluster-map';
export type { ClusterMapResult, ClusterMapItemError, LoadClusterMapOptions, ClusterMapJson } from './cluster-map';
export { KubeWatcher, KubeWatchError, WATCH_RESOURCES, WATCH_PATHS, SERVICE_ACCOUNT_DIR } from './watch';
export type { KubeWatcherOptions, KubeWatchErrorCode, WatchResource, ResourceState, ResourceStatus, WatcherState, WatcherStatus, WatchNotice } from './watch';
export { endpointFields, workloadOf, IDENTITY_REASONS, UNRESOLVED } from './identity';
export type { Identity, IdentityKind, IdentityReason, EndpointIdentity, NamespacedName, Workload, WorkloadKind, OwnerRef } from './identity';
export { canonicalIp, parseKubeObject, parseTimeUs, ObjectError, KUBE_KINDS } from './objects';
export type { KubeObject, KubeKind, PodInfo, ServiceInfo, NodeInfo, EndpointSliceInfo, SliceEndpoint } from './objects';
export { clusterMapSource, kubeWatchSource, IdentityLookup } from './source';
export type { KubeSource, KubeStatus, ResolvedEndpoint } from './source';
