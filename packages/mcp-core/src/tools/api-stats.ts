import { decodeCursor, encodeCursor } from '../cursor';
import { isoMicros } from '../model';
import type { ToolDefinition, ToolOutput } from '../registry';
import { API_PROTOCOLS, type ApiProtocol, type ApiStatsGroup, type ApiStatsQuery } from '../traffic-source';
import { QUERY_TO_ARGUMENT, fitRows, inArgumentTerms, nodesLine, timeWindow, type TimeArgs } from './common';
import { cursorArg, kflArg, limitArg, nodesSchema, pagingFields, timeArg } from './schemas';

/** Orders get_api_stats can sort by; all descending, ties broken by server and endpoint. */
export const API_STATS_ORDERS = ['requests', 'failures', 'error_rate', 'p99'] as const;
type ApiStatsOrder = (typeof API_STATS_ORDERS)[number];

/** One row of get_api_stats. */
export interface ApiStatsView {
  service: string;
  protocol: string;
  method: string;
  endpoint: string;
  requests: number;
  failures: number;
  /** failures / requests, 4 decimals. */
  error_rate: number;
  unanswered: number;
  statuses: { status_code: number; count: number }[];
  latency_p50_us: number;
  latency_p90_us: number;
  latency_p99_us: number;
  first_seen: string;
  last_seen: string;
}

function statsView(g: ApiStatsGroup): ApiStatsView {
  return {
    service: g.service,
    protocol: g.protocol,
    method: g.method,
    endpoint: g.endpoint,
    requests: g.requests,
    failures: g.failures,
    error_rate: g.requests > 0 ? Math.round((g.failures / g.requests) * 1e4) / 1e4 : 0,
    unanswered: g.unanswered,
    statuses: g.statuses.slice(0, 5),
    latency_p50_us: g.latency.p50_us,
    latency_p90_us: g.latency.p90_us,
    latency_p99_us: g.latency.p99_us,
    first_seen: isoMicros(g.first_us),
    last_seen: isoMicros(g.last_us),
  };
}

const statsLine = (v: ApiStatsView): string =>
  `${v.service} ${v.protocol} ${v.method}${v.endpoint ? ` ${v.endpoint}` : ''}: ${v.requests} calls, ${v.failures} failed (${(v.error_rate * 100).toFixed(2)}%)` +
  `${v.unanswered ? `, ${v.unanswered} unanswered` : ''}, latency p50/p90/p99 ${v.latency_p50_us}/${v.latency_p90_us}/${v.latency_p99_us} us; ` +
  `statuses ${v.statuses.map((s) => `${s.status_code}x${s.count}`).join(' ')}`;

const KEY = (v: ApiStatsView): string => `${v.service}\u0000${v.endpoint}\u0000${v.method}\u0000${v.protocol}`;
const SORT: Record<ApiStatsOrder, (v: ApiStatsView) => number> = {
  requests: (v) => v.requests,
  failures: (v) => v.failures,
  error_rate: (v) => v.error_rate,
  p99: (v) => v.latency_p99_us,
};

interface GetApiStatsArgs extends TimeArgs {
  protocol?: ApiProtocol;
  kfl?: string;
  order_by: ApiStatsOrder;
  limit: number;
  cursor?: string;
}

type PagedStatsQuery = ApiStatsQuery & { order_by: ApiStatsOrder };

const PROTOCOLS: readonly ApiProtocol[] = API_PROTOCOLS;

function checkPagedQuery(q: unknown): PagedStatsQuery | undefined {
  if (typeof q !== 'object' || q === null || Array.isArray(q)) return undefined;
  const o = q as Record<string, unknown>;
  const known = new Set(['protocol', 'since_us', 'until_us', 'order_by', 'kfl']);
  if (o.kfl !== undefined && typeof o.kfl !== 'string') return undefined;
  if (Object.keys(o).some((k) => !known.has(k))) return undefined;
  if (!API_STATS_ORDERS.includes(o.order_by as ApiStatsOrder)) return undefined;
  if (o.protocol !== undefined && !PROTOCOLS.includes(o.protocol as ApiProtocol)) return undefined;
  const micros = (x: unknown): boolean => x === undefined || (typeof x === 'number' && Number.isSafeInteger(x) && x >= 0);
  if (!micros(o.since_us) || !micros(o.until_us)) return undefined;
  return o as unknown as PagedStatsQuery;
}

export const getApiStats: ToolDefinition<GetApiStatsArgs> = {
  name: 'get_api_stats',
  title: 'API statistics per service and endpoint',
  description:
    'Request count, failures, error rate and latency percentiles (p50/p90/p99 of elapsed time, microseconds) per server, protocol, method and endpoint, ' +
    'over a start/end window (default: everything retained). The endpoint is the HTTP path without its query, with identifier-like segments ' +
    '(numbers, UUIDs, long hex) shown as ":id"; the DNS query name for DNS. failures are calls the protocol reported as failed ' +
    '(HTTP status >= 400, DNS rcode != 0, gRPC status != 0, SQL errors, ...); unanswered calls got no response. Narrow with kfl (KFL2). Use it to find the slowest or failing endpoints, ' +
    'then list_api_calls for the calls themselves. Percentiles over several nodes come from merged sketches (within 1%).',
  inputSchema: {
    type: 'object',
    properties: {
      start: timeArg('Only calls made at or after this time'),
      end: timeArg('Only calls made at or before this time'),
      kfl: kflArg('API calls', 'http && path.startsWith("/api"), grpc && grpc_service == "checkout.Cart"'),
      protocol: { type: 'string', enum: [...PROTOCOLS], description: 'Only this protocol.' },
      order_by: { type: 'string', enum: [...API_STATS_ORDERS], default: 'requests', description: 'Sort descending by request count (default), failures, error_rate or p99 latency.' },
      limit: limitArg(50, 500, 'groups per page'),
      cursor: cursorArg,
    },
    additionalProperties: false,
  },
  outputSchema: {
    type: 'object',
    properties: {
      groups: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            service: { type: 'string', description: 'The server (ip:port until Kubernetes names are resolved).' },
            protocol: { type: 'string' },
            method: { type: 'string' },
            endpoint: { type: 'string' },
            requests: { type: 'integer', minimum: 0 },
            failures: { type: 'integer', minimum: 0 },
            error_rate: { type: 'number', minimum: 0, maximum: 1 },
            unanswered: { type: 'integer', minimum: 0 },
            statuses: {
              type: 'array',
              description: 'The most frequent status codes (HTTP status, DNS rcode; 0 = no response), at most 5.',
              items: { type: 'object', properties: { status_code: { type: 'integer' }, count: { type: 'integer' } }, required: ['status_code', 'count'], additionalProperties: false },
            },
            latency_p50_us: { type: 'number' },
            latency_p90_us: { type: 'number' },
            latency_p99_us: { type: 'number' },
            first_seen: { type: 'string' },
            last_seen: { type: 'string' },
          },
          required: ['service', 'protocol', 'method', 'endpoint', 'requests', 'failures', 'error_rate', 'unanswered', 'statuses', 'latency_p50_us', 'latency_p90_us', 'latency_p99_us', 'first_seen', 'last_seen'],
          additionalProperties: false,
        },
      },
      total_groups: { type: 'integer', minimum: 0 },
      entries: { type: 'integer', minimum: 0, description: 'API calls counted over all groups.' },
      ...pagingFields,
      nodes: nodesSchema,
    },
    required: ['groups', 'total_groups', 'entries', 'returned', 'truncated', 'nodes'],
    additionalProperties: false,
  },
  annotations: { readOnlyHint: true, openWorldHint: false },
  async handler(args, ctx) {
    let query: PagedStatsQuery;
    let offset = 0;
    if (args.cursor !== undefined) {
      ({ query, offset } = decodeCursor(getApiStats.name, args.cursor, checkPagedQuery));
    } else {
      const kfl = ctx.filters.compose(args.kfl).text;
      query = { ...timeWindow(args), ...(args.protocol ? { protocol: args.protocol } : {}), ...(kfl ? { kfl } : {}), order_by: args.order_by };
    }
    const { order_by: order, ...sourceQuery } = query;
    const report = await inArgumentTerms(ctx.source.getApiStats!(sourceQuery, { signal: ctx.signal }), { ...QUERY_TO_ARGUMENT, protocol: 'protocol' });
    const key = SORT[order];
    const all = report.groups.map(statsView).sort((a, b) => key(b) - key(a) || b.requests - a.requests || (KEY(a) < KEY(b) ? -1 : KEY(a) > KEY(b) ? 1 : 0));
    const page = all.slice(offset, offset + args.limit);
    const lines = page.map(statsLine);
    const render = (n: number, cut: boolean): ToolOutput => {
      const next = offset + n;
      const more = next < all.length;
      const nextCursor = more ? encodeCursor(getApiStats.name, query, next) : undefined;
      const hint = cut ? `Cut to ${n} groups to fit the output budget (~${ctx.budget.maxTokens} tokens): filter by protocol or a shorter window, or page on with cursor.` : undefined;
      const header = `${all.length} groups over ${report.entries} API calls, by ${order}${offset > 0 ? `, from #${offset + 1}` : ''} (nodes: ${nodesLine(report.nodes)})`;
      return {
        structured: {
          groups: page.slice(0, n),
          total_groups: all.length,
          entries: report.entries,
          returned: n,
          truncated: more,
          ...(nextCursor ? { nextCursor } : {}),
          ...(hint ? { hint } : {}),
          nodes: report.nodes,
        },
        text: [header, ...lines.slice(0, n), ...(hint ? [hint] : []), ...(nextCursor ? [`Next page: call get_api_stats with cursor "${nextCursor}".`] : [])].join('\n'),
      };
    };
    return fitRows(page, lines, ctx.budget, render);
  },
};
