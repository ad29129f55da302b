import { isIP } from 'node:net';
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import { McpError, type CallToolResult, type Tool } from '@modelcontextprotocol/sdk/types.js';
import { ERROR_CODES, ToolDefinitionError, TrafficSourceError } from './errors';
import type { TrafficSource } from './traffic-source';
import { FilterComposer, type FilterPolicy } from './filters';

/** A JSON Schema object, as MCP carries it. */
export type JsonSchema = Record<string, unknown> & { type: 'object' };

/** Default output budget of a tool result, in tokens (Claude Code refuses results above 25,000). */
export const DEFAULT_MAX_RESULT_TOKENS = 8000;
/** Smallest budget accepted: one flow row must always fit, so paging makes progress. */
export const MIN_MAX_RESULT_TOKENS = 1000;
/** Tokens are estimated as characters / 4 over the text a result carries. */
export const CHARS_PER_TOKEN = 4;

/** How much text a tool result may carry; `maxChars` = `maxTokens` * CHARS_PER_TOKEN. */
export interface OutputBudget {
  maxTokens: number;
  maxChars: number;
  /**
   * The result also carries its JSON as a text block (for clients that predate structured
   * content): the text rendering and the JSON then count together. Otherwise a client shows the
   * model one of them (the text from `content`, or `structuredContent`), and each must fit.
   * Absent means true (the cautious count).
   */
  jsonText?: boolean;
}

/**
 * When the JSON of a result goes into `content` as a text block next to the text rendering:
 * `auto` (default) for clients that negotiated a protocol revision before structured content
 * (2025-06-18) or sent none, whose models see only `content`; `always` for every client.
 */
export type JsonTextMode = 'auto' | 'always';

/** The first protocol revision with `structuredContent` and `outputSchema`. */
export const STRUCTURED_CONTENT_SINCE = '2025-06-18';

/** Whether a client at `protocolVersion` (undefined: not known) is sent the JSON text block. */
export function wantsJsonText(mode: JsonTextMode, protocolVersion: string | undefined): boolean {
  // Revisions are dates (YYYY-MM-DD), so they order as strings.
  return mode === 'always' || protocolVersion === undefined || !/^\d{4}-\d{2}-\d{2}$/.test(protocolVersion) || protocolVersion < STRUCTURED_CONTENT_SINCE;
}

export interface ToolRegistryOptions {
  /**
   * Output budget per tool result in estimated tokens (default 8,000, at least 1,000). List
   * tools cut rows to fit and return a cursor for the rest; any other result over it becomes an
   * `isError` result asking to narrow the request.
   */
  maxResultTokens?: number;
  /** KFL policy applied to every filtered query: a global filter, macros, restrictions. */
  filters?: FilterPolicy;
  /** When results repeat their JSON as a text block (default `auto`: only for clients without structured content). */
  jsonText?: JsonTextMode;
}

/** JSON text of structured results, computed once per object (results are not changed once rendered). */
const jsonCache = new WeakMap<object, string>();

/**
 * Structured results by their first object-valued property (the page's array of rows): the SDK
 * validates a tool's result into a copy, whose properties are the very values the tool made,
 * and `knownStructuredJson` finds the original, and its JSON, from that copy.
 */
const byFirstObject = new WeakMap<object, Record<string, unknown>>();

function firstObject(structured: Record<string, unknown>): object | undefined {
  for (const k in structured) {
    const v = structured[k];
    if (typeof v === 'object' && v !== null) return v;
  }
  return undefined;
}

/** `JSON.stringify(structured)`, cached for the object: measuring a result and sending it serialize it once. */
export function structuredJson(structured: Record<string, unknown>): string {
  let json = jsonCache.get(structured);
  if (json === undefined) {
    json = JSON.stringify(structured);
    jsonCache.set(structured, json);
    const first = firstObject(structured);
    if (first) byFirstObject.set(first, structured);
  }
  return json;
}

/**
 * The JSON of a structured result already serialized here, given the object or a shallow copy
 * of it (the same keys, in the same order, holding the same values: then its JSON is the same
 * text); undefined for anything else.
 */
export function knownStructuredJson(structured: Record<string, unknown>): string | undefined {
  const own = jsonCache.get(structured);
  if (own !== undefined) return own;
  const first = firstObject(structured);
  const original = first && byFirstObject.get(first);
  if (!original) return undefined;
  const a = Object.keys(structured);
  const b = Object.keys(original);
  if (a.length !== b.length) return undefined;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] || structured[a[i]!] !== original[b[i]!]) return undefined;
  return jsonCache.get(original);
}

/**
 * Estimated size of a result in characters, as the model sees it: the text rendering plus the
 * JSON text block when the result carries both (`budget.jsonText`, the default); otherwise the
 * larger of the two, since a client shows the model either `content` or `structuredContent`.
 */
export function resultChars(out: Pick<ToolOutput, 'structured' | 'text'>, budget?: Pick<OutputBudget, 'jsonText'>): number {
  const json = structuredJson(out.structured).length;
  return budget?.jsonText === false ? Math.max(out.text.length, json) : out.text.length + json;
}

/** What a tool handler receives besides its (validated, defaulted) arguments. */
export interface ToolContext {
  source: TrafficSource;
  /** Combines a `kfl` argument with the configured policy (filled in by the registry). */
  filters: FilterComposer;
  /** The output budget of this result (filled in by the registry). */
  budget: OutputBudget;
  /** Fires when the client cancels the request or the session ends. */
  signal: AbortSignal;
  /**
   * Present only when the client asked for progress (sent a progress token): reports how far
   * long work has come. `progress` must increase from one call to the next.
   */
  progress?: (update: ProgressUpdate) => Promise<void>;
}

export interface ProgressUpdate {
  progress: number;
  total?: number;
  message?: string;
}

/** A link to something the client can fetch (an MCP `resource_link` content item). */
export interface ToolLink {
  uri: string;
  name: string;
  title?: string;
  description?: string;
  mimeType?: string;
  /** Bytes. */
  size?: number;
}

/** What a tool handler returns: the structured result and a short text rendering of it. */
export interface ToolOutput {
  structured: Record<string, unknown>;
  text: string;
  /** Sent as `resource_link` content items after the text. */
  links?: ToolLink[];
}

export interface ToolDefinition<Args = Record<string, unknown>> {
  name: string;
  title: string;
  description: string;
  inputSchema: JsonSchema;
  outputSchema: JsonSchema;
  annotations: {
    readOnlyHint: boolean;
    destructiveHint?: boolean;
    idempotentHint?: boolean;
    openWorldHint?: boolean;
  };
  handler: (args: Args, ctx: ToolContext) => Promise<ToolOutput>;
}

interface Registered {
  def: ToolDefinition<never>;
  validateInput: ValidateFunction;
  validateOutput: ValidateFunction;
}

const NAME = /^[a-zA-Z0-9_-]{1,64}$/;
export const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * Tools by name. Schemas are compiled when a tool is registered, so a bad definition fails at
 * start-up rather than at its first call; arguments are validated (and defaults filled in)
 * before a handler runs, and results are checked against the output schema.
 */
/**
 * What callers of `ToolRegistry.call` provide: the budget comes from the registry unless given;
 * `protocolVersion` is the client's negotiated MCP revision, when known (it decides `jsonText`).
 */
export type ToolCallContext = Omit<ToolContext, 'budget' | 'filters'> & { budget?: OutputBudget; protocolVersion?: string };

export class ToolRegistry {
  private readonly tools = new Map<string, Registered>();
  private readonly ajv: Ajv;
  private readonly outputAjv: Ajv;
  readonly budget: OutputBudget;
  readonly filters: FilterComposer;
  readonly jsonText: JsonTextMode;

  constructor(options: ToolRegistryOptions = {}) {
    const maxTokens = options.maxResultTokens ?? DEFAULT_MAX_RESULT_TOKENS;
    if (!Number.isInteger(maxTokens) || maxTokens < MIN_MAX_RESULT_TOKENS) {
      throw new ToolDefinitionError(`maxResultTokens must be an integer >= ${MIN_MAX_RESULT_TOKENS} (got ${maxTokens})`);
    }
    this.budget = { maxTokens, maxChars: maxTokens * CHARS_PER_TOKEN };
    const jsonText = options.jsonText ?? 'auto';
    if (jsonText !== 'auto' && jsonText !== 'always') throw new ToolDefinitionError(`jsonText must be "auto" or "always" (got ${JSON.stringify(jsonText)})`);
    this.jsonText = jsonText;
    try {
      this.filters = new FilterComposer(options.filters);
    } catch (err) {
      throw new ToolDefinitionError(`KFL policy: ${(err as Error).message}`);
    }
    // Arguments get their defaults filled in, and every error is reported (a model fixes them all
    // at once). Results are only checked (a result is measured and serialized before it is
    // validated, so validation must not change it), and a result that fails is our bug: the first
    // error says enough. Stopping there matters for the cost of every call: with allErrors the
    // validator of a page of 50 flows took 107 us, without it 22 us.
    this.ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true, useDefaults: true });
    this.outputAjv = new Ajv({ strict: true, allowUnionTypes: true });
    for (const ajv of [this.ajv, this.outputAjv]) {
      ajv.addFormat('ip', { type: 'string', validate: (s: string) => isIP(s) !== 0 });
      // RFC 3339 date-times with an explicit zone: "14:15" in an unknown zone is a guess, and
      // Date.parse alone would accept "12" as December 2001.
      ajv.addFormat('timestamp', { type: 'string', validate: (s: string) => RFC3339.test(s) && !Number.isNaN(Date.parse(s)) });
    }
  }

  register<Args>(def: ToolDefinition<Args>): void {
    if (!NAME.test(def.name)) throw new ToolDefinitionError(`tool name "${def.name}" must match ${NAME}`);
    if (this.tools.has(def.name)) throw new ToolDefinitionError(`tool "${def.name}" is already registered`);
    for (const [what, schema] of [
      ['input', def.inputSchema],
      ['output', def.outputSchema],
    ] as const) {
      if (schema?.type !== 'object') throw new ToolDefinitionError(`tool "${def.name}": the ${what} schema must have type "object"`);
    }
    let validateInput: ValidateFunction;
    let validateOutput: ValidateFunction;
    try {
      validateInput = this.ajv.compile(def.inputSchema);
      validateOutput = this.outputAjv.compile(def.outputSchema);
    } catch (err) {
      throw new ToolDefinitionError(`tool "${def.name}": schema does not compile: ${(err as Error).message}`);
    }
    this.tools.set(def.name, { def: def as unknown as ToolDefinition<never>, validateInput, validateOutput });
  }

  has(name: string): boolean {
    return this.tools.has(name);
  }

  /** The tools as MCP `tools/list` describes them, in registration order. */
  list(): Tool[] {
    return [...this.tools.values()].map(({ def }) => ({
      name: def.name,
      title: def.title,
      description: def.description,
      inputSchema: def.inputSchema as Tool['inputSchema'],
      outputSchema: def.outputSchema as Tool['outputSchema'],
      annotations: { title: def.title, ...def.annotations },
    }));
  }

  /**
   * Runs a tool. Bad arguments and source failures become `isError` results that name the
   * problem; an unknown tool name throws (the caller answers with a protocol error).
   */
  async call(name: string, rawArgs: unknown, callCtx: ToolCallContext): Promise<CallToolResult> {
    const { protocolVersion, budget: given, ...rest } = callCtx;
    const jsonText = wantsJsonText(this.jsonText, protocolVersion);
    const ctx: ToolContext = { ...rest, budget: { ...(given ?? this.budget), jsonText }, filters: this.filters };
    const tool = this.tools.get(name);
    if (!tool) throw new UnknownToolError(name);
    // Validation fills in defaults, so work on a copy of what the client sent.
    const args = structuredClone(rawArgs ?? {}) as Record<string, unknown>;
    if (!tool.validateInput(args)) {
      return errorResult(`Invalid arguments for ${name}: ${describeErrors(tool.validateInput.errors ?? [])}`);
    }
    let out: ToolOutput;
    try {
      out = await tool.def.handler(args as never, ctx);
    } catch (err) {
      // Protocol errors (a bad cursor: -32602) go back to the client as JSON-RPC errors.
      if (err instanceof McpError) throw err;
      if (err instanceof TrafficSourceError) {
        const where = err.field ? ` (argument "${err.field}")` : '';
        return errorResult(`${name} failed [${err.code}]${where}: ${err.message}`);
      }
      return errorResult(`${name} failed [${ERROR_CODES.INTERNAL}]: ${(err as Error).message ?? String(err)}`);
    }
    if (!tool.validateOutput(out.structured)) {
      // A result that breaks its own schema is our bug; say so rather than send it.
      return errorResult(
        `${name} failed [${ERROR_CODES.INTERNAL}]: result does not match the output schema: ${describeErrors(tool.validateOutput.errors ?? [])}`,
      );
    }
    const chars = resultChars(out, ctx.budget);
    if (chars > ctx.budget.maxChars) {
      // Tools that can cut their own output do so; this is the backstop for the others.
      return errorResult(
        `${name} failed [${ERROR_CODES.RESOURCE_EXHAUSTED}]: the result (~${Math.ceil(chars / CHARS_PER_TOKEN)} tokens) exceeds the output budget ` +
          `of ${ctx.budget.maxTokens} tokens. Narrow the request: a shorter start/end window, filters (ip, port, l4proto), a smaller limit or top.`,
      );
    }
    return {
      content: [
        { type: 'text', text: out.text },
        ...(out.links ?? []).map((link) => ({ type: 'resource_link' as const, ...link })),
        ...(jsonText ? [{ type: 'text' as const, text: structuredJson(out.structured) }] : []),
      ],
      structuredContent: out.structured,
    };
  }
}

export class UnknownToolError extends Error {
  override readonly name = 'UnknownToolError';
  constructor(readonly tool: string) {
    super(`unknown tool "${tool}"`);
  }
}

function errorResult(text: string): CallToolResult {
  return { isError: true, content: [{ type: 'text', text }] };
}

/** "limit" must be <= 1000; unknown argument "foo" -- field names first, so a model can fix them. */
export function describeErrors(errors: ErrorObject[]): string {
  const parts = errors.map((e) => {
    const field = e.instancePath.replace(/^\//, '').replace(/\//g, '.');
    if (e.keyword === 'additionalProperties') {
      const extra = (e.params as { additionalProperty: string }).additionalProperty;
      return `unknown argument "${field ? `${field}.` : ''}${extra}"`;
    }
    if (e.keyword === 'required') {
      const missing = (e.params as { missingProperty: string }).missingProperty;
      return `missing required argument "${field ? `${field}.` : ''}${missing}"`;
    }
    if (e.keyword === 'enum') {
      const allowed = (e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ');
      return `"${field}" must be one of ${allowed}`;
    }
    if (e.keyword === 'format' && (e.params as { format: string }).format === 'ip') {
      return `"${field}" must be an IPv4 or IPv6 address`;
    }
    if (e.keyword === 'format' && (e.params as { format: string }).format === 'timestamp') {
      return `"${field}" must be an RFC 3339 time with a zone, such as 2024-05-01T14:15:00Z, or Unix milliseconds`;
    }
    return field ? `"${field}" ${e.message ?? 'is invalid'}` : (e.message ?? 'arguments are invalid');
  });
  return [...new Set(parts)].join('; ');
}
