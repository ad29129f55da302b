import { ERROR_CODES } from '../errors';
import { isoMicros } from '../model';
import type { ToolDefinition } from '../registry';
import type { Snapshot, SnapshotResult } from '../traffic-source';
import { QUERY_TO_ARGUMENT, inArgumentTerms, nodesLine, snapshotNameArg, timeWindow, type TimeArgs } from './common';
import { nodesSchema, timeArg } from './schemas';

/** A snapshot as tools return it; `start`/`end` are absent when the snapshot is unbounded on that side. */
export interface SnapshotView {
  name: string;
  node: string;
  start?: string;
  end?: string;
  created_at: string;
  packets: number;
  bytes: number;
  flows: number;
  state: string;
}

export function snapshotView(s: Snapshot): SnapshotView {
  return {
    name: s.name,
    node: s.node,
    ...(s.since_us ? { start: isoMicros(s.since_us) } : {}),
    ...(s.until_us ? { end: isoMicros(s.until_us) } : {}),
    created_at: isoMicros(s.created_at_us),
    packets: s.packets,
    bytes: s.bytes,
    flows: s.flows,
    state: s.state,
  };
}

const int = { type: 'integer', minimum: 0 };
const snapshotSchema = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    node: { type: 'string' },
    start: { type: 'string', description: 'Absent: from the oldest packet the node held.' },
    end: { type: 'string', description: 'Absent: up to the newest packet when the snapshot was taken.' },
    created_at: { type: 'string' },
    packets: int,
    bytes: { ...int, description: 'Size of the snapshot packet file.' },
    flows: { ...int, description: 'L4 flows active in the snapshot range.' },
    state: { type: 'string' },
  },
  required: ['name', 'node', 'created_at', 'packets', 'bytes', 'flows', 'state'],
  additionalProperties: false,
};

const snapshotLine = (s: SnapshotView): string =>
  `${s.name} on ${s.node}: ${s.start ?? 'oldest'} .. ${s.end ?? 'newest'}, ${s.packets} packets, ${s.bytes} bytes, ${s.flows} flows (created ${s.created_at})`;

const oneSnapshotOutput = {
  type: 'object' as const,
  properties: {
    snapshot: snapshotSchema,
    snapshots: { type: 'array', items: snapshotSchema, description: 'Present when several nodes hold the snapshot: each node\'s part.' },
    nodes: nodesSchema,
  },
  required: ['snapshot', 'nodes'],
  additionalProperties: false,
};

/**
 * One snapshot's output; when several nodes hold it, `snapshots` lists each node's part (and
 * the text a line per node, plus the coverage).
 */
function snapshotOutput(r: SnapshotResult): { structured: Record<string, unknown>; lines: string } {
  const view = snapshotView(r.snapshot);
  if (!r.snapshots || r.snapshots.length < 2) return { structured: { snapshot: view, nodes: r.nodes }, lines: snapshotLine(view) };
  const views = r.snapshots.map(snapshotView);
  return { structured: { snapshot: view, snapshots: views, nodes: r.nodes }, lines: [...views.map(snapshotLine), `(nodes: ${nodesLine(r.nodes)})`].join('\n') };
}

const nameOnlyInput = (what: string) => ({
  type: 'object' as const,
  properties: { name: snapshotNameArg(what) },
  required: ['name'],
  additionalProperties: false,
});

/** Snapshot failures that carry no field (not found, exists) are about the name. */
const ABOUT_NAME = { [ERROR_CODES.NOT_FOUND]: 'name', [ERROR_CODES.ALREADY_EXISTS]: 'name' };

interface CreateArgs extends TimeArgs {
  name: string;
}

export const createSnapshot: ToolDefinition<CreateArgs> = {
  name: 'create_snapshot',
  title: 'Create a snapshot',
  description:
    'Freezes the packets captured in a start/end window (and the L4 flows active in it) under a name, so they ' +
    'survive retention and restarts: evidence to keep while investigating. Omit start or end to take everything ' +
    'from the oldest or up to the newest packet the store holds. Export it later with export_pcap snapshot=<name>.',
  inputSchema: {
    type: 'object',
    properties: {
      name: snapshotNameArg('Name of the new snapshot'),
      start: timeArg('Packets captured at or after this time'),
      end: timeArg('Packets captured at or before this time'),
    },
    required: ['name'],
    additionalProperties: false,
  },
  outputSchema: oneSnapshotOutput,
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
  async handler(args, ctx) {
    const result = await inArgumentTerms(ctx.source.createSnapshot!({ name: args.name, ...timeWindow(args) }, { signal: ctx.signal }), QUERY_TO_ARGUMENT, ABOUT_NAME);
    const { structured, lines } = snapshotOutput(result);
    return { structured, text: `Created snapshot ${lines}` };
  },
};

export const listSnapshots: ToolDefinition<Record<string, never>> = {
  name: 'list_snapshots',
  title: 'List snapshots',
  description: 'Every snapshot on every node: name, time range, packets, bytes, flows and when it was made.',
  inputSchema: { type: 'object', properties: {}, additionalProperties: false },
  outputSchema: {
    type: 'object',
    properties: { snapshots: { type: 'array', items: snapshotSchema }, total: int, nodes: nodesSchema },
    required: ['snapshots', 'total', 'nodes'],
    additionalProperties: false,
  },
  annotations: { readOnlyHint: true, openWorldHint: false },
  async handler(_args, ctx) {
    const { snapshots, nodes } = await ctx.source.listSnapshots!({ signal: ctx.signal });
    const views = snapshots.map(snapshotView);
    const header = `${views.length} snapshot${views.length === 1 ? '' : 's'} (nodes: ${nodesLine(nodes)})`;
    return { structured: { snapshots: views, total: views.length, nodes }, text: [header, ...views.map(snapshotLine)].join('\n') };
  },
};

export const getSnapshot: ToolDefinition<{ name: string }> = {
  name: 'get_snapshot',
  title: 'Get a snapshot',
  description: 'One snapshot by name: time range, packets, bytes, flows and when it was made.',
  inputSchema: nameOnlyInput('The snapshot'),
  outputSchema: oneSnapshotOutput,
  annotations: { readOnlyHint: true, openWorldHint: false },
  async handler(args, ctx) {
    const result = await inArgumentTerms(ctx.source.getSnapshot!(args.name, { signal: ctx.signal }), QUERY_TO_ARGUMENT, ABOUT_NAME);
    const { structured, lines } = snapshotOutput(result);
    return { structured, text: lines };
  },
};

export const deleteSnapshot: ToolDefinition<{ name: string }> = {
  name: 'delete_snapshot',
  title: 'Delete a snapshot',
  description: 'Deletes a snapshot and its packets for good. Packets still in the live store are not affected.',
  inputSchema: nameOnlyInput('The snapshot to delete'),
  outputSchema: {
    type: 'object',
    properties: { deleted: { type: 'string', description: 'Name of the deleted snapshot.' }, nodes: nodesSchema },
    required: ['deleted', 'nodes'],
    additionalProperties: false,
  },
  annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
  async handler(args, ctx) {
    const { nodes } = await inArgumentTerms(ctx.source.deleteSnapshot!(args.name, { signal: ctx.signal }), QUERY_TO_ARGUMENT, ABOUT_NAME);
    return { structured: { deleted: args.name, nodes }, text: `Deleted snapshot ${args.name} (nodes: ${nodesLine(nodes)})` };
  },
};
