import { UNRESOLVED, workloadOf } from '../src/k8s/identity';
import { canonicalIp, parseKubeObject, parseTimeUs, type EndpointSliceInfo, type NodeInfo, type PodInfo, type ServiceInfo } from '../src/k8s/objects';
import { ClusterResolver } from '../src/k8s/resolver';

const S = 1_000_000;
const pod = (name: string, ip: string | string[], fromUs: number, extra: Partial<PodInfo> = {}): PodInfo => ({
  uid: `uid-${name}`,
  namespace: 'shop',
  name,
  labels: { app: name.split('-')[0]! },
  owners: [],
  nodeName: 'node-a',
  hostNetwork: false,
  ips: Array.isArray(ip) ? ip : [ip],
  phase: 'Running',
  fromUs,
  ...extra,
});
const service = (name: string, ips: string[], extra: Partial<ServiceInfo> = {}): ServiceInfo => ({
  uid: `uid-svc-${name}`,
  namespace: 'shop',
  name,
  labels: {},
  selector: { app: name },
  clusterIPs: ips,
  type: 'ClusterIP',
  fromUs: 0,
  ...extra,
});
const node = (name: string, ips: string[], extra: Partial<NodeInfo> = {}): NodeInfo => ({ uid: `uid-${name}`, name, labels: {}, ips, fromUs: 0, ...extra });

describe('ClusterResolver: time', () => {
  it('keeps owners of one IP apart in time, whatever order they arrive in', () => {
    for (const order of [0, 1]) {
      const r = new ClusterResolver();
      const a = pod('a-1', '10.0.0.5', 100 * S, { deletionUs: 200 * S });
      const b = pod('b-1', '10.0.0.5', 250 * S);
      if (order === 0) {
        r.upsertPod(a, 0);
        r.upsertPod(b, 0);
      } else {
        r.upsertPod(b, 0);
        r.upsertPod(a, 0);
      }
      expect(r.resolve('10.0.0.5', 99 * S).reason).toBe('no-pod-at-that-time');
      expect(r.resolve('10.0.0.5', 100 * S).name).toBe('a-1');
      expect(r.resolve('10.0.0.5', 200 * S - 1).name).toBe('a-1');
      expect(r.resolve('10.0.0.5', 200 * S).reason).toBe('no-pod-at-that-time');
      expect(r.resolve('10.0.0.5', 250 * S).name).toBe('b-1');
      expect(r.resolve('10.0.0.5', 1e9 * S).name).toBe('b-1');
      expect(r.stats().overlapsTrimmed).toBe(0);
    }
  });

  it('cuts an open-ended owner when a new one claims its IP (a missed deletion), and delays a new owner past a finished one', () => {
    const r = new ClusterResolver();
    r.upsertPod(pod('a-1', '10.0.0.5', 100 * S), 0);
    r.upsertPod(pod('b-1', '10.0.0.5', 300 * S), 0);
    expect(r.resolve('10.0.0.5', 299 * S).name).toBe('a-1');
    expect(r.resolve('10.0.0.5', 300 * S).name).toBe('b-1');
    // c was created (creationTimestamp) before b finished; it can only have held the IP after.
    r.upsertPod(pod('b-1', '10.0.0.5', 300 * S, { phase: 'Succeeded', finishedUs: 400 * S }), 0);
    r.upsertPod(pod('c-1', '10.0.0.5', 350 * S), 0);
    expect(r.resolve('10.0.0.5', 399 * S).name).toBe('b-1');
    expect(r.resolve('10.0.0.5', 400 * S).name).toBe('c-1');
    expect(r.stats().overlapsTrimmed).toBe(2);
  });

  it('ends the interval of an IP a pod lost, at the time of the update', () => {
    const r = new ClusterResolver();
    r.upsertPod(pod('a-1', ['10.0.0.5', 'fd00::5'], 100 * S), 100 * S);
    r.upsertPod(pod('a-1', ['10.0.0.6'], 100 * S), 150 * S);
    expect(r.resolve('10.0.0.5', 149 * S).name).toBe('a-1');
    expect(r.resolve('10.0.0.5', 150 * S).reason).toBe('no-pod-at-that-time');
    expect(r.resolve('fd00::5', 150 * S).reason).toBe('no-pod-at-that-time');
    expect(r.resolve('10.0.0.6', 120 * S).name).toBe('a-1');
  });

  it('caps the intervals kept per IP, dropping the oldest', () => {
    const r = new ClusterResolver({ maxIntervalsPerIp: 3 });
    for (let i = 0; i < 5; i++) r.upsertPod(pod(`p-${i}`, '10.0.0.5', i * 10 * S, { deletionUs: (i * 10 + 5) * S }), 0);
    expect(r.stats()).toMatchObject({ intervals: 3, droppedByCap: 2 });
    expect(r.resolve('10.0.0.5', 1 * S).reason).toBe('no-pod-at-that-time');
    expect(r.resolve('10.0.0.5', 21 * S).name).toBe('p-2');
    expect(r.resolve('10.0.0.5', 41 * S).name).toBe('p-4');
  });

  it('prunes what ended before the retention horizon and says so for older times', () => {
    const r = new ClusterResolver({ retentionUs: 100 * S });
    r.upsertPod(pod('old-1', '10.0.0.5', 0, { deletionUs: 50 * S }), 0);
    r.upsertPod(pod('new-1', '10.0.0.5', 60 * S), 0);
    r.upsertPod(pod('gone-1', '10.0.0.9', 0, { deletionUs: 10 * S }), 0);
    r.upsertPod(pod('live-1', '10.0.0.7', 0), 0);
    expect(r.prune(175 * S)).toBe(2);
    expect(r.stats()).toMatchObject({ pods: 2, ips: 2, intervals: 2, pruned: 2, horizonUs: 75 * S });
    expect(r.resolve('10.0.0.5', 20 * S).reason).toBe('before-retention-horizon');
    expect(r.resolve('10.0.0.5', 70 * S).name).toBe('new-1');
    expect(r.resolve('10.0.0.9', 5 * S).reason).toBe('not-in-cluster-map');
    expect(r.resolve('10.0.0.7', 5 * S).name).toBe('live-1');
    expect(r.prune(170 * S)).toBe(0);
  });

  it('ends a deleted pod at the deletion time, or earlier when it had already finished', () => {
    const r = new ClusterResolver();
    r.upsertPod(pod('a-1', '10.0.0.5', 0), 0);
    r.deletePod(pod('a-1', '10.0.0.5', 0), 30 * S);
    expect(r.resolve('10.0.0.5', 30 * S - 1).name).toBe('a-1');
    expect(r.resolve('10.0.0.5', 30 * S).reason).toBe('no-pod-at-that-time');
    r.upsertPod(pod('j-1', '10.0.0.6', 0, { phase: 'Succeeded', finishedUs: 10 * S }), 0);
    r.deletePod(pod('j-1', '10.0.0.6', 0, { phase: 'Succeeded', finishedUs: 10 * S }), 90 * S);
    expect(r.resolve('10.0.0.6', 20 * S).reason).toBe('no-pod-at-that-time');
    expect(r.workloads().pods.map((p) => p.name)).toEqual([]);
    expect(r.workloads(5 * S).pods.map((p) => p.name)).toEqual(['a-1', 'j-1']);
  });
});

describe('ClusterResolver: precedence and membership', () => {
  it('prefers a pod over a ClusterIP over a node for the same address', () => {
    const r = new ClusterResolver();
    r.upsertNode(node('node-a', ['10.0.0.5']), 0);
    r.upsertService(service('web', ['10.0.0.5'], { fromUs: 10 * S }), 0);
    r.upsertPod(pod('web-1', '10.0.0.5', 20 * S, { deletionUs: 30 * S }), 0);
    expect(r.resolve('10.0.0.5', 5 * S).kind).toBe('node');
    expect(r.resolve('10.0.0.5', 15 * S).kind).toBe('service');
    expect(r.resolve('10.0.0.5', 25 * S).kind).toBe('pod');
    expect(r.resolve('10.0.0.5', 35 * S).kind).toBe('service');
  });

  it('takes members from EndpointSlices when a Service has them, else from its selector', () => {
    const r = new ClusterResolver();
    r.upsertService(service('web', ['10.96.0.1']), 0);
    r.upsertService(service('all', ['10.96.0.2'], { selector: { tier: 'x' } }), 0);
    r.upsertPod(pod('web-1', '10.0.0.1', 0, { labels: { app: 'web', tier: 'x' } }), 0);
    r.upsertPod(pod('web-2', '10.0.0.2', 0, { labels: { app: 'web' } }), 0);
    r.upsertPod(pod('web-3', '10.0.0.3', 0, { labels: { app: 'web' }, namespace: 'other' }), 0);
    expect(r.resolve('10.0.0.1', S).services).toEqual([{ name: 'all', namespace: 'shop' }, { name: 'web', namespace: 'shop' }]);
    expect(r.resolve('10.0.0.1', S).service).toEqual({ name: 'all', namespace: 'shop' });
    expect(r.resolve('10.0.0.2', S).services).toEqual([{ name: 'web', namespace: 'shop' }]);
    expect(r.resolve('10.0.0.3', S).services).toBeUndefined();
    // The slice names web-2 only (by targetRef) plus a bare address: the selector no longer counts for web.
    const slice: EndpointSliceInfo = {
      uid: 'slice-1',
      namespace: 'shop',
      name: 'web-abcde',
      service: 'web',
      addressType: 'IPv4',
      endpoints: [
        { addresses: ['10.0.0.2'], ready: true, targetRef: { kind: 'Pod', name: 'web-2', namespace: 'shop' } },
        { addresses: ['10.0.0.3'], ready: false },
      ],
    };
    r.upsertEndpointSlice(slice);
    expect(r.resolve('10.0.0.1', S).services).toEqual([{ name: 'all', namespace: 'shop' }]);
    expect(r.resolve('10.0.0.2', S).services).toEqual([{ name: 'web', namespace: 'shop' }]);
    expect(r.resolve('10.0.0.3', S).services).toEqual([{ name: 'web', namespace: 'shop' }]);
    r.deleteEndpointSlice(slice);
    expect(r.resolve('10.0.0.1', S).services?.map((s) => s.name)).toEqual(['all', 'web']);
    r.deleteService(service('web', ['10.96.0.1']), 5 * S);
    expect(r.resolve('10.0.0.2', 6 * S).services).toBeUndefined();
    expect(r.resolve('10.96.0.1', 4 * S).name).toBe('web');
    expect(r.resolve('10.96.0.1', 5 * S).reason).toBe('no-pod-at-that-time');
  });

  it('names the hostNetwork pods present at the asked time on a node address', () => {
    const r = new ClusterResolver();
    r.upsertPod(pod('agent-1', '10.0.0.11', 10 * S, { hostNetwork: true }), 0);
    r.upsertPod(pod('proxy-1', '10.0.0.11', 20 * S, { hostNetwork: true, deletionUs: 40 * S }), 0);
    r.upsertNode(node('node-a', ['10.0.0.11']), 0);
    expect(r.resolve('10.0.0.11', 5 * S).reason).toBeUndefined();
    expect(r.resolve('10.0.0.11', 15 * S).hostNetworkPods?.map((p) => p.name)).toEqual(['agent-1']);
    expect(r.resolve('10.0.0.11', 25 * S).hostNetworkPods?.map((p) => p.name)).toEqual(['agent-1', 'proxy-1']);
    expect(r.resolve('10.0.0.11', 45 * S)).toMatchObject({ kind: 'node', reason: 'host-network-ambiguous', hostNetworkPods: [{ name: 'agent-1' }] });
    expect(r.stats().intervals).toBe(1);
  });

  it('ends a node re-registered under its name with a new uid', () => {
    const r = new ClusterResolver();
    r.upsertNode(node('node-a', ['10.0.0.11']), 0);
    r.upsertNode(node('node-a', ['10.0.0.12'], { uid: 'uid-node-a-2', fromUs: 100 * S }), 100 * S);
    expect(r.resolve('10.0.0.11', 99 * S).name).toBe('node-a');
    expect(r.resolve('10.0.0.11', 100 * S).reason).toBe('no-pod-at-that-time');
    expect(r.resolve('10.0.0.12', 100 * S).name).toBe('node-a');
    expect(r.workloads().nodes).toEqual([{ name: 'node-a', ips: ['10.0.0.12'], labels: {} }]);
  });
});

describe('ClusterResolver: identities are shared and rebuilt only after a change', () => {
  it('returns the same frozen object until something changes', () => {
    const r = new ClusterResolver();
    r.upsertPod(pod('web-1', '10.0.0.1', 0), 0);
    const a = r.resolve('10.0.0.1', S);
    expect(r.resolve('10.0.0.1', 2 * S)).toBe(a);
    expect(Object.isFrozen(a)).toBe(true);
    expect(r.resolve('9.9.9.9', S)).toBe(UNRESOLVED['not-in-cluster-map']);
    r.upsertPod(pod('web-1', '10.0.0.1', 0, { labels: { app: 'web', v: '2' } }), 0);
    const b = r.resolve('10.0.0.1', S);
    expect(b).not.toBe(a);
    expect(b.labels).toEqual({ app: 'web', v: '2' });
  });

  it('rebuilds only what a change touches: a pod change the pod, a Service change every pod, a hostNetwork pod its node', () => {
    const r = new ClusterResolver();
    r.upsertService(service('web', ['10.96.0.1']), 0);
    r.upsertPod(pod('web-1', '10.0.0.1', 0), 0);
    r.upsertPod(pod('web-2', '10.0.0.2', 0), 0);
    r.upsertNode(node('node-a', ['10.0.0.11']), 0);
    const one = r.resolve('10.0.0.1', S);
    const two = r.resolve('10.0.0.2', S);
    const svc = r.resolve('10.96.0.1', S);
    const nodeA = r.resolve('10.0.0.11', S);
    expect(nodeA.reason).toBeUndefined();
    r.upsertPod(pod('web-2', '10.0.0.2', 0, { labels: { app: 'web', v: '3' } }), 0);
    expect(r.resolve('10.0.0.1', S)).toBe(one);
    expect(r.resolve('10.0.0.2', S)).not.toBe(two);
    expect(r.resolve('10.96.0.1', S)).toBe(svc);
    expect(r.resolve('10.0.0.11', S)).toBe(nodeA);
    r.upsertService(service('web', ['10.96.0.1'], { selector: { app: 'none' } }), 0);
    expect(r.resolve('10.0.0.1', S).services).toBeUndefined();
    expect(r.resolve('10.96.0.1', S)).not.toBe(svc);
    r.upsertPod(pod('proxy-1', '10.0.0.11', 0, { hostNetwork: true }), 0);
    expect(r.resolve('10.0.0.11', S)).toMatchObject({ reason: 'host-network-ambiguous', hostNetworkPods: [{ name: 'proxy-1' }] });
    r.deletePod(pod('proxy-1', '10.0.0.11', 0, { hostNetwork: true }), 2 * S);
    expect(r.resolve('10.0.0.11', 3 * S).reason).toBeUndefined();
    expect(r.resolve('10.0.0.11', S).reason).toBe('host-network-ambiguous');
    r.prune(2 * S + r.retentionUs + 1);
    expect(r.resolve('10.0.0.11', S).hostNetworkPods).toBeUndefined();
  });

  it('rejects nonsense options', () => {
    expect(() => new ClusterResolver({ maxIntervalsPerIp: 0 })).toThrow(RangeError);
    expect(() => new ClusterResolver({ retentionUs: -1 })).toThrow(RangeError);
  });
});

describe('workloads from owner references', () => {
  it('strips the pod-template-hash of a ReplicaSet to name the Deployment', () => {
    expect(workloadOf([{ kind: 'ReplicaSet', name: 'checkout-5f6d8b9c4d', controller: true }], { 'pod-template-hash': '5f6d8b9c4d' })).toEqual({ kind: 'Deployment', name: 'checkout' });
    expect(workloadOf([{ kind: 'ReplicaSet', name: 'my-app-v2-7c9d8b6f5', controller: true }], {})).toEqual({ kind: 'Deployment', name: 'my-app-v2' });
    // A hand-made ReplicaSet whose suffix is not a template hash stays a ReplicaSet.
    expect(workloadOf([{ kind: 'ReplicaSet', name: 'legacy-rs', controller: true }], {})).toEqual({ kind: 'ReplicaSet', name: 'legacy-rs' });
    expect(workloadOf([{ kind: 'ReplicaSet', name: 'web-abc', controller: true }], { 'pod-template-hash': 'zzz' })).toEqual({ kind: 'ReplicaSet', name: 'web-abc' });
  });

  it('keeps StatefulSets, DaemonSets and Jobs, names custom controllers, prefers the controller owner', () => {
    expect(workloadOf([{ kind: 'StatefulSet', name: 'db', controller: true }], {})).toEqual({ kind: 'StatefulSet', name: 'db' });
    expect(workloadOf([{ kind: 'DaemonSet', name: 'kube-proxy', controller: true }], {})).toEqual({ kind: 'DaemonSet', name: 'kube-proxy' });
    expect(workloadOf([{ kind: 'Job', name: 'report-29380000', controller: true }], {})).toEqual({ kind: 'Job', name: 'report-29380000' });
    expect(workloadOf([{ kind: 'Rollout', name: 'canary', controller: true }], {})).toEqual({ kind: 'Other', name: 'canary', ownerKind: 'Rollout' });
    expect(workloadOf([{ kind: 'ConfigMap', name: 'x' }, { kind: 'StatefulSet', name: 'db', controller: true }], {})).toEqual({ kind: 'StatefulSet', name: 'db' });
    expect(workloadOf([], {})).toBeUndefined();
  });
});

describe('object parsing details', () => {
  it('parses API times to microseconds, with fractions and offsets', () => {
    expect(parseTimeUs('2026-11-20T10:00:00Z')).toBe(Date.parse('2026-11-20T10:00:00Z') * 1000);
    expect(parseTimeUs('2026-11-20T10:00:00.123456Z')).toBe(Date.parse('2026-11-20T10:00:00Z') * 1000 + 123456);
    expect(parseTimeUs('2026-11-20T12:00:00.5+02:00')).toBe(Date.parse('2026-11-20T10:00:00Z') * 1000 + 500000);
    expect(parseTimeUs('2026-11-20 10:00:00')).toBeUndefined();
  });

  it('canonicalises addresses as capture prints them', () => {
    expect(canonicalIp('FD00:0244:0001:0000:0000:0000:0000:000A')).toBe('fd00:244:1::a');
    expect(canonicalIp('10.244.1.2')).toBe('10.244.1.2');
    expect(canonicalIp('10.244.1')).toBeUndefined();
  });

  it('drops headless and empty ClusterIPs, keeps Hostname addresses out of nodes, reads FQDN slices without matching them', () => {
    const svc = parseKubeObject({ kind: 'Service', metadata: { name: 'h', namespace: 'n', creationTimestamp: '2026-01-01T00:00:00Z' }, spec: { clusterIP: 'None', selector: {} } }, 'x');
    expect(svc).toMatchObject({ kind: 'Service', value: { clusterIPs: [] } });
    expect(svc.kind === 'Service' && svc.value.selector).toBeUndefined();
    const n = parseKubeObject({ kind: 'Node', metadata: { name: 'n1', creationTimestamp: '2026-01-01T00:00:00Z' }, status: { addresses: [{ type: 'Hostname', address: 'n1' }, { type: 'InternalDNS', address: 'n1.local' }, { type: 'InternalIP', address: '10.0.0.1' }] } }, 'x');
    expect(n).toMatchObject({ kind: 'Node', value: { ips: ['10.0.0.1'] } });
    const s = parseKubeObject({ kind: 'EndpointSlice', metadata: { name: 's', namespace: 'n', labels: { 'kubernetes.io/service-name': 'ext' } }, addressType: 'FQDN', endpoints: [{ addresses: ['db.example.com'] }] }, 'x');
    expect(s).toMatchObject({ kind: 'EndpointSlice', value: { service: 'ext', endpoints: [{ addresses: ['db.example.com'], ready: true }] } });
  });
});
