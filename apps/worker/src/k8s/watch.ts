import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { StringDecoder } from 'node:string_decoder';
import { ObjectError, isObject, parseKubeObject, type KubeKind, type KubeObject } from './objects';
import type { ClusterResolver } from './resolver';

/**
 * Keeps a `ClusterResolver` in step with the cluster: list + watch of Pods, Services,
 * EndpointSlices (discovery.k8s.io/v1) and Nodes over the Kubernetes REST API.
 *
 * Written on node:http/https rather than `@kubernetes/client-node`: that library is large and
 * ESM-heavy (it breaks this repo's ts-jest setup) and we need four GETs and a line splitter.
 *
 * Per resource, the informer pattern the API documents:
 * 1. list (paginated with `limit`/`continue`), apply every item, and end whatever we knew that
 *    the list no longer has (it was deleted while we were not watching) at the list's time;
 * 2. watch from the list's `resourceVersion` with `allowWatchBookmarks=true`: the response is
 *    newline-delimited JSON events `{type, object}` with type ADDED, MODIFIED, DELETED, BOOKMARK
 *    (only `metadata.resourceVersion` is meaningful) or ERROR (a `Status`);
 * 3. when the server ends the watch (its `timeoutSeconds`), watch again from the last version
 *    seen; when the connection drops, the same after a backoff;
 * 4. `410 Gone` (as an HTTP status or as an ERROR event with `code: 410`, "too old resource
 *    version") means the version left the server's history: list again.
 *
 * Times: a DELETED object's intervals end at the event's arrival (`clock()`), not at its
 * `deletionTimestamp` (the end of the grace period, which a fast shutdown beats).
 *
 * Errors never escape: 401/403 and unreadable credentials put the resource in state `error`
 * (retried with backoff; a 401 re-reads the token file first, since kubelet rotates projected
 * tokens), network failures in state `backoff`. `status()` says which and why.
 */

export type WatchResource = 'pods' | 'services' | 'endpointslices' | 'nodes';
export const WATCH_RESOURCES: readonly WatchResource[] = ['pods', 'services', 'endpointslices', 'nodes'];

const RESOURCE: Record<WatchResource, { path: string; kind: KubeKind }> = {
  pods: { path: '/api/v1/pods', kind: 'Pod' },
  services: { path: '/api/v1/services', kind: 'Service' },
  endpointslices: { path: '/apis/discovery.k8s.io/v1/endpointslices', kind: 'EndpointSlice' },
  nodes: { path: '/api/v1/nodes', kind: 'Node' },
};

/** The API path each resource is listed and watched on (what the chart's ClusterRole must allow). */
export const WATCH_PATHS: Readonly<Record<WatchResource, string>> = Object.fromEntries(WATCH_RESOURCES.map((r) => [r, RESOURCE[r].path])) as Record<WatchResource, string>;

/** A watch ended by the server sooner than this counts as a failed attempt for the backoff. */
const MIN_WATCH_MS = 1000;

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubeWatcherOptions {
  /** API server URL, e.g. `https://10.96.0.1:443`; default: in-cluster from KUBERNETES_SERVICE_HOST/PORT. */
  baseUrl?: string;
  /** A fixed bearer token; default: read from `tokenFile`. */
  token?: string;
  /** Default: the service-account token, re-read every `tokenRefreshMs` and after a 401. */
  tokenFile?: string;
  /** CA bundle (PEM) for https; default: the service-account `ca.crt` when it exists. */
  ca?: string;
  caFile?: string;
  /**
   * Watch only this node's pods (`fieldSelector=spec.nodeName=<node>`); Services, EndpointSlices
   * and nodes stay cluster-wide. Pods of other nodes are then unknown, so remote peers resolve
   * to their Service (if they are reached through its ClusterIP) or not at all: use it when the
   * memory of a big cluster's pod list matters more than naming remote pods.
   */
  node?: string;
  resources?: readonly WatchResource[];
  backoff?: { initialMs?: number; maxMs?: number };
  tokenRefreshMs?: number;
  /** Server-side end of each watch (`timeoutSeconds`); the watcher then watches again. Default 300. */
  watchTimeoutSeconds?: number;
  /**
   * A watch that sends nothing (not even a bookmark) for this long is presumed dead (a silent
   * network partition) and reopened. Default: `watchTimeoutSeconds` + 60 s.
   */
  watchIdleTimeoutMs?: number;
  /** Items per list page. Default 500. */
  pageSize?: number;
  /** Deadline of one list page. Default 60 s. */
  listTimeoutMs?: number;
  /** Calls `resolver.prune(clock())` this often; 0 never. Default 60 s. */
  pruneIntervalMs?: number;
  /** µs since the epoch; tests replace it. */
  clock?: () => number;
  /** Environment for the in-cluster configuration; default `process.env`. */
  env?: Readonly<Record<string, string | undefined>>;
}

export type KubeWatchErrorCode = 'config' | 'unauthorized' | 'forbidden' | 'gone' | 'http' | 'network' | 'bad-response';

export class KubeWatchError extends Error {
  constructor(
    readonly code: KubeWatchErrorCode,
    message: string,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'KubeWatchError';
  }
}

export type ResourceState = 'idle' | 'listing' | 'watching' | 'backoff' | 'error' | 'stopped';

export interface ResourceStatus {
  state: ResourceState;
  /** Last version seen (list, event or bookmark). */
  resourceVersion: string;
  /** Listed at least once. */
  synced: boolean;
  lists: number;
  /** Lists forced by 410 Gone. */
  relists: number;
  /** Watches reopened after a dropped connection or an error. */
  reconnects: number;
  events: Record<'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR', number>;
  /** Objects that failed validation (skipped; see `lastError`). */
  badObjects: number;
  lastError?: { code: KubeWatchErrorCode; message: string; status?: number; atUs: number };
}

export type WatcherState = 'idle' | 'starting' | 'synced' | 'degraded' | 'error' | 'stopped';

export interface WatcherStatus {
  /** `error`: some resource cannot authenticate or be configured; `degraded`: some is retrying. */
  state: WatcherState;
  baseUrl: string;
  node?: string;
  resources: Partial<Record<WatchResource, ResourceStatus>>;
}

/** What happened, for logs and tests. */
export type WatchNotice =
  | { resource: WatchResource; type: 'LISTED'; items: number; removed: number; resourceVersion: string }
  | { resource: WatchResource; type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK'; resourceVersion: string }
  | { resource: WatchResource; type: 'FAILED'; error: KubeWatchError; retryInMs: number };

interface Conn {
  url: URL;
  token: () => string;
  ca?: string;
}

/** Resolves the base URL: explicit, else in-cluster. Throws `KubeWatchError('config')`. */
function baseUrlOf(opts: KubeWatcherOptions): URL {
  if (opts.baseUrl !== undefined) {
    try {
      return new URL(opts.baseUrl);
    } catch (err) {
      throw new KubeWatchError('config', `baseUrl is not a URL: ${opts.baseUrl}`, undefined, { cause: err });
    }
  }
  const env = opts.env ?? process.env;
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT ?? '443';
  if (!host) throw new KubeWatchError('config', 'not running in a cluster (KUBERNETES_SERVICE_HOST is not set): give a baseUrl and a token, or load a cluster map instead');
  return new URL(`https://${host.includes(':') ? `[${host}]` : host}:${port}`);
}

export class KubeWatcher {
  private readonly base: URL;
  private readonly resources: readonly WatchResource[];
  private readonly clock: () => number;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly status_ = new Map<WatchResource, ResourceStatus>();
  private readonly known = new Map<WatchResource, Map<string, KubeObject>>();
  private readonly listeners = new Set<(n: WatchNotice) => void>();
  private readonly inflight = new Set<http.ClientRequest>();
  private readonly sleepers = new Set<() => void>();
  private loops: Promise<void>[] = [];
  private running = false;
  private stopped = false;
  private pruneTimer: NodeJS.Timeout | undefined;
  private tokenValue: string | undefined;
  private tokenReadAt = 0;
  private tokenStale = true;
  private caValue: string | undefined;

  constructor(
    private readonly opts: KubeWatcherOptions,
    private readonly resolver: ClusterResolver,
  ) {
    this.base = baseUrlOf(opts);
    if (this.base.protocol !== 'http:' && this.base.protocol !== 'https:') throw new KubeWatchError('config', `baseUrl must be http or https: ${this.base.href}`);
    this.resources = opts.resources ?? WATCH_RESOURCES;
    this.clock = opts.clock ?? ((): number => Date.now() * 1000);
    this.initialBackoffMs = opts.backoff?.initialMs ?? 500;
    this.maxBackoffMs = opts.backoff?.maxMs ?? 30_000;
    for (const r of this.resources) {
      this.status_.set(r, { state: 'idle', resourceVersion: '', synced: false, lists: 0, relists: 0, reconnects: 0, events: { ADDED: 0, MODIFIED: 0, DELETED: 0, BOOKMARK: 0, ERROR: 0 }, badObjects: 0 });
      this.known.set(r, new Map());
    }
  }

  /** Starts the list/watch loops; returns at once. Errors show in `status()`, never as throws. */
  start(): this {
    if (this.running || this.stopped) return this;
    this.running = true;
    this.loops = this.resources.map((r) => this.run(r));
    const every = this.opts.pruneIntervalMs ?? 60_000;
    if (every > 0) {
      this.pruneTimer = setInterval(() => this.resolver.prune(this.clock()), every);
      this.pruneTimer.unref();
    }
    return this;
  }

  /** Stops every loop, aborts open requests and waits for the loops to finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.pruneTimer !== undefined) clearInterval(this.pruneTimer);
    for (const req of this.inflight) req.destroy();
    for (const wake of this.sleepers) wake();
    await Promise.all(this.loops);
    for (const s of this.status_.values()) s.state = 'stopped';
  }

  /** Subscribes to notices; returns the unsubscribe function. */
  onNotice(fn: (n: WatchNotice) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Resolves once every resource has been listed; rejects after `timeoutMs` with the current errors. */
  waitForSync(timeoutMs = 30_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => [...this.status_.values()].every((s) => s.synced);
      if (check()) return resolve();
      const timer = setTimeout(() => {
        off();
        const errs = [...this.status_.entries()].filter(([, s]) => s.lastError).map(([r, s]) => `${r}: ${s.lastError!.message}`);
        reject(new KubeWatchError('network', `not synced after ${timeoutMs} ms${errs.length ? `: ${errs.join('; ')}` : ''}`));
      }, timeoutMs);
      const off = this.onNotice(() => {
        if (check()) {
          clearTimeout(timer);
          off();
          resolve();
        }
      });
    });
  }

  status(): WatcherStatus {
    const resources: Partial<Record<WatchResource, ResourceStatus>> = {};
    for (const [r, s] of this.status_) resources[r] = { ...s, events: { ...s.events }, ...(s.lastError ? { lastError: { ...s.lastError } } : {}) };
    const all = [...this.status_.values()];
    let state: WatcherState;
    if (this.stopped) state = 'stopped';
    else if (!this.running) state = 'idle';
    else if (all.some((s) => s.state === 'error')) state = 'error';
    else if (all.some((s) => s.state === 'backoff')) state = 'degraded';
    else if (all.every((s) => s.synced)) state = 'synced';
    else state = 'starting';
    return { state, baseUrl: this.base.origin, ...(this.opts.node !== undefined ? { node: this.opts.node } : {}), resources };
  }

  private notify(n: WatchNotice): void {
    for (const fn of this.listeners) fn(n);
  }

  private async run(resource: WatchResource): Promise<void> {
    const st = this.status_.get(resource)!;
    let needList = true;
    let attempt = 0;
    while (!this.stopped) {
      try {
        if (needList) {
          st.state = 'listing';
          await this.list(resource, st);
          needList = false;
          attempt = 0;
        }
        st.state = 'watching';
        const started = Date.now();
        await this.watch(resource, st);
        // A watch the server ends at once, again and again (a misbehaving proxy), must not spin.
        if (Date.now() - started < MIN_WATCH_MS) await this.sleep(this.backoff(attempt++));
        else attempt = 0;
      } catch (err) {
        if (this.stopped) break;
        const e = err instanceof KubeWatchError ? err : new KubeWatchError('network', (err as Error).message, undefined, { cause: err });
        if (e.code === 'gone' && !needList) {
          // Our version left the server's history: only a fresh list can catch up. (A 410 while
          // listing, an expired continue token, is retried below with backoff.)
          needList = true;
          st.relists++;
          continue;
        }
        if (e.code === 'unauthorized') this.tokenStale = true;
        const delay = this.backoff(attempt++);
        st.state = e.code === 'unauthorized' || e.code === 'forbidden' || e.code === 'config' ? 'error' : 'backoff';
        st.lastError = { code: e.code, message: e.message, ...(e.status !== undefined ? { status: e.status } : {}), atUs: this.clock() };
        if (!needList) st.reconnects++;
        this.notify({ resource, type: 'FAILED', error: e, retryInMs: delay });
        await this.sleep(delay);
      }
    }
    st.state = 'stopped';
  }

  private backoff(attempt: number): number {
    const d = Math.min(this.maxBackoffMs, this.initialBackoffMs * 2 ** Math.min(attempt, 20));
    return Math.round(d * (0.8 + 0.4 * Math.random()));
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.sleepers.add(wake);
    });
  }

  private conn(): Conn {
    return { url: this.base, token: () => this.token(), ...(this.ca() !== undefined ? { ca: this.ca()! } : {}) };
  }

  private token(): string {
    if (this.opts.token !== undefined) return this.opts.token;
    const file = this.opts.tokenFile ?? `${SERVICE_ACCOUNT_DIR}/token`;
    const now = Date.now();
    if (this.tokenStale || this.tokenValue === undefined || now - this.tokenReadAt >= (this.opts.tokenRefreshMs ?? 60_000)) {
      try {
        this.tokenValue = readFileSync(file, 'utf8').trim();
      } catch (err) {
        throw new KubeWatchError('config', `cannot read the service-account token ${file}: ${(err as Error).message}`, undefined, { cause: err });
      }
      this.tokenReadAt = now;
      this.tokenStale = false;
    }
    return this.tokenValue;
  }

  private ca(): string | undefined {
    if (this.opts.ca !== undefined) return this.opts.ca;
    if (this.base.protocol !== 'https:') return undefined;
    if (this.caValue === undefined) {
      const file = this.opts.caFile ?? `${SERVICE_ACCOUNT_DIR}/ca.crt`;
      try {
        this.caValue = readFileSync(file, 'utf8');
      } catch (err) {
        // Without the cluster CA, fall back to the system roots only when no file was asked for.
        if (this.opts.caFile !== undefined) throw new KubeWatchError('config', `cannot read the CA bundle ${file}: ${(err as Error).message}`, undefined, { cause: err });
        this.caValue = '';
      }
    }
    return this.caValue === '' ? undefined : this.caValue;
  }

  private query(resource: WatchResource, params: Record<string, string>): URL {
    const url = new URL(RESOURCE[resource].path, this.base);
    if (resource === 'pods' && this.opts.node !== undefined) url.searchParams.set('fieldSelector', `spec.nodeName=${this.opts.node}`);
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    return url;
  }

  /** Opens a GET and resolves with the response once its status is 200; maps other statuses to errors. */
  private get(url: URL, timeoutMs: number): Promise<http.IncomingMessage> {
    const c = this.conn();
    const headers = { Authorization: `Bearer ${c.token()}`, Accept: 'application/json', 'User-Agent': 'kubeshark-mcp-worker' };
    return new Promise((resolve, reject) => {
      const mod = url.protocol === 'https:' ? https : http;
      const req = mod.request(url, { method: 'GET', headers, ...(c.ca !== undefined ? { ca: c.ca } : {}) }, (res) => {
        const status = res.statusCode ?? 0;
        if (status === 200) {
          resolve(res);
          return;
        }
        readAll(res)
          .then((body) => reject(statusError(status, body, url)))
          .catch((err: unknown) => reject(new KubeWatchError('network', `${url.pathname}: ${(err as Error).message}`, status, { cause: err })));
      });
      this.inflight.add(req);
      req.on('close', () => this.inflight.delete(req));
      // Socket inactivity: for a list, no answer; for a watch, not even a bookmark.
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`nothing received for ${timeoutMs} ms`)));
      req.on('error', (err) => reject(new KubeWatchError('network', `${url.host}${url.pathname}: ${err.message}`, undefined, { cause: err })));
      req.end();
    });
  }

  private async list(resource: WatchResource, st: ResourceStatus): Promise<void> {
    const kind = RESOURCE[resource].kind;
    const items: KubeObject[] = [];
    let cont = '';
    let rv = '';
    do {
      const url = this.query(resource, { limit: String(this.opts.pageSize ?? 500), ...(cont ? { continue: cont } : {}) });
      const res = await this.get(url, this.opts.listTimeoutMs ?? 60_000);
      const text = await readAll(res);
      let doc: unknown;
      try {
        doc = JSON.parse(text) as unknown;
      } catch {
        throw new KubeWatchError('bad-response', `${url.pathname}: the list is not JSON`);
      }
      if (!isObject(doc) || !Array.isArray(doc.items)) throw new KubeWatchError('bad-response', `${url.pathname}: not a list (no items)`);
      const meta = isObject(doc.metadata) ? doc.metadata : {};
      rv = typeof meta.resourceVersion === 'string' ? meta.resourceVersion : rv;
      cont = typeof meta.continue === 'string' ? meta.continue : '';
      doc.items.forEach((raw, i) => {
        const o = this.parse(raw, `${resource}.items[${i}]`, kind, st);
        if (o !== undefined) items.push(o);
      });
    } while (cont !== '' && !this.stopped);
    if (this.stopped) return;
    const now = this.clock();
    const known = this.known.get(resource)!;
    const seen = new Map<string, KubeObject>();
    for (const o of items) {
      this.resolver.apply(o, now);
      seen.set(o.value.uid, o);
    }
    let removed = 0;
    for (const [uid, o] of known) {
      if (!seen.has(uid)) {
        // Deleted while we were not watching: the best bound on its end is now.
        this.resolver.remove(o, now);
        removed++;
      }
    }
    this.known.set(resource, seen);
    st.resourceVersion = rv;
    st.lists++;
    st.synced = true;
    this.notify({ resource, type: 'LISTED', items: items.length, removed, resourceVersion: rv });
  }

  private parse(raw: unknown, path: string, kind: KubeKind, st: ResourceStatus): KubeObject | undefined {
    try {
      const o = parseKubeObject(raw, path, kind);
      if (o.kind === 'unknown') throw new ObjectError(`${path}.kind`, `expected ${kind}, got ${o.name}`);
      return o;
    } catch (err) {
      if (!(err instanceof ObjectError)) throw err;
      st.badObjects++;
      st.lastError = { code: 'bad-response', message: err.message, atUs: this.clock() };
      return undefined;
    }
  }

  private watch(resource: WatchResource, st: ResourceStatus): Promise<void> {
    const url = this.query(resource, {
      watch: '1',
      allowWatchBookmarks: 'true',
      resourceVersion: st.resourceVersion,
      timeoutSeconds: String(this.opts.watchTimeoutSeconds ?? 300),
    });
    const idleMs = this.opts.watchIdleTimeoutMs ?? ((this.opts.watchTimeoutSeconds ?? 300) + 60) * 1000;
    return this.get(url, idleMs).then(
      (res) =>
        new Promise<void>((resolve, reject) => {
          const decoder = new StringDecoder('utf8');
          let buf = '';
          let failed: KubeWatchError | undefined;
          const fail = (e: KubeWatchError): void => {
            if (failed !== undefined) return;
            failed = e;
            res.destroy();
          };
          res.on('data', (chunk: Buffer) => {
            if (failed !== undefined) return;
            buf += decoder.write(chunk);
            let nl: number;
            while ((nl = buf.indexOf('\n')) >= 0 && failed === undefined) {
              const line = buf.slice(0, nl).trim();
              buf = buf.slice(nl + 1);
              if (line === '') continue;
              try {
                this.onEvent(resource, st, line);
              } catch (err) {
                fail(err instanceof KubeWatchError ? err : new KubeWatchError('bad-response', (err as Error).message, undefined, { cause: err }));
              }
            }
          });
          res.on('error', (err) => fail(new KubeWatchError('network', `${resource} watch: ${err.message}`, undefined, { cause: err })));
          res.on('close', () => {
            if (failed !== undefined) reject(failed);
            else if (!res.complete) reject(new KubeWatchError('network', `${resource} watch connection dropped`));
            else resolve();
          });
        }),
    );
  }

  private onEvent(resource: WatchResource, st: ResourceStatus, line: string): void {
    let ev: unknown;
    try {
      ev = JSON.parse(line) as unknown;
    } catch {
      throw new KubeWatchError('bad-response', `${resource} watch: a line is not JSON: ${line.slice(0, 80)}`);
    }
    if (!isObject(ev) || typeof ev.type !== 'string' || !isObject(ev.object)) throw new KubeWatchError('bad-response', `${resource} watch: not a watch event: ${line.slice(0, 80)}`);
    const object = ev.object;
    const meta = isObject(object.metadata) ? object.metadata : {};
    const rv = typeof meta.resourceVersion === 'string' ? meta.resourceVersion : undefined;
    switch (ev.type) {
      case 'ADDED':
      case 'MODIFIED':
      case 'DELETED': {
        const type = ev.type;
        st.events[type]++;
        if (rv !== undefined) st.resourceVersion = rv;
        const o = this.parse(object, `${resource} ${type} event object`, RESOURCE[resource].kind, st);
        if (o !== undefined) {
          const known = this.known.get(resource)!;
          const now = this.clock();
          if (type === 'DELETED') {
            this.resolver.remove(o, now);
            known.delete(o.value.uid);
          } else {
            this.resolver.apply(o, now);
            known.set(o.value.uid, o);
          }
        }
        this.notify({ resource, type, resourceVersion: st.resourceVersion });
        return;
      }
      case 'BOOKMARK':
        st.events.BOOKMARK++;
        if (rv !== undefined) st.resourceVersion = rv;
        this.notify({ resource, type: 'BOOKMARK', resourceVersion: st.resourceVersion });
        return;
      case 'ERROR': {
        st.events.ERROR++;
        const code = typeof object.code === 'number' ? object.code : 0;
        const message = typeof object.message === 'string' ? object.message : 'watch error';
        if (code === 410) throw new KubeWatchError('gone', `${resource} watch: ${message}`, 410);
        throw new KubeWatchError(code === 401 ? 'unauthorized' : code === 403 ? 'forbidden' : 'http', `${resource} watch: ${code} ${message}`, code);
      }
      default:
        throw new KubeWatchError('bad-response', `${resource} watch: unknown event type ${ev.type}`);
    }
  }
}

function readAll(res: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
  });
}

/** An API error status (a `Status` object body when the server sent one) as a KubeWatchError. */
function statusError(status: number, body: string, url: URL): KubeWatchError {
  let message = '';
  try {
    const s = JSON.parse(body) as unknown;
    if (isObject(s) && typeof s.message === 'string') message = s.message;
  } catch {
    message = body.slice(0, 200);
  }
  const what = `GET ${url.pathname}: ${status}${message ? ` ${message}` : ''}`;
  switch (status) {
    case 401:
      return new KubeWatchError('unauthorized', `${what} (the bearer token was refused: check the service-account token)`, status);
    case 403:
      return new KubeWatchError('forbidden', `${what} (RBAC: the service account needs list and watch on this resource)`, status);
    case 410:
      return new KubeWatchError('gone', what, status);
    default:
      return new KubeWatchError('http', what, status);
  }
}
