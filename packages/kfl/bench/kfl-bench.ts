/**
 * KFL filter throughput (not a test: it asserts only that both predicates select the same
 * records). Builds 1,000,000 records shaped as the worker will hand them to filters (API calls
 * of three protocols and flows, endpoints shared from a pool as the worker shares them), then
 * measures, best of RUNS, entries per second of:
 *
 *   compiled     compile(filter).matches(record), the worker's path (try/catch and counters included)
 *   plain JS     a hand-written predicate for the same four clauses: the physical limit
 *   interpreted  the reference tree-walking interpreter (one run; it is the test oracle, not a path)
 *
 *   npm run bench            # in packages/kfl: compiles bench/ and src/, then runs this file
 *   node dist-bench/bench/kfl-bench.js [--records N] [--runs N]
 */
import { performance } from 'node:perf_hooks';
import { compile, clearCache, type KflRecord } from '../src';

const FILTER = 'http && method == "GET" && status_code >= 400 && path.startsWith("/api")';
const plain = (r: KflRecord): boolean => r.http === true && r.method === 'GET' && (r.status_code ?? 0) >= 400 && (r.path ?? '').startsWith('/api');

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}
const N = arg('records', 1_000_000);
const RUNS = arg('runs', 5);

let seed = 42;
const rnd = (n: number): number => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed % n;
};
const pick = <T>(xs: readonly T[]): T => xs[rnd(xs.length)]!;

function records(n: number): KflRecord[] {
  const endpoints = Array.from({ length: 1000 }, (_, i) => ({ ip: `10.${i >> 8}.${i & 255}.1`, port: 1024 + i, pod: { name: `pod-${i}`, namespace: pick(['default', 'production', 'staging']) } }));
  const paths = ['/api/users', '/api/orders/17', '/health', '/static/app.js', '/api/v2/items', '/login'];
  const namespaceSets = [['default'], ['production'], ['default', 'production'], ['staging', 'kube-system']];
  const requests: KflRecord['request'][] = [{ headers: { 'content-type': 'application/json', accept: '*/*' } }, { headers: { accept: '*/*' } }, { headers: { 'content-type': 'text/html' } }];
  const out: KflRecord[] = new Array<KflRecord>(n);
  const t0 = 1_773_525_600_000_000;
  for (let i = 0; i < n; i++) {
    const k = rnd(10);
    const ts = t0 + i * 1000;
    if (k < 7) {
      out[i] = {
        http: true,
        tcp: true,
        method: pick(['GET', 'GET', 'GET', 'POST', 'PUT']),
        path: pick(paths),
        status_code: pick([200, 200, 200, 201, 404, 500, 503]),
        timestamp: ts,
        elapsed_time: rnd(100_000),
        src: pick(endpoints),
        dst: pick(endpoints),
        namespaces: pick(namespaceSets),
        request: pick(requests),
      };
    } else if (k < 9) {
      out[i] = { dns: true, udp: true, dns_questions: [pick(['google.com', 'example.com'])], dns_response: true, status_code: pick([0, 0, 3]), timestamp: ts, src: pick(endpoints), dst: pick(endpoints) };
    } else {
      out[i] = { flow: true, tcp_flow: true, tcp: true, flow_local_bps: rnd(10_000_000), timestamp: ts, src: pick(endpoints), dst: pick(endpoints) };
    }
  }
  return out;
}

/** Each predicate gets its own loop function, so one's type feedback does not slow the other. */
function measure(recs: KflRecord[], pred: (r: KflRecord) => boolean, runs: number): { best: number; count: number } {
  const loop = new Function('recs', 'pred', 'let c = 0; for (let i = 0; i < recs.length; i++) if (pred(recs[i])) c++; return c;') as (recs: KflRecord[], pred: (r: KflRecord) => boolean) => number;
  let best = Infinity;
  let count = 0;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    count = loop(recs, pred);
    best = Math.min(best, (performance.now() - t) / 1000);
  }
  return { best, count };
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

function main(): void {
  const tBuild = performance.now();
  const recs = records(N);
  console.log(`${fmt(N)} records built in ${((performance.now() - tBuild) / 1000).toFixed(2)} s; filter: ${FILTER}`);

  clearCache();
  let t = performance.now();
  const f = compile(FILTER);
  const coldUs = (performance.now() - t) * 1000;
  t = performance.now();
  for (let i = 0; i < 10_000; i++) compile(FILTER);
  const warmUs = ((performance.now() - t) * 1000) / 10_000;

  const p = measure(recs, plain, RUNS);
  const c = measure(recs, (r) => f.matches(r), RUNS);
  const i = measure(recs, (r) => f.interpret(r), 1);
  if (p.count !== c.count || c.count !== i.count) throw new Error(`predicates disagree: plain ${p.count}, compiled ${c.count}, interpreted ${i.count}`);

  const rows: [string, number][] = [
    ['plain JS', N / p.best],
    ['compiled', N / c.best],
    ['interpreted', N / i.best],
  ];
  console.log(`\n${'predicate'.padEnd(12)}  ${'entries/s'.padStart(14)}  ${'ns/entry'.padStart(9)}`);
  for (const [name, rate] of rows) console.log(`${name.padEnd(12)}  ${fmt(rate).padStart(14)}  ${(1e9 / rate).toFixed(1).padStart(9)}`);
  const ratio = c.best / p.best;
  console.log(`\nmatches: ${fmt(c.count)} of ${fmt(N)}; compiled / plain time ratio: ${ratio.toFixed(2)}x (target <= 5x, >= 10,000,000 entries/s)`);
  console.log(`compile: cold ${coldUs.toFixed(0)} µs, cached ${warmUs.toFixed(2)} µs`);
  // Other shapes, compiled only, for a sense of the cost of maps, lists, macros and regexes.
  const others = [
    '"production" in namespaces',
    'src.ip.startsWith("10.1.") && dst.port == 1500',
    'http && request.headers["content-type"] == "application/json"',
    'dns && dns_questions.exists(q, q.endsWith(".com"))',
    'http && path.matches("^/api/orders/[0-9]+$")',
    'timestamp > now() - duration("5m") && (http || dns)',
  ];
  console.log(`\n${'other filters (compiled)'.padEnd(64)}  ${'entries/s'.padStart(14)}  matches`);
  const extra: Record<string, number> = {};
  for (const text of others) {
    const g = compile(text, { now: 1_773_525_600_000_000 + N * 1000 });
    const m = measure(recs, (r) => g.matches(r), Math.min(RUNS, 3));
    extra[text] = Math.round(N / m.best);
    console.log(`${text.padEnd(64)}  ${fmt(N / m.best).padStart(14)}  ${fmt(m.count)}`);
  }
  console.log(
    `BENCH_KFL ${JSON.stringify({ records: N, runs: RUNS, matches: c.count, plain_per_s: Math.round(N / p.best), compiled_per_s: Math.round(N / c.best), interpreted_per_s: Math.round(N / i.best), ratio: Number(ratio.toFixed(2)), compile_cold_us: Math.round(coldUs), compile_cached_us: Number(warmUs.toFixed(2)), other_filters_per_s: extra })}`,
  );
}

main();
