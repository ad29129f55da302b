import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import { ToolRegistry, createMcpServer, getL4FlowSummary, listL4Flows } from '../src/index';
import { MemorySource } from './memory-source';

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
  it('advertises the prompts capability and lists the three prompts with their arguments', async () => {
    const client = await connect();
    expect(client.getServerCapabilities()?.prompts).toBeDefined();
    const { prompts } = await client.listPrompts();
    expect(prompts.map((p) => p.name)).toEqual(['network_health', 'debug_connection', 'show_topology']);
    const args = Object.fromEntries(prompts.map((p) => [p.name, (p.arguments ?? []).map((a) => a.name)]));
    expect(args).toEqual({
      network_health: ['start', 'end'],
      debug_connection: ['ip', 'endpoint', 'port', 'start', 'end'],
      show_topology: ['start', 'end', 'top'],
    });
    for (const p of prompts) {
      expect(p.description).toEqual(expect.any(String));
      expect(p.title).toEqual(expect.any(String));
    }
    expect(prompts[1]!.description).toContain('export_pcap');
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
  ])('%s with %j is an invalid-params error', async (name, args, message) => {
    const client = await connect();
    const err = await invalidParams(client, name, args);
    expect(err.message).toMatch(message);
  });
});
