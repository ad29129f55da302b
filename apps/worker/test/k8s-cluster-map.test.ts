import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ClusterMapError, formatClusterMapError, loadClusterMap, splitJsonDocuments } from '../src/k8s/cluster-map';
import { endpointFields } from '../src/k8s/identity';

const FIXTURE = path.join(__dirname, 'fixtures', 'k8s', 'cluster-map.json');
const us = (iso: string): number => Date.parse(iso) * 1000;
const T = (hms: string): number => us(`2026-11-20T${hms}Z`);

describe('cluster map: the fixture', () => {
  const { resolver, loaded, unknownKinds, errors } = loadClusterMap(FIXTURE);

  it('loads every object and reports nothing wrong', () => {
    expect(errors).toEqual([]);
    expect(loaded).toEqual({ Pod: 12, Service: 5, Node: 3, EndpointSlice: 5 });
    expect(unknownKinds).toEqual({});
  });

  it('resolves a Deployment pod on IPv4 and IPv6 to its pod, Service, node, labels and Deployment', () => {
    for (const ip of ['10.244.1.10', 'fd00:244:1::a']) {
      const id = resolver.resolve(ip, T('10:00:00'));
      expect(id).toMatchObject({
        kind: 'pod',
        name: 'frontend-7d4b9c8f6b-x2k9p',
        namespace: 'shop',
        pod: { name: 'frontend-7d4b9c8f6b-x2k9p', namespace: 'shop' },
        service: { name: 'frontend', namespace: 'shop' },
        node: { name: 'node-a' },
        labels: { app: 'frontend', tier: 'web', 'pod-template-hash': '7d4b9c8f6b' },
        workload: { kind: 'Deployment', name: 'frontend' },
      });
      expect(id.reason).toBeUndefined();
      expect(endpointFields(id)).toEqual({ name: 'frontend-7d4b9c8f6b-x2k9p', namespace: 'shop', pod: 'frontend-7d4b9c8f6b-x2k9p', service: 'frontend', node: 'node-a' });
    }
    expect(resolver.resolve('fd00:244:2::b', T('10:00:00'))).toMatchObject({ name: 'frontend-7d4b9c8f6b-q8z7m', node: { name: 'node-b' } });
  });

  it('says a pod IP had no owner before the pod was created', () => {
    expect(resolver.resolve('10.244.1.10', T('08:59:59'))).toMatchObject({ kind: 'external', name: '', reason: 'no-pod-at-that-time' });
  });

  it('resolves a reused pod IP to the finished Job pod before and to the new Deployment pod after', () => {
    expect(resolver.resolve('10.244.2.30', T('10:04:59'))).toMatchObject({
      kind: 'pod',
      name: 'nightly-report-29380000-5xq2w',
      workload: { kind: 'Job', name: 'nightly-report-29380000' },
      node: { name: 'node-b' },
    });
    expect(resolver.resolve('10.244.2.30', T('10:04:59')).service).toBeUndefined();
    // The Job's container finished at 10:05:00; the checkout pod was created at 10:07:30.
    expect(resolver.resolve('10.244.2.30', T('10:05:00')).reason).toBe('no-pod-at-that-time');
    expect(resolver.resolve('10.244.2.30', T('10:07:29')).reason).toBe('no-pod-at-that-time');
    expect(resolver.resolve('10.244.2.30', T('10:07:30'))).toMatchObject({
      kind: 'pod',
      name: 'checkout-5f6d8b9c4d-h7w2n',
      service: { name: 'checkout' },
      workload: { kind: 'Deployment', name: 'checkout' },
    });
  });

  it('ends a terminating pod at its deletionTimestamp', () => {
    expect(resolver.resolve('10.244.3.41', T('10:19:59'))).toMatchObject({ name: 'payments-api-6c9f8d7b5d-zz9xw', namespace: 'payments' });
    expect(resolver.resolve('10.244.3.41', T('10:20:00')).reason).toBe('no-pod-at-that-time');
  });

  it('finds a headless Service by selector when it has no EndpointSlice, and a StatefulSet owner', () => {
    expect(resolver.resolve('10.244.3.21', T('10:00:00'))).toMatchObject({
      name: 'cart-db-1',
      service: { name: 'cart-db', namespace: 'shop' },
      workload: { kind: 'StatefulSet', name: 'cart-db' },
      node: { name: 'node-c' },
    });
  });

  it('resolves Service ClusterIPs (both families) to the Service', () => {
    for (const ip of ['10.96.10.10', 'fd00:96::a']) {
      const id = resolver.resolve(ip, T('10:00:00'));
      expect(id).toMatchObject({ kind: 'service', name: 'frontend', namespace: 'shop', service: { name: 'frontend', namespace: 'shop' }, labels: { app: 'frontend' } });
      expect(id.pod).toBeUndefined();
    }
    expect(resolver.resolve('10.96.0.10', T('10:00:00'))).toMatchObject({ kind: 'service', name: 'kube-dns', namespace: 'kube-system' });
    expect(resolver.resolve('10.96.0.10', us('2026-11-01T08:00:29Z')).reason).toBe('no-pod-at-that-time');
  });

  it('resolves node addresses to the node and names the hostNetwork pods sharing them', () => {
    const a = resolver.resolve('10.0.0.11', T('10:00:00'));
    expect(a).toMatchObject({ kind: 'node', name: 'node-a', namespace: '', node: { name: 'node-a' }, reason: 'host-network-ambiguous', hostNetworkPods: [{ name: 'kube-proxy-7k2mz', namespace: 'kube-system' }] });
    expect(a.pod).toBeUndefined();
    expect(resolver.resolve('fd00:10::11', T('10:00:00'))).toMatchObject({ kind: 'node', name: 'node-a', reason: 'host-network-ambiguous' });
    // Before kube-proxy started (08:05:00) the node's address was the node's alone.
    const early = resolver.resolve('203.0.113.11', us('2026-11-01T08:04:00Z'));
    expect(early).toMatchObject({ kind: 'node', name: 'node-a', labels: { 'topology.kubernetes.io/zone': 'eu-west-1a' } });
    expect(early.reason).toBeUndefined();
    expect(early.hostNetworkPods).toBeUndefined();
    expect(resolver.resolve('10.0.0.13', T('10:00:00'))).toMatchObject({ name: 'node-c', hostNetworkPods: [{ name: 'kube-proxy-h5t8w' }] });
  });

  it('attributes a pod to its Service through EndpointSlices', () => {
    expect(resolver.resolve('10.244.1.2', T('10:00:00'))).toMatchObject({ name: 'coredns-5d78c9869d-tq4zv', service: { name: 'kube-dns', namespace: 'kube-system' }, workload: { kind: 'Deployment', name: 'coredns' } });
    expect(resolver.resolve('10.244.3.40', T('10:00:00'))).toMatchObject({ service: { name: 'payments-api' }, labels: { version: 'v7' } });
  });

  it('says an address outside the map is not in it', () => {
    expect(resolver.resolve('8.8.8.8', T('10:00:00'))).toMatchObject({ kind: 'external', reason: 'not-in-cluster-map' });
    expect(resolver.resolve('10.244.9.9', T('10:00:00')).reason).toBe('not-in-cluster-map');
  });

  it('lists the workloads alive at a time', () => {
    const w = resolver.workloads(T('10:06:00'));
    expect(w.namespaces).toEqual(['kube-system', 'payments', 'shop']);
    expect(w.pods.map((p) => `${p.namespace}/${p.name}`)).toEqual([
      'kube-system/coredns-5d78c9869d-tq4zv',
      'kube-system/kube-proxy-7k2mz',
      'kube-system/kube-proxy-9dxq4',
      'kube-system/kube-proxy-h5t8w',
      'payments/payments-api-6c9f8d7b5d-m4n7k',
      'payments/payments-api-6c9f8d7b5d-zz9xw',
      'shop/cart-db-0',
      'shop/cart-db-1',
      'shop/frontend-7d4b9c8f6b-q8z7m',
      'shop/frontend-7d4b9c8f6b-x2k9p',
    ]);
    expect(w.pods.find((p) => p.name === 'cart-db-0')).toMatchObject({ node: 'node-a', ips: ['10.244.1.20'], services: ['cart-db'], workload: { kind: 'StatefulSet', name: 'cart-db' } });
    expect(w.services.map((s) => `${s.namespace}/${s.name}`)).toEqual(['kube-system/kube-dns', 'payments/payments-api', 'shop/cart-db', 'shop/checkout', 'shop/frontend']);
    expect(w.nodes.map((n) => n.name)).toEqual(['node-a', 'node-b', 'node-c']);
    // Without a time: what is not deleted and not finished now.
    const now = resolver.workloads().pods.map((p) => p.name);
    expect(now).toContain('checkout-5f6d8b9c4d-h7w2n');
    expect(now).not.toContain('nightly-report-29380000-5xq2w');
    expect(now).not.toContain('payments-api-6c9f8d7b5d-zz9xw');
  });

  it('counts lookups by outcome', () => {
    const { resolver: r } = loadClusterMap(FIXTURE);
    r.resolve('10.244.1.10', T('10:00:00'));
    r.resolve('10.96.10.10', T('10:00:00'));
    r.resolve('10.0.0.12', T('10:00:00'));
    r.resolve('1.1.1.1', T('10:00:00'));
    r.resolve('10.244.2.30', T('10:06:00'));
    const s = r.stats();
    expect(s).toMatchObject({ pods: 12, services: 5, nodes: 3, endpointSlices: 5, lookups: 5, resolved: { pod: 1, service: 1, node: 1 } });
    expect(s.unresolved).toEqual({ 'not-in-cluster-map': 1, 'no-pod-at-that-time': 1, 'before-retention-horizon': 0, 'host-network-ambiguous': 1 });
    // Pod IPs: 9 non-hostNetwork pods with 12 addresses between them, one shared by two pods;
    // 5 ClusterIPs; 5 node addresses.
    expect(s.ips).toBe(11 + 5 + 5);
    expect(s.intervals).toBe(12 + 5 + 5);
  });
});

describe('cluster map: input forms', () => {
  const fixture = JSON.parse(readFileSync(FIXTURE, 'utf8')) as { items: Array<{ kind: string }> };
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'k8s-map-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('accepts separate files per kind, the API typed lists whose items carry no kind', () => {
    const strip = (kind: string): unknown[] => fixture.items.filter((i) => i.kind === kind).map(({ kind: _k, ...rest }) => rest);
    const files = [
      ['pods.json', { apiVersion: 'v1', kind: 'PodList', metadata: { resourceVersion: '515100' }, items: strip('Pod') }],
      ['services.json', { apiVersion: 'v1', kind: 'ServiceList', metadata: { resourceVersion: '515100' }, items: strip('Service') }],
      ['nodes.json', { apiVersion: 'v1', kind: 'NodeList', metadata: { resourceVersion: '515100' }, items: strip('Node') }],
      ['slices.json', { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSliceList', metadata: { resourceVersion: '515100' }, items: strip('EndpointSlice') }],
    ] as const;
    const paths = files.map(([name, doc]) => {
      const p = path.join(dir, name);
      writeFileSync(p, JSON.stringify(doc));
      return p;
    });
    const { resolver, loaded, errors } = loadClusterMap(paths);
    expect(errors).toEqual([]);
    expect(loaded).toEqual({ Pod: 12, Service: 5, Node: 3, EndpointSlice: 5 });
    expect(resolver.resolve('10.244.1.2', T('10:00:00'))).toMatchObject({ name: 'coredns-5d78c9869d-tq4zv', service: { name: 'kube-dns' } });
  });

  it('accepts JSON text, a parsed value, an array of lists and a single object, and loads into an existing resolver', () => {
    const pods = { kind: 'List', apiVersion: 'v1', items: fixture.items.filter((i) => i.kind === 'Pod') };
    const rest = { kind: 'List', apiVersion: 'v1', items: fixture.items.filter((i) => i.kind !== 'Pod') };
    const first = loadClusterMap(JSON.stringify([pods, rest]));
    expect(first.loaded.Pod).toBe(12);
    const single = fixture.items.find((i) => i.kind === 'Node')!;
    const second = loadClusterMap(single as Record<string, unknown>);
    expect(second.loaded).toEqual({ Pod: 0, Service: 0, Node: 1, EndpointSlice: 0 });
    const onlyPods = loadClusterMap(pods);
    expect(onlyPods.resolver.resolve('10.96.10.10', T('10:00:00')).reason).toBe('not-in-cluster-map');
    loadClusterMap(rest, { resolver: onlyPods.resolver });
    expect(onlyPods.resolver.resolve('10.96.10.10', T('10:00:00')).name).toBe('frontend');
    expect(onlyPods.resolver.resolve('10.244.1.10', T('10:00:00')).service?.name).toBe('frontend');
  });

  it('reads documents appended one after the other to one file', () => {
    const pods = { kind: 'List', apiVersion: 'v1', items: fixture.items.filter((i) => i.kind === 'Pod') };
    const rest = { kind: 'List', apiVersion: 'v1', items: fixture.items.filter((i) => i.kind !== 'Pod') };
    const p = path.join(dir, 'map.json');
    writeFileSync(p, `${JSON.stringify(pods, null, 4)}\n${JSON.stringify(rest, null, 4)}\n`);
    const { loaded, errors, resolver } = loadClusterMap(p);
    expect(errors).toEqual([]);
    expect(loaded).toEqual({ Pod: 12, Service: 5, Node: 3, EndpointSlice: 5 });
    expect(resolver.resolve('10.244.1.10', T('10:00:00')).service?.name).toBe('frontend');
    expect(splitJsonDocuments('{"a":"}{"} [1,[2]]')).toEqual(['{"a":"}{"}', '[1,[2]]']);
    expect(splitJsonDocuments('{"a":1} x')).toBeUndefined();
    expect(splitJsonDocuments('{"a":1')).toBeUndefined();
  });

  it('counts and skips kinds it does not use', () => {
    const doc = {
      kind: 'List',
      apiVersion: 'v1',
      items: [
        ...fixture.items.slice(0, 2),
        { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'kube-root-ca.crt', namespace: 'shop' }, data: {} },
        { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'frontend', namespace: 'shop' }, spec: {} },
        { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'checkout', namespace: 'shop' }, spec: {} },
      ],
    };
    const { loaded, unknownKinds, errors } = loadClusterMap(doc);
    expect(errors).toEqual([]);
    expect(loaded.Pod).toBe(2);
    expect(unknownKinds).toEqual({ ConfigMap: 1, Deployment: 2 });
  });
});

describe('cluster map: malformed input', () => {
  const pod = (over: (p: Record<string, unknown>) => void): Record<string, unknown> => {
    const p: Record<string, unknown> = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'web-1', namespace: 'shop', uid: 'u-1', creationTimestamp: '2026-11-20T09:00:00Z' },
      spec: { nodeName: 'node-a' },
      status: { podIP: '10.1.0.5', podIPs: [{ ip: '10.1.0.5' }] },
    };
    over(p);
    return p;
  };
  const status = (p: Record<string, unknown>): Record<string, unknown> => p.status as Record<string, unknown>;
  const metadata = (p: Record<string, unknown>): Record<string, unknown> => p.metadata as Record<string, unknown>;

  it('names the offending item and field, and keeps the good items', () => {
    const doc = {
      kind: 'List',
      items: [
        pod(() => undefined),
        pod((p) => {
          metadata(p).name = 'web-2';
          status(p).podIPs = [{ ip: '10.1.0.6' }, { ip: '10.1.0.300' }];
        }),
        pod((p) => {
          metadata(p).name = 'web-3';
          metadata(p).creationTimestamp = 'yesterday';
        }),
        pod((p) => {
          metadata(p).name = 'web-4';
          p.spec = { hostNetwork: 'yes' };
        }),
        pod((p) => delete metadata(p).namespace),
        'not an object',
        { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop', creationTimestamp: '2026-11-20T09:00:00Z' }, spec: { clusterIPs: [42] } },
        { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'web-x', namespace: 'shop' }, endpoints: [] },
        { metadata: { name: 'who' } },
      ],
    };
    const { loaded, errors } = loadClusterMap(doc);
    expect(loaded.Pod).toBe(1);
    expect(errors.map(formatClusterMapError)).toEqual([
      '<json>: items[1].status.podIPs[1].ip (Pod shop/web-2): not an IP address: "10.1.0.300"',
      '<json>: items[2].metadata.creationTimestamp (Pod shop/web-3): not an RFC 3339 time: "yesterday"',
      '<json>: items[3].spec.hostNetwork (Pod shop/web-4): expected a boolean, got "yes"',
      '<json>: items[4].metadata.namespace (Pod web-1): expected a string, got undefined',
      '<json>: items[5]: expected a Kubernetes object or list, got "not an object"',
      '<json>: items[6].spec.clusterIPs[0] (Service shop/web): expected a string, got number',
      '<json>: items[7].addressType (EndpointSlice shop/web-x): expected a string, got undefined',
      '<json>: items[8].kind: missing, and the list it came from does not say',
    ]);
  });

  it('requires a creation time for a pod (it cannot be placed in time otherwise)', () => {
    const { errors } = loadClusterMap({ kind: 'PodList', items: [pod((p) => delete metadata(p).creationTimestamp)].map(({ kind: _k, ...r }) => r) });
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ path: 'items[0].metadata.creationTimestamp', item: 'Pod shop/web-1' });
    expect(errors[0]!.message).toMatch(/missing/);
    // status.startTime stands in for it.
    const ok = loadClusterMap({ kind: 'List', items: [pod((p) => { delete metadata(p).creationTimestamp; status(p).startTime = '2026-11-20T09:00:00.250Z'; })] });
    expect(ok.errors).toEqual([]);
    expect(ok.resolver.resolve('10.1.0.5', T('09:00:00.249')).reason).toBe('no-pod-at-that-time');
    expect(ok.resolver.resolve('10.1.0.5', T('09:00:00.250')).name).toBe('web-1');
  });

  it('throws a ClusterMapError for an unreadable file or text that is not JSON', () => {
    expect(() => loadClusterMap('/nonexistent/cluster-map.json')).toThrow(ClusterMapError);
    expect(() => loadClusterMap('/nonexistent/cluster-map.json')).toThrow(/cannot read cluster map \/nonexistent\/cluster-map.json/);
    expect(() => loadClusterMap('{"kind": "List", "items": [')).toThrow(/<json> is not JSON/);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'k8s-map-'));
    try {
      const p = path.join(dir, 'map.yaml');
      writeFileSync(p, 'apiVersion: v1\nkind: List\n');
      expect(() => loadClusterMap(p)).toThrow(new RegExp(`${p.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is not JSON`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
