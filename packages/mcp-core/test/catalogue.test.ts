import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult, Progress } from '@modelcontextprotocol/sdk/types.js';
import { BUILTIN_TOOLS, TrafficSourceError, mcpFastifyPlugin, timeWindow, toolsFor, type TrafficSource } from '../src/index';
import { CapableSource, MemorySource, T0_US } from './memory-source';
import { closeInMemory, connectInMemory } from './in-memory';

/**
 * The status, boundary, export and snapshot tools over an in-memory source: which tools a
 * source gets, how arguments become source queries, what the results look like, and how
 * source errors come back named in the tool's own argument terms.
 */

const L4 = ['list_l4_flows', 'get_l4_flow_summary', 'get_service_map'];
const ALL = [...L4, 'list_api_calls', 'get_api_call', 'get_api_stats', 'apply_filter', 'get_status', 'get_data_boundaries', 'export_pcap', 'create_snapshot', 'list_snapshots', 'get_snapshot', 'delete_snapshot'];
/** Every built-in tool: ALL plus the Kubernetes tools (CapableSource has no resolver; see workloads.test.ts). */
const CATALOGUE = [...ALL.slice(0, 7), 'list_workloads', 'list_ips', ...ALL.slice(7), 'capture_traffic'];


const connect = (source: TrafficSource): Promise<Client> => connectInMemory(source);

afterEach(closeInMemory);

const call = async (client: Client, name: string, args: Record<string, unknown> = {}): Promise<CallToolResult> =>
  (await client.callTool({ name, arguments: args })) as CallToolResult;

const text = (r: CallToolResult): string => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');

describe('capability-driven registration', () => {
  it('offers only the L4 tools to a source without the optional capabilities', () => {
    expect(toolsFor(new MemorySource()).map((t) => t.name)).toEqual(L4);
  });

  it('offers the whole catalogue to a source with every capability', () => {
    expect(toolsFor(new CapableSource()).map((t) => t.name)).toEqual(ALL);
    expect(BUILTIN_TOOLS.map((t) => t.name)).toEqual(CATALOGUE);
  });

  it('offers each tool whose own capability is there', () => {
    const source: TrafficSource = Object.assign(new MemorySource(), {
      getStatus: async () => ({ workers: [] }),
      listSnapshots: async () => ({ snapshots: [], nodes: [] }),
    });
    expect(toolsFor(source).map((t) => t.name)).toEqual([...L4, 'get_status', 'list_snapshots']);
  });

  it('registers through the Fastify plugin by capability', async () => {
    for (const [source, names] of [
      [new MemorySource(), L4],
      [new CapableSource(), ALL],
    ] as const) {
      const app = Fastify({ logger: false });
      await app.register(mcpFastifyPlugin, { source });
      await app.listen({ host: '127.0.0.1', port: 0 });
      const client = new Client({ name: 'plugin', version: '0' });
      try {
        await client.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}/mcp`)));
        expect((await client.listTools()).tools.map((t) => t.name)).toEqual(names);
        expect([...names].every((n) => app.mcp.registry.has(n))).toBe(true);
      } finally {
        await client.close();
        await app.close();
      }
    }
  });

  it('declares the annotations the catalogue documents', async () => {
    const client = await connect(new CapableSource());
    const { tools } = await client.listTools();
    const a = Object.fromEntries(tools.map((t) => [t.name, t.annotations]));
    for (const name of ['get_status', 'get_data_boundaries', 'export_pcap', 'list_snapshots', 'get_snapshot']) expect(a[name]).toMatchObject({ readOnlyHint: true, openWorldHint: false });
    expect(a.create_snapshot).toMatchObject({ readOnlyHint: false, destructiveHint: false });
    expect(a.delete_snapshot).toMatchObject({ readOnlyHint: false, destructiveHint: true });
  });
});

describe('timeWindow', () => {
  it('keeps the microseconds of an RFC 3339 time, and Unix ms as they are', () => {
    expect(timeWindow({ start: '2013-03-07T21:42:06.869344Z', end: 1362692527000 })).toEqual({ since_us: 1_362_692_526_869_344, until_us: 1_362_692_527_000_000 });
    expect(timeWindow({ start: '2013-03-07T23:42:06.8693449+02:00' })).toEqual({ since_us: 1_362_692_526_869_344 });
    expect(timeWindow({ start: '2013-03-07T21:42:06Z' })).toEqual({ since_us: 1_362_692_526_000_000 });
    expect(() => timeWindow({ start: '2013-03-07T21:42:06.000002Z', end: '2013-03-07T21:42:06.000001Z' })).toThrow(/"end" is before "start"/);
  });
});

describe('get_status', () => {
  it('renders connected and unavailable workers, compactly, with node coverage', async () => {
    const source = new CapableSource();
    source.status = {
      workers: [
        {
          node: 'node-a',
          address: '10.0.0.1:50151',
          state: 'connected',
          version: '0.1.0',
          started_at_us: T0_US,
          sources: [
            { kind: 'file', name: '/captures/a.pcap', state: 'done', packets: 14, bytes: 6335 },
            {
              kind: 'interface',
              name: 'any',
              state: 'restarting',
              packets: 1000,
              bytes: 90000,
              error: 'tcpdump exited with 1',
              filter: 'not (tcp port 50151)',
              received_by_filter: 1010,
              kernel_drops: 7,
              restarts: 2,
              gaps: [
                { from_us: T0_US, to_us: T0_US + 500_000, reason: 'tcpdump exited' },
                { from_us: T0_US + 2_000_000, to_us: T0_US + 3_000_000, reason: 'tcpdump exited' },
              ],
            },
          ],
          packets_seen: 1014,
          packets_decoded: 1000,
          skipped: [{ reason: 'arp', count: 14 }],
          errors: [],
          flows_tracked: 31,
          flows_evicted: 5,
          boundaries: { node: 'node-a', flows: { oldest_us: T0_US, newest_us: T0_US + 1_500 }, packets: { oldest_us: T0_US, newest_us: T0_US + 1_500 } },
        },
        { node: '10.0.0.2:50151', address: '10.0.0.2:50151', state: 'unavailable', message: 'connect ECONNREFUSED' },
      ],
    };
    const client = await connect(source);
    const r = await call(client, 'get_status');
    expect(r.isError).toBeFalsy();
    const window = { oldest: '2024-05-01T14:16:00.123456Z', newest: '2024-05-01T14:16:00.124956Z', oldest_ms: 1_714_572_960_123, newest_ms: 1_714_572_960_125 };
    expect(r.structuredContent).toEqual({
      workers: [
        {
          node: 'node-a',
          address: '10.0.0.1:50151',
          state: 'connected',
          version: '0.1.0',
          started_at: '2024-05-01T14:16:00.123456Z',
          packets_seen: 1014,
          packets_decoded: 1000,
          flows_tracked: 31,
          flows_evicted: 5,
          sources: [
            { kind: 'file', name: '/captures/a.pcap', state: 'done', packets: 14, bytes: 6335 },
            {
              kind: 'interface',
              name: 'any',
              state: 'restarting',
              packets: 1000,
              bytes: 90000,
              error: 'tcpdump exited with 1',
              filter: 'not (tcp port 50151)',
              received_by_filter: 1010,
              kernel_drops: 7,
              restarts: 2,
              gaps: 2,
            },
          ],
          skipped: [{ reason: 'arp', count: 14 }],
          boundaries: { node: 'node-a', flows: window, packets: window, entries: null },
        },
        { node: '10.0.0.2:50151', address: '10.0.0.2:50151', state: 'unavailable', message: 'connect ECONNREFUSED' },
      ],
      nodes: [
        { node: 'node-a', state: 'ok' },
        { node: '10.0.0.2:50151', state: 'unavailable', message: 'connect ECONNREFUSED' },
      ],
    });
    const lines = (r.content[0] as { text: string }).text.split('\n');
    expect(lines).toEqual([
      '2 workers (nodes: node-a, 10.0.0.2:50151 unavailable (connect ECONNREFUSED))',
      'node-a connected (worker 0.1.0 at 10.0.0.1:50151 since 2024-05-01T14:16:00.123456Z): 1014 packets seen (1000 decoded), 31 flows tracked (5 evicted by limits)',
      '  file /captures/a.pcap: done, 14 packets',
      '  interface any: restarting, 1000 packets, 1010 received by filter, 7 kernel drops, 2 restarts, 2 gaps, filter "not (tcp port 50151)", error: tcpdump exited with 1',
      '  data: flows 2024-05-01T14:16:00.123456Z .. 2024-05-01T14:16:00.124956Z; packets 2024-05-01T14:16:00.123456Z .. 2024-05-01T14:16:00.124956Z; API calls not captured (L7 not available yet)',
      '  skipped: arp 14',
      '10.0.0.2:50151 unavailable (worker at 10.0.0.2:50151): connect ECONNREFUSED',
    ]);
  });

  it('refuses arguments', async () => {
    const client = await connect(new CapableSource());
    const r = await call(client, 'get_status', { node: 'x' });
    expect(r.isError).toBe(true);
    expect(text(r)).toContain('unknown argument "node"');
  });
});

describe('get_data_boundaries', () => {
  it('gives windows as RFC 3339 plus Unix ms rounded outwards, null for no data, and names missing nodes', async () => {
    const source = new CapableSource();
    source.boundaries = {
      boundaries: [{ node: 'node-a', flows: { oldest_us: 1_000_001_500, newest_us: 2_000_000_001 } }],
      nodes: [
        { node: 'node-a', state: 'ok' },
        { node: 'node-b', state: 'error', message: 'boom' },
      ],
    };
    const client = await connect(source);
    const r = await call(client, 'get_data_boundaries');
    expect(r.structuredContent).toEqual({
      boundaries: [
        {
          node: 'node-a',
          flows: { oldest: '1970-01-01T00:16:40.001500Z', newest: '1970-01-01T00:33:20.000001Z', oldest_ms: 1_000_001, newest_ms: 2_000_001 },
          packets: null,
          entries: null,
        },
      ],
      nodes: source.boundaries.nodes,
    });
    expect(text(r)).toContain('node-a: flows 1970-01-01T00:16:40.001500Z .. 1970-01-01T00:33:20.000001Z; packets none; API calls not captured');
    expect(text(r)).toContain('node-b: error (boom); its data is missing');
  });
});

describe('export_pcap', () => {
  it('turns the arguments into one export query and returns a resource link with the download', async () => {
    const source = new CapableSource();
    const client = await connect(source);
    const r = await call(client, 'export_pcap', {
      start: '2024-05-01T14:16:00.123456Z',
      end: 1714573200000,
      flow_ids: ['node-a/1', 'node-a/7'],
      ips: ['10.0.0.1', 'fe80::1'],
      ports: [80, 443],
      l4proto: 'tcp',
    });
    expect(r.isError).toBeFalsy();
    expect(source.calls).toEqual([
      {
        method: 'exportPcap',
        args: {
          query: {
            format: 'pcapng',
            since_us: T0_US,
            until_us: 1_714_573_200_000_000,
            flow_ids: ['node-a/1', 'node-a/7'],
            ips: ['10.0.0.1', 'fe80::1'],
            ports: [80, 443],
            protocol: 'tcp',
          },
          // No progress token from the client: the source gets no progress callback.
          progress: false,
        },
      },
    ]);
    const url = 'http://localhost:8898/downloads/tok/kubeshark-node-a.pcapng';
    expect(r.structuredContent).toEqual({
      url,
      name: 'kubeshark-node-a.pcapng',
      mime_type: 'application/x-pcapng',
      bytes: 4096,
      packets: 12,
      format: 'pcapng',
      expires_at: '2024-05-01T15:16:00.000Z',
      nodes: [{ node: 'node-a', state: 'ok' }],
    });
    expect(r.content[1]).toEqual({
      type: 'resource_link',
      uri: url,
      name: 'kubeshark-node-a.pcapng',
      mimeType: 'application/x-pcapng',
      size: 4096,
      description: '12 packets (4096 bytes, pcapng), expires 2024-05-01T15:16:00.000Z',
    });
    expect(text(r)).toContain(`Exported 12 packets (4096 bytes, pcapng) from node-a: ${url}`);
  });

  it('exports from a snapshot as pcap with its media type', async () => {
    const source = new CapableSource();
    const client = await connect(source);
    const r = await call(client, 'export_pcap', { snapshot: 'incident-1', format: 'pcap' });
    expect((source.calls[0]!.args as { query: unknown }).query).toEqual({ format: 'pcap', snapshot: 'incident-1' });
    expect(r.structuredContent).toMatchObject({ format: 'pcap', mime_type: 'application/vnd.tcpdump.pcap' });
  });

  it('sends increasing progress notifications, ending with the final byte count, when asked', async () => {
    const source = new CapableSource();
    source.exportSteps = [
      { bytes: 1000, packets: 3 },
      { bytes: 1000, packets: 3 },
      { bytes: 2000, packets: 6 },
      { bytes: 4096, packets: 12 },
    ];
    const client = await connect(source);
    const updates: Progress[] = [];
    const r = (await client.callTool({ name: 'export_pcap', arguments: {} }, undefined, { onprogress: (p) => updates.push(p) })) as CallToolResult;
    expect(r.isError).toBeFalsy();
    expect(source.calls[0]!.args).toMatchObject({ progress: true });
    expect(updates[0]).toEqual({ progress: 1000, message: '3 packets, 1000 bytes' });
    expect(updates[updates.length - 1]).toEqual({ progress: 4096, message: '12 packets, 4096 bytes' });
    const values = updates.map((u) => u.progress);
    expect(values).toEqual([...new Set(values)].sort((a, b) => a - b));
  });

  it('says when nothing matched', async () => {
    const source = new CapableSource();
    source.exportResult = { ...source.exportResult, packets: 0, bytes: 72 };
    const client = await connect(source);
    const r = await call(client, 'export_pcap', { ports: [9] });
    expect(text(r)).toMatch(/^No packets matched \(nodes: node-a\).*empty pcapng.*get_data_boundaries/);
  });

  it('validates arguments before asking the source', async () => {
    const source = new CapableSource();
    const client = await connect(source);
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ports: [70000] }, /"ports\.0" must be <= 65535/],
      [{ ips: ['nope'] }, /"ips\.0" must be an IPv4 or IPv6 address/],
      [{ flow_ids: 'node-a/1' }, /"flow_ids" must be array/],
      [{ flow_ids: ['a/1', 'a/1'] }, /"flow_ids" must NOT have duplicate items/],
      [{ format: 'json' }, /"format" must be one of "pcapng", "pcap"/],
      [{ snapshot: '../x' }, /"snapshot" must match pattern/],
      [{ l4proto: 'sctp' }, /"l4proto" must be one of "tcp", "udp"/],
      [{ start: 'noon' }, /"start" must be an RFC 3339 time/],
      [{ bpf: 'tcp' }, /unknown argument "bpf"/],
      [{ start: 1714573200000, end: 1714572900000 }, /\(argument "end"\)/],
    ];
    for (const [args, message] of cases) {
      const r = await call(client, 'export_pcap', args);
      expect(r.isError).toBe(true);
      expect(text(r)).toMatch(message);
    }
    expect(source.calls).toEqual([]);
  });

  it.each<[string, TrafficSourceError, Record<string, unknown>, string]>([
    ['since_us', new TrafficSourceError('invalid_argument', 'bad start', { field: 'since_us' }), {}, '[invalid_argument] (argument "start"): bad start'],
    ['until_us', new TrafficSourceError('invalid_argument', 'bad end', { field: 'until_us' }), {}, '[invalid_argument] (argument "end"): bad end'],
    ['protocol', new TrafficSourceError('invalid_argument', 'bad proto', { field: 'protocol' }), {}, '[invalid_argument] (argument "l4proto"): bad proto'],
    ['flow_ids', new TrafficSourceError('invalid_argument', 'no flow "x/1"', { field: 'flow_ids' }), {}, '[invalid_argument] (argument "flow_ids"): no flow "x/1"'],
    ['a missing snapshot', new TrafficSourceError('not_found', 'no snapshot named "s"'), { snapshot: 's' }, '[not_found] (argument "snapshot"): no snapshot named "s"'],
    ['a size limit', new TrafficSourceError('resource_exhausted', 'larger than the limit'), {}, '[resource_exhausted]: larger than the limit'],
  ])('names the argument for a source error about %s', async (_what, err, args, message) => {
    const source = new CapableSource();
    source.failures.set('exportPcap', err);
    const client = await connect(source);
    const r = await call(client, 'export_pcap', args);
    expect(r.isError).toBe(true);
    expect(text(r)).toBe(`export_pcap failed ${message}`);
  });
});

describe('snapshot tools', () => {
  it('create, list, get and delete, with their views', async () => {
    const source = new CapableSource();
    const client = await connect(source);
    const created = await call(client, 'create_snapshot', { name: 'incident-1', start: '2024-05-01T14:16:00.123456Z', end: 1714573200000 });
    expect(created.isError).toBeFalsy();
    expect(source.calls[0]).toEqual({ method: 'createSnapshot', args: { name: 'incident-1', since_us: T0_US, until_us: 1_714_573_200_000_000 } });
    const view = {
      name: 'incident-1',
      node: 'node-a',
      start: '2024-05-01T14:16:00.123456Z',
      end: '2024-05-01T14:20:00.000000Z',
      created_at: '2024-05-01T14:17:00.123456Z',
      packets: 10,
      bytes: 2048,
      flows: 2,
      state: 'complete',
    };
    expect(created.structuredContent).toEqual({ snapshot: view, nodes: [{ node: 'node-a', state: 'ok' }] });
    expect((created.content[0] as { text: string }).text).toBe('Created snapshot incident-1 on node-a: 2024-05-01T14:16:00.123456Z .. 2024-05-01T14:20:00.000000Z, 10 packets, 2048 bytes, 2 flows (created 2024-05-01T14:17:00.123456Z)');

    await call(client, 'create_snapshot', { name: 'all' });
    const list = await call(client, 'list_snapshots');
    expect(list.structuredContent).toMatchObject({ total: 2, snapshots: [view, { name: 'all' }] });
    expect((list.structuredContent as { snapshots: object[] }).snapshots[1]).not.toHaveProperty('start');
    expect(text(list)).toContain('all on node-a: oldest .. newest');

    expect((await call(client, 'get_snapshot', { name: 'incident-1' })).structuredContent).toEqual({ snapshot: view, nodes: [{ node: 'node-a', state: 'ok' }] });
    const deleted = await call(client, 'delete_snapshot', { name: 'incident-1' });
    expect(deleted.structuredContent).toEqual({ deleted: 'incident-1', nodes: [{ node: 'node-a', state: 'ok' }] });
    expect(source.calls.map((c) => c.method)).toEqual(['createSnapshot', 'createSnapshot', 'listSnapshots', 'getSnapshot', 'deleteSnapshot']);
  });

  it('names "name" for not found, already exists and a bad name', async () => {
    const source = new CapableSource();
    const client = await connect(source);
    const missing = await call(client, 'get_snapshot', { name: 'nope' });
    expect(text(missing)).toBe('get_snapshot failed [not_found] (argument "name"): no snapshot named "nope"');
    source.failures.set('createSnapshot', new TrafficSourceError('already_exists', 'snapshot "a" already exists'));
    expect(text(await call(client, 'create_snapshot', { name: 'a' }))).toBe('create_snapshot failed [already_exists] (argument "name"): snapshot "a" already exists');
    source.failures.set('deleteSnapshot', new TrafficSourceError('invalid_argument', 'bad name', { field: 'name' }));
    expect(text(await call(client, 'delete_snapshot', { name: 'a' }))).toBe('delete_snapshot failed [invalid_argument] (argument "name"): bad name');
    for (const name of ['', '-x', 'a/b', 'x'.repeat(65)]) {
      const r = await call(client, 'create_snapshot', { name });
      expect(r.isError).toBe(true);
      expect(text(r)).toMatch(/"name" must/);
    }
    expect(text(await call(client, 'get_snapshot', {}))).toContain('missing required argument "name"');
  });
});
