export { mcpFastifyPlugin, BUILTIN_TOOLS } from './plugin';
export { TOOLSETS, toolsetOf, selectTool, parseToolsets } from './toolsets';
export type { Toolset, ToolSelection } from './toolsets';
export { BoundedEventStore, DEFAULT_RESUMABLE_BYTES } from './event-store';
export type { McpPluginOptions, McpHandle } from './plugin';
export { ToolRegistry, UnknownToolError, describeErrors, knownStructuredJson, resultChars, structuredJson, wantsJsonText, STRUCTURED_CONTENT_SINCE, DEFAULT_MAX_RESULT_TOKENS, MIN_MAX_RESULT_TOKENS, CHARS_PER_TOKEN } from './registry';
export type { ToolDefinition, ToolContext, ToolCallContext, ToolOutput, ToolLink, ProgressUpdate, JsonSchema, OutputBudget, ToolRegistryOptions, JsonTextMode } from './registry';
export { PromptRegistry, BUILTIN_PROMPTS, networkHealthPrompt, debugConnectionPrompt, showTopologyPrompt } from './prompts';
export { compareTrafficPrompt, findErrorsPrompt, investigateFailedRequestPrompt, latencyAnalysisPrompt, securityAuditPrompt, traceRequestPrompt } from './prompts-l7';
export { RTT_BANDS, invalidPromptParams } from './prompt-kit';
export type { PromptDefinition, PromptArgumentDef } from './prompt-kit';
export { encodeCursor, decodeCursor, invalidCursor, CURSOR_VERSION } from './cursor';
export { createMcpServer, DEFAULT_INSTRUCTIONS } from './server';
export type { McpServerOptions } from './server';
export { TrafficSourceError, ToolDefinitionError, ERROR_CODES } from './errors';
export { API_PROTOCOLS } from './traffic-source';
export type { ErrorCode } from './errors';
export { listL4Flows, getL4FlowSummary, timeWindow } from './tools/l4';
export { getStatus, getDataBoundaries } from './tools/status';
export { exportPcap, PCAP_MEDIA_TYPES } from './tools/export';
export { createSnapshot, listSnapshots, getSnapshot, deleteSnapshot } from './tools/snapshots';
export { listApiCalls, getApiCall, apiCallView, BODY_PREVIEW_CHARS } from './tools/api-calls';
export type { ApiCallView } from './tools/api-calls';
export { getApiStats, API_STATS_ORDERS } from './tools/api-stats';
export { getServiceMap } from './tools/service-map';
export { applyFilter } from './tools/apply-filter';
export { FilterComposer } from './filters';
export type { FilterPolicy, ComposedKfl } from './filters';
export { buildServiceMap, serviceMapMermaid } from './service-map';
export type { ServiceMap, ServiceMapNode, ServiceMapEdge, ServiceMapQuery } from './service-map';
export { ResourceCatalogue, ResourceExtensions, LiveWatcher, STATIC_RESOURCES, TEMPLATE_RESOURCES, LIVE_TRAFFIC_URI } from './resources';
export { redact, redactValue } from './redact';
export type { StaticResource, TemplateResource, ResourceContent } from './resources';
export type { ApiStatsView } from './tools/api-stats';
export { TOOL_CATALOGUE, toolsFor } from './tools/catalogue';
export type { CatalogueEntry } from './tools/catalogue';
export { flowView, flowGroupView, flowSummaryView, isoMicros, rttBand } from './model';
export type { FlowView, FlowGroupView, FlowSummaryView, RatedDirection, Totals } from './model';
export type {
  TrafficSource,
  ApiProtocol,
  ApiCall,
  ApiCallQuery,
  ApiStatsQuery,
  ApiCallCount,
  WorkloadList,
  WorkloadInfo,
  WorkloadQuery,
  ApiStatsGroup,
  ApiStatsReport,
  ApiCallList,
  ApiCallDetail,
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
  TcpHealth,
  TimeRange,
  NodeBoundaries,
  BoundariesReport,
  CaptureGap,
  CaptureSourceStatus,
  DecodeCount,
  WorkerState,
  StatusReport,
  PcapFormat,
  PcapQuery,
  PcapProgress,
  PcapExport,
  Snapshot,
  SnapshotRequest,
  SnapshotResult,
  SnapshotList,
  CaptureRequest,
  NodeCapture,
  CaptureProgress,
  CaptureResult,
  TargetingInfo,
} from './traffic-source';
