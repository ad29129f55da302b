import type { ToolDefinition } from '../registry';
import type { TrafficSource } from '../traffic-source';
import { getApiCall, listApiCalls } from './api-calls';
import { getApiStats } from './api-stats';
import { applyFilter } from './apply-filter';
import { captureTraffic } from './capture';
import { exportPcap } from './export';
import { getL4FlowSummary, listL4Flows } from './l4';
import { getServiceMap } from './service-map';
import { createSnapshot, deleteSnapshot, getSnapshot, listSnapshots } from './snapshots';
import { getDataBoundaries, getStatus } from './status';
import { listIps, listWorkloads } from './workloads';

/** A built-in tool and the TrafficSource methods it needs. */
export interface CatalogueEntry {
  tool: ToolDefinition<never>;
  requires: readonly (keyof TrafficSource)[];
}

const entry = <Args>(tool: ToolDefinition<Args>, ...requires: (keyof TrafficSource)[]): CatalogueEntry => ({
  tool: tool as unknown as ToolDefinition<never>,
  requires,
});

/** Every built-in tool, in the order tools/list shows them. */
export const TOOL_CATALOGUE: readonly CatalogueEntry[] = [
  entry(listL4Flows, 'listFlows'),
  entry(getL4FlowSummary, 'getFlowSummary'),
  entry(getServiceMap, 'listFlows'),
  entry(listApiCalls, 'listApiCalls'),
  entry(getApiCall, 'getApiCall'),
  entry(getApiStats, 'getApiStats'),
  entry(applyFilter, 'countApiCalls', 'listApiCalls'),
  entry(listWorkloads, 'listWorkloads'),
  entry(listIps, 'resolveIps'),
  entry(getStatus, 'getStatus'),
  entry(getDataBoundaries, 'getDataBoundaries'),
  entry(exportPcap, 'exportPcap'),
  entry(createSnapshot, 'createSnapshot'),
  entry(listSnapshots, 'listSnapshots'),
  entry(getSnapshot, 'getSnapshot'),
  entry(deleteSnapshot, 'deleteSnapshot'),
  entry(captureTraffic, 'captureTraffic'),
];

/**
 * The built-in tools a source can serve: a tool whose capability the source does not implement
 * is left out rather than offered and failing, so sources without packets or snapshots work.
 */
export function toolsFor(source: TrafficSource): ToolDefinition<never>[] {
  return TOOL_CATALOGUE.filter((e) => e.requires.every((m) => typeof source[m] === 'function')).map((e) => e.tool);
}
