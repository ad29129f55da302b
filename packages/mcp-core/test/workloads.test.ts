import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import { TrafficSourceError, toolsFor, type CallContext } from '../src/index';
import type { IpInfo, IpList, IpQuery, WorkloadInfo, WorkloadList, WorkloadQuery } from '../src/model';
import { closeInMemory, connectInMemory } from './in-memory';
import { MemorySource } from './memory-source';

/**
 * list_workloads and list_ips over an in-memory source that resolves: registration by
 * capability, the filters the tools apply, paging with cursors, the output budget, and source
 * errors (a source without Kubernetes) passed through as tool errors.
 */

class ResolvingSource extends MemorySource {
  readonly workloadQueries: WorkloadQuery[] = [];
  readonly ipQueries: IpQuery[] = [];
  failure?: TrafficSourceError;
  constructor(
    public workloads: WorkloadInfo[],
    public ips: IpInfo[] = [],
  ) {
    super();
  }

  async listWorkloads(q: WorkloadQuery, _ctx: CallContext): Promise<WorkloadList> {
    this.workloadQueries.push(q);
    if (this.failure) throw this.failure;
    const rows = this.workloads.filter((w) => q.namespace === undefined || w.namespace === q.namespace);
    return { workloads: rows, namespaces: [...new Set(rows.map((w) => w.namespace).filter((n) => n))].sort(), nodes: this.nodes };
  }

  async resolveIps(q: IpQuery, _ctx: CallContext): Promise<IpList> {
    this.ipQueries.push(q);
    if (this.failure) throw this.failure;
    return { ips: q.ips ? this.ips.filter((i) => q.ips!.includes(i.ip)) : this.ips, nodes: this.nodes };
  }
}

const pod = (namespace: string, name: string, ip: string): WorkloadInfo => ({ kind: 'pod', name, namespace, ips: [ip], node: 'node-a', owner: { kind: 'Deployment', name: name.replace(/-\w+-\w+$/, '') }, labels: { app: name }, services: [] });
const PODS: WorkloadInfo[] = Array.from({ length: 300 }, (_, i) => pod(i % 2 ? 'shop' : 'payments', `svc${String(i).padStart(3, '0')}-6c9f8d7b5d-m4n7k`, `10.244.${i >> 8}.${i & 255}`));
const WORKLOADS: WorkloadInfo[] = [
  ...PODS,
  { kind: 'service', name: 'checkout', namespace: 'shop', ips: ['10.96.0.20'], labels: {}, type: 'ClusterIP' },
  { kind: 'node', name: 'node-a', namespace: '', ips: ['10.0.0.11'], labels: { zone: 'a' } },
];

afterEach(closeInMemory);

const call = async (source: MemorySource, name: string, args: Record<string, unknown>): Promise<CallToolResult> => {
  const client = await connectInMemory(source);
  return (await client.callTool({ name, arguments: args })) as CallToolResult;
};
const text = (r: CallToolResult): string => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');

test('the tools are offered only to a source that resolves', () => {
  expect(toolsFor(new MemorySource()).map((t) => t.name)).not.toContain('list_workloads');
  const names = toolsFor(new ResolvingSource([])).map((t) => t.name);
  expect(names).toEqual(expect.arrayContaining(['list_workloads', 'list_ips']));
});

describe('list_workloads', () => {
  test('namespace goes to the source; kind and name filter on the hub', async () => {
    const source = new ResolvingSource(WORKLOADS);
    const r = await call(source, 'list_workloads', { namespace: 'shop', kind: 'pod', name: '^svc00[0-9]-' });
    const s = r.structuredContent as { workloads: WorkloadInfo[]; namespaces: string[]; total: number; truncated: boolean };
    expect(source.workloadQueries).toEqual([{ namespace: 'shop' }]);
    expect(s.workloads.map((w) => w.name)).toEqual(['svc001-6c9f8d7b5d-m4n7k', 'svc003-6c9f8d7b5d-m4n7k', 'svc005-6c9f8d7b5d-m4n7k', 'svc007-6c9f8d7b5d-m4n7k', 'svc009-6c9f8d7b5d-m4n7k']);
    expect(s).toMatchObject({ namespaces: ['shop'], total: 5, truncated: false });
    expect(text(r)).toContain('pod shop/svc001-6c9f8d7b5d-m4n7k, 10.244.0.1, node node-a, Deployment svc001');
  });

  test('a long list is cut to the output budget and pages on: every workload once', async () => {
    const source = new ResolvingSource(WORKLOADS);
    const client = await connectInMemory(source);
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const r = (await client.callTool({ name: 'list_workloads', arguments: { limit: 1000, ...(cursor ? { cursor } : {}) } })) as CallToolResult;
      const s = r.structuredContent as { workloads: WorkloadInfo[]; nextCursor?: string; hint?: string; total: number };
      expect(s.total).toBe(302);
      if (s.nextCursor) expect(s.hint).toMatch(/output budget/);
      seen.push(...s.workloads.map((w) => `${w.kind} ${w.namespace}/${w.name}`));
      cursor = s.nextCursor;
      pages++;
    } while (cursor && pages < 50);
    expect(pages).toBeGreaterThan(1);
    expect(seen).toEqual(WORKLOADS.map((w) => `${w.kind} ${w.namespace}/${w.name}`));
  });

  test('a cursor given with other filters, and a bad regular expression, are refused', async () => {
    const source = new ResolvingSource(WORKLOADS);
    const client = await connectInMemory(source);
    const first = (await client.callTool({ name: 'list_workloads', arguments: { namespace: 'shop', limit: 2 } })) as CallToolResult;
    const cursor = (first.structuredContent as { nextCursor: string }).nextCursor;
    const err = await client.callTool({ name: 'list_workloads', arguments: { namespace: 'payments', cursor } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(McpError);
    expect((err as McpError).code).toBe(ErrorCode.InvalidParams);
    const next = (await client.callTool({ name: 'list_workloads', arguments: { cursor, limit: 2 } })) as CallToolResult;
    expect((next.structuredContent as { offset: number; workloads: WorkloadInfo[] }).offset).toBe(2);
    const bad = (await client.callTool({ name: 'list_workloads', arguments: { name: '[' } })) as CallToolResult;
    expect(bad.isError).toBe(true);
    expect(text(bad)).toMatch(/"name" is not a regular expression/);
  });

  test("the source's failed_precondition comes back as a tool error with its message", async () => {
    const source = new ResolvingSource(WORKLOADS);
    source.failure = new TrafficSourceError('failed_precondition', 'worker node-a: no Kubernetes source configured (--cluster-map or --kube-watch)');
    const r = await call(source, 'list_workloads', {});
    expect(r.isError).toBe(true);
    expect(text(r)).toContain('no Kubernetes source configured (--cluster-map or --kube-watch)');
  });
});

describe('list_ips', () => {
  const IPS: IpInfo[] = [
    { ip: '10.244.0.1', kind: 'pod', name: 'cart-0', namespace: 'shop', pod: 'cart-0', node: 'node-a', at_us: 1_714_572_900_000_000, flows: 7, first_seen_us: 1_714_572_900_000_000, last_seen_us: 1_714_572_960_000_000 },
    { ip: '8.8.8.8', kind: 'external', reason: 'not-in-cluster-map', at_us: 1_714_572_901_000_000, flows: 3, first_seen_us: 1_714_572_901_000_000, last_seen_us: 1_714_572_902_000_000 },
  ];

  test('given addresses and a time go to the source; the answer is rendered per address', async () => {
    const source = new ResolvingSource([], IPS);
    const r = await call(source, 'list_ips', { ips: ['8.8.8.8'], at: '2024-05-01T14:15:00Z' });
    expect(source.ipQueries).toEqual([{ ips: ['8.8.8.8'], at_us: Date.UTC(2024, 4, 1, 14, 15) * 1000, from_flows: false }]);
    expect(r.structuredContent).toMatchObject({ ips: [{ ip: '8.8.8.8', kind: 'external', reason: 'not-in-cluster-map' }], total: 1 });
    expect(text(r)).toContain('8.8.8.8: external (not-in-cluster-map)');
  });

  test('without addresses it asks for those seen in flows; unresolved_only keeps the external ones', async () => {
    const source = new ResolvingSource([], IPS);
    const r = await call(source, 'list_ips', { start: '2024-05-01T14:00:00Z', unresolved_only: true });
    expect(source.ipQueries).toEqual([{ since_us: Date.UTC(2024, 4, 1, 14) * 1000, unresolved_only: true, from_flows: true }]);
    const s = r.structuredContent as { ips: { ip: string; flows: number; first_seen: string }[] };
    expect(s.ips).toEqual([expect.objectContaining({ ip: '8.8.8.8', flows: 3, first_seen: '2024-05-01T14:15:01.000000Z' })]);
  });
});

describe('list_l4_flows by Kubernetes identity', () => {
  test('namespace, pod and service become KFL over either end, AND-ed with kfl; names are checked', async () => {
    const source = new MemorySource();
    const client = await connectInMemory(source);
    await client.callTool({ name: 'list_l4_flows', arguments: { namespace: 'shop', service: 'cart-db', kfl: 'tcp_flow' } });
    await client.callTool({ name: 'list_l4_flows', arguments: { pod: 'cart-db-0', aggregate: 'service' } });
    await client.callTool({ name: 'list_l4_flows', arguments: { kfl: 'udp_flow' } });
    expect(source.flowQueries.map((q) => [q.kfl, q.aggregate])).toEqual([
      // The composer parenthesises the model's filter; it is AND-ed as one term.
      ['((tcp_flow)) && (src.namespace == "shop" || dst.namespace == "shop") && (src.service.name == "cart-db" || dst.service.name == "cart-db")', 'none'],
      ['(src.pod.name == "cart-db-0" || dst.pod.name == "cart-db-0")', 'service'],
      ['(udp_flow)', 'none'],
    ]);
    const bad = await client.callTool({ name: 'list_l4_flows', arguments: { namespace: 'Not A Name' } }).then(
      (r) => r as CallToolResult,
      (e: unknown) => e,
    );
    expect(bad instanceof McpError ? bad.code : (bad as CallToolResult).isError).toBeTruthy();
  });

  test('the aggregate enum and docs name namespace, pod and service', () => {
    const tool = toolsFor(new MemorySource()).find((t) => t.name === 'list_l4_flows')!;
    const aggregate = (tool.inputSchema.properties as Record<string, { enum: string[]; description: string }>).aggregate!;
    expect(aggregate.enum).toEqual(['none', 'ip_pair', 'node', 'namespace', 'pod', 'service']);
    expect(aggregate.description).toMatch(/namespace \/ pod \/ service: one row per server namespace, pod/);
  });
});
