import { isIP } from 'node:net';
import { decodeCursor, encodeCursor, invalidCursor } from '../cursor';
import { flowGroupView, flowSummaryView, flowView, type FlowGroupView, type FlowView } from '../model';
import { resultChars, type ToolDefinition, type ToolOutput } from '../registry';
import { FLOW_AGGREGATES, type FlowAggregate, type FlowOrder, type FlowQuery, type L4Protocol } from '../traffic-source';
import { fitRows, nodesLine, timeWindow, type TimeArgs } from './common';
import { cursorArg, flowRowDefs, kflArg, limitArg, nodesSchema, pagingFields, summarySchema, timeArg } from './schemas';

export { timeWindow };

const us = (x: number): string => `${Math.round(x * 10) / 10} us`;

function flowLine(f: FlowView): string {
  const hs =
    f.tcp_handshake_server_us !== undefined
      ? `, handshake ${us(f.tcp_handshake_server_us)}${f.tcp_handshake_client_us !== undefined ? ` (SYN->SYN-ACK ${us(f.tcp_handshake_client_us)})` : ''}`
      : '';
  return (
    `${f.protocol} ${f.client.ip}:${f.client.port} -> ${f.server.ip}:${f.server.port} [${f.state}] ` +
    `c->s ${f.client_to_server.packets} pkts/${f.client_to_server.bytes} B, s->c ${f.server_to_client.packets} pkts/${f.server_to_client.bytes} B, ` +
    `${f.first_seen} +${f.duration_ms} ms${hs} (id ${f.id})`
  );
}

function groupLine(g: FlowGroupView): string {
  const hs =
    g.tcp_handshake_p50_us !== undefined
      ? `, handshake p50/p90/p99 ${us(g.tcp_handshake_p50_us)}/${us(g.tcp_handshake_p90_us!)}/${us(g.tcp_handshake_p99_us!)} over ${g.tcp_handshakes}`
      : '';
  return (
    `${g.key}: ${g.flows} flows (${g.tcp_flows} tcp, ${g.udp_flows} udp), ` +
    `c->s ${g.client_to_server.packets} pkts/${g.client_to_server.bytes} B, s->c ${g.server_to_client.packets} pkts/${g.server_to_client.bytes} B${hs}`
  );
}

interface ListFlowsArgs extends TimeArgs {
  kfl?: string;
  namespace?: string;
  pod?: string;
  service?: string;
  aggregate: FlowAggregate;
  l4proto?: L4Protocol;
  ip?: string;
  port?: number;
  order_by: FlowOrder;
  limit: number;
  cursor?: string;
}

/** The part of a flow query a cursor carries: everything but the page (offset and limit). */
type PagedFlowQuery = Omit<FlowQuery, 'limit' | 'offset'>;

const AGGREGATES: readonly FlowAggregate[] = FLOW_AGGREGATES;
const ORDERS: readonly FlowOrder[] = ['bytes', 'packets', 'recent', 'oldest'];
const LIST_DEFAULTS = { aggregate: 'none', order_by: 'bytes' } as const;

const isMicros = (x: unknown): boolean => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;

/** The query of a list_l4_flows cursor, or undefined when it is not one this tool issues. */
function checkPagedQuery(q: unknown): PagedFlowQuery | undefined {
  if (typeof q !== 'object' || q === null || Array.isArray(q)) return undefined;
  const o = q as Record<string, unknown>;
  const known = new Set(['aggregate', 'order_by', 'protocol', 'ip', 'port', 'since_us', 'until_us', 'kfl']);
  if (Object.keys(o).some((k) => !known.has(k))) return undefined;
  if (o.kfl !== undefined && typeof o.kfl !== 'string') return undefined;
  if (!AGGREGATES.includes(o.aggregate as FlowAggregate) || !ORDERS.includes(o.order_by as FlowOrder)) return undefined;
  if (o.protocol !== undefined && o.protocol !== 'tcp' && o.protocol !== 'udp') return undefined;
  if (o.ip !== undefined && (typeof o.ip !== 'string' || isIP(o.ip) === 0)) return undefined;
  if (o.port !== undefined && (typeof o.port !== 'number' || !Number.isInteger(o.port) || o.port < 1 || o.port > 65535)) return undefined;
  if ((o.since_us !== undefined && !isMicros(o.since_us)) || (o.until_us !== undefined && !isMicros(o.until_us))) return undefined;
  return o as unknown as PagedFlowQuery;
}

/** The query the arguments describe (without the page); `kfl` is the composed filter. */
function pagedQueryOf(args: ListFlowsArgs, kfl: string): PagedFlowQuery {
  return {
    ...(kfl ? { kfl } : {}),
    aggregate: args.aggregate,
    order_by: args.order_by,
    ...(args.l4proto ? { protocol: args.l4proto } : {}),
    ...(args.ip ? { ip: args.ip } : {}),
    ...(args.port ? { port: args.port } : {}),
    ...timeWindow(args),
  };
}

/**
 * With a cursor, the query comes from the cursor. Filters passed alongside it must agree (a
 * model that changes the filters but keeps the cursor would get pages of another query);
 * aggregate and order_by are checked only when they differ from their defaults, since
 * validation fills those in whether or not the client sent them.
 */
function resolvePage(args: ListFlowsArgs, kfl: string): { query: PagedFlowQuery; offset: number } {
  if (args.cursor === undefined) return { query: pagedQueryOf(args, kfl), offset: 0 };
  const { query, offset } = decodeCursor(listL4Flows.name, args.cursor, checkPagedQuery);
  const filtered = args.kfl !== undefined || args.namespace !== undefined || args.pod !== undefined || args.service !== undefined;
  const given = pagedQueryOf(args, filtered ? kfl : '');
  const conflicts: string[] = [];
  for (const [field, arg] of [
    ['kfl', 'kfl'],
    ['protocol', 'l4proto'],
    ['ip', 'ip'],
    ['port', 'port'],
    ['since_us', 'start'],
    ['until_us', 'end'],
  ] as const) {
    if (given[field] !== undefined && given[field] !== query[field]) conflicts.push(arg);
  }
  for (const field of ['aggregate', 'order_by'] as const) {
    if (given[field] !== LIST_DEFAULTS[field] && given[field] !== query[field]) conflicts.push(field);
  }
  if (conflicts.length > 0) {
    throw invalidCursor(`it was issued for other arguments (${conflicts.map((c) => `"${c}"`).join(', ')} differ); pass the same arguments as the first call, or only cursor and limit`);
  }
  return { query, offset };
}

/**
 * The namespace, pod and service arguments as KFL over either end of a flow (the workers resolve
 * the identities), AND-ed with the composed filter.
 */
function withIdentities(kfl: string, args: Pick<ListFlowsArgs, 'namespace' | 'pod' | 'service'>): string {
  const parts = kfl ? [`(${kfl})`] : [];
  const either = (field: string, v: string | undefined): void => {
    if (v !== undefined) parts.push(`(src.${field} == ${JSON.stringify(v)} || dst.${field} == ${JSON.stringify(v)})`);
  };
  either('namespace', args.namespace);
  either('pod.name', args.pod);
  either('service.name', args.service);
  return parts.length === 1 && kfl ? kfl : parts.join(' && ');
}

/** A Kubernetes object name (DNS-1123 subdomain). */
const k8sName = (what: string): Record<string, unknown> => ({
  type: 'string',
  minLength: 1,
  maxLength: 253,
  pattern: '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$',
  description: `Only flows with this ${what} at either end (the Kubernetes identity the worker resolved).`,
});

const NARROW_HINT = 'narrow with ip, port, l4proto, kfl (dst.namespace == "...") or a shorter start/end window, use aggregate="ip_pair" or aggregate="namespace", or get_l4_flow_summary for totals';

export const listL4Flows: ToolDefinition<ListFlowsArgs> = {
  name: 'list_l4_flows',
  title: 'List L4 flows',
  description:
    'TCP and UDP connections seen on the network: client and server endpoints, packets and bytes per direction with rates (for flows seen over more than 5 ms), ' +
    'connection state, and TCP handshake times (tcp_handshake_p50_us/p90_us/p99_us: SYN -> ACK as Wireshark measures it; ' +
    '< 1 ms excellent, 1-10 ms good, 10-100 ms elevated, > 100 ms high). Use aggregate="ip_pair" to get one row per ' +
    'client/server address pair with handshake percentiles, aggregate="node" for one row per node, or aggregate="namespace", "pod" or "service" ' +
    'for one row per server namespace, pod or Service (Kubernetes identity of the server at the flow start; servers outside the cluster stay IPs). ' +
    'Filter by ip, port, namespace, pod, service, l4proto, a start/end window and kfl (KFL2 over flow fields: tcp_flow && flow_state == "reset", flow_local_bps > 5000000, ' +
    'dst.namespace == "production", src.pod.name == "frontend-0"). ' +
    'Results are paged: when nextCursor is present, call again with cursor=nextCursor (same arguments) for the next page.',
  inputSchema: {
    type: 'object',
    properties: {
      kfl: kflArg('flows', 'tcp_flow && flow_state == "reset", tcp_handshake_server_us > 10000'),
      aggregate: {
        type: 'string',
        enum: [...FLOW_AGGREGATES],
        default: 'none',
        description:
          'none: one row per flow; ip_pair: one row per client IP -> server IP; node: one row per node (worker); ' +
          'namespace / pod / service: one row per server namespace, pod ("namespace/pod") or Service ("namespace/service"), ' +
          'servers the cluster does not know under their IP (needs workers with a Kubernetes source).',
      },
      l4proto: { type: 'string', enum: ['tcp', 'udp'], description: 'Only TCP or only UDP flows.' },
      ip: { type: 'string', format: 'ip', description: 'Only flows with this address at either end.' },
      port: { type: 'integer', minimum: 1, maximum: 65535, description: 'Only flows with this port at either end.' },
      namespace: k8sName('namespace'),
      pod: k8sName('pod (name)'),
      service: k8sName('Service (name)'),
      start: timeArg('Only flows active at or after this time'),
      end: timeArg('Only flows active at or before this time'),
      order_by: {
        type: 'string',
        enum: ['bytes', 'packets', 'recent', 'oldest'],
        default: 'bytes',
        description: 'bytes/packets: largest first; recent: latest activity first; oldest: earliest start first.',
      },
      limit: limitArg(100, 1000, 'flows or groups per page'),
      cursor: cursorArg,
    },
    additionalProperties: false,
  },
  outputSchema: {
    type: 'object',
    $defs: flowRowDefs,
    properties: {
      flows: { type: 'array', items: { $ref: '#/$defs/flow' } },
      groups: { type: 'array', items: { $ref: '#/$defs/flow_group' } },
      total: { type: 'integer', minimum: 0, description: 'Matching flows or groups, over all pages.' },
      offset: { type: 'integer', minimum: 0, description: 'Position of the first row of this page among all matches.' },
      ...pagingFields,
      nodes: nodesSchema,
    },
    required: ['total', 'offset', 'returned', 'truncated', 'nodes'],
    additionalProperties: false,
  },
  annotations: { readOnlyHint: true, openWorldHint: false },
  async handler(args, ctx) {
    const { query, offset } = resolvePage(args, withIdentities(ctx.filters.compose(args.kfl).text, args));
    const result = await ctx.source.listFlows({ ...query, limit: args.limit, ...(offset > 0 ? { offset } : {}) }, { signal: ctx.signal });
    const grouped = query.aggregate !== 'none';
    const what = grouped ? 'groups' : 'flows';
    const rows: (FlowView | FlowGroupView)[] = grouped ? result.groups.map(flowGroupView) : result.flows.map(flowView);
    const lines = grouped ? (rows as FlowGroupView[]).map(groupLine) : (rows as FlowView[]).map(flowLine);

    /** The result with the first `n` rows; `cut` says the budget (not the limit) ended the page. */
    const render = (n: number, cut: boolean): ToolOutput => {
      const more = offset + n < result.total;
      const nextCursor = more ? encodeCursor(listL4Flows.name, query, offset + n) : undefined;
      const hint = cut
        ? `Cut to ${n} ${what} to fit the output budget (~${ctx.budget.maxTokens} tokens): ${NARROW_HINT}, or page on with cursor.`
        : more
          ? `More matched: ${NARROW_HINT}, or page on with cursor.`
          : undefined;
      const from = offset > 0 ? ` from #${offset + 1}` : '';
      const header = `${n} of ${result.total} ${what}${from} by ${query.order_by} (nodes: ${nodesLine(result.nodes)})`;
      const tail = [...(hint ? [hint] : []), ...(nextCursor ? [`Next page: call list_l4_flows with cursor "${nextCursor}".`] : [])];
      return {
        structured: {
          [what]: rows.slice(0, n),
          total: result.total,
          offset,
          returned: n,
          truncated: more,
          ...(nextCursor ? { nextCursor } : {}),
          ...(hint ? { hint } : {}),
          nodes: result.nodes,
        },
        text: [header, ...lines.slice(0, n), ...tail].join('\n'),
      };
    };

    return fitRows(rows, lines, ctx.budget, render);
  },
};

interface SummaryArgs extends TimeArgs {
  kfl?: string;
  l4proto?: L4Protocol;
  top: number;
}

export const getL4FlowSummary: ToolDefinition<SummaryArgs> = {
  name: 'get_l4_flow_summary',
  title: 'Summarise L4 flows',
  description:
    'One-screen overview of L4 traffic: total flows, packets and bytes, TCP vs UDP, unique clients and servers, ' +
    'top talkers by bytes and by packets (addresses, sent and received), TCP handshake percentiles with their RTT band, ' +
    'and with Kubernetes identities traffic by namespace and cross-namespace pairs. ' +
    'Start here, then drill down with list_l4_flows.',
  inputSchema: {
    type: 'object',
    properties: {
      l4proto: { type: 'string', enum: ['tcp', 'udp'], description: 'Only TCP or only UDP flows.' },
      kfl: kflArg('flows', 'tcp_flow && dst.port == 443'),
      start: timeArg('Only flows active at or after this time'),
      end: timeArg('Only flows active at or before this time'),
      top: { type: 'integer', minimum: 1, maximum: 100, default: 10, description: 'Length of each top-talker list (default 10).' },
    },
    additionalProperties: false,
  },
  outputSchema: summarySchema,
  annotations: { readOnlyHint: true, openWorldHint: false },
  async handler(args, ctx) {
    const s = await ctx.source.getFlowSummary(
      { top: args.top, ...(args.l4proto ? { protocol: args.l4proto } : {}), ...timeWindow(args), ...((k) => (k ? { kfl: k } : {}))(ctx.filters.compose(args.kfl).text) },
      { signal: ctx.signal },
    );
    const full = { ...flowSummaryView(s), nodes: s.nodes };
    const talkers = (list: typeof full.top_by_bytes): string =>
      list.map((t) => `${t.ip} (tx ${t.tx_packets} pkts/${t.tx_bytes} B, rx ${t.rx_packets} pkts/${t.rx_bytes} B, ${t.flows} flows)`).join('; ') || 'none';
    /** The summary with each top-talker list cut to `top` entries (`cut`: by the output budget). */
    const render = (top: number, cut: boolean): ToolOutput => {
      const hint = cut
        ? `Top-talker lists cut to ${top} to fit the output budget (~${ctx.budget.maxTokens} tokens): ask for a smaller top, or use list_l4_flows with aggregate="ip_pair" and a cursor.`
        : undefined;
      const view = {
        ...full,
        top_by_bytes: full.top_by_bytes.slice(0, top),
        top_by_packets: full.top_by_packets.slice(0, top),
        // The source cut these to the requested top already; the output budget cuts them with the talkers.
        ...(full.by_namespace ? { by_namespace: cut ? full.by_namespace.slice(0, top) : full.by_namespace } : {}),
        ...(full.cross_namespace ? { cross_namespace: cut ? full.cross_namespace.slice(0, top) : full.cross_namespace } : {}),
        ...(cut ? { truncated: true, hint } : {}),
      };
      const nsName = (ns: string): string => ns || '(outside the cluster)';
      const lines = [
        `${view.total_flows} flows (${view.tcp.flows} tcp, ${view.udp.flows} udp), ${view.total_packets} packets, ${view.total_bytes} bytes, ` +
          `${view.unique_clients} clients, ${view.unique_servers} servers` +
          (view.first_seen ? `, ${view.first_seen} .. ${view.last_seen}` : ''),
        view.tcp_handshake_p50_us !== undefined
          ? `TCP handshake (SYN->ACK) p50/p90/p99 ${us(view.tcp_handshake_p50_us)}/${us(view.tcp_handshake_p90_us!)}/${us(view.tcp_handshake_p99_us!)} over ${view.tcp_handshakes} flows: ${view.tcp_handshake_band}`
          : 'TCP handshake: none measured (no SYN/ACK pairs seen)',
        `Top by bytes: ${talkers(view.top_by_bytes)}`,
        `Top by packets: ${talkers(view.top_by_packets)}`,
        ...(view.by_namespace ? [`By namespace: ${view.by_namespace.map((n) => `${nsName(n.namespace)} ${n.flows} flows/${n.bytes} B`).join('; ')}`] : []),
        ...(view.cross_namespace ? [`Cross-namespace: ${view.cross_namespace.map((n) => `${nsName(n.src_namespace)} -> ${nsName(n.dst_namespace)} ${n.flows} flows/${n.bytes} B`).join('; ')}`] : []),
        `Nodes: ${nodesLine(view.nodes)}`,
        ...(hint ? [hint] : []),
      ];
      return { structured: view as unknown as Record<string, unknown>, text: lines.join('\n') };
    };
    const longest = Math.max(full.top_by_bytes.length, full.top_by_packets.length);
    let out = render(longest, false);
    for (let top = longest - 1; top >= 0 && resultChars(out, ctx.budget) > ctx.budget.maxChars; top--) out = render(top, true);
    return out;
  },
};
