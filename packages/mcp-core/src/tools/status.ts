import { isoMicros } from '../model';
import type { ToolDefinition } from '../registry';
import type { CaptureSourceStatus, NodeBoundaries, NodeCoverage, TargetingInfo, WorkerState } from '../traffic-source';
import { nodesLine, windowLine, windowSchema, windowView, type WindowView } from './common';
import { nodesSchema } from './schemas';

/** The data windows of one node as tools return them; null where the node holds no such data. */
export interface BoundariesView {
  node: string;
  flows: WindowView | null;
  packets: WindowView | null;
  /** Null until L7 dissection lands. */
  entries: WindowView | null;
}

export function boundariesView(b: NodeBoundaries): BoundariesView {
  return { node: b.node, flows: windowView(b.flows), packets: windowView(b.packets), entries: windowView(b.entries) };
}

const boundariesSchema = {
  type: 'object',
  properties: {
    node: { type: 'string' },
    flows: { ...windowSchema, description: 'L4 flows the node tracks (list_l4_flows, get_l4_flow_summary); null when it has seen none.' },
    packets: { ...windowSchema, description: 'Packets the node can export (export_pcap, create_snapshot), after retention; null when it keeps none.' },
    entries: { ...windowSchema, description: 'L7 API calls: always null until L7 dissection lands.' },
  },
  required: ['node', 'flows', 'packets', 'entries'],
  additionalProperties: false,
};

const boundariesText = (b: BoundariesView): string =>
  `flows ${windowLine(b.flows)}; packets ${windowLine(b.packets)}; API calls ${b.entries ? windowLine(b.entries) : 'not captured (L7 not available yet)'}`;

const coverage = (w: WorkerState): NodeCoverage => ({
  node: w.node,
  state: w.state === 'connected' ? 'ok' : w.state,
  ...(w.message ? { message: w.message } : {}),
});

export const getDataBoundaries: ToolDefinition<Record<string, never>> = {
  name: 'get_data_boundaries',
  title: 'Data boundaries',
  description:
    'Per node, the time range it can answer about: "flows" is the L4 flow window (list_l4_flows, get_l4_flow_summary), ' +
    '"packets" the packet window (what export_pcap and create_snapshot can use, after retention). Times are RFC 3339 ' +
    'with microseconds plus Unix ms (rounded outwards, usable as start/end). "entries" (L7 API calls) is null until L7 ' +
    'dissection lands. Use it to tell "no traffic" from "not captured": a time outside these windows was not captured.',
  inputSchema: { type: 'object', properties: {}, additionalProperties: false },
  outputSchema: {
    type: 'object',
    properties: {
      boundaries: { type: 'array', items: boundariesSchema },
      nodes: nodesSchema,
    },
    required: ['boundaries', 'nodes'],
    additionalProperties: false,
  },
  annotations: { readOnlyHint: true, openWorldHint: false },
  async handler(_args, ctx) {
    const report = await ctx.source.getDataBoundaries!({ signal: ctx.signal });
    const views = report.boundaries.map(boundariesView);
    const missing = report.nodes.filter((n) => n.state !== 'ok');
    const lines = [
      ...views.map((b) => `${b.node}: ${boundariesText(b)}`),
      ...missing.map((n) => `${n.node}: ${n.state}${n.message ? ` (${n.message})` : ''}; its data is missing from every answer`),
    ];
    return { structured: { boundaries: views, nodes: report.nodes }, text: lines.join('\n') || 'no nodes' };
  },
};

interface SourceView {
  kind: 'file' | 'interface';
  name: string;
  state: string;
  packets: number;
  bytes: number;
  error?: string;
  filter?: string;
  received_by_filter?: number;
  kernel_drops?: number;
  restarts?: number;
  gaps?: number;
}

function sourceView(s: CaptureSourceStatus): SourceView {
  const v: SourceView = { kind: s.kind, name: s.name, state: s.state, packets: s.packets, bytes: s.bytes };
  if (s.error) v.error = s.error;
  if (s.kind === 'interface') {
    v.filter = s.filter ?? '';
    v.received_by_filter = s.received_by_filter ?? 0;
    v.kernel_drops = s.kernel_drops ?? 0;
    v.restarts = s.restarts ?? 0;
    v.gaps = s.gaps?.length ?? 0;
  }
  return v;
}

const int = { type: 'integer', minimum: 0 };
const str = { type: 'string' };
const counters = { type: 'array', items: { type: 'object', properties: { reason: str, count: int }, required: ['reason', 'count'], additionalProperties: false } };

const workerSchema = {
  type: 'object',
  properties: {
    node: str,
    address: str,
    state: { type: 'string', enum: ['connected', 'unavailable', 'error'] },
    message: { type: 'string', description: 'Why the worker is unavailable or failed.' },
    version: str,
    started_at: str,
    packets_seen: int,
    packets_decoded: int,
    flows_tracked: int,
    flows_evicted: { ...int, description: 'Flows dropped from memory by the worker limits: missing from flow answers.' },
    sources: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          kind: { type: 'string', enum: ['file', 'interface'] },
          name: str,
          state: str,
          packets: int,
          bytes: int,
          error: str,
          filter: str,
          received_by_filter: int,
          kernel_drops: int,
          restarts: int,
          gaps: { ...int, description: 'Periods without capture while tcpdump was down.' },
        },
        required: ['kind', 'name', 'state', 'packets', 'bytes'],
        additionalProperties: false,
      },
    },
    skipped: { ...counters, description: 'Packets without TCP or UDP we track (ARP, ICMP, ...), by reason.' },
    decode_errors: { ...counters, description: 'Malformed or unsupported headers, by reason.' },
    boundaries: boundariesSchema,
    targeting: {
      type: 'object',
      description: 'Which pods live capture is limited to (absent: not limited). Traffic of other pods is not captured on this node.',
      properties: {
        namespaces: { type: 'array', items: str, description: 'Empty: every namespace but the excluded.' },
        excluded_namespaces: { type: 'array', items: str },
        pod_regex: str,
        pods: int,
        pod_ips: int,
        scope: { type: 'string', description: 'node: the pods of this node; cluster: every pod (the node is unknown to the resolver).' },
        mode: { type: 'string', description: 'hosts; nets (aggregated, may include neighbours); none (no pod selected, nothing captured); all (too many addresses, not applied).' },
        filter: { type: 'string', description: 'The BPF filter tcpdump runs with.' },
        updated_at: { type: 'string', description: 'When the pod set last changed the filter.' },
        checked_at: { type: 'string', description: 'When the pod set was last recomputed.' },
        updates: int,
        warning: str,
      },
      required: ['namespaces', 'excluded_namespaces', 'pod_regex', 'pods', 'pod_ips', 'scope', 'mode', 'filter'],
      additionalProperties: false,
    },
  },
  required: ['node', 'state'],
  additionalProperties: false,
};

function workerView(w: WorkerState): Record<string, unknown> {
  const v: Record<string, unknown> = { node: w.node };
  if (w.address) v.address = w.address;
  v.state = w.state;
  if (w.message) v.message = w.message;
  if (w.version) v.version = w.version;
  if (w.started_at_us) v.started_at = isoMicros(w.started_at_us);
  if (w.packets_seen !== undefined) v.packets_seen = w.packets_seen;
  if (w.packets_decoded !== undefined) v.packets_decoded = w.packets_decoded;
  if (w.flows_tracked !== undefined) v.flows_tracked = w.flows_tracked;
  if (w.flows_evicted) v.flows_evicted = w.flows_evicted;
  if (w.sources) v.sources = w.sources.map(sourceView);
  if (w.skipped?.length) v.skipped = w.skipped;
  if (w.errors?.length) v.decode_errors = w.errors;
  if (w.boundaries) v.boundaries = boundariesView(w.boundaries);
  if (w.targeting) v.targeting = targetingView(w.targeting);
  return v;
}

function targetingView(t: TargetingInfo): Record<string, unknown> {
  return {
    namespaces: t.namespaces,
    excluded_namespaces: t.excluded_namespaces,
    pod_regex: t.pod_regex,
    pods: t.pods,
    pod_ips: t.pod_ips,
    scope: t.scope,
    mode: t.mode,
    filter: t.filter,
    ...(t.updated_at_us ? { updated_at: isoMicros(t.updated_at_us) } : {}),
    ...(t.checked_at_us ? { checked_at: isoMicros(t.checked_at_us) } : {}),
    updates: t.updates,
    ...(t.warning ? { warning: t.warning } : {}),
  };
}

/** "targeting: namespaces shop, excluding kube-system, pods /^web-/: 3 pods (3 addresses on this node), filter ...". */
function targetingLine(t: TargetingInfo): string {
  const what = [
    t.namespaces.length ? `namespaces ${t.namespaces.join(', ')}` : 'every namespace',
    t.excluded_namespaces.length ? `excluding ${t.excluded_namespaces.join(', ')}` : '',
    t.pod_regex ? `pods /${t.pod_regex}/` : '',
  ].filter(Boolean);
  const where = t.scope === 'node' ? 'on this node' : 'cluster-wide: the node is unknown to the resolver';
  const mode = t.mode === 'none' ? '; no pod selected, nothing is captured' : t.mode === 'all' ? '; not applied, everything is captured' : t.mode === 'nets' ? '; as networks, neighbours may be captured too' : '';
  return `  targeting ${what.join(', ')}: ${plural(t.pods, 'pod')} (${plural(t.pod_ips, 'address', 'addresses')} ${where})${mode}; other traffic is not captured${t.warning ? `; warning: ${t.warning}` : ''}`;
}

const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

function sourceLine(s: SourceView): string {
  const parts = [`${s.kind} ${s.name}: ${s.state}`, plural(s.packets, 'packet')];
  if (s.kind === 'interface') {
    parts.push(`${s.received_by_filter} received by filter`, plural(s.kernel_drops!, 'kernel drop'), plural(s.restarts!, 'restart'), plural(s.gaps!, 'gap'));
    if (s.filter) parts.push(`filter "${s.filter}"`);
  }
  if (s.error) parts.push(`error: ${s.error}`);
  return `  ${parts.join(', ')}`;
}

function workerLines(w: WorkerState): string[] {
  const v = workerView(w);
  const where = [w.version ? `worker ${w.version}` : 'worker', w.address ? `at ${w.address}` : '', v.started_at ? `since ${String(v.started_at)}` : ''].filter(Boolean).join(' ');
  if (w.state !== 'connected') return [`${w.node} ${w.state} (${where})${w.message ? `: ${w.message}` : ''}`];
  const lines = [
    `${w.node} connected (${where}): ${plural(w.packets_seen ?? 0, 'packet')} seen (${w.packets_decoded ?? 0} decoded), ${plural(w.flows_tracked ?? 0, 'flow')} tracked${w.flows_evicted ? ` (${w.flows_evicted} evicted by limits)` : ''}`,
  ];
  const sources = (v.sources as SourceView[] | undefined) ?? [];
  lines.push(...(sources.length ? sources.map(sourceLine) : ['  no capture sources']));
  if (w.targeting) lines.push(targetingLine(w.targeting));
  if (v.boundaries) lines.push(`  data: ${boundariesText(v.boundaries as BoundariesView)}`);
  const counts = (list: { reason: string; count: number }[] | undefined): string => (list ?? []).map((c) => `${c.reason} ${c.count}`).join(', ');
  if (w.skipped?.length) lines.push(`  skipped: ${counts(w.skipped)}`);
  if (w.errors?.length) lines.push(`  decode errors: ${counts(w.errors)}`);
  return lines;
}

export const getStatus: ToolDefinition<Record<string, never>> = {
  name: 'get_status',
  title: 'Capture status',
  description:
    'Health of the capture on every node: whether its worker is connected, unavailable or failing, its version, its ' +
    'capture sources (replayed files and live interfaces with their state, packets, kernel drops, restarts, gaps and ' +
    'BPF filter), which pods capture is targeted at (namespaces, pod regex; other pods are not captured), packets seen and decoded, flows tracked, and the time range of data it holds. Call it when an answer ' +
    'is empty or surprising, to tell "no such traffic" from "not captured" (node down, interface failing, drops, ' +
    'outside the data window).',
  inputSchema: { type: 'object', properties: {}, additionalProperties: false },
  outputSchema: {
    type: 'object',
    properties: {
      workers: { type: 'array', items: workerSchema },
      nodes: nodesSchema,
    },
    required: ['workers', 'nodes'],
    additionalProperties: false,
  },
  annotations: { readOnlyHint: true, openWorldHint: false },
  async handler(_args, ctx) {
    const report = await ctx.source.getStatus!({ signal: ctx.signal });
    const nodes = report.workers.map(coverage);
    const lines = report.workers.flatMap(workerLines);
    return {
      structured: { workers: report.workers.map(workerView), nodes },
      text: [`${plural(report.workers.length, 'worker')} (nodes: ${nodesLine(nodes)})`, ...lines].join('\n'),
    };
  },
};
