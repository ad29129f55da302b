import { ErrorCode, McpError, type Resource, type ResourceTemplate } from '@modelcontextprotocol/sdk/types.js';
import { renderReference } from '@kubeshark-mcp/kfl';
import { ToolDefinitionError } from './errors';
import { flowView } from './model';
import { apiCallView } from './tools/api-calls';
import { buildServiceMap, serviceMapMermaid } from './service-map';
import type { CallContext, TrafficSource } from './traffic-source';

/**
 * MCP resources: read-only views an application can attach to the model's context, and the
 * live-traffic resource a client can subscribe to. Every resource needs some TrafficSource
 * capabilities; one whose source lacks them is not listed (as with tools).
 *
 * URIs use the `kubeshark://` scheme. Templates (RFC 6570 level 1) take one variable each.
 */

export interface ResourceContent {
  mimeType: string;
  text: string;
}

interface Common {
  name: string;
  title: string;
  description: string;
  mimeType: string;
  requires: readonly (keyof TrafficSource)[];
}

export interface StaticResource extends Common {
  uri: string;
  /** Subscribers are told when this returns something new (see LiveWatcher). */
  subscribable?: boolean;
  read(source: TrafficSource, ctx: CallContext): Promise<string>;
}

export interface TemplateResource extends Common {
  uriTemplate: string;
  /** The template's variable values, or undefined when the URI is not this template's. */
  match(uri: string): Record<string, string> | undefined;
  read(params: Record<string, string>, source: TrafficSource, ctx: CallContext): Promise<string>;
  /** Candidate values for a variable, starting with `prefix`. */
  complete?: Record<string, (prefix: string, source: TrafficSource, ctx: CallContext) => Promise<string[]>>;
}

const json = (v: unknown): string => JSON.stringify(v, null, 1);

/** The newest API calls: the last minute of captured calls (by capture time, so replays work too). */
export const LIVE_TRAFFIC_URI = 'kubeshark://traffic/live';
const LIVE_WINDOW_US = 60_000_000;
const LIVE_MAX = 100;

async function newestCalls(source: TrafficSource, ctx: CallContext): Promise<{ calls: ReturnType<typeof apiCallView>[]; newest_us: number }> {
  const b = await source.getDataBoundaries!(ctx);
  const newest = Math.max(0, ...b.boundaries.map((x) => x.entries?.newest_us ?? 0));
  if (newest === 0) return { calls: [], newest_us: 0 };
  const calls: ReturnType<typeof apiCallView>[] = [];
  let after: string | undefined;
  // Oldest first within the last minute; keep the newest LIVE_MAX.
  for (let page = 0; page < 50; page++) {
    const r = await source.listApiCalls!({ since_us: newest - LIVE_WINDOW_US, until_us: newest, limit: 500, ...(after ? { after } : {}) }, ctx);
    calls.push(...r.calls.map(apiCallView));
    if (calls.length > LIVE_MAX) calls.splice(0, calls.length - LIVE_MAX);
    const last = r.calls[r.calls.length - 1];
    if (!r.more || !last) break;
    after = last.cursor;
  }
  return { calls, newest_us: newest };
}

export const STATIC_RESOURCES: readonly StaticResource[] = [
  {
    uri: 'kubeshark://kfl/reference',
    name: 'kfl-reference',
    title: 'KFL2 filter reference',
    description: 'The filter language of the kfl arguments: syntax, operators, functions, and every field with its type and meaning.',
    mimeType: 'text/markdown',
    requires: [],
    async read() {
      return renderReference();
    },
  },
  {
    uri: LIVE_TRAFFIC_URI,
    name: 'live-traffic',
    title: 'Live traffic',
    description: `The newest API calls (up to ${LIVE_MAX}, from the last minute of captured traffic), newest last. Subscribe to be told when new calls arrive.`,
    mimeType: 'application/json',
    requires: ['listApiCalls', 'getDataBoundaries'],
    subscribable: true,
    async read(source, ctx) {
      return json(await newestCalls(source, ctx));
    },
  },
  {
    uri: 'kubeshark://service-map',
    name: 'service-map',
    title: 'Service map (JSON)',
    description: 'Who talks to whom: nodes (addresses or workloads) and client -> server edges with flows, bytes and TCP handshake p50/p99; servers carry their API call counts and error rates.',
    mimeType: 'application/json',
    requires: ['listFlows'],
    async read(source, ctx) {
      return json(await buildServiceMap(source, { limit: 100 }, ctx));
    },
  },
  {
    uri: 'kubeshark://service-map.mmd',
    name: 'service-map-mermaid',
    title: 'Service map (Mermaid)',
    description: 'The service map as a Mermaid flowchart, ready to render.',
    mimeType: 'text/vnd.mermaid',
    requires: ['listFlows'],
    async read(source, ctx) {
      return serviceMapMermaid(await buildServiceMap(source, { limit: 100 }, ctx));
    },
  },
  {
    uri: 'kubeshark://workers',
    name: 'workers',
    title: 'Nodes and workers',
    description: 'Every worker (one per node): state, capture sources, packet and drop counters, and the time range of the data it holds.',
    mimeType: 'application/json',
    requires: ['getStatus'],
    async read(source, ctx) {
      return json(await source.getStatus!(ctx));
    },
  },
  {
    uri: 'kubeshark://snapshots',
    name: 'snapshots',
    title: 'Snapshots',
    description: 'Saved snapshots (frozen time ranges of packets and flows) on every node.',
    mimeType: 'application/json',
    requires: ['listSnapshots'],
    async read(source, ctx) {
      return json(await source.listSnapshots!(ctx));
    },
  },
  {
    uri: 'kubeshark://namespaces',
    name: 'namespaces',
    title: 'Namespaces',
    description: 'The Kubernetes namespaces the workers know, each with its pods and Services (names), from their cluster maps or the API server.',
    mimeType: 'application/json',
    requires: ['listWorkloads'],
    async read(source, ctx) {
      const list = await source.listWorkloads!({}, ctx);
      const byNs = new Map<string, { pods: string[]; services: string[] }>();
      for (const ns of list.namespaces) byNs.set(ns, { pods: [], services: [] });
      for (const w of list.workloads) {
        if (w.kind === 'node') continue;
        const e = byNs.get(w.namespace) ?? { pods: [], services: [] };
        (w.kind === 'pod' ? e.pods : e.services).push(w.name);
        byNs.set(w.namespace, e);
      }
      const nodes = list.workloads.filter((w) => w.kind === 'node').map((w) => w.name);
      return json({ namespaces: [...byNs].map(([name, e]) => ({ name, ...e })), nodes, coverage: list.nodes });
    },
  },
  {
    uri: 'kubeshark://api-stats',
    name: 'api-stats',
    title: 'API statistics',
    description: 'Calls, failures and latency percentiles per server and endpoint over everything retained.',
    mimeType: 'application/json',
    requires: ['getApiStats'],
    async read(source, ctx) {
      return json(await source.getApiStats!({}, ctx));
    },
  },
];

const API_CALL_PREFIX = 'kubeshark://api-calls/';

/** Names of the workloads the workers know, for completion: namespaces, pods, Services. */
export async function workloadNames(source: TrafficSource, kind: 'namespace' | 'pod' | 'service', prefix: string, ctx: CallContext, namespace?: string): Promise<string[]> {
  if (!source.listWorkloads) return [];
  const list = await source.listWorkloads(namespace ? { namespace } : {}, ctx);
  const names = kind === 'namespace' ? list.namespaces : [...new Set(list.workloads.filter((w) => w.kind === kind).map((w) => w.name))];
  return names.filter((n) => n.startsWith(prefix)).sort();
}

const NAMESPACE_PREFIX = 'kubeshark://namespaces/';
const FLOW_PREFIX = 'kubeshark://flows/';
const FLOW_ID = /^[^/\s"\\]+\/\d+$/;

export const TEMPLATE_RESOURCES: readonly TemplateResource[] = [
  {
    uriTemplate: `${FLOW_PREFIX}{id}`,
    name: 'flow',
    title: 'One L4 flow',
    description: 'One TCP or UDP flow by the id list_l4_flows and list_api_calls give ("<node>/<index>"): endpoints with identities, counters per direction, state, handshake times, TCP health.',
    mimeType: 'application/json',
    requires: ['listFlows'],
    match(uri) {
      if (!uri.startsWith(FLOW_PREFIX)) return undefined;
      let id: string;
      try {
        id = decodeURIComponent(uri.slice(FLOW_PREFIX.length));
      } catch {
        return undefined;
      }
      return FLOW_ID.test(id) ? { id } : undefined;
    },
    async read(params, source, ctx) {
      // The flow's own node answers: the filter runs on every worker, only that one has the id.
      const r = await source.listFlows({ aggregate: 'none', order_by: 'bytes', limit: 1, kfl: `flow_id == ${JSON.stringify(params.id)}` }, ctx);
      const f = r.flows[0];
      if (!f) throw new McpError(-32002, `Resource not found: flow ${params.id} (it may have been evicted by the worker's flow limits; see get_status)`);
      return json({ flow: flowView(f), nodes: r.nodes });
    },
    complete: {
      async id(prefix, source, ctx) {
        const r = await source.listFlows({ aggregate: 'none', order_by: 'recent', limit: 100 }, ctx);
        return r.flows.map((f) => f.id).filter((id) => id.startsWith(prefix));
      },
    },
  },
  {
    uriTemplate: `${NAMESPACE_PREFIX}{namespace}`,
    name: 'namespace',
    title: 'One namespace',
    description: 'The pods and Services of one namespace (IPs, nodes, owners, labels), as the workers resolve them; namespace completes to the known names.',
    mimeType: 'application/json',
    requires: ['listWorkloads'],
    match(uri) {
      if (!uri.startsWith(NAMESPACE_PREFIX)) return undefined;
      const ns = decodeURIComponent(uri.slice(NAMESPACE_PREFIX.length));
      return /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(ns) ? { namespace: ns } : undefined;
    },
    async read(params, source, ctx) {
      const list = await source.listWorkloads!({ namespace: params.namespace! }, ctx);
      return json({ namespace: params.namespace, workloads: list.workloads.filter((w) => w.namespace === params.namespace), coverage: list.nodes });
    },
    complete: {
      namespace: (prefix, source, ctx) => workloadNames(source, 'namespace', prefix, ctx),
    },
  },
  {
    uriTemplate: `${API_CALL_PREFIX}{id}`,
    name: 'api-call',
    title: 'One API call',
    description: 'The full record of one API call (headers, body previews, timing, the flow it rode on); id as list_api_calls returns it, with its slashes percent-encoded or not.',
    mimeType: 'application/json',
    requires: ['getApiCall'],
    match(uri) {
      if (!uri.startsWith(API_CALL_PREFIX)) return undefined;
      const raw = uri.slice(API_CALL_PREFIX.length);
      let id: string;
      try {
        id = decodeURIComponent(raw);
      } catch {
        return undefined;
      }
      return id ? { id } : undefined;
    },
    async read(params, source, ctx) {
      return json(await source.getApiCall!(params.id!, ctx));
    },
    complete: {
      async id(prefix, source, ctx) {
        if (!source.listApiCalls || !source.getDataBoundaries) return [];
        const { calls } = await newestCalls(source, ctx);
        return calls.map((c) => c.id).filter((id) => id.startsWith(prefix)).reverse();
      },
    },
  },
];

export const resourceNotFound = (uri: string): McpError =>
  // MCP reserves -32002 for "resource not found".
  new McpError(-32002, `Resource not found: ${uri}. List them with resources/list and resources/templates/list.`);

/**
 * Resources other hub plugins add (`app.mcp.registerResource`), shared by every session.
 * Checked at registration: a `scheme://` URI (or a template with `{var}` placeholders), a
 * name, and no clash with a built-in or an earlier registration.
 */
export class ResourceExtensions {
  readonly statics: StaticResource[] = [];
  readonly templates: TemplateResource[] = [];

  register(r: StaticResource | TemplateResource): void {
    const uri = 'uri' in r ? r.uri : r.uriTemplate;
    if (!/^[a-z][a-z0-9+.-]*:\/\/\S+$/.test(uri)) throw new ToolDefinitionError(`resource "${r.name}": "${uri}" is not a URI (scheme://...)`);
    if (!r.name || !r.mimeType) throw new ToolDefinitionError(`resource "${uri}" needs a name and a mimeType`);
    const taken = [...STATIC_RESOURCES, ...this.statics].map((x) => x.uri).concat([...TEMPLATE_RESOURCES, ...this.templates].map((x) => x.uriTemplate));
    if (taken.includes(uri)) throw new ToolDefinitionError(`resource "${uri}" is registered twice`);
    if ('uri' in r) this.statics.push(r);
    else {
      if (!/\{[A-Za-z_][A-Za-z0-9_]*\}/.test(r.uriTemplate)) throw new ToolDefinitionError(`resource template "${uri}" has no {variable}`);
      this.templates.push(r);
    }
  }
}

/** The resources a source can serve, with their lookups. */
export class ResourceCatalogue {
  readonly statics: StaticResource[];
  readonly templates: TemplateResource[];

  constructor(
    readonly source: TrafficSource,
    extensions?: ResourceExtensions,
  ) {
    const has = (r: Common): boolean => r.requires.every((m) => typeof source[m] === 'function');
    this.statics = [...STATIC_RESOURCES, ...(extensions?.statics ?? [])].filter(has);
    this.templates = [...TEMPLATE_RESOURCES, ...(extensions?.templates ?? [])].filter(has);
  }

  list(): Resource[] {
    return this.statics.map((r) => ({ uri: r.uri, name: r.name, title: r.title, description: r.description, mimeType: r.mimeType }));
  }

  listTemplates(): ResourceTemplate[] {
    return this.templates.map((r) => ({ uriTemplate: r.uriTemplate, name: r.name, title: r.title, description: r.description, mimeType: r.mimeType }));
  }

  isSubscribable(uri: string): boolean {
    return this.statics.some((r) => r.uri === uri && r.subscribable);
  }

  async read(uri: string, ctx: CallContext): Promise<ResourceContent> {
    const s = this.statics.find((r) => r.uri === uri);
    if (s) return { mimeType: s.mimeType, text: await s.read(this.source, ctx) };
    for (const t of this.templates) {
      const params = t.match(uri);
      if (params) return { mimeType: t.mimeType, text: await t.read(params, this.source, ctx) };
    }
    throw resourceNotFound(uri);
  }

  async complete(uriTemplate: string, argument: string, prefix: string, ctx: CallContext): Promise<string[]> {
    const t = this.templates.find((r) => r.uriTemplate === uriTemplate);
    if (!t) throw new McpError(ErrorCode.InvalidParams, `Unknown resource template: ${uriTemplate}`);
    const f = t.complete?.[argument];
    return f ? f(prefix, this.source, ctx) : [];
  }
}

/**
 * Tells a subscriber when the live traffic changes: polls the source's newest entry time
 * every `intervalMs` while at least one URI is subscribed, and calls `notify` at most once per
 * interval (throttled) when it moved.
 */
export class LiveWatcher {
  private readonly subscribed = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private lastNewest = -1;
  private busy = false;

  constructor(
    private readonly source: TrafficSource,
    private readonly notify: (uri: string) => Promise<void>,
    private readonly intervalMs = 2000,
  ) {}

  subscribe(uri: string): void {
    this.subscribed.add(uri);
    if (!this.timer) {
      this.timer = setInterval(() => void this.tick(), this.intervalMs);
      this.timer.unref();
      void this.tick(); // the baseline: what the subscriber has already seen
    }
  }

  unsubscribe(uri: string): void {
    this.subscribed.delete(uri);
    if (this.subscribed.size === 0) this.stop();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One poll (exposed for tests). */
  async tick(): Promise<void> {
    if (this.busy || this.subscribed.size === 0 || !this.source.getDataBoundaries) return;
    this.busy = true;
    try {
      const b = await this.source.getDataBoundaries({ signal: AbortSignal.timeout(this.intervalMs * 5) });
      const newest = Math.max(0, ...b.boundaries.map((x) => x.entries?.newest_us ?? 0));
      const changed = this.lastNewest >= 0 && newest !== this.lastNewest;
      this.lastNewest = newest;
      if (changed) for (const uri of this.subscribed) await this.notify(uri).catch(() => undefined);
    } catch {
      // A worker that does not answer now may answer at the next tick.
    } finally {
      this.busy = false;
    }
  }
}
