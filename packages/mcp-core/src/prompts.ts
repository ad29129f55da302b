import { isIP } from 'node:net';
import type { GetPromptResult, Prompt } from '@modelcontextprotocol/sdk/types.js';
import { ToolDefinitionError } from './errors';
import { PAGING, RTT_BANDS, callOf, describeWindow, intValue, invalidPromptParams, windowArgs, windowOf, type PromptDefinition } from './prompt-kit';
import { compareTrafficPrompt, findErrorsPrompt, investigateFailedRequestPrompt, latencyAnalysisPrompt, securityAuditPrompt, traceRequestPrompt } from './prompts-l7';

/**
 * MCP prompts: the common investigations, written as step-by-step plans that name the tools to
 * call, with which arguments, in which order. Prompt arguments are strings (MCP says so); each
 * prompt validates its own and answers a missing or malformed one with a JSON-RPC
 * invalid-params error (-32602).
 */

const TCP_HEALTH_COUNTERS =
  'client_to_server.tcp and server_to_client.tcp: retransmissions (with fast_retransmissions and spurious_retransmissions), ' +
  'out_of_order, duplicate_acks, zero_windows, window_full, keep_alives (normal, not a problem), and lost_segments / ' +
  'acked_unseen_segments (these usually mean the capture missed packets, not that the network lost them); a counter that is ' +
  'not listed is zero';

export const networkHealthPrompt: PromptDefinition = {
  name: 'network_health',
  title: 'Network health check',
  description:
    'Assess network health from L4 flows: TCP handshake RTT bands (get_l4_flow_summary), the slowest address pairs and the ' +
    'TCP health counters of the busiest connections (list_l4_flows).',
  arguments: [...windowArgs],
  render(args) {
    const w = windowOf(this.name, args);
    return [
      `Assess the health of the network ${describeWindow(w)}, using the kubeshark tools in this order:`,
      '',
      `1. Call ${callOf('get_l4_flow_summary', { ...w, top: 10 })}. Note total flows, packets and bytes, TCP vs UDP, ` +
        'unique clients and servers, and the TCP handshake p50/p90/p99 (tcp_handshake_p50_us, ...) with its tcp_handshake_band.',
      `2. Rate handshake round-trip times with these bands: ${RTT_BANDS}. A p99 far above the p50 means a few slow paths, not a slow network.`,
      `3. Call ${callOf('list_l4_flows', { ...w, aggregate: 'ip_pair', order_by: 'bytes', limit: 50 })} and list the address pairs whose ` +
        'tcp_handshake_p90_us is 10,000 us or more (elevated or high), with their flows and bytes.',
      `4. Call ${callOf('list_l4_flows', { ...w, l4proto: 'tcp', order_by: 'bytes', limit: 50 })} and check the TCP health counters in ` +
        `${TCP_HEALTH_COUNTERS}. Also flag flows in state "reset" or with rst_count > 0, and flows stuck in "syn_sent" (no answer). ${PAGING}`,
      '5. Check the nodes list of every answer: a node that is unavailable or in error means its traffic is missing, not absent. ' +
        'If get_status or get_data_boundaries are offered, use them to confirm the window was captured and no capture drops occurred.',
      '',
      'Answer with: an overall verdict (healthy, degraded or unhealthy), the handshake band with p50/p90/p99 in milliseconds, the worst ' +
        'address pairs, TCP problems with flow ids as evidence, missing nodes, and what to investigate next (for one endpoint, the ' +
        'debug_connection prompt; for packet-level proof, export_pcap with those flow ids).',
    ].join('\n');
  },
};

/** "10.0.0.1:443", "[2001:db8::1]:443", "10.0.0.1" or "2001:db8::1" -> ip and port. */
function parseEndpoint(prompt: string, v: string): { ip: string; port?: number } {
  if (isIP(v) !== 0) return { ip: v };
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(v) ?? /^([^:]+):(\d+)$/.exec(v);
  if (m && isIP(m[1]!) !== 0) {
    const port = intValue(prompt, 'endpoint', m[2], 1, 65535)!;
    return { ip: m[1]!, port };
  }
  throw invalidPromptParams(`Prompt ${prompt}: argument "endpoint" must be an IP address or ip:port ([ipv6]:port for IPv6), got ${JSON.stringify(v)}`);
}

export const debugConnectionPrompt: PromptDefinition = {
  name: 'debug_connection',
  title: 'Debug a connection',
  description:
    'Investigate the connections of one address (and port): flows, state, handshake times and TCP health (list_l4_flows), ' +
    'its peers (aggregate ip_pair), a baseline (get_l4_flow_summary), then a PCAP for Wireshark (export_pcap). Needs ip or endpoint.',
  arguments: [
    { name: 'ip', description: 'IP address of the host to debug (this or endpoint is required).' },
    { name: 'endpoint', description: 'ip:port (or [ipv6]:port) of the connection end to debug; instead of ip and port.' },
    { name: 'port', description: 'Port (1-65535) to narrow to, at either end of the connection.' },
    ...windowArgs,
  ],
  render(args) {
    const ipArg = args.ip === '' ? undefined : args.ip;
    const endpointArg = args.endpoint === '' ? undefined : args.endpoint;
    if (ipArg === undefined && endpointArg === undefined) throw invalidPromptParams(`Prompt ${this.name}: missing required argument "ip" (or "endpoint")`);
    if (ipArg !== undefined && isIP(ipArg) === 0) throw invalidPromptParams(`Prompt ${this.name}: argument "ip" must be an IPv4 or IPv6 address, got ${JSON.stringify(ipArg)}`);
    const fromEndpoint = endpointArg !== undefined ? parseEndpoint(this.name, endpointArg) : undefined;
    if (ipArg !== undefined && fromEndpoint && fromEndpoint.ip !== ipArg) throw invalidPromptParams(`Prompt ${this.name}: "ip" and "endpoint" name different addresses`);
    const ip = ipArg ?? fromEndpoint!.ip;
    const portArg = intValue(this.name, 'port', args.port, 1, 65535);
    if (portArg !== undefined && fromEndpoint?.port !== undefined && portArg !== fromEndpoint.port) throw invalidPromptParams(`Prompt ${this.name}: "port" and "endpoint" name different ports`);
    const port = portArg ?? fromEndpoint?.port;
    const w = windowOf(this.name, args);
    const target = port !== undefined ? (isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`) : ip;
    const filter = { ip, ...(port !== undefined ? { port } : {}), ...w };
    return [
      `Debug the network connections of ${target} ${describeWindow(w)}, using the kubeshark tools in this order:`,
      '',
      '1. If get_data_boundaries is offered, call it first: confirm the window is inside what each node captured (flows and packets), ' +
        'so an empty answer means "no traffic" rather than "not captured".',
      `2. Call ${callOf('list_l4_flows', { ...filter, order_by: 'recent', limit: 50 })} for every flow to or from ${target}. ${PAGING}`,
      '3. For each flow read: state ("syn_sent" = no answer, "syn_received", "reset" = refused or aborted, "mid_stream" = handshake not captured, ' +
        '"closed" = clean), syn_count (above 1 = SYN retransmitted), rst_count, fin_count, tcp_completeness (31 = complete and closed with FIN), ' +
        `the handshake tcp_handshake_server_us against the bands ${RTT_BANDS}, and the TCP health counters in ${TCP_HEALTH_COUNTERS}.`,
      `4. Call ${callOf('list_l4_flows', { ...filter, aggregate: 'ip_pair', order_by: 'bytes', limit: 50 })} to see which peers it talks to, ` +
        'with per-pair handshake p50/p90/p99: one slow or failing peer points at that peer or its path, all peers slow points at this host.',
      `5. Call ${callOf('get_l4_flow_summary', { ...w, top: 10 })} as a baseline: compare this host's handshake times and error counts with the whole network.`,
      `6. Call export_pcap with the ids of the problem flows, e.g. ${callOf('export_pcap', { flow_ids: ['<id from step 2>'], ...w })} ` +
        `(or ${callOf('export_pcap', { ips: [ip], ...(port !== undefined ? { ports: [port] } : {}), ...w })}), and give the user the download ` +
        'link to open in Wireshark (pcapng; useful filters: tcp.analysis.flags, tcp.flags.reset == 1, Statistics > Conversations). If export_pcap is not offered, say so.',
      '',
      'Answer with: what is wrong (or that the connection looks healthy), the evidence (flow ids, states, handshake times, counters), ' +
        'which side is likely at fault, and the PCAP link.',
    ].join('\n');
  },
};

export const showTopologyPrompt: PromptDefinition = {
  name: 'show_topology',
  title: 'Show the network topology',
  description:
    'Map who talks to whom: top talkers (get_l4_flow_summary) and client -> server address pairs (list_l4_flows with aggregate ip_pair), ' +
    'drawn as a Mermaid graph with bytes and handshake times on the edges.',
  arguments: [...windowArgs, { name: 'top', description: 'How many top talkers and edges to show (1-100, default 20).' }],
  render(args) {
    const w = windowOf(this.name, args);
    const top = intValue(this.name, 'top', args.top, 1, 100) ?? 20;
    return [
      `Show the network topology ${describeWindow(w)}, using the kubeshark tools in this order:`,
      '',
      `1. Call ${callOf('get_l4_flow_summary', { ...w, top: Math.min(top, 100) })} for the top talkers by bytes and by packets ` +
        '(each with tx/rx packets and bytes and its number of flows), unique clients and servers, and the handshake band.',
      `2. Call ${callOf('list_l4_flows', { ...w, aggregate: 'ip_pair', order_by: 'bytes', limit: top })} for the edges: one row per ` +
        `client IP -> server IP with flows (tcp/udp), bytes each way and handshake p50/p90/p99. ${PAGING}`,
      '3. Where endpoints carry Kubernetes names (pod, namespace, service), label the nodes with them; otherwise with the address.',
      '',
      `Answer with a Mermaid diagram (graph LR) of the top ${top} edges, client --> server, each edge labelled with total bytes and the ` +
        `handshake p50 in ms, followed by a short table (client, server, flows, bytes, p50 handshake, band using ${RTT_BANDS}). Point out hubs ` +
        '(addresses with many peers), heavy edges, slow edges and addresses outside the private ranges.',
    ].join('\n');
  },
};


/** Prompts by name, as prompts/list and prompts/get serve them. */
/** Every built-in prompt, in the order prompts/list shows them. */
export const BUILTIN_PROMPTS: readonly PromptDefinition[] = [
  investigateFailedRequestPrompt,
  findErrorsPrompt,
  latencyAnalysisPrompt,
  networkHealthPrompt,
  securityAuditPrompt,
  showTopologyPrompt,
  compareTrafficPrompt,
  debugConnectionPrompt,
  traceRequestPrompt,
];

export class PromptRegistry {
  private readonly prompts = new Map<string, PromptDefinition>();

  constructor(prompts: readonly PromptDefinition[] = BUILTIN_PROMPTS) {
    for (const p of prompts) this.register(p);
  }

  /** Adds a prompt; a duplicate or malformed definition is a ToolDefinitionError (fails at start-up). */
  register(p: PromptDefinition): void {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(p.name)) throw new ToolDefinitionError(`prompt name "${p.name}" must be 1-64 letters, digits, "_", "." or "-"`);
    if (this.prompts.has(p.name)) throw new ToolDefinitionError(`prompt "${p.name}" is registered twice`);
    const args = new Set<string>();
    for (const a of p.arguments) {
      if (args.has(a.name)) throw new ToolDefinitionError(`prompt "${p.name}": argument "${a.name}" is declared twice`);
      args.add(a.name);
    }
    if (typeof p.render !== 'function') throw new ToolDefinitionError(`prompt "${p.name}" has no render function`);
    this.prompts.set(p.name, p);
  }

  has(name: string): boolean {
    return this.prompts.has(name);
  }

  list(): Prompt[] {
    return [...this.prompts.values()].map((p) => ({
      name: p.name,
      title: p.title,
      description: p.description,
      arguments: p.arguments.map((a) => ({ name: a.name, description: a.description, required: a.required ?? false })),
    }));
  }

  get(name: string, args: Readonly<Record<string, string>> = {}): GetPromptResult {
    const p = this.prompts.get(name);
    if (!p) throw invalidPromptParams(`Unknown prompt: ${name}. Available: ${[...this.prompts.keys()].join(', ')}`);
    const known = new Set(p.arguments.map((a) => a.name));
    const unknown = Object.keys(args).filter((k) => !known.has(k));
    if (unknown.length > 0) throw invalidPromptParams(`Prompt ${name}: unknown argument ${unknown.map((k) => `"${k}"`).join(', ')}; it takes ${[...known].join(', ')}`);
    for (const a of p.arguments) {
      if (a.required && (args[a.name] === undefined || args[a.name] === '')) throw invalidPromptParams(`Prompt ${name}: missing required argument "${a.name}"`);
    }
    return {
      description: p.description,
      messages: [{ role: 'user', content: { type: 'text', text: p.render(args) } }],
    };
  }
}
