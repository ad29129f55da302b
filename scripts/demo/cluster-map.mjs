#!/usr/bin/env node
// Writes the shop scenario's cluster map: what `kubectl get pods,services,nodes,endpointslices
// -A -o json` would print for the cluster the capture pretends to come from. Pods carry the
// loopback addresses of scripts/demo/topology.mjs as their pod IPs; every object was created
// before CREATED (the resolver only names an address for objects that existed at the time).
//
// usage: node scripts/demo/cluster-map.mjs OUT.json CREATED_ISO
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { NODES, WORKLOADS, podName } from './topology.mjs';

const [out, createdArg] = process.argv.slice(2);
if (!out || !createdArg) {
  process.stderr.write('usage: cluster-map.mjs OUT.json CREATED_ISO\n');
  process.exit(2);
}
const base = Date.parse(createdArg);
if (Number.isNaN(base)) throw new Error(`not a time: ${createdArg}`);
const at = (minutes) => new Date(base + minutes * 60_000).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** A stable uid from the object's identity, shaped like the API server's. */
function uid(...parts) {
  const h = createHash('sha256').update(parts.join('/')).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
let rv = 731000;
const nextRv = () => String((rv += 17));

const items = [];
for (const [i, n] of NODES.entries()) {
  items.push({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: n.name,
      uid: uid('node', n.name),
      resourceVersion: nextRv(),
      creationTimestamp: at(-3 * 24 * 60 + i * 2),
      labels: {
        'kubernetes.io/hostname': n.name,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
        'node.kubernetes.io/instance-type': 'm6i.large',
        'topology.kubernetes.io/zone': n.zone,
      },
    },
    spec: { podCIDR: `10.244.${i + 1}.0/24`, podCIDRs: [`10.244.${i + 1}.0/24`] },
    status: {
      addresses: [
        { type: 'InternalIP', address: n.ip },
        { type: 'Hostname', address: n.name },
      ],
      conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', lastTransitionTime: at(-3 * 24 * 60 + i * 2 + 1) }],
      nodeInfo: { kubeletVersion: 'v1.31.2', containerRuntimeVersion: 'containerd://1.7.22', osImage: 'Debian GNU/Linux 12 (bookworm)' },
    },
  });
}

for (const [i, w] of WORKLOADS.entries()) {
  const node = NODES.find((n) => n.name === w.node);
  const name = podName(w);
  const created = at(-26 * 60 + i * 3);
  items.push({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: w.namespace,
      uid: uid('pod', w.namespace, name),
      resourceVersion: nextRv(),
      creationTimestamp: created,
      generateName: `${w.app}-${w.hash}-`,
      labels: { app: w.app, 'app.kubernetes.io/name': w.app, 'pod-template-hash': w.hash },
      ownerReferences: [
        { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `${w.app}-${w.hash}`, uid: uid('rs', w.namespace, `${w.app}-${w.hash}`), controller: true, blockOwnerDeletion: true },
      ],
    },
    spec: {
      containers: [{ name: w.app, image: w.image, ports: [{ containerPort: w.port, name: 'http', protocol: 'TCP' }] }],
      nodeName: w.node,
      serviceAccountName: w.app,
    },
    status: {
      phase: 'Running',
      hostIP: node.ip,
      hostIPs: [{ ip: node.ip }],
      podIP: w.ip,
      podIPs: [{ ip: w.ip }],
      qosClass: 'Burstable',
      startTime: created,
    },
  });
  items.push({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: w.service,
      namespace: w.namespace,
      uid: uid('svc', w.namespace, w.service),
      resourceVersion: nextRv(),
      creationTimestamp: at(-2 * 24 * 60 + i),
      labels: { app: w.app, 'app.kubernetes.io/name': w.app },
    },
    spec: {
      type: 'ClusterIP',
      clusterIP: w.clusterIP,
      clusterIPs: [w.clusterIP],
      selector: { app: w.app },
      ports: [{ name: 'http', port: w.port, targetPort: 'http', protocol: 'TCP' }],
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
    },
    status: { loadBalancer: {} },
  });
  items.push({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: `${w.service}-${w.hash.slice(0, 5)}`,
      namespace: w.namespace,
      uid: uid('eps', w.namespace, w.service),
      resourceVersion: nextRv(),
      creationTimestamp: at(-2 * 24 * 60 + i),
      generateName: `${w.service}-`,
      labels: { 'kubernetes.io/service-name': w.service, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
      ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: w.service, uid: uid('svc', w.namespace, w.service), controller: true, blockOwnerDeletion: true }],
    },
    addressType: 'IPv4',
    endpoints: [
      {
        addresses: [w.ip],
        conditions: { ready: true, serving: true, terminating: false },
        nodeName: w.node,
        targetRef: { kind: 'Pod', name, namespace: w.namespace, uid: uid('pod', w.namespace, name) },
      },
    ],
    ports: [{ name: 'http', port: w.port, protocol: 'TCP' }],
  });
}

writeFileSync(out, `${JSON.stringify({ apiVersion: 'v1', kind: 'List', metadata: { resourceVersion: '' }, items }, null, 2)}\n`);
process.stdout.write(`cluster map: ${WORKLOADS.length} pods, ${WORKLOADS.length} services, ${NODES.length} nodes -> ${out}\n`);
