import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import { RFC3339 } from './registry';

/**
 * What every prompt is made of: its definition, argument parsing with invalid-params errors,
 * and the phrases prompts share (RTT bands, paging, a tool call written out).
 */

export interface PromptArgumentDef {
  name: string;
  description: string;
  required?: boolean;
}

export interface PromptDefinition {
  name: string;
  title: string;
  description: string;
  arguments: PromptArgumentDef[];
  /** The user message; throws McpError(InvalidParams) for bad arguments. */
  render(args: Readonly<Record<string, string>>): string;
}

/** RTT bands, as get_l4_flow_summary reports them. */
export const RTT_BANDS =
  '< 1 ms excellent (same node or data centre), 1-10 ms good (cross-node), 10-100 ms elevated (congestion or cross-AZ), ' +
  '> 100 ms high (cross-region or a network problem)';

export const invalidPromptParams = (message: string): McpError => new McpError(ErrorCode.InvalidParams, message);

export const windowArgs: PromptArgumentDef[] = [
  { name: 'start', description: 'Start of the time window: RFC 3339 with a zone (2024-05-01T14:15:00Z) or Unix milliseconds. Default: everything stored.' },
  { name: 'end', description: 'End of the time window, same forms as start. Default: now.' },
];

/** A time argument as the tools take it: Unix ms as a number, RFC 3339 as a string. */
export function timeValue(prompt: string, name: string, v: string | undefined): string | number | undefined {
  if (v === undefined || v === '') return undefined;
  if (/^\d{1,15}$/.test(v)) return Number(v);
  if (RFC3339.test(v) && !Number.isNaN(Date.parse(v))) return v;
  throw invalidPromptParams(`Prompt ${prompt}: argument "${name}" must be an RFC 3339 time with a zone, such as 2024-05-01T14:15:00Z, or Unix milliseconds (got ${JSON.stringify(v)})`);
}

export function windowOf(prompt: string, args: Readonly<Record<string, string>>): { start?: string | number; end?: string | number } {
  const start = timeValue(prompt, 'start', args.start);
  const end = timeValue(prompt, 'end', args.end);
  const ms = (t: string | number): number => (typeof t === 'number' ? t : Date.parse(t));
  if (start !== undefined && end !== undefined && ms(end) < ms(start)) throw invalidPromptParams(`Prompt ${prompt}: "end" is before "start"`);
  return { ...(start !== undefined ? { start } : {}), ...(end !== undefined ? { end } : {}) };
}

export function intValue(prompt: string, name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max) throw invalidPromptParams(`Prompt ${prompt}: argument "${name}" must be an integer from ${min} to ${max} (got ${JSON.stringify(v)})`);
  return n;
}

export const describeWindow = (w: { start?: string | number; end?: string | number }): string =>
  w.start === undefined && w.end === undefined ? 'over everything captured' : `between ${w.start ?? 'the oldest data'} and ${w.end ?? 'now'}`;

/** A tool call as the model should make it: `name {"arg":value}`. */
export const callOf = (tool: string, args: Record<string, unknown>): string => `${tool} ${JSON.stringify(args)}`;

export const PAGING = 'When a result has nextCursor, call the tool again with cursor set to it (same arguments) until you have what you need.';

