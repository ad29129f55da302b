import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ClusterResolver } from '../src/k8s/resolver';
import { KubeWatchError, KubeWatcher, type WatchNotice } from '../src/k8s/watch';

const FIX = path.join(__dirname, 'fixtures', 'k8s', 'watch');
const T = (hms: string): number => Date.parse(`2026-11-20T${hms}Z`) * 1000;

const PODS = '/api/v1/pods';
const SERVICES = '/api/v1/services';
const SLICES = '/apis/discovery.k8s.io/v1/endpointslices';
const NODES = '/api/v1/nodes';

interface Seen {
  path: string;
  query: URLSearchParams;
  auth: string | undefined;
}

/**
 * A fake API server on 127.0.0.1:0 replaying recorded responses: per path a queue of list
 * bodies (the last one repeats) and a queue of watch streams (newline-delimited events, released
 * line by line by the test; an exhausted queue holds the watch open with no events).
 */
class FakeApiServer {
  readonly requests: Seen[] = [];
  private readonly lists = new Map<string, string[]>();
  private readonly watches = new Map<string, string[]>();
  private readonly open = new Map<string, { res: http.ServerResponse; lines: string[]; next: number }>();
  private readonly sockets = new Set<Socket>();
  private readonly server: http.Server;
  url = '';

  constructor(private readonly acceptToken: string) {
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  list(p: string, ...files: string[]): this {
    this.lists.set(p, files.map((f) => readFileSync(path.join(FIX, f), 'utf8')));
    return this;
  }

  watch(p: string, ...files: string[]): this {
    // `status:NNN` answers the watch request with that HTTP status instead of a stream; `end:`
    // with an empty stream the server ends at once.
    this.watches.set(p, files.map((f) => (f.startsWith('status:') || f === 'end:' ? f : readFileSync(path.join(FIX, f), 'utf8'))));
    return this;
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const u = new URL(req.url ?? '/', 'http://x');
    this.requests.push({ path: u.pathname, query: u.searchParams, auth: req.headers.authorization });
    if (req.headers.authorization !== `Bearer ${this.acceptToken}`) {
      res.writeHead(401, { 'Content-Type': 'application/json' }).end(readFileSync(path.join(FIX, 'status-401.json')));
      return;
    }
    if (u.searchParams.get('watch') === '1') {
      const queue = this.watches.get(u.pathname) ?? [];
      const body = queue.length > 0 ? queue.shift()! : '';
      if (body.startsWith('status:')) {
        const code = Number(body.slice('status:'.length));
        const reason = code === 410 ? 'Expired' : 'InternalError';
        res.writeHead(code, { 'Content-Type': 'application/json' }).end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `status ${code}`, reason, code }));
        return;
      }
      if (body === 'end:') {
        res.writeHead(200, { 'Content-Type': 'application/json' }).end();
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.flushHeaders();
      this.open.set(u.pathname, { res, lines: body.split('\n').filter((l) => l !== ''), next: 0 });
      return;
    }
    const queue = this.lists.get(u.pathname);
    if (queue === undefined || queue.length === 0) {
      res.writeHead(404, { 'Content-Type': 'application/json' }).end('{"kind":"Status","code":404,"message":"not found"}');
      return;
    }
    const body = queue.length > 1 ? queue.shift()! : queue[0]!;
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(body);
  }

  watching(p: string): boolean {
    return this.open.has(p) && !this.open.get(p)!.res.writableEnded;
  }

  /** Releases the next n recorded events of the open watch on `p`. */
  push(p: string, n = 1): void {
    const w = this.open.get(p);
    if (w === undefined) throw new Error(`no watch open on ${p}`);
    for (let i = 0; i < n; i++) {
      const line = w.lines[w.next++];
      if (line === undefined) throw new Error(`no more recorded events for ${p}`);
      w.res.write(`${line}\n`);
    }
  }

  pushRaw(p: string, line: string): void {
    this.open.get(p)!.res.write(`${line}\n`);
  }

  /** The server ends the watch cleanly, as when its timeoutSeconds runs out. */
  end(p: string): void {
    this.open.get(p)!.res.end();
    this.open.delete(p);
  }

  /** The connection breaks mid-stream. */
  drop(p: string): void {
    this.open.get(p)!.res.socket?.destroy();
    this.open.delete(p);
  }

  watchRequests(p: string): Seen[] {
    return this.requests.filter((r) => r.path === p && r.query.get('watch') === '1');
  }

  listRequests(p: string): Seen[] {
    return this.requests.filter((r) => r.path === p && r.query.get('watch') !== '1');
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('KubeWatcher against a fake API server', () => {
  let api: FakeApiServer;
  let watcher: KubeWatcher | undefined;
  let dir: string | undefined;

  afterEach(async () => {
    await watcher?.stop();
    watcher = undefined;
    await api.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('lists, follows events, bookmarks, a dropped connection, 410 Gone and a relist, with answers over time', async () => {
    api = new FakeApiServer('good-token')
      .list(PODS, 'pods-list-1.json', 'pods-list-2.json')
      .watch(PODS, 'pods-watch-1.ndjson', 'pods-watch-2.ndjson')
      .list(SERVICES, 'services-list.json')
      .list(SLICES, 'endpointslices-list.json')
      .watch(SLICES, 'endpointslices-watch-1.ndjson')
      .list(NODES, 'nodes-list.json');
    await api.listen();
    let now = T('09:58:00');
    const resolver = new ClusterResolver();
    watcher = new KubeWatcher({ baseUrl: api.url, token: 'good-token', node: 'node-a', backoff: { initialMs: 20, maxMs: 100 }, clock: () => now, pruneIntervalMs: 0 }, resolver);
    const notices: WatchNotice[] = [];
    watcher.onNotice((n) => notices.push(n));
    const pods = (): NonNullable<ReturnType<KubeWatcher['status']>['resources']['pods']> => watcher!.status().resources.pods!;
    watcher.start();
    await watcher.waitForSync(5000);
    await until(() => [PODS, SERVICES, SLICES, NODES].every((p) => api.watching(p)), 'four watches');
    expect(watcher.status().state).toBe('synced');

    const webA = '10.244.1.5';
    expect(resolver.resolve(webA, T('09:30:00'))).toMatchObject({ kind: 'pod', name: 'web-6d8f7c9b5f-r2x4m', service: { name: 'web' }, workload: { kind: 'Deployment', name: 'web' } });
    expect(resolver.resolve('10.244.1.6', T('09:30:00'))).toMatchObject({ name: 'db-migrate-7q2xk', workload: { kind: 'Job', name: 'db-migrate' } });
    expect(resolver.resolve('10.96.0.50', T('09:30:00'))).toMatchObject({ kind: 'service', name: 'web' });
    expect(resolver.resolve('10.0.0.11', T('09:30:00'))).toMatchObject({ kind: 'node', name: 'node-a' });
    expect(resolver.resolve('10.244.1.7', T('09:59:30')).reason).toBe('not-in-cluster-map');

    // ADDED without an IP (Pending), then MODIFIED with its IP.
    now = T('09:59:05');
    api.push(PODS, 2);
    await until(() => pods().events.MODIFIED === 1, 'the MODIFIED event');
    expect(resolver.resolve('10.244.1.7', T('09:59:30'))).toMatchObject({ name: 'web-6d8f7c9b5f-k9w8n', service: { name: 'web' } });

    // Terminating (deletionTimestamp 10:00:30), then DELETED at 10:00:10: the IP ends at the event.
    now = T('10:00:10');
    api.push(PODS, 2);
    await until(() => pods().events.DELETED === 1, 'the DELETED event');
    expect(resolver.resolve(webA, T('10:00:09')).name).toBe('web-6d8f7c9b5f-r2x4m');
    expect(resolver.resolve(webA, T('10:00:10')).reason).toBe('no-pod-at-that-time');

    api.push(PODS, 1);
    await until(() => pods().resourceVersion === '1010', 'the bookmark');
    expect(pods().events.BOOKMARK).toBe(1);

    // The connection breaks: the watcher comes back from the bookmark's version.
    api.drop(PODS);
    await until(() => api.watchRequests(PODS).length === 2 && api.watching(PODS), 'the second pods watch');
    expect(api.watchRequests(PODS)[1]!.query.get('resourceVersion')).toBe('1010');
    expect(pods().reconnects).toBe(1);
    expect(api.listRequests(PODS)).toHaveLength(1);

    // A new pod gets the freed IP.
    now = T('10:00:25');
    api.push(PODS, 1);
    await until(() => pods().events.ADDED === 2, 'the second ADDED event');
    expect(resolver.resolve(webA, T('10:00:09')).name).toBe('web-6d8f7c9b5f-r2x4m');
    expect(resolver.resolve(webA, T('10:00:15')).reason).toBe('no-pod-at-that-time');
    expect(resolver.resolve(webA, T('10:00:20'))).toMatchObject({ name: 'api-5b7c9d8f4c-t6z2q', workload: { kind: 'Deployment', name: 'api' } });
    expect(resolver.resolve(webA, T('10:00:20')).service).toBeUndefined();

    // An EndpointSlice appears for Service web: membership now comes from it.
    api.push(SLICES, 1);
    await until(() => watcher!.status().resources.endpointslices!.events.ADDED === 1, 'the EndpointSlice');
    expect(resolver.resolve('10.244.1.7', T('10:00:40')).services).toEqual([{ name: 'web', namespace: 'shop' }]);
    expect(resolver.stats().endpointSlices).toBe(1);

    // The server ends the services watch (timeoutSeconds): watched again at once, same version.
    api.end(SERVICES);
    await until(() => api.watchRequests(SERVICES).length === 2 && api.watching(SERVICES), 'the services re-watch');
    expect(api.watchRequests(SERVICES)[1]!.query.get('resourceVersion')).toBe('1000');
    expect(watcher.status().resources.services!.reconnects).toBe(0);

    // A malformed object is counted and skipped, the stream goes on.
    api.pushRaw(PODS, '{"type":"MODIFIED","object":{"kind":"Pod","metadata":{"name":"bad","namespace":"shop","uid":"u-bad","resourceVersion":"1012","creationTimestamp":"2026-11-20T10:00:00Z"},"status":{"podIP":"10.244.1.999"}}}');
    await until(() => pods().badObjects === 1, 'the bad object');
    expect(pods().lastError).toMatchObject({ code: 'bad-response', message: expect.stringContaining('status.podIP: not an IP address') });
    expect(pods().resourceVersion).toBe('1012');

    // 410 Gone inside the stream: relist (db-migrate is gone from the new list), then watch from it.
    now = T('10:01:00');
    api.push(PODS, 1);
    await until(() => pods().lists === 2 && api.watchRequests(PODS).length === 3 && api.watching(PODS), 'the relist and third watch');
    expect(pods().relists).toBe(1);
    expect(api.watchRequests(PODS)[2]!.query.get('resourceVersion')).toBe('2000');
    expect(notices.filter((n) => n.resource === 'pods' && n.type === 'LISTED')).toEqual([
      { resource: 'pods', type: 'LISTED', items: 2, removed: 0, resourceVersion: '1000' },
      { resource: 'pods', type: 'LISTED', items: 2, removed: 1, resourceVersion: '2000' },
    ]);
    expect(resolver.resolve('10.244.1.6', T('10:00:59')).name).toBe('db-migrate-7q2xk');
    expect(resolver.resolve('10.244.1.6', T('10:01:00')).reason).toBe('no-pod-at-that-time');
    expect(resolver.resolve(webA, T('10:01:00')).name).toBe('api-5b7c9d8f4c-t6z2q');
    expect(watcher.status().state).toBe('synced');

    // What went over the wire.
    for (const r of api.requests) expect(r.auth).toBe('Bearer good-token');
    for (const r of api.requests.filter((x) => x.path === PODS)) expect(r.query.get('fieldSelector')).toBe('spec.nodeName=node-a');
    for (const r of api.requests.filter((x) => x.path !== PODS)) expect(r.query.has('fieldSelector')).toBe(false);
    for (const r of api.requests.filter((x) => x.query.get('watch') === '1')) expect(r.query.get('allowWatchBookmarks')).toBe('true');
    expect(api.listRequests(PODS)[0]!.query.get('limit')).toBe('500');

    await watcher.stop();
    expect(watcher.status().state).toBe('stopped');
    expect(Object.values(watcher.status().resources).map((s) => s.state)).toEqual(['stopped', 'stopped', 'stopped', 'stopped']);
  });

  it('reports a refused token (401) as an error state, re-reads the token file, and recovers', async () => {
    api = new FakeApiServer('fresh-token').list(NODES, 'nodes-list.json');
    await api.listen();
    dir = mkdtempSync(path.join(os.tmpdir(), 'k8s-watch-'));
    const tokenFile = path.join(dir, 'token');
    writeFileSync(tokenFile, 'expired-token\n');
    const resolver = new ClusterResolver();
    watcher = new KubeWatcher({ baseUrl: api.url, tokenFile, resources: ['nodes'], backoff: { initialMs: 20, maxMs: 50 }, pruneIntervalMs: 0 }, resolver);
    watcher.start();
    await until(() => watcher!.status().state === 'error', 'the error state');
    const st = watcher.status().resources.nodes!;
    expect(st.state).toBe('error');
    expect(st.synced).toBe(false);
    expect(st.lastError).toMatchObject({ code: 'unauthorized', status: 401 });
    expect(st.lastError!.message).toMatch(/GET \/api\/v1\/nodes: 401 Unauthorized \(the bearer token was refused/);
    await expect(watcher.waitForSync(50)).rejects.toThrow(/nodes: GET \/api\/v1\/nodes: 401 Unauthorized/);
    expect(api.requests.every((r) => r.auth === 'Bearer expired-token')).toBe(true);

    writeFileSync(tokenFile, 'fresh-token\n');
    await watcher.waitForSync(5000);
    expect(watcher.status().state).toBe('synced');
    expect(api.requests.at(-1)!.auth).toBe('Bearer fresh-token');
    expect(resolver.resolve('10.0.0.11', T('10:00:00'))).toMatchObject({ kind: 'node', name: 'node-a' });
  });

  it('says why when the token file is missing or the server is down, and keeps retrying', async () => {
    api = new FakeApiServer('t');
    await api.listen();
    const resolver = new ClusterResolver();
    watcher = new KubeWatcher({ baseUrl: api.url, tokenFile: '/nonexistent/token', resources: ['pods'], backoff: { initialMs: 20, maxMs: 50 }, pruneIntervalMs: 0 }, resolver);
    watcher.start();
    await until(() => watcher!.status().resources.pods!.lastError !== undefined, 'an error');
    expect(watcher.status()).toMatchObject({ state: 'error', resources: { pods: { state: 'error', lastError: { code: 'config', message: expect.stringContaining('cannot read the service-account token /nonexistent/token') } } } });
    await watcher.stop();

    // A port that was just ours and is closed now (the replacement server listens first, so it cannot get it).
    const gone = api;
    api = new FakeApiServer('t');
    await api.listen();
    const url = gone.url;
    await gone.close();
    watcher = new KubeWatcher({ baseUrl: url, token: 't', resources: ['pods'], backoff: { initialMs: 20, maxMs: 50 }, pruneIntervalMs: 0 }, resolver);
    const failures: WatchNotice[] = [];
    watcher.onNotice((n) => n.type === 'FAILED' && failures.push(n));
    watcher.start();
    await until(() => failures.length >= 2, 'two failed attempts');
    expect(watcher.status()).toMatchObject({ state: 'degraded', resources: { pods: { state: 'backoff', lastError: { code: 'network' } } } });
  });

  it('relists on a 410 Gone answer to the watch request, and backs off on a 500', async () => {
    api = new FakeApiServer('t').list(NODES, 'nodes-list.json').watch(NODES, 'status:410', 'status:500');
    await api.listen();
    watcher = new KubeWatcher({ baseUrl: api.url, token: 't', resources: ['nodes'], backoff: { initialMs: 10, maxMs: 20 }, pruneIntervalMs: 0 }, new ClusterResolver());
    watcher.start();
    await until(() => api.watchRequests(NODES).length === 3 && api.watching(NODES), 'the third watch');
    expect(api.listRequests(NODES)).toHaveLength(2);
    const st = watcher.status().resources.nodes!;
    expect(st).toMatchObject({ state: 'watching', lists: 2, relists: 1, reconnects: 1, lastError: { code: 'http', status: 500 } });
    expect(st.lastError!.message).toBe('GET /api/v1/nodes: 500 status 500');
  });

  it('does not spin when the server ends every watch at once', async () => {
    api = new FakeApiServer('t').list(NODES, 'nodes-list.json').watch(NODES, ...new Array<string>(50).fill('end:'));
    await api.listen();
    watcher = new KubeWatcher({ baseUrl: api.url, token: 't', resources: ['nodes'], backoff: { initialMs: 40, maxMs: 80 }, pruneIntervalMs: 0 }, new ClusterResolver());
    watcher.start();
    await watcher.waitForSync(5000);
    await new Promise((r) => setTimeout(r, 400));
    // Without the backoff this would be hundreds of requests; with it, one per 32-96 ms.
    const n = api.watchRequests(NODES).length;
    expect(n).toBeGreaterThanOrEqual(2);
    expect(n).toBeLessThanOrEqual(14);
    expect(watcher.status().resources.nodes!.lists).toBe(1);
  });

  it('reopens a watch that went silent (no event, no bookmark) for longer than the idle timeout', async () => {
    api = new FakeApiServer('t').list(NODES, 'nodes-list.json');
    await api.listen();
    watcher = new KubeWatcher({ baseUrl: api.url, token: 't', resources: ['nodes'], watchIdleTimeoutMs: 150, backoff: { initialMs: 10, maxMs: 20 }, pruneIntervalMs: 0 }, new ClusterResolver());
    watcher.start();
    await until(() => api.watchRequests(NODES).length >= 2, 'a second watch', 3000);
    const st = watcher.status().resources.nodes!;
    expect(st.reconnects).toBeGreaterThanOrEqual(1);
    expect(st.lastError).toMatchObject({ code: 'network' });
    expect(api.listRequests(NODES)).toHaveLength(1);
    expect(api.watchRequests(NODES)[1]!.query.get('resourceVersion')).toBe('1000');
  });

  it('builds the in-cluster URL from the environment and refuses to start without one', () => {
    api = new FakeApiServer('t');
    const r = new ClusterResolver();
    expect(new KubeWatcher({ env: { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, token: 'x' }, r).status()).toMatchObject({ state: 'idle', baseUrl: 'https://10.96.0.1' });
    expect(new KubeWatcher({ env: { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '6443' }, token: 'x' }, r).status().baseUrl).toBe('https://[fd00::1]:6443');
    expect(() => new KubeWatcher({ env: {} }, r)).toThrow(KubeWatchError);
    expect(() => new KubeWatcher({ env: {} }, r)).toThrow(/KUBERNETES_SERVICE_HOST is not set/);
    expect(() => new KubeWatcher({ baseUrl: 'ftp://x' }, r)).toThrow(/http or https/);
  });
});
