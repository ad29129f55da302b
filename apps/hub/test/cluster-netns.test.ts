import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { RttSketch } from '@kubeshark-mcp/capture';
import { waitFor } from '@kubeshark-mcp/testkit';
import { buildHub, validateConfig, DEFAULT_CONFIG, type Hub } from '../src';
import { NetnsCluster, missingPrerequisites, onJsonLines, removeLeftovers, waitForLine, type NetnsNode } from './support/netns';

/**
 * Issue 7's multi-node acceptance test on one machine: three network namespaces joined by a
 * bridge stand in for three nodes. Each runs a real `kubeshark-worker serve` capturing live
 * (tcpdump) on its own veth, filtered to its own address as a worker targets its node's pods;
 * the hub runs in this process in the root namespace and reaches the workers over the bridge.
 *
 *   n1 (node-1): HTTP/1.1 server :8080, and a gRPC client calling n2
 *   n2 (node-2): gRPC server :50051 (grpc-js over h2c)
 *   n3 (node-3): HTTP client (keep-alive and one connection per request) calling n1, gRPC client calling n2
 *   root namespace: an HTTP client calling n1 (a client outside the cluster, seen by node-1 only)
 *
 * What was served is known from the services' own logs (method, path, status and the client's
 * address of every request), not from the capture. Each worker reports what it captured, so a
 * call between two nodes is reported twice, once by each node (with that node's capture time),
 * and a call from outside the cluster once. The hub is read through the official MCP SDK client
 * over HTTP.
 *
 * Needs root, `ip` (iproute2) and tcpdump; elsewhere it is skipped with the reason printed. CI
 * runs as root and .ci/run installs both.
 */

const missing = missingPrerequisites();
if (missing) {
  if (process.env.CI) throw new Error(`the network-namespace cluster test needs ${missing} in CI: see .ci/run`);
  console.warn(`cluster-netns test skipped: it needs ${missing}`);
}
const suite = missing ? describe.skip : describe;

const WORKER_CLI = path.resolve(__dirname, '..', '..', 'worker', 'dist', 'cli.js');
const FIXTURES = path.join(__dirname, 'fixtures', 'netns');
/** Fixed ports are safe inside the namespaces: each has its own port space and nothing else runs there. */
const HTTP_PORT = 8080;
const GRPC_PORT = 50051;
const DEADLINE_MS = 2000;
/** Answers must come within the deadline; the margin covers the MCP round trip on a slow CI machine. */
const ANSWER_WITHIN_MS = DEADLINE_MS + 5000;
const NODE_NAMES = ['node-1', 'node-2', 'node-3'] as const;
const ALL_OK = NODE_NAMES.map((node) => ({ node, state: 'ok' }));

interface RunningWorker {
  node: NetnsNode;
  name: string;
  child: ChildProcess;
  address: string;
  port: number;
  dataDir: string;
}

interface ServedCall {
  kind: 'http' | 'grpc';
  method?: string;
  path: string;
  status?: number;
  grpc_status?: number;
  peer: string;
}

/** What fixtures/netns/client.js prints: the status of each HTTP request, the code of each gRPC call. */
interface ClientResult {
  http: { path: string; status: number }[];
  grpc: { method: string; code: number }[];
}

interface Endpoint {
  ip: string;
  port: number;
}

interface CallOut {
  id: string;
  timestamp: string;
  protocol: string;
  src: Endpoint;
  dst: Endpoint;
  method: string;
  path: string;
  status_code: number;
  failure?: string;
  error?: string;
  flow_id: string;
}

interface FlowOut {
  id: string;
  node: string;
  protocol: string;
  state: string;
  client: Endpoint;
  server: Endpoint;
  tcp_handshake_server_us?: number;
}

interface GroupOut {
  key: string;
  flows: number;
  tcp_handshakes: number;
  tcp_handshake_p50_us?: number;
  tcp_handshake_p90_us?: number;
  tcp_handshake_p99_us?: number;
}

interface NodeCoverage {
  node: string;
  state: string;
  message?: string;
}

interface SummaryOut {
  total_flows: number;
  tcp_handshakes: number;
  tcp_handshake_p50_us?: number;
  tcp_handshake_p90_us?: number;
  tcp_handshake_p99_us?: number;
  nodes: NodeCoverage[];
}

/** Nearest-rank percentile, the definition the tools document. */
const nearestRank = (values: number[], p: number): number => {
  const v = [...values].sort((a, b) => a - b);
  return v[Math.max(0, Math.ceil((p / 100) * v.length) - 1)]!;
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const byNode = <T extends { node: string }>(n: readonly T[]): T[] => [...n].sort((a, b) => a.node.localeCompare(b.node));
/** The node a call or flow id names: "<node>/<flow>[/<index>]". */
const nodeOf = (id: string): string => id.slice(0, id.indexOf('/'));

suite('three nodes in network namespaces behind one hub', () => {
  let cluster: NetnsCluster | undefined;
  const workers: RunningWorker[] = [];
  const served: ServedCall[] = [];
  let tmp: string;
  let hub: Hub | undefined;
  let client: Client | undefined;
  let url: URL;
  let n1: NetnsNode;
  let n2: NetnsNode;
  let n3: NetnsNode;

  /** Which node captures traffic of this address (undefined: outside the cluster). */
  const nodeAt = (ip: string): string | undefined => {
    const n = cluster!.nodes.find((x) => x.ip === ip);
    return n && `node-${n.index}`;
  };

  async function startWorker(n: NetnsNode, port: number, dataDir: string): Promise<RunningWorker> {
    const name = `node-${n.index}`;
    const child = cluster!.spawnIn(n, process.execPath, [
      WORKER_CLI,
      'serve',
      '--interface',
      n.iface,
      // A worker captures its node's own traffic (in a cluster: the pods it targets).
      '--bpf',
      `host ${n.ip}`,
      '--listen',
      `${n.ip}:${port}`,
      '--node',
      name,
      '--data-dir',
      dataDir,
      '--store-max-mib',
      '16',
    ]);
    const address = await waitForLine(child, `worker ${name} to listen`, (l) => / listening on (\S+)$/.exec(l)?.[1]);
    return { node: n, name, child, address, port: Number(address.slice(address.lastIndexOf(':') + 1)), dataDir };
  }

  function startService(n: NetnsNode, script: string, port: number): Promise<ChildProcess> {
    const child = cluster!.spawnIn(n, process.execPath, [path.join(FIXTURES, script), n.ip, String(port)]);
    onJsonLines<ServedCall | { ready: string }>(child, (line) => {
      if ('kind' in line) served.push(line);
    });
    return waitForLine(child, `${script} to listen`, (l) => (l.includes('"ready"') ? child : undefined));
  }

  /** Runs a client plan (see fixtures/netns/client.js) in `n`, or outside the cluster; resolves with its result line. */
  async function runClient(n: NetnsNode | undefined, plan: object): Promise<ClientResult> {
    const args = [path.join(FIXTURES, 'client.js'), JSON.stringify(plan)];
    const child = n ? cluster!.spawnIn(n, process.execPath, args) : cluster!.spawnOutside(process.execPath, args);
    return waitForLine(child, 'the client to finish', (l) => (l.startsWith('{') ? (JSON.parse(l) as ClientResult) : undefined), 20_000);
  }

  async function call(name: string, args: Record<string, unknown> = {}): Promise<CallToolResult> {
    return (await client!.callTool({ name, arguments: args })) as CallToolResult;
  }
  const text = (r: CallToolResult): string => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
  const structured = <T>(r: CallToolResult): T => {
    if (r.isError) throw new Error(text(r));
    return r.structuredContent as T;
  };

  /** Every API call, paged with a small limit; asserts the coverage of every page. */
  async function allCalls(expectNodes: unknown = ALL_OK, limit = 7): Promise<CallOut[]> {
    const got: CallOut[] = [];
    let cursor: string | undefined;
    do {
      const out = structured<{ calls: CallOut[]; nextCursor?: string; nodes: NodeCoverage[] }>(await call('list_api_calls', cursor ? { cursor, limit } : { limit }));
      expect(byNode(out.nodes)).toEqual(expectNodes);
      got.push(...out.calls);
      cursor = out.nextCursor;
    } while (cursor);
    return got;
  }

  /** Every flow, without aggregation, paged. */
  async function allFlows(expectNodes: unknown = ALL_OK): Promise<FlowOut[]> {
    const got: FlowOut[] = [];
    let cursor: string | undefined;
    do {
      const out = structured<{ flows: FlowOut[]; nextCursor?: string; nodes: NodeCoverage[] }>(await call('list_l4_flows', cursor ? { cursor, limit: 50 } : { limit: 50, order_by: 'oldest' }));
      expect(byNode(out.nodes)).toEqual(expectNodes);
      got.push(...out.flows);
      cursor = out.nextCursor;
    } while (cursor);
    return got;
  }

  const callKey = (node: string, c: { protocol: string; method: string; path: string; status: number; src: string; dst: string }): string =>
    `${node} ${c.protocol} ${c.method} ${c.path} ${c.status} ${c.src} -> ${c.dst}`;
  const gotCallKey = (c: CallOut): string => callKey(nodeOf(c.id), { protocol: c.protocol, method: c.method, path: c.path, status: c.status_code, src: `${c.src.ip}:${c.src.port}`, dst: `${c.dst.ip}:${c.dst.port}` });

  /** The calls each node must report, from the services' logs: once by the server's node, once by the client's when it is a node. */
  function expectedCalls(log: ServedCall[]): string[] {
    const keys: string[] = [];
    for (const s of log) {
      const [server, serverNode] = s.kind === 'http' ? [`${n1.ip}:${HTTP_PORT}`, 'node-1'] : [`${n2.ip}:${GRPC_PORT}`, 'node-2'];
      const fields = s.kind === 'http' ? { protocol: 'http', method: s.method!, path: s.path, status: s.status! } : { protocol: 'grpc', method: 'POST', path: s.path, status: 200 };
      const clientNode = nodeAt(s.peer.slice(0, s.peer.lastIndexOf(':')));
      for (const node of [serverNode, ...(clientNode ? [clientNode] : [])]) keys.push(callKey(node, { ...fields, src: s.peer, dst: server }));
    }
    return keys.sort();
  }

  /** The TCP connections each node must report: every client address the services saw, on the server's node and the client's. */
  function expectedFlows(log: ServedCall[]): string[] {
    const keys = new Set<string>();
    for (const s of log) {
      const [server, serverNode] = s.kind === 'http' ? [`${n1.ip}:${HTTP_PORT}`, 'node-1'] : [`${n2.ip}:${GRPC_PORT}`, 'node-2'];
      const clientNode = nodeAt(s.peer.slice(0, s.peer.lastIndexOf(':')));
      for (const node of [serverNode, ...(clientNode ? [clientNode] : [])]) keys.add(`${node} tcp ${s.peer} -> ${server}`);
    }
    return [...keys].sort();
  }
  /** Closed by FIN or RST (grpc-js may end its connection either way). */
  const ended = (f: FlowOut): boolean => f.state === 'closed' || f.state === 'reset';
  const gotFlowKey = (f: FlowOut): string => `${f.node} ${f.protocol.toLowerCase()} ${f.client.ip}:${f.client.port} -> ${f.server.ip}:${f.server.port}`;

  /** Traffic of the first phase: what each client does. */
  const HTTP_PLAN = (host: string, tag: string): object[] => [
    { host, port: HTTP_PORT, method: 'GET', path: `/${tag}/one-shot/1`, keepAlive: false },
    { host, port: HTTP_PORT, method: 'GET', path: `/status/404/${tag}/missing`, keepAlive: false },
    { host, port: HTTP_PORT, method: 'POST', path: `/${tag}/orders`, body: 'x'.repeat(300), keepAlive: true },
    { host, port: HTTP_PORT, method: 'GET', path: `/${tag}/orders/7`, keepAlive: true },
    { host, port: HTTP_PORT, method: 'GET', path: `/status/500/${tag}/boom`, keepAlive: true },
    { host, port: HTTP_PORT, method: 'GET', path: `/${tag}/one-shot/2`, keepAlive: false },
  ];

  beforeAll(async () => {
    const left = removeLeftovers();
    if (left.length) console.warn(`cluster-netns: removed leftovers of crashed runs: ${left.join(', ')}`);
    if (!existsSync(WORKER_CLI)) throw new Error(`${WORKER_CLI} is missing: build first (npm run build at the root)`);
    tmp = mkdtempSync(path.join(tmpdir(), 'hub-netns-'));
    cluster = NetnsCluster.create(3);
    [n1, n2, n3] = cluster.nodes as [NetnsNode, NetnsNode, NetnsNode];

    const [started] = await Promise.all([
      Promise.all(cluster.nodes.map((n) => startWorker(n, 0, path.join(tmp, `node-${n.index}`)))),
      startService(n1, 'http-server.js', HTTP_PORT),
      startService(n2, 'grpc-server.js', GRPC_PORT),
    ]);
    workers.push(...started);

    hub = await buildHub(
      validateConfig({ ...DEFAULT_CONFIG, host: '127.0.0.1', port: 0, workers: workers.map((w) => w.address), workerDeadlineMs: DEADLINE_MS, exportDir: tmp, logLevel: 'silent' }),
      { logger: false },
    );
    await hub.app.listen({ host: '127.0.0.1', port: 0 });
    url = new URL(`http://127.0.0.1:${(hub.app.server.address() as { port: number }).port}/mcp`);
    client = new Client({ name: 'cluster-netns', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(url));
    await waitFor('the hub to reach all three workers', async () => {
      const s = structured<SummaryOut>(await call('get_l4_flow_summary'));
      return JSON.stringify(byNode(s.nodes)) === JSON.stringify(ALL_OK) ? true : undefined;
    });

    // Traffic across the namespaces, clients running at the same time.
    const results = await Promise.all([
      runClient(n3, { http: HTTP_PLAN(n1.ip, 'n3'), grpc: [{ host: n2.ip, port: GRPC_PORT, calls: ['Say', 'Say', 'Fail', 'Say'] }] }),
      runClient(n1, { grpc: [{ host: n2.ip, port: GRPC_PORT, calls: ['Say', 'Fail', 'Say'] }] }),
      runClient(undefined, { http: HTTP_PLAN(n1.ip, 'outside').slice(0, 3) }),
    ]);
    // The clients got what the services say they sent.
    expect(results.flatMap((r) => r.http.map((h) => h.status)).sort()).toEqual([200, 200, 200, 200, 200, 200, 404, 404, 500]);
    expect(results.flatMap((r) => r.grpc.map((g) => `${g.method}=${g.code}`)).sort()).toEqual(['Fail=5', 'Fail=5', 'Say=0', 'Say=0', 'Say=0', 'Say=0', 'Say=0']);
    await waitFor('the services to log every request', async () => (served.length === 9 + 7 ? true : undefined), 5000);
    const planned = [...HTTP_PLAN(n1.ip, 'n3'), ...HTTP_PLAN(n1.ip, 'outside').slice(0, 3)] as { method: string; path: string }[];
    expect(served.filter((s) => s.kind === 'http').map((s) => `${s.method} ${s.path}`).sort()).toEqual(planned.map((p) => `${p.method} ${p.path}`).sort());
  }, 60_000);

  afterAll(async () => {
    await client?.close().catch(() => undefined);
    await hub?.app.close();
    cluster?.destroy();
    if (cluster) expect(cluster.remains()).toEqual([]);
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('list_l4_flows: every connection, on each node that carried it, nothing else (not the hub\'s own gRPC to the workers)', async () => {
    const want = expectedFlows(served);
    const flows = await waitFor(
      'the flows of every node, ended',
      async () => {
        const f = await allFlows();
        return JSON.stringify(f.map(gotFlowKey).sort()) === JSON.stringify(want) && f.every(ended) ? f : undefined;
      },
      15_000,
    ).catch(async (err: Error) => {
      const f = await allFlows();
      expect(f.map(gotFlowKey).sort()).toEqual(want);
      expect(f.filter((x) => !ended(x)).map((x) => `${gotFlowKey(x)} ${x.state}`)).toEqual([]);
      throw err;
    });
    expect(new Set(flows.map((f) => f.node))).toEqual(new Set(NODE_NAMES));
    // A connection between two nodes crossed both veths: both workers saw it end the same way.
    const states = new Map<string, string[]>();
    for (const f of flows) {
      const k = `${f.client.ip}:${f.client.port} -> ${f.server.ip}:${f.server.port}`;
      states.set(k, [...(states.get(k) ?? []), f.state]);
    }
    for (const [k, st] of states) expect(`${k} ${st.join(' ')}`).toBe(`${k} ${st[0]}${st.length === 2 ? ` ${st[0]}` : ''}`);
    for (const f of flows) {
      expect(nodeOf(f.id)).toBe(f.node);
      expect(f.tcp_handshake_server_us).toBeGreaterThan(0);
      // The hub talks to every worker on its gRPC port; the worker's default filter leaves that out.
      for (const w of workers) expect([f.client.port, f.server.port]).not.toContain(w.port);
    }
    // One HTTP connection per one-shot request plus the keep-alive one: 3 + 1 from n3, 2 + 1 from outside; one gRPC channel per client.
    expect(flows.filter((f) => f.node === 'node-1' && f.server.port === HTTP_PORT)).toHaveLength(4 + 3);
    expect(flows.filter((f) => f.node === 'node-2')).toHaveLength(2);
  });

  test('list_api_calls, pages of 7: exactly the calls served, each from every node that captured it, merged in time order', async () => {
    const want = expectedCalls(served);
    // Each call between nodes is reported by both; the three calls from outside by node-1 only.
    expect(want).toHaveLength(2 * 9 - 3 + 2 * 7);
    const calls = await waitFor(
      'every API call on every node',
      async () => {
        const c = await allCalls();
        return JSON.stringify(c.map(gotCallKey).sort()) === JSON.stringify(want) ? c : undefined;
      },
      15_000,
    ).catch(async (err: Error) => {
      expect((await allCalls()).map(gotCallKey).sort()).toEqual(want);
      throw err;
    });
    expect(new Set(calls.map((c) => nodeOf(c.id)))).toEqual(new Set(NODE_NAMES));
    for (const c of calls) {
      expect(c.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
      expect(nodeOf(c.flow_id)).toBe(nodeOf(c.id));
      expect(c.error).toBeUndefined();
      if (c.path.endsWith('/Fail')) expect(c.failure).toBe('grpc-status 5 NOT_FOUND: no such thing');
      else if (c.status_code >= 400) expect(c.failure).toMatch(new RegExp(`^HTTP ${c.status_code}`));
      else expect(c.failure).toBeUndefined();
    }
    // Merged in non-decreasing time order across the nodes (fixed-width RFC 3339: strings compare as times).
    for (let i = 1; i < calls.length; i++) expect(calls[i - 1]!.timestamp <= calls[i]!.timestamp).toBe(true);
    // And the nodes really interleave: the same call seen on two nodes sits side by side.
    const switches = calls.filter((c, i) => i > 0 && nodeOf(calls[i - 1]!.id) !== nodeOf(c.id)).length;
    expect(switches).toBeGreaterThanOrEqual(10);
    // get_api_call goes to the node the id names; the gRPC details agree with what the server did
    // (Say answers one message with status 0, Fail none with NOT_FOUND).
    for (const c of calls.filter((x) => x.protocol === 'grpc')) {
      const full = structured<{ call: Record<string, unknown>; nodes: NodeCoverage[] }>(await call('get_api_call', { id: c.id }));
      expect(full.nodes).toEqual([{ node: nodeOf(c.id), state: 'ok' }]);
      const fail = c.path.endsWith('/Fail');
      expect(full.call).toMatchObject({ id: c.id, grpc_service: 'demo.Echo', grpc_method: fail ? 'Fail' : 'Say', grpc_status: fail ? 5 : 0, grpc_request_messages: 1, grpc_response_messages: fail ? 0 : 1 });
    }
    // The page size did not change the answer.
    expect((await allCalls(ALL_OK, 1000)).map((c) => c.id)).toEqual(calls.map((c) => c.id));
  });

  test('handshake percentiles: the summary\'s equal those of every flow together; a group one node holds is exact, shared groups within the sketch\'s 1 %', async () => {
    const flows = await allFlows();
    const values = flows.flatMap((f) => (f.tcp_handshake_server_us !== undefined ? [f.tcp_handshake_server_us] : []));
    expect(values.length).toBe(flows.length);
    const sketch = new RttSketch();
    for (const v of values) sketch.add(v);
    const s = structured<SummaryOut>(await call('get_l4_flow_summary'));
    expect(byNode(s.nodes)).toEqual(ALL_OK);
    expect(s.total_flows).toBe(flows.length);
    expect(s.tcp_handshakes).toBe(values.length);
    for (const [p, got] of [[50, s.tcp_handshake_p50_us], [90, s.tcp_handshake_p90_us], [99, s.tcp_handshake_p99_us]] as const) {
      expect(got).toBeCloseTo(sketch.quantile(p / 100)!, 6);
      expect(Math.abs(got! - nearestRank(values, p))).toBeLessThanOrEqual(0.01 * nearestRank(values, p) + 1e-9);
    }

    const groups = structured<{ groups: GroupOut[]; nodes: NodeCoverage[] }>(await call('list_l4_flows', { aggregate: 'ip_pair', limit: 100 }));
    expect(byNode(groups.nodes)).toEqual(ALL_OK);
    const byPair = new Map<string, { nodes: Set<string>; hs: number[]; flows: number }>();
    for (const f of flows) {
      const key = `${f.client.ip} -> ${f.server.ip}`;
      const g = byPair.get(key) ?? { nodes: new Set<string>(), hs: [], flows: 0 };
      g.nodes.add(f.node);
      g.flows++;
      if (f.tcp_handshake_server_us !== undefined) g.hs.push(f.tcp_handshake_server_us);
      byPair.set(key, g);
    }
    // outside -> n1 (node-1 only), n3 -> n1 (node-1 and node-3), n3 -> n2 and n1 -> n2 (two nodes each).
    expect(groups.groups.map((g) => g.key).sort()).toEqual([...byPair.keys()].sort());
    expect(byPair.size).toBe(4);
    let single = 0;
    for (const g of groups.groups) {
      const want = byPair.get(g.key)!;
      expect(g.flows).toBe(want.flows);
      expect(g.tcp_handshakes).toBe(want.hs.length);
      for (const [p, got] of [[50, g.tcp_handshake_p50_us], [90, g.tcp_handshake_p90_us], [99, g.tcp_handshake_p99_us]] as const) {
        if (want.nodes.size === 1) expect(got).toBe(nearestRank(want.hs, p));
        else expect(Math.abs(got! - nearestRank(want.hs, p))).toBeLessThanOrEqual(0.01 * nearestRank(want.hs, p) + 1e-9);
      }
      if (want.nodes.size === 1) single++;
      else expect(want.nodes.size).toBe(2);
    }
    expect(single).toBe(1);
  });

  test('a worker killed mid-query: the answer comes within the deadline, names it unavailable and holds the others\' data; restarted, it is covered again', async () => {
    const victim = workers[1]!;
    const othersOk = ALL_OK.filter((n) => n.node !== victim.name);
    const wantCalls = expectedCalls(served).filter((k) => !k.startsWith(`${victim.name} `));
    const wantFlows = expectedFlows(served).filter((k) => !k.startsWith(`${victim.name} `));

    // Frozen, the worker receives the hub's request but cannot answer; it dies while the call is in flight.
    cluster!.signal(victim.child, 'SIGSTOP');
    const t0 = Date.now();
    let killed = false;
    const pending = call('list_api_calls', { limit: 1000 }).then((r) => ({ r, answeredAfterKill: killed }));
    await sleep(300);
    killed = true;
    cluster!.signal(victim.child, 'SIGKILL');
    const { r: answer, answeredAfterKill } = await pending;
    // The frozen worker could not have answered: the call was still in flight when it died.
    expect(answeredAfterKill).toBe(true);
    const during = structured<{ calls: CallOut[]; nodes: NodeCoverage[] }>(answer);
    expect(Date.now() - t0).toBeLessThan(ANSWER_WITHIN_MS);
    const dead = during.nodes.find((n) => n.node === victim.name);
    expect(dead).toMatchObject({ state: 'unavailable', message: expect.any(String) });
    expect(dead!.message!.length).toBeGreaterThan(0);
    expect(byNode(during.nodes.filter((n) => n.state === 'ok'))).toEqual(othersOk);
    expect(during.calls.map(gotCallKey).sort()).toEqual(wantCalls);
    for (let i = 1; i < during.calls.length; i++) expect(during.calls[i - 1]!.timestamp <= during.calls[i]!.timestamp).toBe(true);

    // While it is down: every answer within the deadline, partial, saying so.
    const withDead = byNode<{ node: string; state: string }>([...othersOk, { node: victim.name, state: 'unavailable' }]);
    const coverage = (nodes: NodeCoverage[]): { node: string; state: string }[] => byNode(nodes.map((n) => ({ node: n.node, state: n.state })));
    let t = Date.now();
    const summary = structured<SummaryOut>(await call('get_l4_flow_summary'));
    expect(Date.now() - t).toBeLessThan(ANSWER_WITHIN_MS);
    expect(coverage(summary.nodes)).toEqual(withDead);
    expect(summary.total_flows).toBe(wantFlows.length);
    t = Date.now();
    const flows = structured<{ flows: FlowOut[]; nodes: NodeCoverage[] }>(await call('list_l4_flows', { limit: 1000 }));
    expect(Date.now() - t).toBeLessThan(ANSWER_WITHIN_MS);
    expect(coverage(flows.nodes)).toEqual(withDead);
    expect(flows.flows.map(gotFlowKey).sort()).toEqual(wantFlows);
    const health = (await (await fetch(new URL('/healthz', url))).json()) as { workers: { node?: string; state: string }[] };
    expect(health.workers.find((w) => w.node === victim.name)?.state).toBe('unavailable');

    // Restarted on the same address (its flows and calls were in memory: it starts empty).
    const restarted = await startWorker(victim.node, victim.port, victim.dataDir);
    expect(restarted.address).toBe(victim.address);
    workers[1] = restarted;
    await waitFor(
      'the hub to reconnect to the restarted worker',
      async () => {
        const s = structured<SummaryOut>(await call('get_l4_flow_summary'));
        return JSON.stringify(byNode(s.nodes)) === JSON.stringify(ALL_OK) ? true : undefined;
      },
      15_000,
    );
    // New traffic to the restarted node: the next answers cover all three again, its new calls included.
    const before = served.length;
    const r = await runClient(n3, { grpc: [{ host: n2.ip, port: GRPC_PORT, calls: ['Say', 'Fail'] }] });
    expect(r.grpc.map((g) => g.code)).toEqual([0, 5]);
    await waitFor('the services to log the new calls', async () => (served.length === before + 2 ? true : undefined), 5000);
    const newCalls = expectedCalls(served.slice(before));
    const want = [...wantCalls, ...newCalls].sort();
    const after = await waitFor(
      'the new calls on node-2 and node-3',
      async () => {
        const c = await allCalls(ALL_OK, 50);
        return JSON.stringify(c.map(gotCallKey).sort()) === JSON.stringify(want) ? c : undefined;
      },
      15_000,
    ).catch(async (err: Error) => {
      expect((await allCalls(ALL_OK, 50)).map(gotCallKey).sort()).toEqual(want);
      throw err;
    });
    expect(after.filter((c) => nodeOf(c.id) === victim.name).map(gotCallKey).sort()).toEqual(newCalls.filter((k) => k.startsWith(`${victim.name} `)));
    for (let i = 1; i < after.length; i++) expect(after[i - 1]!.timestamp <= after[i]!.timestamp).toBe(true);
  }, 45_000);
});
