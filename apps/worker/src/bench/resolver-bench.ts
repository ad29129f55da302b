/**
 * Kubernetes resolver lookup speed (not a test: it asserts nothing). `resolve(ip, t)` runs per
 * flow and per entry, so it must cost a Map lookup and a binary search, no allocation.
 *
 *   npm run build -w @kubeshark-mcp/worker && npm run bench:resolver -w @kubeshark-mcp/worker
 *   node apps/worker/dist/bench/resolver-bench.js [--pods N] [--lookups N] [--runs N]
 *
 * 1. Builds a synthetic cluster: N pod IPs, each reused by 4 pods one after the other (so every
 *    lookup binary-searches 4 intervals), dual-stack for a quarter of them, 1 Service per 10
 *    pods (half with EndpointSlices, half by selector), 1 node per 100 pods with a hostNetwork
 *    DaemonSet pod on each.
 * 2. Prepares the lookups up front (address strings as capture prints them, random times) so
 *    the loop measures `resolve` only, in mixes: pods only, Services only, nodes only, misses
 *    only, and a mix (70% pods, 15% Services, 5% nodes, 10% outside the cluster). The pods mix
 *    draws from every pod IP (each lookup likely a cache miss on a big cluster); the hot-set mix
 *    from 256 of them, as a node's traffic does.
 * 3. Prints a table (million lookups per second, ns per lookup, best of RUNS) and one
 *    `BENCH_RESOLVER {json}` line.
 */
import { performance } from 'node:perf_hooks';
import { ClusterResolver } from '../k8s/resolver';
import type { PodInfo } from '../k8s/objects';
import { fmtInt, mib, table } from './format';

const S = 1_000_000;
const T0 = Date.parse('2026-11-20T00:00:00Z') * 1000;
/** Each pod IP is held by REUSE pods in turn, each for SPAN. */
const REUSE = 4;
const SPAN = 3600 * S;

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : def;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
  return v;
}

/** A small deterministic PRNG (mulberry32), so runs are comparable. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const podIp = (i: number): string => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
const podIp6 = (i: number): string => `fd00:244::${i.toString(16)}`;

function buildCluster(pods: number): { resolver: ClusterResolver; services: number; nodes: number } {
  const r = new ClusterResolver();
  const nodes = Math.max(1, Math.ceil(pods / 100));
  const services = Math.max(1, Math.ceil(pods / 10));
  for (let n = 0; n < nodes; n++) {
    r.upsertNode({ uid: `node-${n}`, name: `node-${n}`, labels: { 'kubernetes.io/hostname': `node-${n}` }, ips: [`172.16.${n >> 8}.${n & 255}`], fromUs: 0 }, T0);
    r.upsertPod({ uid: `ds-${n}`, namespace: 'kube-system', name: `kube-proxy-${n}`, labels: { 'k8s-app': 'kube-proxy' }, owners: [{ kind: 'DaemonSet', name: 'kube-proxy', controller: true }], nodeName: `node-${n}`, hostNetwork: true, ips: [`172.16.${n >> 8}.${n & 255}`], phase: 'Running', fromUs: 0 }, T0);
  }
  for (let s = 0; s < services; s++) {
    r.upsertService({ uid: `svc-${s}`, namespace: `ns-${s % 20}`, name: `svc-${s}`, labels: {}, selector: { app: `app-${s}` }, clusterIPs: [`10.96.${s >> 8}.${s & 255}`], type: 'ClusterIP', fromUs: 0 }, T0);
  }
  for (let i = 0; i < pods; i++) {
    const s = Math.floor(i / 10);
    for (let k = 0; k < REUSE; k++) {
      const from = T0 + k * SPAN;
      const info: PodInfo = {
        uid: `pod-${i}-${k}`,
        namespace: `ns-${s % 20}`,
        name: `app-${s}-6d8f7c9b5f-${i.toString(36)}${k}`,
        labels: { app: `app-${s}`, 'pod-template-hash': '6d8f7c9b5f' },
        owners: [{ kind: 'ReplicaSet', name: `app-${s}-6d8f7c9b5f`, controller: true }],
        nodeName: `node-${i % nodes}`,
        hostNetwork: false,
        ips: i % 4 === 0 ? [podIp(i), podIp6(i)] : [podIp(i)],
        phase: 'Running',
        fromUs: from,
        ...(k < REUSE - 1 ? { deletionUs: from + SPAN - 10 * S } : {}),
      };
      r.upsertPod(info, from);
    }
  }
  for (let s = 0; s < services; s += 2) {
    const endpoints = [];
    for (let i = s * 10; i < Math.min(pods, s * 10 + 10); i++) endpoints.push({ addresses: [podIp(i)], ready: true, targetRef: { kind: 'Pod', name: `app-${s}-6d8f7c9b5f-${i.toString(36)}${REUSE - 1}`, namespace: `ns-${s % 20}` } });
    r.upsertEndpointSlice({ uid: `slice-${s}`, namespace: `ns-${s % 20}`, name: `svc-${s}-abcde`, service: `svc-${s}`, addressType: 'IPv4', endpoints });
  }
  return { resolver: r, services, nodes };
}

interface Mix {
  name: string;
  ips: string[];
  times: Float64Array;
}

function makeMix(name: string, n: number, pick: (rand: () => number) => string, seed: number): Mix {
  const rand = rng(seed);
  const ips = new Array<string>(n);
  const times = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    ips[i] = pick(rand);
    times[i] = T0 + Math.floor(rand() * REUSE * SPAN);
  }
  return { name, ips, times };
}

function measure(r: ClusterResolver, mix: Mix, runs: number): { ns: number; hits: number } {
  let best = Infinity;
  let hits = 0;
  for (let run = 0; run < runs; run++) {
    hits = 0;
    const t = performance.now();
    const { ips, times } = mix;
    for (let i = 0; i < ips.length; i++) if (r.resolve(ips[i]!, times[i]!).kind !== 'external') hits++;
    best = Math.min(best, performance.now() - t);
  }
  return { ns: (best * 1e6) / mix.ips.length, hits };
}

function main(): void {
  const pods = arg('pods', 20_000);
  const lookups = arg('lookups', 2_000_000);
  const runs = arg('runs', 5);
  const heapBefore = process.memoryUsage().heapUsed;
  const t = performance.now();
  const { resolver, services, nodes } = buildCluster(pods);
  const buildMs = performance.now() - t;
  const heapAfter = process.memoryUsage().heapUsed;
  const st = resolver.stats();
  const int = (rand: () => number, n: number): number => Math.floor(rand() * n);
  const podPick = (rand: () => number): string => {
    const i = int(rand, pods);
    return i % 4 === 0 && rand() < 0.5 ? podIp6(i) : podIp(i);
  };
  const svcPick = (rand: () => number): string => {
    const s = int(rand, services);
    return `10.96.${s >> 8}.${s & 255}`;
  };
  const nodePick = (rand: () => number): string => {
    const n = int(rand, nodes);
    return `172.16.${n >> 8}.${n & 255}`;
  };
  const missPick = (rand: () => number): string => `203.0.${int(rand, 256)}.${int(rand, 256)}`;
  const mixes = [
    makeMix('pods', lookups, podPick, 1),
    // A node's flows mostly involve a few hundred peers: the same addresses again and again.
    makeMix('pods, 256 hot addresses', lookups, (rand) => podIp(Math.floor(rand() * 256) * Math.floor(pods / 256)), 6),
    makeMix('services', lookups, svcPick, 2),
    makeMix('nodes (hostNetwork)', lookups, nodePick, 3),
    makeMix('outside the cluster', lookups, missPick, 4),
    makeMix('mix 70/15/5/10', lookups, (rand) => {
      const x = rand();
      return x < 0.7 ? podPick(rand) : x < 0.85 ? svcPick(rand) : x < 0.9 ? nodePick(rand) : missPick(rand);
    }, 5),
  ];
  // Warm the identity caches and the JIT on a short pass of each mix.
  for (const m of mixes) measure(resolver, { ...m, ips: m.ips.slice(0, 100_000), times: m.times.slice(0, 100_000) }, 1);
  const results = mixes.map((m) => ({ mix: m.name, ...measure(resolver, m, runs) }));
  const rows = results.map((r) => [r.mix, (1e3 / r.ns).toFixed(1), r.ns.toFixed(0), `${((100 * r.hits) / lookups).toFixed(0)}%`]);
  process.stdout.write(
    `Kubernetes resolver: ${fmtInt(pods)} pod IPs x ${REUSE} pods each (${fmtInt(st.intervals)} intervals on ${fmtInt(st.ips)} addresses), ` +
      `${fmtInt(services)} Services, ${fmtInt(nodes)} nodes; built in ${buildMs.toFixed(0)} ms, heap +${mib(heapAfter - heapBefore)}; ` +
      `${fmtInt(lookups)} lookups per mix, best of ${runs}\n\n`,
  );
  process.stdout.write(table(['mix', 'M lookups/s', 'ns/lookup', 'resolved'], rows));
  const json = {
    pods,
    intervals: st.intervals,
    addresses: st.ips,
    services,
    nodes,
    build_ms: Math.round(buildMs),
    heap_mib: Number(((heapAfter - heapBefore) / 1048576).toFixed(1)),
    lookups,
    results: Object.fromEntries(results.map((r) => [r.mix, { mlookups_per_s: Number((1e3 / r.ns).toFixed(2)), ns_per_lookup: Number(r.ns.toFixed(1)) }])),
  };
  process.stdout.write(`BENCH_RESOLVER ${JSON.stringify(json)}\n`);
}

main();
