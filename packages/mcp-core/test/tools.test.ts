import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { ErrorCode, McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { DEFAULT_INSTRUCTIONS, ToolRegistry, createMcpServer, getL4FlowSummary, listL4Flows, type ToolDefinition } from '../src/index';
import { MemorySource, emptySummary, ipPairGroup, summaryWithHandshake, tcpFlow, udpFlow } from './memory-source';

interface Connected {
  client: Client;
  server: Server;
}

const open: Connected[] = [];

async function connect(source: MemorySource, registry = builtinRegistry()): Promise<Connected> {
  const server = createMcpServer({ registry, source, serverInfo: { name: 'test-server', version: '1.2.3' } });
  const client = new Client({ name: 'test-client', version: '0.0.1' });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  await client.connect(clientSide);
  // The client compiles the output schemas from tools/list and checks every callTool result
  // against them: a call that resolves carries structuredContent conforming to its schema.
  await client.listTools();
  const c = { client, server };
  open.push(c);
  return c;
}

function builtinRegistry(): ToolRegistry {
  const registry = new ToolRegistry();
  registry.register(listL4Flows);
  registry.register(getL4FlowSummary);
  return registry;
}

afterEach(async () => {
  for (const { client, server } of open.splice(0)) {
    await client.close();
    await server.close();
  }
});

async function call(client: Client, name: string, args: Record<string, unknown>): Promise<CallToolResult> {
  return (await client.callTool({ name, arguments: args })) as CallToolResult;
}

const text = (r: CallToolResult): string => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');

/** flowView(tcpFlow), written out by hand: 3 s long, 10 + 8 packets, 1500 + 12000 bytes. */
const tcpFlowView = {
  id: 'node-a/1',
  node: 'node-a',
  protocol: 'tcp',
  state: 'closed',
  client: { ip: '10.0.0.1', port: 51000, pod: 'web-0', namespace: 'shop' },
  server: { ip: '10.0.0.2', port: 80, service: 'api', namespace: 'shop' },
  client_to_server: { packets: 10, bytes: 1500, payload_bytes: 900, pps: 3.33, bps: 4000 },
  server_to_client: { packets: 8, bytes: 12000, payload_bytes: 11000, pps: 2.67, bps: 32000 },
  totals: { packets: 18, bytes: 13500, pps: 6, bps: 36000 },
  first_seen: '2024-05-01T14:16:00.123456Z',
  last_seen: '2024-05-01T14:16:03.123456Z',
  duration_ms: 3000,
  tcp_handshake_client_us: 120,
  tcp_handshake_server_us: 450,
  tcp_handshake_p50_us: 450,
  tcp_handshake_p90_us: 450,
  tcp_handshake_p99_us: 450,
  syn_count: 2,
  fin_count: 2,
  rst_count: 0,
};

/** flowView(udpFlow): an instant, so no rates; UDP, so no TCP fields. */
const udpFlowView = {
  id: 'node-a/2',
  node: 'node-a',
  protocol: 'udp',
  state: 'active',
  client: { ip: '10.0.0.3', port: 5353 },
  server: { ip: '10.0.0.1', port: 53 },
  client_to_server: { packets: 1, bytes: 80, payload_bytes: 38 },
  server_to_client: { packets: 0, bytes: 0, payload_bytes: 0 },
  totals: { packets: 1, bytes: 80 },
  first_seen: '2024-05-01T14:16:01.000042Z',
  last_seen: '2024-05-01T14:16:01.000042Z',
  duration_ms: 0,
};

describe('MCP server over the SDK client', () => {
  it('initialises with server info, tools capability and the default instructions', async () => {
    const { client } = await connect(new MemorySource());
    expect(client.getServerVersion()).toEqual({ name: 'test-server', version: '1.2.3' });
    expect(client.getServerCapabilities()?.tools).toBeDefined();
    expect(client.getInstructions()).toBe(DEFAULT_INSTRUCTIONS);
  });

  it('lists both L4 tools with input and output schemas and readOnlyHint', async () => {
    const { client } = await connect(new MemorySource());
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toEqual(['list_l4_flows', 'get_l4_flow_summary']);
    for (const t of tools) {
      expect(t.inputSchema.type).toBe('object');
      expect(t.outputSchema?.type).toBe('object');
      expect(t.annotations?.readOnlyHint).toBe(true);
      expect(t.description).toEqual(expect.any(String));
    }
    const list = tools[0]!;
    expect(Object.keys(list.inputSchema.properties ?? {}).sort()).toEqual(['aggregate', 'cursor', 'end', 'ip', 'kfl', 'l4proto', 'limit', 'namespace', 'order_by', 'pod', 'port', 'service', 'start']);
    expect(list.outputSchema?.required).toEqual(['total', 'offset', 'returned', 'truncated', 'nodes']);
    const summary = tools[1]!;
    expect(Object.keys(summary.inputSchema.properties ?? {}).sort()).toEqual(['end', 'kfl', 'l4proto', 'start', 'top']);
  });

  it('rejects an unknown tool with a JSON-RPC InvalidParams error', async () => {
    const { client } = await connect(new MemorySource());
    const err = await client.callTool({ name: 'list_l7_requests', arguments: {} }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(McpError);
    expect((err as McpError).code).toBe(ErrorCode.InvalidParams);
    expect((err as McpError).code).toBe(-32602);
    expect((err as McpError).message).toContain('list_l7_requests');
    expect((err as McpError).message).toContain('list_l4_flows, get_l4_flow_summary');
  });

  it('has the client check structured results against the listed output schema', async () => {
    // Evidence that the SDK Client validates: a tool whose advertised schema (mutated after
    // registration, so the server still passes it) disagrees with what it returns is rejected.
    const registry = new ToolRegistry();
    const outputSchema = { type: 'object' as const, properties: { n: { type: 'integer' } }, required: ['n'] };
    const drifting: ToolDefinition = {
      name: 'drifting',
      title: 'Drifting',
      description: 'Returns n.',
      inputSchema: { type: 'object' },
      outputSchema,
      annotations: { readOnlyHint: true },
      handler: async () => ({ structured: { n: 1 }, text: 'n=1' }),
    };
    registry.register(drifting);
    outputSchema.properties.n = { type: 'string' };
    const { client } = await connect(new MemorySource(), registry);
    await expect(client.callTool({ name: 'drifting', arguments: {} })).rejects.toThrow(/output schema/);
  });
});

describe('list_l4_flows', () => {
  it('translates the arguments into exactly one source query', async () => {
    const source = new MemorySource([tcpFlow]);
    const { client } = await connect(source);
    const result = await call(client, 'list_l4_flows', {
      ip: '10.0.0.1',
      port: 80,
      l4proto: 'tcp',
      start: '2024-05-01T14:15:00Z',
      end: 1714573200000,
      limit: 5,
      order_by: 'recent',
    });
    expect(result.isError).toBeFalsy();
    expect(source.flowQueries).toStrictEqual([
      {
        aggregate: 'none',
        order_by: 'recent',
        limit: 5,
        protocol: 'tcp',
        ip: '10.0.0.1',
        port: 80,
        since_us: 1_714_572_900_000_000,
        until_us: 1_714_573_200_000_000,
      },
    ]);
    expect(source.summaryQueries).toEqual([]);
    expect(source.signals[0]).toBeInstanceOf(AbortSignal);
  });

  it('returns flows as flow views with rates, handshake percentiles and microsecond times', async () => {
    const source = new MemorySource([tcpFlow, udpFlow]);
    const { client } = await connect(source);
    const result = await call(client, 'list_l4_flows', { order_by: 'recent' });
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toStrictEqual({
      flows: [tcpFlowView, udpFlowView],
      total: 2,
      offset: 0,
      returned: 2,
      truncated: false,
      nodes: [{ node: 'node-a', state: 'ok' }],
    });
    // The JSON rendering carries the same object, the text a readable line per flow.
    expect(JSON.parse((result.content[1] as { text: string }).text)).toEqual(result.structuredContent);
    const lines = (result.content[0] as { text: string }).text.split('\n');
    expect(lines[0]).toBe('2 of 2 flows by recent (nodes: node-a)');
    expect(lines[1]).toContain('tcp 10.0.0.1:51000 -> 10.0.0.2:80 [closed]');
    expect(lines[1]).toContain('handshake 450 us (SYN->SYN-ACK 120 us)');
    expect(lines[2]).toContain('udp 10.0.0.3:5353 -> 10.0.0.1:53 [active]');
    expect(text(result)).not.toContain('More matched');
  });

  it('sets truncated when the source matched more than it returned', async () => {
    const source = new MemorySource([tcpFlow, udpFlow], [], undefined, 40, [
      { node: 'node-a', state: 'ok' },
      { node: 'node-b', state: 'error', message: 'timeout' },
    ]);
    const { client } = await connect(source);
    const result = await call(client, 'list_l4_flows', { limit: 2 });
    expect(result.structuredContent).toMatchObject({ total: 40, returned: 2, truncated: true });
    expect(text(result)).toContain('2 of 40 flows by bytes (nodes: node-a, node-b error (timeout))');
    expect(text(result)).toContain('More matched');
  });

  it('returns groups for aggregate "ip_pair"', async () => {
    const source = new MemorySource([tcpFlow], [ipPairGroup]);
    const { client } = await connect(source);
    const result = await call(client, 'list_l4_flows', { aggregate: 'ip_pair', l4proto: 'tcp' });
    expect(result.isError).toBeFalsy();
    expect(source.flowQueries).toStrictEqual([{ aggregate: 'ip_pair', order_by: 'bytes', limit: 100, protocol: 'tcp' }]);
    expect(result.structuredContent).toStrictEqual({
      groups: [
        {
          key: '10.0.0.1 -> 10.0.0.2',
          client: { ip: '10.0.0.1' },
          server: { ip: '10.0.0.2' },
          flows: 3,
          tcp_flows: 3,
          udp_flows: 0,
          // 10 s: 30 pkts / 4500 B and 24 pkts / 36000 B.
          client_to_server: { packets: 30, bytes: 4500, payload_bytes: 2700, pps: 3, bps: 3600 },
          server_to_client: { packets: 24, bytes: 36000, payload_bytes: 33000, pps: 2.4, bps: 28800 },
          totals: { packets: 54, bytes: 40500, pps: 5.4, bps: 32400 },
          first_seen: '2024-05-01T14:16:00.123456Z',
          last_seen: '2024-05-01T14:16:10.123456Z',
          tcp_handshakes: 3,
          tcp_handshake_p50_us: 400,
          tcp_handshake_p90_us: 480,
          tcp_handshake_p99_us: 500,
          tcp_handshake_client_p50_us: 100,
          tcp_handshake_client_p90_us: 130,
          tcp_handshake_client_p99_us: 140,
        },
      ],
      total: 1,
      offset: 0,
      returned: 1,
      truncated: false,
      nodes: [{ node: 'node-a', state: 'ok' }],
    });
    expect(text(result)).toContain('1 of 1 groups by bytes');
    expect(text(result)).toContain('handshake p50/p90/p99 400 us/480 us/500 us over 3');
  });

  it('answers an inverted window with an isError naming "end", without asking the source', async () => {
    const source = new MemorySource([tcpFlow]);
    const { client } = await connect(source);
    const result = await call(client, 'list_l4_flows', { start: '2024-05-01T14:20:00Z', end: '2024-05-01T14:15:00Z' });
    expect(result.isError).toBe(true);
    expect(result.structuredContent).toBeUndefined();
    expect(text(result)).toContain('"end"');
    expect(text(result)).toContain('[invalid_argument]');
    expect(source.flowQueries).toEqual([]);
  });

  it('answers invalid arguments with an isError result, not a protocol error', async () => {
    const source = new MemorySource([tcpFlow]);
    const { client } = await connect(source);
    const result = await call(client, 'list_l4_flows', { ip: 'not-an-ip', limit: 0 });
    expect(result.isError).toBe(true);
    expect(text(result)).toContain('"ip" must be an IPv4 or IPv6 address');
    expect(text(result)).toContain('"limit" must be >= 1');
    expect(source.flowQueries).toEqual([]);
  });

  it('aborts the source call when the client cancels the request', async () => {
    const source = new MemorySource();
    let abortReason: unknown;
    source.listFlows = (query, ctx) =>
      new Promise((_resolve, reject) => {
        source.flowQueries.push(query);
        ctx.signal.addEventListener('abort', () => {
          abortReason = ctx.signal.reason;
          reject(new Error('aborted'));
        });
      });
    const { client } = await connect(source);
    const ac = new AbortController();
    const pending = client.callTool({ name: 'list_l4_flows', arguments: {} }, undefined, { signal: ac.signal });
    await waitFor(() => source.flowQueries.length === 1);
    ac.abort('user gave up');
    await expect(pending).rejects.toBeDefined();
    await waitFor(() => abortReason !== undefined);
    expect(String(abortReason)).toContain('user gave up');
  });
});

describe('TCP health counters in flow rows', () => {
  it('lists only the counters above zero ({} for a clean direction), and the row still passes its output schema', async () => {
    const health = { retransmissions: 3, fast_retransmissions: 0, spurious_retransmissions: 1, out_of_order: 0, duplicate_acks: 7, zero_windows: 0, keep_alives: 0, window_full: 0, lost_segments: 0, acked_unseen_segments: 0 };
    const clean = { retransmissions: 0, fast_retransmissions: 0, spurious_retransmissions: 0, out_of_order: 0, duplicate_acks: 0, zero_windows: 0, keep_alives: 0, window_full: 0, lost_segments: 0, acked_unseen_segments: 0 };
    const flow = { ...tcpFlow, client_to_server: { ...tcpFlow.client_to_server, tcp: health }, server_to_client: { ...tcpFlow.server_to_client, tcp: clean } };
    const { client } = await connect(new MemorySource([flow, udpFlow]));
    const result = await call(client, 'list_l4_flows', { order_by: 'recent' });
    expect(result.isError).toBeFalsy(); // the SDK client checked structuredContent against the output schema
    const [tcp, udp] = (result.structuredContent as { flows: Record<string, Record<string, unknown>>[] }).flows;
    expect(tcp!.client_to_server!.tcp).toStrictEqual({ retransmissions: 3, spurious_retransmissions: 1, duplicate_acks: 7 });
    expect(tcp!.server_to_client!.tcp).toStrictEqual({});
    expect(udp!.client_to_server).not.toHaveProperty('tcp');
  });
});

describe('get_l4_flow_summary', () => {
  it('passes top, protocol and window to the source', async () => {
    const source = new MemorySource([], [], summaryWithHandshake(500));
    const { client } = await connect(source);
    await call(client, 'get_l4_flow_summary', {});
    await call(client, 'get_l4_flow_summary', { l4proto: 'udp', top: 3, start: 1714572900000, end: '2024-05-01T14:20:00.5Z' });
    expect(source.summaryQueries).toStrictEqual([
      { top: 10 },
      { top: 3, protocol: 'udp', since_us: 1_714_572_900_000_000, until_us: 1_714_573_200_500_000 },
    ]);
  });

  it('returns the summary view with handshake percentiles, band, times and nodes', async () => {
    const source = new MemorySource([], [], summaryWithHandshake(5000));
    const { client } = await connect(source);
    const result = await call(client, 'get_l4_flow_summary', {});
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toStrictEqual({
      total_flows: 2,
      total_packets: 19,
      total_bytes: 13580,
      tcp: { flows: 1, packets: 18, bytes: 13500 },
      udp: { flows: 1, packets: 1, bytes: 80 },
      unique_clients: 2,
      unique_servers: 2,
      top_by_bytes: [{ ip: '10.0.0.2', tx_packets: 8, rx_packets: 10, tx_bytes: 12000, rx_bytes: 1500, flows: 1 }],
      top_by_packets: [{ ip: '10.0.0.1', tx_packets: 10, rx_packets: 8, tx_bytes: 1500, rx_bytes: 12000, flows: 2 }],
      tcp_handshakes: 1,
      tcp_handshake_p50_us: 5000,
      tcp_handshake_p90_us: 10000,
      tcp_handshake_p99_us: 15000,
      tcp_handshake_band: 'good',
      first_seen: '2024-05-01T14:16:00.123456Z',
      last_seen: '2024-05-01T14:16:03.123456Z',
      nodes: [
        { node: 'node-a', state: 'ok' },
        { node: 'node-b', state: 'unavailable', message: 'connection refused' },
      ],
    });
    const t = text(result);
    expect(t).toContain('2 flows (1 tcp, 1 udp), 19 packets, 13580 bytes, 2 clients, 2 servers');
    expect(t).toContain('p50/p90/p99 5000 us/10000 us/15000 us over 1 flows: good');
    expect(t).toContain('Nodes: node-a, node-b unavailable (connection refused)');
  });

  it.each<[number, string]>([
    [450, 'excellent'],
    [999, 'excellent'],
    [1000, 'good'],
    [5000, 'good'],
    [9999, 'good'],
    [10_000, 'elevated'],
    [45_000, 'elevated'],
    [99_999, 'elevated'],
    [250_000, 'high'],
  ])('puts a p50 handshake of %d us in the %s band', async (p50, band) => {
    const { client } = await connect(new MemorySource([], [], summaryWithHandshake(p50)));
    const result = await call(client, 'get_l4_flow_summary', {});
    expect(result.isError).toBeFalsy();
    expect(result.structuredContent).toMatchObject({ tcp_handshake_p50_us: p50, tcp_handshake_band: band });
    expect(text(result)).toContain(`: ${band}`);
  });

  it('leaves out the band, percentiles and times when nothing was seen', async () => {
    const { client } = await connect(new MemorySource([], [], emptySummary()));
    const result = await call(client, 'get_l4_flow_summary', {});
    expect(result.isError).toBeFalsy();
    const s = result.structuredContent!;
    expect(s.tcp_handshakes).toBe(0);
    for (const key of ['tcp_handshake_band', 'tcp_handshake_p50_us', 'first_seen', 'last_seen']) expect(s).not.toHaveProperty(key);
    expect(text(result)).toContain('TCP handshake: none measured');
  });

  it('answers an inverted window with an isError naming "end"', async () => {
    const source = new MemorySource([], [], summaryWithHandshake(500));
    const { client } = await connect(source);
    const result = await call(client, 'get_l4_flow_summary', { start: 1714573200000, end: 1714572900000 });
    expect(result.isError).toBe(true);
    expect(text(result)).toContain('"end"');
    expect(source.summaryQueries).toEqual([]);
  });
});

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(cond: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await delay(10);
  }
}
