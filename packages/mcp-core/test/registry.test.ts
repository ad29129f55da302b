import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import {
  ToolDefinitionError,
  ToolRegistry,
  TrafficSourceError,
  UnknownToolError,
  listL4Flows,
  getL4FlowSummary,
  type ToolCallContext,
  type ToolDefinition,
} from '../src/index';
import { MemorySource, tcpFlow } from './memory-source';

const objectSchema = { type: 'object' as const, properties: {}, additionalProperties: false };

function tool(overrides: Partial<ToolDefinition<Record<string, unknown>>> = {}): ToolDefinition<Record<string, unknown>> {
  return {
    name: 'echo',
    title: 'Echo',
    description: 'Returns what it was given.',
    inputSchema: objectSchema,
    outputSchema: { type: 'object' },
    annotations: { readOnlyHint: true },
    handler: async (args) => ({ structured: { ...args }, text: 'ok' }),
    ...overrides,
  };
}

function textOf(result: CallToolResult): string {
  return result.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
}

describe('ToolRegistry', () => {
  let source: MemorySource;
  let ctx: ToolCallContext;
  let registry: ToolRegistry;

  beforeEach(() => {
    source = new MemorySource([tcpFlow]);
    ctx = { source, signal: new AbortController().signal };
    registry = new ToolRegistry();
  });

  describe('register', () => {
    it('rejects a second tool with the same name', () => {
      registry.register(tool());
      expect(() => registry.register(tool({ description: 'another' }))).toThrow(ToolDefinitionError);
      expect(() => registry.register(tool())).toThrow(/already registered/);
      expect(registry.list()).toHaveLength(1);
    });

    it('rejects a schema that does not compile, at register time', () => {
      const bad = tool({ inputSchema: { type: 'object', properties: { a: { type: 'nope' } } } });
      expect(() => registry.register(bad)).toThrow(ToolDefinitionError);
      expect(() => registry.register(bad)).toThrow(/does not compile/);
      expect(registry.has('echo')).toBe(false);
    });

    it('rejects an output schema that does not compile, and unknown keywords (strict mode)', () => {
      expect(() => registry.register(tool({ outputSchema: { type: 'object', properties: { a: { minimum: 'x' } } } }))).toThrow(ToolDefinitionError);
      expect(() => registry.register(tool({ inputSchema: { type: 'object', propertis: {} } }))).toThrow(ToolDefinitionError);
      expect(registry.list()).toEqual([]);
    });

    it('rejects schemas whose type is not "object"', () => {
      expect(() => registry.register(tool({ inputSchema: { type: 'string' } as never }))).toThrow(ToolDefinitionError);
      expect(() => registry.register(tool({ outputSchema: {} as never }))).toThrow(/output schema must have type "object"/);
    });

    it.each(['', 'has space', 'dotted.name', 'slash/name', 'x'.repeat(65), 'ünïcode'])('rejects the tool name %j', (name) => {
      expect(() => registry.register(tool({ name }))).toThrow(ToolDefinitionError);
      expect(registry.list()).toEqual([]);
    });

    it('accepts names of letters, digits, "_" and "-" up to 64 characters', () => {
      registry.register(tool({ name: 'a-b_C9' }));
      registry.register(tool({ name: 'y'.repeat(64) }));
      expect(registry.has('a-b_C9')).toBe(true);
      expect(registry.has('y'.repeat(64))).toBe(true);
    });
  });

  describe('list', () => {
    it('returns the tools in registration order, with schemas and annotations', () => {
      registry.register(tool({ name: 'zeta', annotations: { readOnlyHint: false, destructiveHint: true } }));
      registry.register(getL4FlowSummary);
      registry.register(tool({ name: 'alpha', title: 'Alpha' }));
      registry.register(listL4Flows);

      const tools = registry.list();
      expect(tools.map((t) => t.name)).toEqual(['zeta', 'get_l4_flow_summary', 'alpha', 'list_l4_flows']);
      expect(tools[0]!.annotations).toEqual({ title: 'Echo', readOnlyHint: false, destructiveHint: true });
      expect(tools[2]!.annotations).toEqual({ title: 'Alpha', readOnlyHint: true });
      expect(tools[2]!.title).toBe('Alpha');
      const list = tools[3]!;
      expect(list.annotations).toEqual({ title: 'List L4 flows', readOnlyHint: true, openWorldHint: false });
      expect(list.inputSchema).toBe(listL4Flows.inputSchema);
      expect(list.outputSchema).toBe(listL4Flows.outputSchema);
      expect(list.description).toBe(listL4Flows.description);
    });
  });

  describe('call', () => {
    it('sends no result that breaks its own output schema: an error naming the first problem instead', async () => {
      registry.register(
        tool({
          outputSchema: { type: 'object', properties: { rows: { type: 'array', items: { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'], additionalProperties: false } } }, required: ['rows'] },
          handler: async () => ({ structured: { rows: [{ n: 1 }, { n: 'two' }, { m: 3 }] }, text: 'rows' }),
        }),
      );
      const result = await registry.call('echo', {}, ctx);
      expect(result.isError).toBe(true);
      expect(result.structuredContent).toBeUndefined();
      expect(textOf(result)).toMatch(/^echo failed \[internal\]: result does not match the output schema: .*rows\.1\.n.*integer/);
    });

    beforeEach(() => registry.register(listL4Flows));

    it('throws UnknownToolError for a tool that is not registered', async () => {
      await expect(registry.call('nope', {}, ctx)).rejects.toBeInstanceOf(UnknownToolError);
      await expect(registry.call('nope', {}, ctx)).rejects.toMatchObject({ tool: 'nope' });
    });

    it.each<[string, Record<string, unknown>, string]>([
      ['an unknown argument', { foo: 1 }, 'unknown argument "foo"'],
      ['a value outside the enum', { l4proto: 'icmp' }, '"l4proto" must be one of "tcp", "udp"'],
      ['a value below the minimum', { port: 0 }, '"port" must be >= 1'],
      ['a value above the maximum', { limit: 1001 }, '"limit" must be <= 1000'],
      ['a wrong type', { port: '80' }, '"port" must be integer'],
      ['an address that is not an IP', { ip: '10.0.0.256' }, '"ip" must be an IPv4 or IPv6 address'],
      ['a time that does not parse', { start: 'yesterday' }, '"start" must be an RFC 3339 time'],
      ['a bare number as a string', { start: '12' }, '"start" must be an RFC 3339 time'],
      ['a time without a zone', { end: '2024-05-01T14:15:00' }, '"end" must be an RFC 3339 time with a zone'],
    ])('turns %s into an isError result naming the field', async (_what, args, message) => {
      const result = await registry.call('list_l4_flows', args, ctx);
      expect(result.isError).toBe(true);
      expect(result.structuredContent).toBeUndefined();
      expect(textOf(result)).toContain('Invalid arguments for list_l4_flows');
      expect(textOf(result)).toContain(message);
      expect(source.flowQueries).toEqual([]); // the handler never ran
    });

    it('accepts IPv6 addresses', async () => {
      const result = await registry.call('list_l4_flows', { ip: 'fd00::1' }, ctx);
      expect(result.isError).toBeUndefined();
      expect(source.flowQueries[0]!.ip).toBe('fd00::1');
    });

    it('reports every bad field at once', async () => {
      const result = await registry.call('list_l4_flows', { port: 70000, order_by: 'size', bar: true }, ctx);
      const text = textOf(result);
      expect(text).toContain('"port" must be <= 65535');
      expect(text).toContain('"order_by" must be one of "bytes", "packets", "recent", "oldest"');
      expect(text).toContain('unknown argument "bar"');
    });

    it('names a missing required argument', async () => {
      const handler = jest.fn(async () => ({ structured: {}, text: '' }));
      registry.register(
        tool({
          name: 'needs_flow',
          inputSchema: { type: 'object', properties: { flow_id: { type: 'string' } }, required: ['flow_id'], additionalProperties: false },
          handler,
        }),
      );
      const result = await registry.call('needs_flow', {}, ctx);
      expect(result.isError).toBe(true);
      expect(textOf(result)).toContain('missing required argument "flow_id"');
      expect(handler).not.toHaveBeenCalled();
    });

    it('names nested fields with dots', async () => {
      registry.register(
        tool({
          name: 'nested',
          inputSchema: {
            type: 'object',
            properties: { filter: { type: 'object', properties: { port: { type: 'integer', minimum: 1 } }, required: ['port'], additionalProperties: false } },
          },
        }),
      );
      expect(textOf(await registry.call('nested', { filter: { port: 0 } }, ctx))).toContain('"filter.port" must be >= 1');
      expect(textOf(await registry.call('nested', { filter: {} }, ctx))).toContain('missing required argument "filter.port"');
      expect(textOf(await registry.call('nested', { filter: { port: 1, x: 2 } }, ctx))).toContain('unknown argument "filter.x"');
    });

    it('fills in defaults before the handler runs', async () => {
      const seen: unknown[] = [];
      registry.register(
        tool({
          name: 'defaults',
          inputSchema: {
            type: 'object',
            properties: { top: { type: 'integer', default: 10 }, mode: { type: 'string', default: 'fast' } },
            additionalProperties: false,
          },
          handler: async (args) => {
            seen.push(args);
            return { structured: {}, text: '' };
          },
        }),
      );
      await registry.call('defaults', { mode: 'slow' }, ctx);
      await registry.call('defaults', undefined, ctx);
      expect(seen).toEqual([
        { top: 10, mode: 'slow' },
        { top: 10, mode: 'fast' },
      ]);

      // The built-in tool gets its documented defaults too.
      await registry.call('list_l4_flows', {}, ctx);
      expect(source.flowQueries).toEqual([{ aggregate: 'none', order_by: 'bytes', limit: 100 }]);
    });

    it('does not mutate the caller\'s arguments', async () => {
      const args = Object.freeze({ ip: '10.0.0.1', port: 443 });
      const result = await registry.call('list_l4_flows', args, ctx);
      expect(result.isError).toBeUndefined();
      expect(args).toEqual({ ip: '10.0.0.1', port: 443 });
      expect(Object.keys(args)).toEqual(['ip', 'port']);
      expect(source.flowQueries[0]).toMatchObject({ ip: '10.0.0.1', port: 443, limit: 100, order_by: 'bytes' });

      const mutable: Record<string, unknown> = { l4proto: 'udp' };
      await registry.call('list_l4_flows', mutable, ctx);
      expect(mutable).toEqual({ l4proto: 'udp' });
    });

    it('returns the structured result with text and JSON renderings', async () => {
      registry.register(tool({ name: 'plain', handler: async () => ({ structured: { answer: 42 }, text: 'the answer' }) }));
      const result = await registry.call('plain', {}, ctx);
      expect(result).toEqual({
        content: [
          { type: 'text', text: 'the answer' },
          { type: 'text', text: '{"answer":42}' },
        ],
        structuredContent: { answer: 42 },
      });
    });

    it('refuses to return structured output that violates the output schema', async () => {
      registry.register(
        tool({
          name: 'liar',
          outputSchema: { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'], additionalProperties: false },
          handler: async () => ({ structured: { n: 'many' }, text: 'n is many' }),
        }),
      );
      const result = await registry.call('liar', {}, ctx);
      expect(result.isError).toBe(true);
      expect(result.structuredContent).toBeUndefined();
      expect(textOf(result)).toContain('output schema');
      expect(textOf(result)).toContain('[internal]');
      expect(textOf(result)).toContain('"n" must be integer');
      expect(textOf(result)).not.toContain('n is many');
    });

    it('turns a TrafficSourceError into an isError result with its code and field', async () => {
      registry.register(
        tool({
          name: 'failing',
          handler: async () => {
            throw new TrafficSourceError('unavailable', 'no worker answered', { field: 'node' });
          },
        }),
      );
      const result = await registry.call('failing', {}, ctx);
      expect(result.isError).toBe(true);
      const text = textOf(result);
      expect(text).toContain('[unavailable]');
      expect(text).toContain('"node"');
      expect(text).toContain('no worker answered');
    });

    it('turns a TrafficSourceError from the source itself into an isError result', async () => {
      source.listFlows = async () => {
        throw new TrafficSourceError('deadline_exceeded', 'workers did not answer in 5 s');
      };
      const result = await registry.call('list_l4_flows', {}, ctx);
      expect(result.isError).toBe(true);
      expect(textOf(result)).toBe('list_l4_flows failed [deadline_exceeded]: workers did not answer in 5 s');
    });

    it('reports any other handler failure as internal', async () => {
      registry.register(
        tool({
          name: 'buggy',
          handler: async () => {
            throw new TypeError('x is undefined');
          },
        }),
      );
      const result = await registry.call('buggy', {}, ctx);
      expect(result.isError).toBe(true);
      expect(textOf(result)).toBe('buggy failed [internal]: x is undefined');
    });

    it('passes the context (source and signal) to the handler', async () => {
      const ac = new AbortController();
      await registry.call('list_l4_flows', {}, { source, signal: ac.signal });
      expect(source.signals).toEqual([ac.signal]);
    });
  });
});
