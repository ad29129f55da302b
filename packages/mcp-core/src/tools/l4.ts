import { flowGroupView, flowSummaryView, flowView, type FlowGroupView, type FlowView } from '../model';
import type { ToolDefinition } from '../registry';
import type { FlowAggregate, FlowOrder, L4Protocol } from '../traffic-source';
import { nodesLine, timeWindow, type TimeArgs } from './common';
import { flowGroupSchema, flowSchema, limitArg, nodesSchema, summarySchema, timeArg } from './schemas';

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
  aggregate: FlowAggregate;
  l4proto?: L4Protocol;
  ip?: string;
  port?: number;
  order_by: FlowOrder;
  limit: number;
}

export const listL4Flows: ToolDefinition<ListFlowsArgs> = {
  name: 'list_l4_flows',
  title: 'List L4 flows',
  description:
    'TCP and UDP connections seen on the network: client and server endpoints, packets and bytes per direction with rates, ' +
    'connection state, and TCP handshake times (tcp_handshake_p50_us/p90_us/p99_us: SYN -> ACK as Wireshark measures it; ' +
    '< 1 ms excellent, 1-10 ms good, 10-100 ms elevated, > 100 ms high). Use aggregate="ip_pair" to get one row per ' +
    'client/server address pair with handshake percentiles; filter by ip, port, l4proto and a start/end window.',
  inputSchema: {
    type: 'object',
    properties: {
      aggregate: {
        type: 'string',
        enum: ['none', 'ip_pair'],
        default: 'none',
        description: 'none: one row per flow; ip_pair: one row per client IP -> server IP.',
      },
      l4proto: { type: 'string', enum: ['tcp', 'udp'], description: 'Only TCP or only UDP flows.' },
      ip: { type: 'string', format: 'ip', description: 'Only flows with this address at either end.' },
      port: { type: 'integer', minimum: 1, maximum: 65535, description: 'Only flows with this port at either end.' },
      start: timeArg('Only flows active at or after this time'),
      end: timeArg('Only flows active at or before this time'),
      order_by: {
        type: 'string',
        enum: ['bytes', 'packets', 'recent', 'oldest'],
        default: 'bytes',
        description: 'bytes/packets: largest first; recent: latest activity first; oldest: earliest start first.',
      },
      limit: limitArg(100, 1000, 'flows or groups'),
    },
    additionalProperties: false,
  },
  outputSchema: {
    type: 'object',
    properties: {
      flows: { type: 'array', items: flowSchema },
      groups: { type: 'array', items: flowGroupSchema },
      total: { type: 'integer', minimum: 0, description: 'Matching flows or groups before the limit.' },
      returned: { type: 'integer', minimum: 0 },
      truncated: { type: 'boolean', description: 'True when more matched than were returned.' },
      nodes: nodesSchema,
    },
    required: ['total', 'returned', 'truncated', 'nodes'],
    additionalProperties: false,
  },
  annotations: { readOnlyHint: true, openWorldHint: false },
  async handler(args, ctx) {
    const result = await ctx.source.listFlows(
      {
        aggregate: args.aggregate,
        order_by: args.order_by,
        limit: args.limit,
        ...(args.l4proto ? { protocol: args.l4proto } : {}),
        ...(args.ip ? { ip: args.ip } : {}),
        ...(args.port ? { port: args.port } : {}),
        ...timeWindow(args),
      },
      { signal: ctx.signal },
    );
    const grouped = args.aggregate !== 'none';
    const rows = grouped ? result.groups.map(flowGroupView) : result.flows.map(flowView);
    const returned = rows.length;
    const truncated = result.total > returned;
    const what = grouped ? 'groups' : 'flows';
    const lines = grouped ? (rows as FlowGroupView[]).map(groupLine) : (rows as FlowView[]).map(flowLine);
    const header = `${returned} of ${result.total} ${what} by ${args.order_by} (nodes: ${nodesLine(result.nodes)})`;
    const hint = truncated ? '\nMore matched: narrow with ip, port, l4proto or start/end, raise limit, or use get_l4_flow_summary.' : '';
    return {
      structured: { [what]: rows, total: result.total, returned, truncated, nodes: result.nodes },
      text: [header, ...lines].join('\n') + hint,
    };
  },
};

interface SummaryArgs extends TimeArgs {
  l4proto?: L4Protocol;
  top: number;
}

export const getL4FlowSummary: ToolDefinition<SummaryArgs> = {
  name: 'get_l4_flow_summary',
  title: 'Summarise L4 flows',
  description:
    'One-screen overview of L4 traffic: total flows, packets and bytes, TCP vs UDP, unique clients and servers, ' +
    'top talkers by bytes and by packets (addresses, sent and received), and TCP handshake percentiles with their RTT band. ' +
    'Start here, then drill down with list_l4_flows.',
  inputSchema: {
    type: 'object',
    properties: {
      l4proto: { type: 'string', enum: ['tcp', 'udp'], description: 'Only TCP or only UDP flows.' },
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
      { top: args.top, ...(args.l4proto ? { protocol: args.l4proto } : {}), ...timeWindow(args) },
      { signal: ctx.signal },
    );
    const view = { ...flowSummaryView(s), nodes: s.nodes };
    const talkers = (list: typeof view.top_by_bytes): string =>
      list.map((t) => `${t.ip} (tx ${t.tx_packets} pkts/${t.tx_bytes} B, rx ${t.rx_packets} pkts/${t.rx_bytes} B, ${t.flows} flows)`).join('; ') || 'none';
    const lines = [
      `${view.total_flows} flows (${view.tcp.flows} tcp, ${view.udp.flows} udp), ${view.total_packets} packets, ${view.total_bytes} bytes, ` +
        `${view.unique_clients} clients, ${view.unique_servers} servers` +
        (view.first_seen ? `, ${view.first_seen} .. ${view.last_seen}` : ''),
      view.tcp_handshake_p50_us !== undefined
        ? `TCP handshake (SYN->ACK) p50/p90/p99 ${us(view.tcp_handshake_p50_us)}/${us(view.tcp_handshake_p90_us!)}/${us(view.tcp_handshake_p99_us!)} over ${view.tcp_handshakes} flows: ${view.tcp_handshake_band}`
        : 'TCP handshake: none measured (no SYN/ACK pairs seen)',
      `Top by bytes: ${talkers(view.top_by_bytes)}`,
      `Top by packets: ${talkers(view.top_by_packets)}`,
      `Nodes: ${nodesLine(view.nodes)}`,
    ];
    return { structured: view as unknown as Record<string, unknown>, text: lines.join('\n') };
  },
};
