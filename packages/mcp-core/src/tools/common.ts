import { TrafficSourceError, type ErrorCode } from '../errors';
import { isoMicros } from '../model';
import { resultChars, structuredJson, type OutputBudget, type ToolOutput } from '../registry';
import type { NodeCoverage, TimeRange } from '../traffic-source';

export interface TimeArgs {
  start?: string | number;
  end?: string | number;
}

/**
 * An RFC 3339 time or Unix milliseconds, in microseconds. Date.parse keeps milliseconds only, so
 * the fraction's 4th-6th digits are added back: a time copied from a result (which carries
 * microseconds) selects exactly that packet.
 */
function toMicros(v: string | number): number {
  if (typeof v === 'number') return v * 1000;
  const frac = /\.(\d+)/.exec(v)?.[1] ?? '';
  return Date.parse(v) * 1000 + Number(frac.padEnd(6, '0').slice(3, 6));
}

/** Turns `start`/`end` arguments into microseconds, checking that the window is not inverted. */
export function timeWindow(args: TimeArgs): { since_us?: number; until_us?: number } {
  const out: { since_us?: number; until_us?: number } = {};
  if (args.start !== undefined) out.since_us = toMicros(args.start);
  if (args.end !== undefined) out.until_us = toMicros(args.end);
  if (out.since_us !== undefined && out.until_us !== undefined && out.until_us < out.since_us) {
    throw new TrafficSourceError('invalid_argument', '"end" is before "start"', { field: 'end' });
  }
  return out;
}

/** "node-a, node-b & node-c unavailable (connection refused)": nodes that failed alike share one reason. */
export function nodesLine(nodes: NodeCoverage[]): string {
  if (nodes.length === 0) return 'no nodes';
  // Nodes that failed the same way are named together, the reason once.
  const groups = new Map<string, { names: string[]; n: NodeCoverage }>();
  const parts: (string | { names: string[]; n: NodeCoverage })[] = [];
  for (const n of nodes) {
    if (n.state === 'ok') {
      parts.push(n.node);
      continue;
    }
    const key = `${n.state}\u0000${n.message ?? ''}`;
    const g = groups.get(key);
    if (g) g.names.push(n.node);
    else {
      const fresh = { names: [n.node], n };
      groups.set(key, fresh);
      parts.push(fresh);
    }
  }
  return parts.map((p) => (typeof p === 'string' ? p : `${p.names.join(' & ')} ${p.n.state}${p.n.message ? ` (${p.n.message})` : ''}`)).join(', ');
}

/** A time range as tools return it: RFC 3339 with microseconds, and Unix ms rounded outwards. */
export interface WindowView {
  oldest: string;
  newest: string;
  oldest_ms: number;
  newest_ms: number;
}

/** Null when the range is absent or empty (0 means "no data" on the wire). */
export function windowView(r: TimeRange | undefined): WindowView | null {
  if (!r || (r.oldest_us === 0 && r.newest_us === 0)) return null;
  return {
    oldest: isoMicros(r.oldest_us),
    newest: isoMicros(r.newest_us),
    // Outwards, so start=oldest_ms and end=newest_ms cover every item in the range.
    oldest_ms: Math.floor(r.oldest_us / 1000),
    newest_ms: Math.ceil(r.newest_us / 1000),
  };
}

export const windowSchema = {
  type: ['object', 'null'],
  properties: {
    oldest: { type: 'string', description: 'RFC 3339, microseconds.' },
    newest: { type: 'string' },
    oldest_ms: { type: 'integer', description: 'Unix ms, rounded down.' },
    newest_ms: { type: 'integer', description: 'Unix ms, rounded up.' },
  },
  required: ['oldest', 'newest', 'oldest_ms', 'newest_ms'],
  additionalProperties: false,
};

export const windowLine = (w: WindowView | null): string => (w ? `${w.oldest} .. ${w.newest}` : 'none');

/**
 * Re-raises a source error with the tool's argument names: sources name their query fields
 * (`since_us`, `protocol`), models know the tool's arguments (`start`, `l4proto`). `byCode`
 * names the argument for errors that arrive without a field (e.g. a snapshot not found).
 */
export async function inArgumentTerms<T>(
  work: Promise<T>,
  names: Readonly<Record<string, string>>,
  byCode: Partial<Record<ErrorCode, string>> = {},
): Promise<T> {
  try {
    return await work;
  } catch (err) {
    if (!(err instanceof TrafficSourceError)) throw err;
    const field = err.field !== undefined ? (names[err.field] ?? err.field) : byCode[err.code];
    if (field === err.field) throw err;
    throw new TrafficSourceError(err.code, err.message, { cause: err, ...(field !== undefined ? { field } : {}) });
  }
}

export const QUERY_TO_ARGUMENT: Readonly<Record<string, string>> = {
  since_us: 'start',
  until_us: 'end',
  protocol: 'l4proto',
};

/** Snapshot names, as the workers accept them. */
export const snapshotNameArg = (what: string): Record<string, unknown> => ({
  type: 'string',
  minLength: 1,
  maxLength: 64,
  pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$',
  description: `${what}: 1-64 letters, digits, dots, dashes or underscores, starting with a letter or digit.`,
});

/**
 * The longest prefix of `rows` whose rendering fits the budget, and at least one row so that
 * paging makes progress. `render(n, cut)` renders the first n rows (`cut` = more rows follow);
 * `lines` are the rows' text lines. Estimates from the sizes first, then confirms by rendering.
 */
export function fitRows(rows: unknown[], lines: string[], budget: OutputBudget, render: (n: number, cut: boolean) => ToolOutput): ToolOutput {
  const { maxChars } = budget;
  const full = render(rows.length, false);
  if (resultChars(full, budget) <= maxChars) return full;
  const empty = render(0, true);
  // Room left for rows in the text and in the JSON: one shared room when both are sent, else each its own.
  const together = budget.jsonText !== false;
  let textRoom = maxChars - (together ? resultChars(empty, budget) : empty.text.length);
  let jsonRoom = together ? Infinity : maxChars - structuredJson(empty.structured).length;
  let n = 0;
  while (n < rows.length) {
    const json = JSON.stringify(rows[n]).length + 1;
    const line = lines[n]!.length + 1;
    if (together) textRoom -= json + line;
    else {
      textRoom -= line;
      jsonRoom -= json;
    }
    if (textRoom < 0 || jsonRoom < 0) break;
    n++;
  }
  n = Math.max(n, 1);
  let out = render(n, true);
  while (n > 1 && resultChars(out, budget) > maxChars) out = render(--n, true);
  return out;
}
