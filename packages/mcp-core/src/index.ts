export { mcpFastifyPlugin, BUILTIN_TOOLS } from './plugin';
export type { McpPluginOptions, McpHandle } from './plugin';
export { ToolRegistry, UnknownToolError, describeErrors } from './registry';
export type { ToolDefinition, ToolContext, ToolOutput, JsonSchema } from './registry';
export { createMcpServer, DEFAULT_INSTRUCTIONS } from './server';
export type { McpServerOptions } from './server';
export { TrafficSourceError, ToolDefinitionError, ERROR_CODES } from './errors';
export type { ErrorCode } from './errors';
export { listL4Flows, getL4FlowSummary, timeWindow } from './tools/l4';
export { flowView, flowGroupView, flowSummaryView, isoMicros, rttBand } from './model';
export type { FlowView, FlowGroupView, FlowSummaryView, RatedDirection, Totals } from './model';
export type {
  TrafficSource,
  CallContext,
  Flow,
  FlowGroup,
  FlowList,
  FlowQuery,
  FlowSummary,
  SummaryQuery,
  Endpoint,
  DirectionStats,
  Percentiles,
  NodeCoverage,
  FlowAggregate,
  FlowOrder,
  L4Protocol,
  ProtocolTotals,
  Talker,
} from './traffic-source';
