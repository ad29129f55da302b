import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { canCaptureLive, waitFor } from '@kubeshark-mcp/testkit';
import { DEFAULT_LIVE_OPTIONS, WorkerEngine, startWorkerServer, type RunningWorkerServer } from '@kubeshark-mcp/worker';
import { buildHub, validateConfig, DEFAULT_CONFIG, type Hub } from '../src';

/**
 * The live-traffic subscription end to end: a worker capturing live on lo with tcpdump, the hub,
 * and the SDK client subscribed to kubeshark://traffic/live. HTTP requests made after the
 * subscription bring notifications/resources/updated, and reading the resource then shows them.
 * Needs tcpdump and root (CI has both); elsewhere skipped with the reason.
 */

const canCapture = canCaptureLive('the live subscription tests');
const suite = canCapture ? describe : describe.skip;

suite('subscribing to live traffic', () => {
  let web: http.Server;
  let webPort: number;
  let engine: WorkerEngine;
  let worker: RunningWorkerServer;
  let hub: Hub;
  let client: Client;

  beforeAll(async () => {
    web = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`hello ${req.url}`);
    });
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
    webPort = (web.address() as AddressInfo).port;
    engine = new WorkerEngine('node-live', 'test');
    worker = await startWorkerServer(engine, '127.0.0.1', 0);
    await engine.startLive({ ...DEFAULT_LIVE_OPTIONS, interface: 'lo', bpf: `tcp port ${webPort}`, excludeTcpPorts: [worker.port] });
    hub = await buildHub(validateConfig({ ...DEFAULT_CONFIG, host: '127.0.0.1', port: 0, workers: [worker.address], workerDeadlineMs: 5000 }), { logger: false });
    await hub.app.listen({ host: '127.0.0.1', port: 0 });
    client = new Client({ name: 'live', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${(hub.app.server.address() as AddressInfo).port}/mcp`)));
  }, 30_000);

  afterAll(async () => {
    await client?.close().catch(() => undefined);
    await hub?.app.close();
    await engine?.close();
    await worker?.close();
    await new Promise((r) => web?.close(r));
  });

  test('new calls on the wire bring notifications/resources/updated, and the resource shows them', async () => {
    const updates: string[] = [];
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
      updates.push(n.params.uri);
    });
    await client.subscribeResource({ uri: 'kubeshark://traffic/live' });
    // Let the subscription take its baseline (nothing captured yet).
    await new Promise((r) => setTimeout(r, 2500));
    expect(updates).toEqual([]);
    for (const p of ['/live-1', '/live-2', '/live-3']) {
      const res = await fetch(`http://127.0.0.1:${webPort}${p}`);
      expect(await res.text()).toBe(`hello ${p}`);
    }
    await waitFor('a resources/updated notification', async () => (updates.length > 0 ? true : undefined), 20_000);
    expect(updates[0]).toBe('kubeshark://traffic/live');
    const paths = await waitFor(
      'the three calls in the live resource',
      async () => {
        const r = await client.readResource({ uri: 'kubeshark://traffic/live' });
        const body = JSON.parse((r.contents[0] as { text: string }).text) as { calls: { path: string; status_code: number }[] };
        const got = body.calls.filter((c) => c.path.startsWith('/live-'));
        return got.length === 3 ? got : undefined;
      },
      20_000,
    );
    expect(paths.map((c) => [c.path, c.status_code])).toEqual([
      ['/live-1', 200],
      ['/live-2', 200],
      ['/live-3', 200],
    ]);
  }, 60_000);
});
