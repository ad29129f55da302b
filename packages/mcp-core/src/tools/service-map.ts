import type { ToolDefinition } from '../registry';
import { buildServiceMap, serviceMapMermaid } from '../service-map';
import { QUERY_TO_ARGUMENT, inArgumentTerms, nodesLine, timeWindow, type TimeArgs } from './common';
import { limitArg, nodesSchema, timeArg } from './schemas';

interface GetServiceMapArgs extends TimeArgs {
  limit: number;
}

export const getServiceMap: ToolDefinition<GetServiceMapArgs> = {
  name: 'get_service_map',
  title: 'Service map',
  description:
    'Who talks to whom over a start/end window: nodes (addresses, or workloads when names are resolved) and client -> server edges with flows, bytes, ' +
    'TCP handshake p50/p99 and the API calls on the edge (requests, error rate, latency p50/p99); servers carry the calls they answered. The text is a Mermaid diagram. ' +
    'Keeps the heaviest edges by bytes (limit); for per-endpoint detail use get_api_stats, for one pair list_l4_flows.',
  inputSchema: {
    type: 'object',
    properties: {
      start: timeArg('Only traffic at or after this time'),
      end: timeArg('Only traffic at or before this time'),
      limit: limitArg(50, 500, 'edges'),
    },
    additionalProperties: false,
  },
  outputSchema: {
    type: 'object',
    properties: {
      nodes: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            id: { type: 'string' },
            label: { type: 'string' },
            ip: { type: 'string' },
            namespace: { type: 'string' },
            served: {
              type: 'object',
              properties: { requests: { type: 'integer' }, failures: { type: 'integer' }, error_rate: { type: 'number' }, latency_p99_us: { type: 'number' } },
              required: ['requests', 'failures', 'error_rate', 'latency_p99_us'],
              additionalProperties: false,
            },
          },
          required: ['id', 'label', 'ip'],
          additionalProperties: false,
        },
      },
      edges: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            from: { type: 'string' },
            to: { type: 'string' },
            flows: { type: 'integer' },
            bytes: { type: 'integer' },
            tcp_handshake_p50_us: { type: 'number' },
            tcp_handshake_p99_us: { type: 'number' },
            calls: {
              type: 'object',
              description: 'API calls on this edge (client -> server): count, failures, error rate, latency p50/p99 in microseconds.',
              properties: { requests: { type: 'integer' }, failures: { type: 'integer' }, error_rate: { type: 'number' }, latency_p50_us: { type: 'number' }, latency_p99_us: { type: 'number' } },
              required: ['requests', 'failures', 'error_rate', 'latency_p50_us', 'latency_p99_us'],
              additionalProperties: false,
            },
          },
          required: ['from', 'to', 'flows', 'bytes'],
          additionalProperties: false,
        },
      },
      truncated: { type: 'boolean', description: 'More address pairs exist than limit; the heaviest were kept.' },
      nodes_covered: nodesSchema,
    },
    required: ['nodes', 'edges', 'truncated', 'nodes_covered'],
    additionalProperties: false,
  },
  annotations: { readOnlyHint: true, openWorldHint: false },
  async handler(args, ctx) {
    const map = await inArgumentTerms(buildServiceMap(ctx.source, { ...timeWindow(args), limit: args.limit }, { signal: ctx.signal }), QUERY_TO_ARGUMENT);
    const header = `${map.nodes.length} endpoints, ${map.edges.length} edges${map.truncated ? ' (the heaviest by bytes; more exist)' : ''} (nodes: ${nodesLine(map.coverage)})`;
    return {
      structured: { nodes: map.nodes, edges: map.edges, truncated: map.truncated, nodes_covered: map.coverage },
      text: `${header}\n\`\`\`mermaid\n${serviceMapMermaid(map)}\n\`\`\``,
    };
  },
};
