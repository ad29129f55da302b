import { isIP } from 'node:net';
import { decodeCursor, encodeCursor, invalidCursor } from '../cursor';
import { TrafficSourceError } from '../errors';
import { isoMicros } from '../model';
import type { OutputBudget, ToolDefinition, ToolOutput } from '../registry';
import type { IpInfo, IpQuery, NodeCoverage, WorkloadInfo, WorkloadKind } from '../traffic-source';
import { QUERY_TO_ARGUMENT, fitRows, inArgumentTerms, nodesLine, timeWindow, type TimeArgs } from './common';
import { cursorArg, limitArg, nodesSchema, pagingFields, timeArg } from './schemas';

/**
 * Kubernetes context from the workers' resolvers: which pods, Services and nodes exist
 * (list_workloads) and who addresses are (list_ips). Both page with limit/cursor and fit the
 * output budget like list_l4_flows.
 */

const str = { type: 'string' };
const strings = { type: 'array', items: str };
const labelsSchema = { type: 'object', additionalProperties: str };
const ownerSchema = { type: 'object', properties: { kind: str, name: str }, required: ['kind', 'name'], additionalProperties: false };

const KINDS: readonly WorkloadKind[] = ['pod', 'service', 'node'];

/** Pages of a result computed whole by the source: the cursor carries the query and the offset. */
function page<Q extends object>(tool: string, cursor: string | undefined, given: Q, check: (q: unknown) => Q | undefined, same: (a: Q, b: Q) => boolean): { query: Q; offset: number } {
  if (cursor === undefined) return { query: given, offset: 0 };
  const decoded = decodeCursor(tool, cursor, check);
  if (!same(decoded.query, given)) throw invalidCursor('it was issued for other arguments; pass the same arguments as the first call, or only cursor and limit');
  return decoded;
}

const isRecord = (q: unknown): q is Record<string, unknown> => typeof q === 'object' && q !== null && !Array.isArray(q);
const optString = (v: unknown): boolean => v === undefined || typeof v === 'string';

/** Renders rows [0, n) of a page with the paging fields and a narrowing hint. */
function pagedOutput<R>(
  tool: string,
  what: string,
  query: object,
  offset: number,
  rows: R[],
  lines: string[],
  total: number,
  nodes: NodeCoverage[],
  narrow: string,
  budget: OutputBudget,
  extra: Record<string, unknown> = {},
): ToolOutput {
  const render = (n: number, cut: boolean): ToolOutput => {
    const more = offset + n < total;
    const nextCursor = more ? encodeCursor(tool, query, offset + n) : undefined;
    const hint = cut ? `Cut to ${n} ${what} to fit the output budget (~${budget.maxTokens} tokens): ${narrow}, or page on with cursor.` : more ? `More matched: ${narrow}, or page on with cursor.` : undefined;
    const header = `${n} of ${total} ${what}${offset > 0 ? ` from #${offset + 1}` : ''} (nodes: ${nodesLine(nodes)})`;
    return {
      structured: {
        [what]: rows.slice(0, n),
        ...extra,
        total,
        offset,
        returned: n,
        truncated: more,
        ...(nextCursor ? { nextCursor } : {}),
        ...(hint ? { hint } : {}),
        nodes,
      },
      text: [header, ...lines.slice(0, n), ...(hint ? [hint] : []), ...(nextCursor ? [`Next page: call ${tool} with cursor "${nextCursor}".`] : [])].join('\n'),
    };
  };
  return fitRows(rows, lines, budget, render);
}

interface WorkloadArgs {
  namespace?: string;
  kind?: WorkloadKind;
  name?: string;
  limit: number;
  cursor?: string;
}

type WorkloadPageQuery = Pick<WorkloadArgs, 'namespace' | 'kind' | 'name'>;

function workloadLine(w: WorkloadInfo): string {
  const where = w.namespace ? `${w.namespace}/${w.name}` : w.name;
  const parts = [`${w.kind} ${where}`, w.ips.length ? w.ips.join(', ') : 'no IP'];
  if (w.node && w.kind === 'pod') parts.push(`node ${w.node}`);
  if (w.owner) parts.push(`${w.owner.kind} ${w.owner.name}`);
  if (w.services?.length) parts.push(`services ${w.services.join(', ')}`);
  if (w.type) parts.push(w.type);
  if (w.host_network) parts.push('hostNetwork');
  return parts.join(', ');
}

const workloadSchema = {
  type: 'object',
  properties: {
    kind: { type: 'string', enum: [...KINDS] },
    name: str,
    namespace: str,
    ips: strings,
    node: str,
    owner: ownerSchema,
    labels: labelsSchema,
    services: strings,
    type: str,
    host_network: { type: 'boolean' },
  },
  required: ['kind', 'name', 'namespace', 'ips', 'labels'],
  additionalProperties: false,
};

function checkWorkloadQuery(q: unknown): WorkloadPageQuery | undefined {
  if (!isRecord(q) || Object.keys(q).some((k) => !['namespace', 'kind', 'name'].includes(k))) return undefined;
  if (!optString(q.namespace) || !optString(q.name)) return undefined;
  if (q.kind !== undefined && !KINDS.includes(q.kind as WorkloadKind)) return undefined;
  return q as WorkloadPageQuery;
}

function nameFilter(pattern: string | undefined): RegExp | undefined {
  if (pattern === undefined) return undefined;
  try {
    return new RegExp(pattern);
  } catch (err) {
    throw new TrafficSourceError('invalid_argument', `"name" is not a regular expression: ${(err as Error).message}`, { field: 'name' });
  }
}

export const listWorkloads: ToolDefinition<WorkloadArgs> = {
  name: 'list_workloads',
  title: 'List Kubernetes workloads',
  description:
    'Pods, Services and nodes the workers know from their Kubernetes source (a cluster map or a watch of the API server): ' +
    'name, namespace, IPs, node, owning workload (Deployment, StatefulSet, ...), labels, the Services a pod backs, a Service\'s type. ' +
    'Filter by namespace, kind (pod, service, node) and a name regular expression; also lists the namespaces. ' +
    'Use it to turn names into IPs for list_l4_flows, or to check that a workload exists before concluding it had no traffic. ' +
    'Paged: when nextCursor is present, call again with cursor=nextCursor.',
  inputSchema: {
    type: 'object',
    properties: {
      namespace: { type: 'string', minLength: 1, maxLength: 253, description: 'Only this namespace (nodes have none and are left out).' },
      kind: { type: 'string', enum: [...KINDS], description: 'Only pods, only Services or only nodes.' },
      name: { type: 'string', minLength: 1, maxLength: 256, description: 'Regular expression the name must match, e.g. ^checkout-.' },
      limit: limitArg(100, 1000, 'workloads per page'),
      cursor: cursorArg,
    },
    additionalProperties: false,
  },
  outputSchema: {
    type: 'object',
    properties: {
      workloads: { type: 'array', items: workloadSchema },
      namespaces: { ...strings, description: 'Namespaces with a pod or Service (after the namespace filter).' },
      total: { type: 'integer', minimum: 0 },
      offset: { type: 'integer', minimum: 0 },
      ...pagingFields,
      nodes: nodesSchema,
    },
    required: ['workloads', 'namespaces', 'total', 'offset', 'returned', 'truncated', 'nodes'],
    additionalProperties: false,
  },
  annotations: { readOnlyHint: true, openWorldHint: false },
  async handler(args, ctx) {
    const given: WorkloadPageQuery = { ...(args.namespace ? { namespace: args.namespace } : {}), ...(args.kind ? { kind: args.kind } : {}), ...(args.name ? { name: args.name } : {}) };
    const same = (a: WorkloadPageQuery, b: WorkloadPageQuery): boolean => (['namespace', 'kind', 'name'] as const).every((k) => b[k] === undefined || a[k] === b[k]);
    const { query, offset } = page(listWorkloads.name, args.cursor, given, checkWorkloadQuery, same);
    const re = nameFilter(query.name);
    const list = await ctx.source.listWorkloads!({ ...(query.namespace ? { namespace: query.namespace } : {}) }, { signal: ctx.signal });
    const all = list.workloads.filter((w) => (query.kind === undefined || w.kind === query.kind) && (re === undefined || re.test(w.name)));
    const rows = all.slice(offset, offset + args.limit);
    return pagedOutput(
      listWorkloads.name,
      'workloads',
      query,
      offset,
      rows,
      rows.map(workloadLine),
      all.length,
      list.nodes,
      'narrow with namespace, kind or name',
      ctx.budget,
      { namespaces: list.namespaces },
    );
  },
};

interface IpArgs extends TimeArgs {
  ips?: string[];
  at?: string | number;
  unresolved_only?: boolean;
  limit: number;
  cursor?: string;
}

type IpPageQuery = Omit<IpQuery, 'from_flows'>;

function checkIpQuery(q: unknown): IpPageQuery | undefined {
  if (!isRecord(q) || Object.keys(q).some((k) => !['ips', 'at_us', 'since_us', 'until_us', 'unresolved_only'].includes(k))) return undefined;
  if (q.ips !== undefined && (!Array.isArray(q.ips) || !q.ips.every((ip) => typeof ip === 'string' && isIP(ip) !== 0))) return undefined;
  for (const k of ['at_us', 'since_us', 'until_us'] as const) if (q[k] !== undefined && (typeof q[k] !== 'number' || !Number.isSafeInteger(q[k]))) return undefined;
  if (q.unresolved_only !== undefined && typeof q.unresolved_only !== 'boolean') return undefined;
  return q as IpPageQuery;
}

function ipLine(i: IpInfo): string {
  const who =
    i.kind === 'external'
      ? `external${i.reason ? ` (${i.reason})` : ''}`
      : `${i.kind} ${i.namespace ? `${i.namespace}/` : ''}${i.name ?? ''}` +
        (i.service && i.kind === 'pod' ? `, service ${i.service}` : '') +
        (i.node && i.kind !== 'node' ? `, node ${i.node}` : '') +
        (i.owner ? `, ${i.owner.kind} ${i.owner.name}` : '') +
        (i.reason ? ` (${i.reason})` : '');
  const seen = i.flows !== undefined ? `, ${i.flows} flows ${isoMicros(i.first_seen_us ?? 0)} .. ${isoMicros(i.last_seen_us ?? 0)}` : '';
  return `${i.ip}: ${who}${seen}`;
}

const ipSchema = {
  type: 'object',
  properties: {
    ip: str,
    kind: { type: 'string', enum: ['pod', 'service', 'node', 'external'] },
    name: str,
    namespace: str,
    pod: str,
    service: str,
    services: strings,
    node: str,
    owner: ownerSchema,
    labels: labelsSchema,
    reason: { type: 'string', description: 'Why the address is external (not-in-cluster-map, no-pod-at-that-time, ...) or ambiguous (host-network-ambiguous).' },
    at: { type: 'string', description: 'When the address was resolved (for addresses from flows: their first flow).' },
    flows: { type: 'integer', minimum: 0, description: 'Flows with the address at either end.' },
    first_seen: str,
    last_seen: str,
  },
  required: ['ip', 'kind', 'at'],
  additionalProperties: false,
};

function ipView(i: IpInfo): Record<string, unknown> {
  const { at_us, first_seen_us, last_seen_us, ...rest } = i;
  return {
    ...rest,
    at: isoMicros(at_us),
    ...(first_seen_us !== undefined ? { first_seen: isoMicros(first_seen_us) } : {}),
    ...(last_seen_us !== undefined ? { last_seen: isoMicros(last_seen_us) } : {}),
  };
}

export const listIps: ToolDefinition<IpArgs> = {
  name: 'list_ips',
  title: 'Who are these IPs',
  description:
    'Resolves IP addresses to their Kubernetes identity (pod, Service or node, with namespace, node, owning workload and labels) ' +
    'as the workers\' resolvers know it, at a given time or now (pod IPs are reused: give "at" for an address seen in the past). ' +
    'Without "ips", lists every address seen in L4 flows (in an optional start/end window), each resolved at its first flow, with its flow count; ' +
    'unresolved_only=true keeps the addresses the cluster map does not explain (external peers, missing pods). ' +
    'Paged: when nextCursor is present, call again with cursor=nextCursor.',
  inputSchema: {
    type: 'object',
    properties: {
      ips: { type: 'array', items: { type: 'string', format: 'ip' }, minItems: 1, maxItems: 1000, uniqueItems: true, description: 'Addresses to resolve.' },
      at: timeArg('Resolve "ips" as of this time (default: now)'),
      start: timeArg('Without "ips": only flows active at or after this time'),
      end: timeArg('Without "ips": only flows active at or before this time'),
      unresolved_only: { type: 'boolean', default: false, description: 'Only addresses the resolver cannot name.' },
      limit: limitArg(100, 1000, 'addresses per page'),
      cursor: cursorArg,
    },
    additionalProperties: false,
  },
  outputSchema: {
    type: 'object',
    properties: {
      ips: { type: 'array', items: ipSchema },
      total: { type: 'integer', minimum: 0 },
      offset: { type: 'integer', minimum: 0 },
      ...pagingFields,
      nodes: nodesSchema,
    },
    required: ['ips', 'total', 'offset', 'returned', 'truncated', 'nodes'],
    additionalProperties: false,
  },
  annotations: { readOnlyHint: true, openWorldHint: false },
  async handler(args, ctx) {
    const window = timeWindow(args);
    const at = args.at !== undefined ? timeWindow({ start: args.at }).since_us : undefined;
    const given: IpPageQuery = {
      ...(args.ips?.length ? { ips: args.ips } : {}),
      ...(at !== undefined ? { at_us: at } : {}),
      ...window,
      ...(args.unresolved_only ? { unresolved_only: true } : {}),
    };
    const same = (a: IpPageQuery, b: IpPageQuery): boolean => Object.keys(b).every((k) => JSON.stringify(a[k as keyof IpPageQuery]) === JSON.stringify(b[k as keyof IpPageQuery]));
    const { query, offset } = page(listIps.name, args.cursor, given, checkIpQuery, same);
    const fromFlows = !query.ips?.length;
    const result = await inArgumentTerms(ctx.source.resolveIps!({ ...query, from_flows: fromFlows }, { signal: ctx.signal }), { ...QUERY_TO_ARGUMENT, at_us: 'at' });
    const all = query.unresolved_only ? result.ips.filter((i) => i.kind === 'external') : result.ips;
    const rows = all.slice(offset, offset + args.limit);
    return pagedOutput(
      listIps.name,
      'ips',
      query,
      offset,
      rows.map(ipView),
      rows.map(ipLine),
      all.length,
      result.nodes,
      fromFlows ? 'narrow with start/end or unresolved_only' : 'ask for fewer ips',
      ctx.budget,
    );
  },
};
