import type { ToolDefinition } from './registry';

/**
 * Toolsets: groups of tools an operator switches on and off (HUB_TOOLSETS), so a client sees
 * only what it needs; and read-only mode, which leaves out every tool that changes state
 * (`readOnlyHint` not true) whatever its toolset.
 */
export const TOOLSETS = ['l4', 'l7', 'kubernetes', 'status', 'pcap', 'snapshots', 'capture', 'extensions'] as const;
export type Toolset = (typeof TOOLSETS)[number];

const BY_TOOL: Readonly<Record<string, Toolset>> = {
  list_l4_flows: 'l4',
  get_l4_flow_summary: 'l4',
  get_service_map: 'l4',
  list_api_calls: 'l7',
  get_api_call: 'l7',
  get_api_stats: 'l7',
  apply_filter: 'l7',
  list_workloads: 'kubernetes',
  list_ips: 'kubernetes',
  get_status: 'status',
  get_data_boundaries: 'status',
  export_pcap: 'pcap',
  create_snapshot: 'snapshots',
  list_snapshots: 'snapshots',
  get_snapshot: 'snapshots',
  delete_snapshot: 'snapshots',
  capture_traffic: 'capture',
};

/** The toolset a tool belongs to; tools added by other plugins are `extensions`. */
export const toolsetOf = (name: string): Toolset => BY_TOOL[name] ?? 'extensions';

export interface ToolSelection {
  /** Toolsets offered (default: all). */
  toolsets?: readonly Toolset[];
  /** Leave out tools that change state. */
  readOnly?: boolean;
}

/** Whether a tool is offered under this selection, and if not, why. */
export function selectTool(def: Pick<ToolDefinition<never>, 'name' | 'annotations'>, sel: ToolSelection): { offered: true } | { offered: false; reason: string } {
  const set = toolsetOf(def.name);
  if (sel.toolsets && !sel.toolsets.includes(set)) return { offered: false, reason: `toolset "${set}" is not enabled` };
  if (sel.readOnly && def.annotations?.readOnlyHint !== true) return { offered: false, reason: 'read-only mode leaves out tools that change state' };
  return { offered: true };
}

/** Parses a comma-separated toolset list; throws naming the unknown ones. */
export function parseToolsets(text: string): Toolset[] {
  const names = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const bad = names.filter((n) => !(TOOLSETS as readonly string[]).includes(n));
  if (bad.length) throw new Error(`unknown toolset ${bad.map((b) => `"${b}"`).join(', ')}; toolsets are ${TOOLSETS.join(', ')}`);
  return names as Toolset[];
}
