// The shop scenario's topology: where each service listens on loopback and where the cluster
// map places it. Shared by the services (shop.mjs) and the cluster map writer (cluster-map.mjs)
// so the capture and the map cannot disagree.

/** Every address of the scenario is in this /24 of 127.0.0.0/8 (all loopback on Linux). */
export const NET = '127.0.10.0/24';
export const PORT = 8080;

/**
 * The workloads. `ip` is both the pod IP and the source address the pod's clients bind, so every
 * hop is its own IP pair. Clients address the Services, but a capture on the pods' interfaces sees
 * pod IPs at both ends (kube-proxy's DNAT happened on the node): so the ClusterIPs of the map
 * never appear on the wire, and the pod IPs resolve to their Services through the EndpointSlices.
 */
export const WORKLOADS = [
  { app: 'ingress-nginx-controller', namespace: 'ingress-nginx', ip: '127.0.10.100', node: 'shop-node-a', hash: '5c8d66f7b9', pod: 'q7x2m', image: 'registry.k8s.io/ingress-nginx/controller:v1.11.2', service: 'ingress-nginx-controller', clusterIP: '10.96.12.40', port: 80 },
  { app: 'frontend', namespace: 'shop', ip: '127.0.10.1', node: 'shop-node-a', hash: '7f9c6d5b84', pod: 'h2k4p', image: 'ghcr.io/example-shop/frontend:3.2.0', service: 'frontend', clusterIP: '10.96.40.11', port: PORT },
  { app: 'checkout', namespace: 'shop', ip: '127.0.10.2', node: 'shop-node-b', hash: '6b8f9d7c55', pod: 'w9t3r', image: 'ghcr.io/example-shop/checkout:1.14.3', service: 'checkout', clusterIP: '10.96.40.12', port: PORT },
  { app: 'payment', namespace: 'payments', ip: '127.0.10.3', node: 'shop-node-c', hash: '58d4c7b9f6', pod: 'z6m8v', image: 'ghcr.io/example-shop/payment:2.7.0', service: 'payment', clusterIP: '10.96.50.21', port: PORT },
  { app: 'token-service', namespace: 'payments', ip: '127.0.10.4', node: 'shop-node-c', hash: '84f6b5d9c7', pod: 'c5n1k', image: 'ghcr.io/example-shop/token-service:0.9.12', service: 'token-service', clusterIP: '10.96.50.22', port: PORT },
  { app: 'inventory', namespace: 'shop', ip: '127.0.10.5', node: 'shop-node-b', hash: '9d5b7c8f64', pod: 'f4j7s', image: 'ghcr.io/example-shop/inventory:4.1.1', service: 'inventory', clusterIP: '10.96.40.13', port: PORT },
];

export const NODES = [
  { name: 'shop-node-a', ip: '10.10.0.11', zone: 'eu-west-1a' },
  { name: 'shop-node-b', ip: '10.10.0.12', zone: 'eu-west-1b' },
  { name: 'shop-node-c', ip: '10.10.0.13', zone: 'eu-west-1c' },
];

/** The workload of an app name. */
export function workload(app) {
  const w = WORKLOADS.find((x) => x.app === app);
  if (!w) throw new Error(`no workload ${app}`);
  return w;
}

/** `<app>-<replicaset hash>-<suffix>`, as a Deployment names its pods. */
export const podName = (w) => `${w.app}-${w.hash}-${w.pod}`;
