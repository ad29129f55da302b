import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { waitFor } from '@kubeshark-mcp/testkit';
import { WorkerEngine, startWorkerServer, type RunningWorkerServer } from '@kubeshark-mcp/worker';
import { DnsDiscovery, buildHub, validateConfig, DEFAULT_CONFIG, type AddressResolver, type Hub, type WorkerSink } from '../src';

/**
 * Worker discovery by DNS with an injected resolver (no real DNS): the record set a test
 * controls decides which workers the hub talks to.
 */

const dnsError = (code: string): Error => Object.assign(new Error(`query failed: ${code}`), { code });

/** A resolver answering from mutable record sets; an Error in place of a set is thrown. */
class FakeResolver implements AddressResolver {
  a: string[] | Error = [];
  aaaa: string[] | Error = dnsError('ENODATA');
  readonly names: string[] = [];
  async resolve4(name: string): Promise<string[]> {
    this.names.push(name);
    if (this.a instanceof Error) throw this.a;
    return [...this.a];
  }
  async resolve6(_name: string): Promise<string[]> {
    if (this.aaaa instanceof Error) throw this.aaaa;
    return [...this.aaaa];
  }
}

class RecordingSink implements WorkerSink {
  readonly known = new Set<string>();
  readonly log: string[] = [];
  add(address: string): void {
    this.known.add(address);
    this.log.push(`+${address}`);
  }
  remove(address: string): void {
    this.known.delete(address);
    this.log.push(`-${address}`);
  }
}

describe('DnsDiscovery', () => {
  test('adds A and AAAA records as host:port, then adds and removes as the set changes', async () => {
    const resolver = new FakeResolver();
    const errors: string[] = [];
    const d = new DnsDiscovery({ name: 'kubeshark-worker.ns.svc', port: 50151, intervalMs: 3_600_000, resolver, onError: (e) => errors.push(e.message) });
    const sink = new RecordingSink();
    resolver.a = ['10.0.0.1', '10.0.0.2'];
    resolver.aaaa = ['fd00::3'];
    d.start(sink);
    await d.settled();
    expect([...sink.known].sort()).toEqual(['10.0.0.1:50151', '10.0.0.2:50151', '[fd00::3]:50151']);
    expect(resolver.names).toEqual(['kubeshark-worker.ns.svc']);

    resolver.a = ['10.0.0.2', '10.0.0.4'];
    resolver.aaaa = dnsError('ENODATA');
    sink.log.length = 0;
    await d.refresh(sink);
    expect(sink.log.sort()).toEqual(['+10.0.0.4:50151', '-10.0.0.1:50151', '-[fd00::3]:50151']);
    expect(errors).toEqual([]);

    // A failing DNS server changes nothing: known workers stay.
    resolver.a = dnsError('ESERVFAIL');
    sink.log.length = 0;
    await d.refresh(sink);
    expect(sink.log).toEqual([]);
    expect(errors).toEqual(['query failed: ESERVFAIL']);
    expect([...sink.known].sort()).toEqual(['10.0.0.2:50151', '10.0.0.4:50151']);

    // A name without records (no ready pods) removes them all.
    resolver.a = dnsError('ENOTFOUND');
    await d.refresh(sink);
    expect([...sink.known]).toEqual([]);
    d.stop();
  });

  test('resolves again every interval until stopped', async () => {
    const resolver = new FakeResolver();
    resolver.a = ['10.0.0.1'];
    const d = new DnsDiscovery({ name: 'w', port: 1, intervalMs: 20, resolver });
    d.start(new RecordingSink());
    await waitFor('three lookups', async () => (resolver.names.length >= 3 ? true : undefined), 5000);
    d.stop();
    await d.settled();
    const n = resolver.names.length;
    await new Promise((r) => setTimeout(r, 100));
    expect(resolver.names.length).toBe(n);
  });
});

describe('a hub whose workers come from DNS', () => {
  const servers: RunningWorkerServer[] = [];
  const engines: WorkerEngine[] = [];
  let hub: Hub;
  let client: Client;
  let base: string;
  const resolver = new FakeResolver();

  afterAll(async () => {
    await client?.close();
    await hub?.app.close();
    for (const s of servers) await s.close(0);
    for (const e of engines) await e.close();
  });

  const status = async (): Promise<{ node: string; state: string }[]> => {
    const r = (await client.callTool({ name: 'get_status', arguments: {} })) as CallToolResult;
    if (r.isError) return [];
    return ((r.structuredContent as { workers: { node: string; state: string }[] }).workers ?? []).map((w) => ({ node: w.node, state: w.state })).sort((a, b) => a.node.localeCompare(b.node));
  };

  test('workers are added and removed as the records change; existing channels are kept', async () => {
    // Two workers on the same port of two loopback addresses, as pods behind a headless Service.
    engines.push(new WorkerEngine('dns-a', 'test'), new WorkerEngine('dns-b', 'test'));
    const a = await startWorkerServer(engines[0]!, '127.0.0.1', 0);
    servers.push(a);
    servers.push(await startWorkerServer(engines[1]!, '127.0.0.2', a.port));
    resolver.a = ['127.0.0.1'];
    hub = await buildHub(
      validateConfig({ ...DEFAULT_CONFIG, host: '127.0.0.1', port: 0, workers: [], workersDns: `workers.test:${a.port}`, workersDnsIntervalMs: 1000, workerDeadlineMs: 2000 }),
      { logger: false, resolver },
    );
    await hub.app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(hub.app.server.address() as { port: number }).port}`;
    client = new Client({ name: 'dns', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`)));
    expect(resolver.names[0]).toBe('workers.test');

    // The first answer is in before buildHub returns.
    expect(hub.source.workers.map((w) => w.address)).toEqual([`127.0.0.1:${a.port}`]);
    await waitFor('dns-a', async () => ((await status()).map((w) => w.node).join() === 'dns-a' ? true : undefined));
    const first = hub.source.workers[0]!;

    resolver.a = ['127.0.0.1', '127.0.0.2'];
    await waitFor('dns-a and dns-b', async () => ((await status()).map((w) => `${w.node}:${w.state}`).join() === 'dns-a:connected,dns-b:connected' ? true : undefined));
    // The first worker's channel survived the change.
    expect(hub.source.workers[0]).toBe(first);
    const health = (await (await fetch(`${base}/healthz`)).json()) as { discovery: string; workers: { address: string; state: string }[] };
    expect(health.discovery).toBe(`dns workers.test:${a.port} every 1000 ms`);
    expect(health.workers.map((w) => w.address).sort()).toEqual([`127.0.0.1:${a.port}`, `127.0.0.2:${a.port}`]);

    resolver.a = ['127.0.0.2'];
    await waitFor('dns-b only', async () => ((await status()).map((w) => w.node).join() === 'dns-b' ? true : undefined));
    expect(first.closed).toBe(true);

    // No records at all: no workers; calls say so, and the hub is not ready.
    resolver.a = dnsError('ENOTFOUND');
    await waitFor('no workers', async () => (hub.source.workers.length === 0 ? true : undefined));
    const r = (await client.callTool({ name: 'get_l4_flow_summary', arguments: {} })) as CallToolResult;
    expect(r.isError).toBe(true);
    expect((r.content[0] as { text: string }).text).toMatch(/\[unavailable\].*no workers are known \(discovery: dns workers\.test/);
    expect((await fetch(`${base}/readyz`)).status).toBe(503);
  }, 60_000);
});
