import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult, Progress } from '@modelcontextprotocol/sdk/types.js';
import { selectTool, toolsetOf } from '../src/toolsets';
import { TrafficSourceError, toolsFor, type CallContext, type CaptureProgress, type CaptureRequest, type CaptureResult } from '../src/index';
import { CapableSource, T0_US } from './memory-source';
import { closeInMemory, connectInMemory } from './in-memory';

/**
 * capture_traffic over an in-memory source: when it is offered, how its arguments become the
 * source's capture request, the progress notifications it forwards, the result it renders, and
 * that cancelling the MCP request reaches the source as an aborted signal.
 */

class CaptureSource extends CapableSource {
  readonly requests: CaptureRequest[] = [];
  /** Progress reported before answering, one step every 5 ms. */
  steps: CaptureProgress[] = [];
  /** Wait for the signal instead of answering (and record that it fired). */
  hang = false;
  aborted = false;
  failure?: TrafficSourceError;
  result: CaptureResult = {
    id: 'cap-20240501T141500Z-abc123',
    captures: [
      { node: 'node-a', state: 'done', packets: 12, bytes: 4096, started_at_us: T0_US, ended_at_us: T0_US + 5_000_000, filter: '(host 10.0.0.5) and not (tcp port 50151)', pod_ips: 1, snapshot: 'cap-20240501T141500Z-abc123' },
      { node: 'node-b', state: 'done', packets: 0, bytes: 0, started_at_us: T0_US, ended_at_us: T0_US, filter: '', pod_ips: 0, note: 'no pod in shop runs on node node-b' },
    ],
    nodes: [
      { node: 'node-a', state: 'ok' },
      { node: 'node-b', state: 'ok' },
    ],
  };

  async captureTraffic(request: CaptureRequest, ctx: CallContext, onProgress?: (p: CaptureProgress) => void): Promise<CaptureResult> {
    this.requests.push(request);
    if (this.failure) throw this.failure;
    for (const s of this.steps) {
      onProgress?.(s);
      await new Promise((r) => setTimeout(r, 5));
    }
    if (this.hang) {
      if (!ctx.signal.aborted) await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
      this.aborted = true;
      throw new Error('cancelled');
    }
    return this.result;
  }
}

afterEach(closeInMemory);

const text = (r: CallToolResult): string => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');

describe('capture_traffic', () => {
  it('is offered only to sources that can capture, in the capture toolset, changing state without destroying anything', () => {
    expect(toolsFor(new CapableSource()).map((t) => t.name)).not.toContain('capture_traffic');
    const tool = toolsFor(new CaptureSource()).find((t) => t.name === 'capture_traffic')!;
    expect(tool.annotations).toMatchObject({ readOnlyHint: false, destructiveHint: false });
    expect(toolsetOf('capture_traffic')).toBe('capture');
    expect(selectTool(tool, { readOnly: true })).toEqual({ offered: false, reason: 'read-only mode leaves out tools that change state' });
    expect(selectTool(tool, { toolsets: ['l4', 'status'] })).toMatchObject({ offered: false });
    expect(selectTool(tool, { toolsets: ['capture'] })).toEqual({ offered: true });
  });

  it('passes the targeting on, with the defaults (30 s, 100 MiB) and MiB turned into bytes', async () => {
    const source = new CaptureSource();
    const client = await connectInMemory(source);
    await client.callTool({ name: 'capture_traffic', arguments: {} });
    await client.callTool({ name: 'capture_traffic', arguments: { namespaces: ['shop', 'pay'], pod_regex: '^web-', bpf: 'tcp port 80', duration_s: 5, max_mib: 2 } });
    expect(source.requests).toEqual([
      { duration_s: 30, max_bytes: 100 * 1024 * 1024 },
      { namespaces: ['shop', 'pay'], pod_regex: '^web-', bpf: 'tcp port 80', duration_s: 5, max_bytes: 2 * 1024 * 1024 },
    ]);
  });

  it('refuses a duration or size outside its bounds before starting anything', async () => {
    const source = new CaptureSource();
    const client = await connectInMemory(source);
    for (const args of [{ duration_s: 0 }, { duration_s: 601 }, { max_mib: 1025 }, { namespaces: [] }, { bogus: 1 }]) {
      const r = (await client.callTool({ name: 'capture_traffic', arguments: args })) as CallToolResult;
      expect(r.isError).toBe(true);
    }
    expect(source.requests).toEqual([]);
  });

  it('sends strictly increasing progress in seconds of the duration, with the counts so far, reaching the total when every node has ended', async () => {
    const source = new CaptureSource();
    source.steps = [
      { elapsed_ms: 0, duration_ms: 5000, packets: 0, bytes: 0, running: 2 },
      { elapsed_ms: 1040, duration_ms: 5000, packets: 3, bytes: 900, running: 2 },
      { elapsed_ms: 1080, duration_ms: 5000, packets: 3, bytes: 900, running: 2 },
      { elapsed_ms: 2100, duration_ms: 5000, packets: 7, bytes: 2100, running: 1 },
      { elapsed_ms: 6000, duration_ms: 5000, packets: 11, bytes: 3000, running: 1 },
      { elapsed_ms: 9000, duration_ms: 5000, packets: 12, bytes: 4096, running: 0 },
    ];
    const client = await connectInMemory(source);
    const updates: Progress[] = [];
    const r = (await client.callTool({ name: 'capture_traffic', arguments: { duration_s: 5 } }, undefined, { onprogress: (p) => updates.push(p) })) as CallToolResult;
    expect(r.isError).toBeFalsy();
    expect(updates).toEqual([
      { progress: 0, total: 5, message: '0 packets, 0 bytes captured; 2 nodes still capturing' },
      { progress: 1, total: 5, message: '3 packets, 900 bytes captured; 2 nodes still capturing' },
      { progress: 2.1, total: 5, message: '7 packets, 2100 bytes captured; 1 node still capturing' },
      // A node running past the duration: short of the total until every node has ended.
      { progress: 4.9, total: 5, message: '11 packets, 3000 bytes captured; 1 node still capturing' },
      { progress: 5, total: 5, message: '12 packets, 4096 bytes captured; 0 nodes still capturing' },
    ]);
  });

  it('returns the capture id, the counts per node and how to get the packets and the calls', async () => {
    const source = new CaptureSource();
    const client = await connectInMemory(source);
    const r = (await client.callTool({ name: 'capture_traffic', arguments: { namespaces: ['shop'], duration_s: 5 } })) as CallToolResult;
    expect(r.structuredContent).toEqual({
      capture_id: 'cap-20240501T141500Z-abc123',
      state: 'complete',
      packets: 12,
      bytes: 4096,
      start: '2024-05-01T14:16:00.123456Z',
      end: '2024-05-01T14:16:05.123456Z',
      captures: [
        {
          node: 'node-a',
          state: 'done',
          packets: 12,
          bytes: 4096,
          started_at: '2024-05-01T14:16:00.123456Z',
          ended_at: '2024-05-01T14:16:05.123456Z',
          filter: '(host 10.0.0.5) and not (tcp port 50151)',
          pod_ips: 1,
          snapshot: 'cap-20240501T141500Z-abc123',
        },
        { node: 'node-b', state: 'done', packets: 0, bytes: 0, started_at: '2024-05-01T14:16:00.123456Z', ended_at: '2024-05-01T14:16:00.123456Z', filter: '', pod_ips: 0, note: 'no pod in shop runs on node node-b' },
      ],
      nodes: [
        { node: 'node-a', state: 'ok' },
        { node: 'node-b', state: 'ok' },
      ],
    });
    const t = text(r);
    expect(t).toMatch(/^Capture cap-20240501T141500Z-abc123: 12 packets, 4096 bytes \(nodes: node-a, node-b\)/);
    expect(t).toContain('node-b: done, 0 packets, 0 bytes (no pod in shop runs on node node-b)');
    expect(t).toContain('export_pcap snapshot=cap-20240501T141500Z-abc123');
    expect(t).toContain('list_l4_flows / list_api_calls with start=2024-05-01T14:16:00.123456Z end=2024-05-01T14:16:05.123456Z');
  });

  it('says partial when a node failed or could not be reached', async () => {
    const source = new CaptureSource();
    source.result = {
      id: 'cap-x',
      captures: [{ node: 'node-a', state: 'failed', packets: 0, bytes: 0, started_at_us: 0, ended_at_us: 0, filter: '', pod_ips: 0, error: 'tcpdump not found' }],
      nodes: [
        { node: 'node-a', state: 'ok' },
        { node: 'node-c', state: 'unavailable', message: 'connection refused' },
      ],
    };
    const client = await connectInMemory(source);
    const r = (await client.callTool({ name: 'capture_traffic', arguments: {} })) as CallToolResult;
    expect(r.structuredContent).toMatchObject({ capture_id: 'cap-x', state: 'partial', packets: 0 });
    expect(text(r)).toContain('node-c unavailable (connection refused)');
    expect(text(r)).toContain('error: tcpdump not found');
    expect(text(r)).not.toContain('export_pcap');
  });

  it('source errors come back in the tool argument terms (the workers size cap is max_mib here)', async () => {
    const source = new CaptureSource();
    source.failure = new TrafficSourceError('invalid_argument', 'max_bytes must be at least 1024 (got 12)', { field: 'max_bytes' });
    const client = await connectInMemory(source);
    const r = (await client.callTool({ name: 'capture_traffic', arguments: { max_mib: 1 } })) as CallToolResult;
    expect(r.isError).toBe(true);
    expect(r.structuredContent ?? {}).not.toHaveProperty('capture_id');
    expect(text(r)).toContain('(argument "max_mib")');
    source.failure = new TrafficSourceError('invalid_argument', 'the capture filter is invalid: syntax error', { field: 'bpf' });
    expect(text((await client.callTool({ name: 'capture_traffic', arguments: { bpf: 'udp prt 1' } })) as CallToolResult)).toMatch(/bpf.*capture filter is invalid/s);
  });

  it('cancelling the request aborts the source call', async () => {
    const source = new CaptureSource();
    source.hang = true;
    source.steps = [{ elapsed_ms: 0, duration_ms: 30000, packets: 0, bytes: 0, running: 1 }];
    const client: Client = await connectInMemory(source);
    const abort = new AbortController();
    const call = client.callTool({ name: 'capture_traffic', arguments: {} }, undefined, { signal: abort.signal, onprogress: () => abort.abort() });
    await expect(call).rejects.toThrow();
    await new Promise((r) => setTimeout(r, 50));
    expect(source.aborted).toBe(true);
  });
});

describe('get_status reports the targeting of each worker', () => {
  it('structured and in words', async () => {
    const source = new CapableSource();
    source.status = {
      workers: [
        {
          node: 'node-a',
          state: 'connected',
          version: '1',
          targeting: {
            namespaces: ['shop'],
            excluded_namespaces: ['kube-system'],
            pod_regex: '^web-',
            pods: 2,
            pod_ips: 2,
            scope: 'node',
            mode: 'hosts',
            target_filter: 'host 10.0.0.5 or host 10.0.0.6',
            filter: '((host 10.0.0.5 or host 10.0.0.6)) and not (tcp port 50151)',
            checked_at_us: T0_US + 1_000_000,
            updated_at_us: T0_US,
            updates: 3,
          },
        },
      ],
    };
    const client = await connectInMemory(source);
    const r = (await client.callTool({ name: 'get_status', arguments: {} })) as CallToolResult;
    const worker = (r.structuredContent as { workers: Record<string, unknown>[] }).workers[0]!;
    expect(worker.targeting).toEqual({
      namespaces: ['shop'],
      excluded_namespaces: ['kube-system'],
      pod_regex: '^web-',
      pods: 2,
      pod_ips: 2,
      scope: 'node',
      mode: 'hosts',
      filter: '((host 10.0.0.5 or host 10.0.0.6)) and not (tcp port 50151)',
      updated_at: '2024-05-01T14:16:00.123456Z',
      checked_at: '2024-05-01T14:16:01.123456Z',
      updates: 3,
    });
    expect(text(r)).toContain('targeting namespaces shop, excluding kube-system, pods /^web-/: 2 pods (2 addresses on this node); other traffic is not captured');
  });
});
