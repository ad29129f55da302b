import { isoMicros } from '../model';
import type { ProgressUpdate, ToolDefinition } from '../registry';
import type { CaptureProgress, NodeCapture } from '../traffic-source';
import { inArgumentTerms, nodesLine } from './common';
import { nodesSchema } from './schemas';

/**
 * capture_traffic: a targeted, bounded capture on every node, with progress while it runs and
 * cancellation that stops it everywhere. The packets are kept as a snapshot named by the capture
 * id on each node, so export_pcap and the snapshot tools reach them.
 */

interface CaptureArgs {
  namespaces?: string[];
  pod_regex?: string;
  bpf?: string;
  duration_s: number;
  max_mib: number;
}

export const DEFAULT_CAPTURE_DURATION_S = 30;
export const MAX_CAPTURE_DURATION_S = 600;
export const DEFAULT_CAPTURE_MAX_MIB = 100;

/** Progress in seconds elapsed (of duration_s), strictly increasing, with the counts so far. */
function progressSender(send: ((update: ProgressUpdate) => Promise<void>) | undefined, durationS: number): { update: (p: CaptureProgress) => void; flush: () => Promise<void> } {
  let last = -1;
  let chain = Promise.resolve();
  return {
    update(p) {
      if (!send) return;
      // Tenths of a second: fine enough to increase between polls. The total is reached only when
      // every node has ended (a node may run a little past the duration), so the last update is the final count.
      const progress = p.running === 0 ? durationS : Math.min(Math.floor(p.elapsed_ms / 100) / 10, durationS - 0.1);
      if (progress <= last) return;
      last = progress;
      const message = `${p.packets} packets, ${p.bytes} bytes captured; ${p.running} node${p.running === 1 ? '' : 's'} still capturing`;
      chain = chain.then(() => send({ progress, total: durationS, message })).catch(() => undefined);
    },
    flush: () => chain,
  };
}

interface CaptureView {
  node: string;
  state: string;
  packets: number;
  bytes: number;
  started_at?: string;
  ended_at?: string;
  filter: string;
  pod_ips: number;
  error?: string;
  note?: string;
  snapshot?: string;
}

function captureView(c: NodeCapture): CaptureView {
  return {
    node: c.node,
    state: c.state,
    packets: c.packets,
    bytes: c.bytes,
    ...(c.started_at_us ? { started_at: isoMicros(c.started_at_us) } : {}),
    ...(c.ended_at_us ? { ended_at: isoMicros(c.ended_at_us) } : {}),
    filter: c.filter,
    pod_ips: c.pod_ips,
    ...(c.error ? { error: c.error } : {}),
    ...(c.note ? { note: c.note } : {}),
    ...(c.snapshot ? { snapshot: c.snapshot } : {}),
  };
}

const int = { type: 'integer', minimum: 0 };
const captureSchema = {
  type: 'object',
  properties: {
    node: { type: 'string' },
    state: { type: 'string', description: 'done (duration reached, or nothing to capture on the node), stopped, limit (size cap reached), failed, running.' },
    packets: int,
    bytes: { ...int, description: 'Size of the node capture file.' },
    started_at: { type: 'string' },
    ended_at: { type: 'string' },
    filter: { type: 'string', description: 'The BPF filter tcpdump ran with on the node.' },
    pod_ips: { ...int, description: 'Pod addresses the namespaces / pod_regex selected on the node.' },
    error: { type: 'string' },
    note: { type: 'string', description: 'Why the node captured nothing.' },
    snapshot: { type: 'string', description: 'The snapshot holding the node packets.' },
  },
  required: ['node', 'state', 'packets', 'bytes', 'filter', 'pod_ips'],
  additionalProperties: false,
};

export const captureTraffic: ToolDefinition<CaptureArgs> = {
  name: 'capture_traffic',
  title: 'Capture traffic (targeted)',
  description:
    'Starts a bounded packet capture on every node and waits for it to end: the pods of namespaces whose names match ' +
    'pod_regex (their addresses on each node) and/or a BPF filter (tcpdump syntax), both AND-ed, for duration_s ' +
    'seconds or until max_mib MiB per node, whichever comes first. Sends progress notifications while it runs; ' +
    'cancelling the request stops it on every node (the packets so far are kept). Returns the capture id, and per ' +
    'node the packets, bytes and state. The packets stay on the nodes as a snapshot named by the capture id: ' +
    'export_pcap snapshot=<capture_id> downloads them; API calls and flows seen meanwhile are in list_api_calls / ' +
    'list_l4_flows with start/end set to the capture window. Without namespaces, pod_regex or bpf it captures everything.',
  inputSchema: {
    type: 'object',
    properties: {
      namespaces: {
        type: 'array',
        items: { type: 'string', minLength: 1, maxLength: 253 },
        minItems: 1,
        maxItems: 50,
        uniqueItems: true,
        description: 'Only pods of these namespaces (needs the workers to know Kubernetes identities).',
      },
      pod_regex: { type: 'string', minLength: 1, maxLength: 500, description: 'Only pods whose name matches this regular expression (JavaScript syntax), e.g. "^checkout-".' },
      bpf: { type: 'string', minLength: 1, maxLength: 2000, description: 'A BPF capture filter (tcpdump syntax), e.g. "tcp port 8080".' },
      duration_s: { type: 'integer', minimum: 1, maximum: MAX_CAPTURE_DURATION_S, default: DEFAULT_CAPTURE_DURATION_S, description: 'How long to capture, in seconds.' },
      max_mib: { type: 'integer', minimum: 1, maximum: 1024, default: DEFAULT_CAPTURE_MAX_MIB, description: 'Size cap of the capture file on each node, in MiB.' },
    },
    additionalProperties: false,
  },
  outputSchema: {
    type: 'object',
    properties: {
      capture_id: { type: 'string', description: 'Also the snapshot name: export_pcap snapshot=<capture_id>.' },
      state: { type: 'string', enum: ['complete', 'partial'], description: 'partial: some node failed or could not be reached.' },
      packets: int,
      bytes: int,
      start: { type: 'string', description: 'When the first node started (RFC 3339), for start/end of other tools.' },
      end: { type: 'string', description: 'When the last node ended.' },
      captures: { type: 'array', items: captureSchema },
      nodes: nodesSchema,
    },
    required: ['capture_id', 'state', 'packets', 'bytes', 'captures', 'nodes'],
    additionalProperties: false,
  },
  // It starts tcpdump on the nodes and leaves a snapshot behind: it changes state, destroys nothing.
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
  async handler(args, ctx) {
    const progress = progressSender(ctx.progress, args.duration_s);
    const request = {
      ...(args.namespaces ? { namespaces: args.namespaces } : {}),
      ...(args.pod_regex ? { pod_regex: args.pod_regex } : {}),
      ...(args.bpf ? { bpf: args.bpf } : {}),
      duration_s: args.duration_s,
      max_bytes: args.max_mib * 1024 * 1024,
    };
    // Workers name the size cap max_bytes; the tool calls it max_mib.
    const result = await inArgumentTerms(ctx.source.captureTraffic!(request, { signal: ctx.signal }, progress.update), { max_bytes: 'max_mib' });
    await progress.flush();
    const views = result.captures.map(captureView);
    const packets = result.captures.reduce((n, c) => n + c.packets, 0);
    const bytes = result.captures.reduce((n, c) => n + c.bytes, 0);
    const started = result.captures.map((c) => c.started_at_us).filter((t) => t > 0);
    const ended = result.captures.map((c) => c.ended_at_us).filter((t) => t > 0);
    const complete = result.nodes.every((n) => n.state === 'ok') && result.captures.every((c) => c.state !== 'failed');
    const start = started.length ? isoMicros(Math.min(...started)) : undefined;
    const end = ended.length ? isoMicros(Math.max(...ended)) : undefined;
    const lines = [
      `Capture ${result.id}: ${packets} packets, ${bytes} bytes (nodes: ${nodesLine(result.nodes)})`,
      ...views.map(
        (v) =>
          `  ${v.node}: ${v.state}, ${v.packets} packets, ${v.bytes} bytes` +
          `${v.filter ? `, filter "${v.filter}"` : ''}${v.note ? ` (${v.note})` : ''}${v.error ? `, error: ${v.error}` : ''}`,
      ),
    ];
    if (views.some((v) => v.snapshot)) lines.push(`Packets: export_pcap snapshot=${result.id} (kept as snapshot ${result.id} on each node that captured; delete_snapshot removes it).`);
    if (start && end) lines.push(`Flows and API calls seen meanwhile: list_l4_flows / list_api_calls with start=${start} end=${end}.`);
    return {
      structured: { capture_id: result.id, state: complete ? 'complete' : 'partial', packets, bytes, ...(start ? { start } : {}), ...(end ? { end } : {}), captures: views, nodes: result.nodes },
      text: lines.join('\n'),
    };
  },
};
