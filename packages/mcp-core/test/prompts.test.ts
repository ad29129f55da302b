import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import { BUILTIN_PROMPTS, PromptRegistry, TOOL_CATALOGUE, ToolRegistry, createMcpServer, getL4FlowSummary, listL4Flows } from '../src/index';
import { CapableSource, MemorySource } from './memory-source';

const open: { client: Client; server: Server }[] = [];

async function connect(): Promise<Client> {
  const registry = new ToolRegistry();
  registry.register(listL4Flows);
  registry.register(getL4FlowSummary);
  const server = createMcpServer({ registry, source: new MemorySource(), serverInfo: { name: 'test-server', version: '1.0.0' } });
  const client = new Client({ name: 'test-client', version: '0.0.1' });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  await client.connect(clientSide);
  open.push({ client, server });
  return client;
}

afterEach(async () => {
  for (const { client, server } of open.splice(0)) {
    await client.close();
    await server.close();
  }
});

async function getText(client: Client, name: string, args: Record<string, string> = {}): Promise<string> {
  const r = await client.getPrompt({ name, arguments: args });
  expect(r.messages).toHaveLength(1);
  expect(r.messages[0]!.role).toBe('user');
  const content = r.messages[0]!.content;
  expect(content.type).toBe('text');
  return (content as { text: string }).text;
}

async function invalidParams(client: Client, name: string, args: Record<string, string>): Promise<McpError> {
  const err = await client.getPrompt({ name, arguments: args }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(McpError);
  expect((err as McpError).code).toBe(ErrorCode.InvalidParams);
  return err as McpError;
}

describe('prompts', () => {
  it('advertises the prompts capability and lists the nine prompts with their arguments', async () => {
    const client = await connect();
    expect(client.getServerCapabilities()?.prompts).toBeDefined();
    const { prompts } = await client.listPrompts();
    const args = Object.fromEntries(prompts.map((p) => [p.name, (p.arguments ?? []).map((a) => a.name)]));
    expect(args).toEqual({
      investigate_failed_request: ['time', 'window_minutes', 'path', 'search'],
      find_errors: ['start', 'end', 'namespace'],
      latency_analysis: ['start', 'end', 'threshold_ms', 'namespace'],
      network_health: ['start', 'end'],
      security_audit: ['start', 'end'],
      show_topology: ['start', 'end', 'top'],
      compare_traffic: ['baseline_start', 'baseline_end', 'compare_start', 'compare_end'],
      debug_connection: ['ip', 'endpoint', 'port', 'start', 'end'],
      trace_request: ['id'],
    });
    expect(prompts.filter((p) => (p.arguments ?? []).some((a) => a.required)).map((p) => p.name)).toEqual(['compare_traffic', 'trace_request']);
    for (const p of prompts) {
      expect(p.description).toEqual(expect.any(String));
      expect(p.title).toEqual(expect.any(String));
    }
    expect(prompts.find((p) => p.name === 'debug_connection')!.description).toContain('export_pcap');
  });

  it('network_health names the tools, the RTT bands and the TCP health counters', async () => {
    const client = await connect();
    const t = await getText(client, 'network_health', { start: '2024-05-01T14:00:00Z', end: '1714575600000' });
    expect(t).toContain('get_l4_flow_summary {"start":"2024-05-01T14:00:00Z","end":1714575600000,"top":10}');
    expect(t).toContain('list_l4_flows {"start":"2024-05-01T14:00:00Z","end":1714575600000,"aggregate":"ip_pair"');
    for (const band of ['< 1 ms excellent', '1-10 ms good', '10-100 ms elevated', '> 100 ms high']) expect(t).toContain(band);
    for (const counter of ['retransmissions', 'out_of_order', 'duplicate_acks', 'zero_windows', 'lost_segments']) expect(t).toContain(counter);
    expect(t).toContain('nextCursor');
    // Without arguments it covers everything.
    expect(await getText(client, 'network_health')).toContain('over everything captured');
  });

  it('debug_connection takes ip and port, or an endpoint, and ends with export_pcap for Wireshark', async () => {
    const client = await connect();
    const t = await getText(client, 'debug_connection', { ip: '10.0.0.1', port: '443', start: '1714572900000' });
    const order = ['list_l4_flows {"ip":"10.0.0.1","port":443,"start":1714572900000,"order_by":"recent"', 'aggregate":"ip_pair"', 'get_l4_flow_summary', 'export_pcap'];
    const at = order.map((s) => t.indexOf(s));
    expect(at.every((i) => i >= 0)).toBe(true);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
    expect(t).toContain('Wireshark');
    expect(t).toContain('10.0.0.1:443');
    const v6 = await getText(client, 'debug_connection', { endpoint: '[2001:db8::1]:8443' });
    expect(v6).toContain('[2001:db8::1]:8443');
    expect(v6).toContain('"ip":"2001:db8::1","port":8443');
    expect(await getText(client, 'debug_connection', { endpoint: '10.0.0.9' })).toContain('list_l4_flows {"ip":"10.0.0.9","order_by":"recent"');
  });

  it('show_topology uses top talkers and ip_pair aggregates', async () => {
    const client = await connect();
    const t = await getText(client, 'show_topology', { top: '5' });
    expect(t).toContain('get_l4_flow_summary {"top":5}');
    expect(t).toContain('list_l4_flows {"aggregate":"ip_pair","order_by":"bytes","limit":5}');
    expect(t).toContain('Mermaid');
  });

  it.each<[string, Record<string, string>, RegExp]>([
    ['debug_connection', {}, /missing required argument "ip" \(or "endpoint"\)/],
    ['debug_connection', { port: '443' }, /missing required argument "ip"/],
    ['debug_connection', { ip: 'server-1' }, /"ip" must be an IPv4 or IPv6 address/],
    ['debug_connection', { endpoint: '10.0.0.1:99999' }, /"endpoint" must be an integer from 1 to 65535/],
    ['debug_connection', { endpoint: 'db:5432' }, /"endpoint" must be an IP address or ip:port/],
    ['debug_connection', { ip: '10.0.0.1', port: '0' }, /"port" must be an integer from 1 to 65535/],
    ['debug_connection', { ip: '10.0.0.1', endpoint: '10.0.0.2:80' }, /different addresses/],
    ['network_health', { start: 'yesterday' }, /"start" must be an RFC 3339 time/],
    ['network_health', { start: '2024-05-01T15:00:00Z', end: '2024-05-01T14:00:00Z' }, /"end" is before "start"/],
    ['network_health', { colour: 'red' }, /unknown argument "colour"/],
    ['show_topology', { top: '1000' }, /"top" must be an integer from 1 to 100/],
    ['no_such_prompt', {}, /Unknown prompt: no_such_prompt/],
    ['investigate_failed_request', { time: '14:15' }, /"time" must be an RFC 3339 time/],
    ['investigate_failed_request', { time: '2024-05-01T14:15:00Z', window_minutes: '0' }, /"window_minutes" must be an integer from 1 to 1440/],
    ['latency_analysis', { threshold_ms: 'fast' }, /"threshold_ms" must be an integer/],
    ['compare_traffic', { baseline_start: '2024-05-01T14:00:00Z', baseline_end: '2024-05-01T15:00:00Z', compare_start: '2024-05-01T16:00:00Z' }, /missing required argument "compare_end"/],
    ['compare_traffic', { baseline_start: '2024-05-01T15:00:00Z', baseline_end: '2024-05-01T14:00:00Z', compare_start: '2024-05-01T16:00:00Z', compare_end: '2024-05-01T17:00:00Z' }, /"end" is before "start"/],
    ['trace_request', {}, /missing required argument "id"/],
    ['find_errors', { namespace: 'Shop Team' }, /"namespace" must be a Kubernetes namespace name/],
    ['trace_request', { id: 'GET /checkout' }, /"id" must be an API call id/],
  ])('%s with %j is an invalid-params error', async (name, args, message) => {
    const client = await connect();
    const err = await invalidParams(client, name, args);
    expect(err.message).toMatch(message);
  });
});

describe('every tool call a prompt writes out is one the tools accept', () => {
  const SAMPLE_ARGS: Record<string, Record<string, string>> = {
    investigate_failed_request: { time: '2024-05-01T14:15:00Z', window_minutes: '10', path: '/checkout', search: '12345' },
    find_errors: { start: '2024-05-01T14:00:00Z', end: '1714575600000', namespace: 'shop' },
    latency_analysis: { start: '2024-05-01T14:00:00Z', threshold_ms: '250' },
    network_health: { start: '2024-05-01T14:00:00Z', end: '2024-05-01T15:00:00Z' },
    security_audit: {},
    show_topology: { top: '7' },
    compare_traffic: { baseline_start: '2024-05-01T14:00:00Z', baseline_end: '2024-05-01T15:00:00Z', compare_start: '1714579200000', compare_end: '1714582800000' },
    debug_connection: { endpoint: '10.0.0.1:443', start: '2024-05-01T14:00:00Z' },
    trace_request: { id: 'node-a/12/3' },
  };

  it.each(BUILTIN_PROMPTS.map((p) => p.name))('%s', async (name) => {
    const registry = new ToolRegistry();
    for (const { tool } of TOOL_CATALOGUE) registry.register(tool);
    const prompts = new PromptRegistry();
    const text = (prompts.get(name, SAMPLE_ARGS[name]!).messages[0]!.content as { text: string }).text;
    // Every `tool {json}` in the text: the tool exists and its arguments validate against its schema.
    const calls = [...text.matchAll(/\b([a-z][a-z0-9]*(?:_[a-z0-9]+)+) (\{[^\n]*?\})(?=[ .,:;)]|$)/gm)];
    expect(calls.length).toBeGreaterThan(0);
    const source = new CapableSource();
    for (const [, tool, json] of calls) {
      expect(registry.has(tool!)).toBe(true);
      const args = JSON.parse(json!) as Record<string, unknown>;
      if (JSON.stringify(args).includes('<')) continue; // a placeholder the model fills in
      const r = await registry.call(tool!, args, { source, signal: new AbortController().signal });
      const message = (r.content[0] as { text: string }).text;
      expect(message).not.toMatch(/^Invalid arguments/);
    }
    // Tool names mentioned in prose exist too.
    for (const [, word] of text.matchAll(/\b((?:list|get|export|create|delete)_[a-z0-9_]+)\b/g)) expect(registry.has(word!)).toBe(true);
  });
});
