import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { ErrorCode, McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import {
  CHARS_PER_TOKEN,
  DEFAULT_MAX_RESULT_TOKENS,
  ToolDefinitionError,
  ToolRegistry,
  createMcpServer,
  encodeCursor,
  getL4FlowSummary,
  listL4Flows,
  type FlowGroup,
  type Talker,
  type ToolDefinition,
} from '../src/index';
import { MemorySource, ipPairGroup, manyFlows, summaryWithHandshake } from './memory-source';

const open: { client: Client; server: Server }[] = [];

async function connect(source: MemorySource, registry = new ToolRegistry()): Promise<Client> {
  if (!registry.has('list_l4_flows')) registry.register(listL4Flows);
  if (!registry.has('get_l4_flow_summary')) registry.register(getL4FlowSummary);
  const server = createMcpServer({ registry, source, serverInfo: { name: 'test-server', version: '1.0.0' } });
  const client = new Client({ name: 'test-client', version: '0.0.1' });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  await client.connect(clientSide);
  await client.listTools(); // so the client checks every result against its output schema
  open.push({ client, server });
  return client;
}

afterEach(async () => {
  for (const { client, server } of open.splice(0)) {
    await client.close();
    await server.close();
  }
});

const call = async (client: Client, args: Record<string, unknown>, name = 'list_l4_flows'): Promise<CallToolResult> =>
  (await client.callTool({ name, arguments: args })) as CallToolResult;

const text = (r: CallToolResult): string => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');

/** What the model reads: every text block (the rendering and the JSON). */
const resultChars = (r: CallToolResult): number => r.content.reduce((n, c) => n + (c.type === 'text' ? c.text.length : 0), 0);


function manyGroups(n: number): FlowGroup[] {
  return Array.from({ length: n }, (_, i) => ({ ...ipPairGroup, key: `10.2.0.${i} -> 10.0.0.2`, client: { ip: `10.2.0.${i}` } }));
}

interface Page {
  flows?: { id: string }[];
  groups?: { key: string }[];
  total: number;
  offset: number;
  returned: number;
  truncated: boolean;
  nextCursor?: string;
  hint?: string;
}

/** Follows nextCursor from the first call to the last page; returns every page. */
async function walk(client: Client, args: Record<string, unknown>, maxPages = 1000): Promise<{ pages: Page[]; results: CallToolResult[] }> {
  const pages: Page[] = [];
  const results: CallToolResult[] = [];
  let cursor: string | undefined;
  do {
    const r = await call(client, { ...args, ...(cursor ? { cursor } : {}) });
    expect(r.isError).toBeFalsy();
    const page = r.structuredContent as unknown as Page;
    pages.push(page);
    results.push(r);
    cursor = page.nextCursor;
    if (pages.length > maxPages) throw new Error('paging does not end');
  } while (cursor);
  return { pages, results };
}

async function protocolError(p: Promise<unknown>): Promise<McpError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(McpError);
  return err as McpError;
}

describe('list_l4_flows pagination', () => {
  it('walks every page: the union is the full list, without duplicates, and the last page has no cursor', async () => {
    const flows = manyFlows(53);
    const client = await connect(new MemorySource(flows));
    const { pages, results } = await walk(client, { limit: 7, order_by: 'recent' });
    expect(pages).toHaveLength(8);
    const ids = pages.flatMap((p) => p.flows!.map((f) => f.id));
    expect(ids).toEqual(flows.map((f) => f.id));
    expect(new Set(ids).size).toBe(53);
    expect(pages.map((p) => p.offset)).toEqual([0, 7, 14, 21, 28, 35, 42, 49]);
    for (const p of pages.slice(0, -1)) expect(p).toMatchObject({ total: 53, returned: 7, truncated: true, nextCursor: expect.any(String) });
    expect(pages.at(-1)).toMatchObject({ total: 53, returned: 4, truncated: false });
    expect(pages.at(-1)).not.toHaveProperty('nextCursor');
    // The text names the cursor too, for clients that only show text.
    expect(text(results[0]!)).toContain(`cursor "${pages[0]!.nextCursor}"`);
    expect(text(results[1]!)).toMatch(/^7 of 53 flows from #8 by recent/);
    expect(text(results.at(-1)!)).not.toContain('cursor "');
  });

  it('pages groups for aggregate="ip_pair" the same way', async () => {
    const groups = manyGroups(12);
    const client = await connect(new MemorySource([], groups));
    const { pages } = await walk(client, { aggregate: 'ip_pair', limit: 5 });
    expect(pages.flatMap((p) => p.groups!.map((g) => g.key))).toEqual(groups.map((g) => g.key));
  });

  it('carries the whole query in the cursor: a call with only cursor and limit asks the source for the same query', async () => {
    const source = new MemorySource(manyFlows(10));
    const client = await connect(source);
    const first = await call(client, { ip: '10.0.0.2', port: 80, l4proto: 'tcp', start: '2024-05-01T14:15:00Z', end: 1714573200000, order_by: 'packets', limit: 4 });
    const cursor = (first.structuredContent as unknown as Page).nextCursor!;
    // Opaque but self-contained: versioned base64url JSON of the query and the offset.
    expect(JSON.parse(Buffer.from(cursor, 'base64url').toString())).toEqual({
      v: 1,
      t: 'list_l4_flows',
      q: { aggregate: 'none', order_by: 'packets', protocol: 'tcp', ip: '10.0.0.2', port: 80, since_us: 1_714_572_900_000_000, until_us: 1_714_573_200_000_000 },
      o: 4,
    });
    await call(client, { cursor, limit: 3 });
    // Repeating the same arguments with the cursor is fine too.
    await call(client, { cursor, limit: 3, ip: '10.0.0.2', order_by: 'packets' });
    const query = { aggregate: 'none', order_by: 'packets', protocol: 'tcp', ip: '10.0.0.2', port: 80, since_us: 1_714_572_900_000_000, until_us: 1_714_573_200_000_000 };
    expect(source.flowQueries).toStrictEqual([
      { ...query, limit: 4 },
      { ...query, limit: 3, offset: 4 },
      { ...query, limit: 3, offset: 4 },
    ]);
  });

  it.each<[string, string]>([
    ['garbage', 'not a cursor!'],
    ['base64 of non-JSON', Buffer.from('hello').toString('base64url')],
    ['another version', encodeCursor('list_l4_flows', { aggregate: 'none', order_by: 'bytes' }, 5).replace(/^eyJ2IjoxL/, 'eyJ2Ijo5L')],
    ['another tool', encodeCursor('list_snapshots', { aggregate: 'none', order_by: 'bytes' }, 5)],
    ['a negative offset', encodeCursor('list_l4_flows', { aggregate: 'none', order_by: 'bytes' }, -1)],
    ['a bad query', encodeCursor('list_l4_flows', { aggregate: 'galaxy', order_by: 'bytes' }, 5)],
    ['an unknown query field', encodeCursor('list_l4_flows', { aggregate: 'none', order_by: 'bytes', colour: 'x' }, 5)],
  ])('answers %s as a cursor with a JSON-RPC invalid-params error (-32602)', async (_what, cursor) => {
    const source = new MemorySource(manyFlows(10));
    const client = await connect(source);
    const err = await protocolError(client.callTool({ name: 'list_l4_flows', arguments: { cursor } }));
    expect(err.code).toBe(ErrorCode.InvalidParams);
    expect(err.message).toContain('Invalid cursor');
    expect(source.flowQueries).toEqual([]);
  });

  it('checks the version byte of the test above really changed', () => {
    const bumped = encodeCursor('list_l4_flows', { aggregate: 'none', order_by: 'bytes' }, 5).replace(/^eyJ2IjoxL/, 'eyJ2Ijo5L');
    expect(JSON.parse(Buffer.from(bumped, 'base64url').toString())).toMatchObject({ v: 9 });
  });

  it('refuses a cursor combined with different filters (invalid params), naming them', async () => {
    const source = new MemorySource(manyFlows(10));
    const client = await connect(source);
    const first = await call(client, { ip: '10.0.0.2', order_by: 'recent', limit: 4 });
    const cursor = (first.structuredContent as unknown as Page).nextCursor!;
    const err = await protocolError(client.callTool({ name: 'list_l4_flows', arguments: { cursor, ip: '10.0.0.9', order_by: 'packets' } }));
    expect(err.code).toBe(-32602);
    expect(err.message).toContain('"ip"');
    expect(err.message).toContain('"order_by"');
    expect(source.flowQueries).toHaveLength(1);
  });

  it('answers a page past the end (data changed since) with no rows and no cursor', async () => {
    const source = new MemorySource(manyFlows(3));
    const client = await connect(source);
    const r = await call(client, { cursor: encodeCursor('list_l4_flows', { aggregate: 'none', order_by: 'bytes' }, 10) });
    expect(r.structuredContent).toMatchObject({ flows: [], total: 3, offset: 10, returned: 0, truncated: false });
    expect(r.structuredContent).not.toHaveProperty('nextCursor');
  });
});

describe('output budget', () => {
  it(`keeps a list under the default budget (${DEFAULT_MAX_RESULT_TOKENS} tokens), cut with truncated, nextCursor and a hint`, async () => {
    const flows = manyFlows(1000);
    const client = await connect(new MemorySource(flows));
    const r = await call(client, { limit: 1000 });
    const page = r.structuredContent as unknown as Page;
    expect(resultChars(r)).toBeLessThanOrEqual(DEFAULT_MAX_RESULT_TOKENS * CHARS_PER_TOKEN);
    expect(page.returned).toBeGreaterThan(5);
    expect(page.returned).toBeLessThan(1000);
    expect(page).toMatchObject({ total: 1000, truncated: true, nextCursor: expect.any(String) });
    expect(page.hint).toMatch(/output budget/);
    for (const narrow of ['ip', 'port', 'l4proto', 'start/end', 'aggregate="ip_pair"', 'get_l4_flow_summary']) expect(page.hint).toContain(narrow);
    expect(text(r)).toContain(page.hint!);
    // Nearly full: the cut leaves little room unused.
    expect(resultChars(r)).toBeGreaterThan(DEFAULT_MAX_RESULT_TOKENS * CHARS_PER_TOKEN * 0.9);
  });

  it('pages through a cut list: every flow exactly once, every page under the budget', async () => {
    const flows = manyFlows(400);
    const client = await connect(new MemorySource(flows));
    const { pages, results } = await walk(client, { limit: 1000 });
    expect(pages.length).toBeGreaterThan(3);
    const ids = pages.flatMap((p) => p.flows!.map((f) => f.id));
    expect(ids).toEqual(flows.map((f) => f.id));
    for (const r of results) expect(resultChars(r)).toBeLessThanOrEqual(DEFAULT_MAX_RESULT_TOKENS * CHARS_PER_TOKEN);
  });

  it('takes the budget from the registry option', async () => {
    const client = await connect(new MemorySource(manyFlows(200)), new ToolRegistry({ maxResultTokens: 2000 }));
    const r = await call(client, { limit: 200 });
    expect(resultChars(r)).toBeLessThanOrEqual(2000 * CHARS_PER_TOKEN);
    expect(r.structuredContent).toMatchObject({ truncated: true, hint: expect.stringContaining('~2000 tokens') });
  });

  it('refuses a budget too small to hold one row', () => {
    expect(() => new ToolRegistry({ maxResultTokens: 10 })).toThrow(ToolDefinitionError);
  });

  it('cuts the top-talker lists of a summary that would not fit', async () => {
    const talker = (i: number): Talker => ({ ip: `2001:db8:1234:5678::${i.toString(16)}`, tx_packets: 1_000_000 + i, rx_packets: 2_000_000 + i, tx_bytes: 1_000_000_000 + i, rx_bytes: 2_000_000_000 + i, flows: 1000 + i });
    const summary = { ...summaryWithHandshake(500), top_by_bytes: Array.from({ length: 100 }, (_, i) => talker(i)), top_by_packets: Array.from({ length: 100 }, (_, i) => talker(i + 100)) };
    const client = await connect(new MemorySource([], [], summary));
    const r = await call(client, { top: 100 }, 'get_l4_flow_summary');
    expect(r.isError).toBeFalsy();
    expect(resultChars(r)).toBeLessThanOrEqual(DEFAULT_MAX_RESULT_TOKENS * CHARS_PER_TOKEN);
    const s = r.structuredContent as { top_by_bytes: Talker[]; truncated?: boolean; hint?: string };
    expect(s.top_by_bytes.length).toBeLessThan(100);
    expect(s.top_by_bytes.length).toBeGreaterThan(10);
    expect(s).toMatchObject({ truncated: true, hint: expect.stringContaining('aggregate="ip_pair"') });
    // A summary that fits is not marked (MemorySource ignores top: give it 10 talkers each).
    const fits = await connect(new MemorySource([], [], { ...summary, top_by_bytes: summary.top_by_bytes.slice(0, 10), top_by_packets: summary.top_by_packets.slice(0, 10) }));
    const small = await call(fits, { top: 10 }, 'get_l4_flow_summary');
    expect(small.structuredContent).toMatchObject({ top_by_bytes: summary.top_by_bytes.slice(0, 10) });
    expect(small.structuredContent).not.toHaveProperty('truncated');
  });

  it('turns any other result over the budget into an isError asking to narrow', async () => {
    const registry = new ToolRegistry({ maxResultTokens: 1000 });
    const huge: ToolDefinition = {
      name: 'huge',
      title: 'Huge',
      description: 'Too much.',
      inputSchema: { type: 'object' },
      outputSchema: { type: 'object' },
      annotations: { readOnlyHint: true },
      handler: async () => ({ structured: { blob: 'x'.repeat(5000) }, text: 'big' }),
    };
    registry.register(huge);
    const client = await connect(new MemorySource(), registry);
    const r = await call(client, {}, 'huge');
    expect(r.isError).toBe(true);
    expect(text(r)).toContain('[resource_exhausted]');
    expect(text(r)).toContain('output budget of 1000 tokens');
  });
});
