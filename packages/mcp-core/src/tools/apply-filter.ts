import { encodeCursor } from '../cursor';
import type { ToolDefinition } from '../registry';
import { apiCallView, listApiCalls } from './api-calls';
import { QUERY_TO_ARGUMENT, inArgumentTerms, nodesLine, timeWindow, type TimeArgs } from './common';
import { kflArg, limitArg, nodesSchema, timeArg } from './schemas';

interface ApplyFilterArgs extends TimeArgs {
  kfl: string;
  limit: number;
}

export const applyFilter: ToolDefinition<ApplyFilterArgs> = {
  name: 'apply_filter',
  title: 'Try a KFL filter',
  description:
    'Checks a KFL2 filter and runs it over the stored API calls: how many match on each node, the first matches, and the filter as the workers ' +
    'run it (legacy names such as response.status rewritten to their KFL2 names, with notes). A filter that does not parse or type-check comes ' +
    'back as an error with its position and a suggestion. Use it to build a filter before list_api_calls, get_api_stats or export_pcap; ' +
    'nextCursor continues the matches in list_api_calls.',
  inputSchema: {
    type: 'object',
    properties: {
      kfl: { ...kflArg('API calls', 'http && status_code >= 500'), minLength: 0 },
      start: timeArg('Only calls made at or after this time'),
      end: timeArg('Only calls made at or before this time'),
      limit: limitArg(10, 100, 'matching calls to show'),
    },
    required: ['kfl'],
    additionalProperties: false,
  },
  outputSchema: {
    type: 'object',
    properties: {
      normalized: { type: 'string', description: 'The filter with aliases and macros expanded ("" matches everything).' },
      notes: { type: 'array', items: { type: 'string' } },
      applied: { type: 'string', description: 'What the workers ran: the filter ANDed with the configured global filter and restrictions.' },
      matched: { type: 'integer', minimum: 0, description: 'Matches over all nodes.' },
      counts: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            node: { type: 'string' },
            matched: { type: 'integer', minimum: 0 },
            scanned: { type: 'integer', minimum: 0, description: 'Calls in the window on that node.' },
            errors: { type: 'integer', minimum: 0, description: 'Calls on which the filter failed at run time (they do not match).' },
            last_error: { type: 'string' },
          },
          required: ['node', 'matched', 'scanned', 'errors'],
          additionalProperties: false,
        },
      },
      calls: { type: 'array', items: (listApiCalls.outputSchema.properties as Record<string, { items: object }>).calls!.items },
      nextCursor: { type: 'string', description: 'Pass as cursor to list_api_calls for the next matches.' },
      nodes: nodesSchema,
    },
    required: ['normalized', 'notes', 'applied', 'matched', 'counts', 'calls', 'nodes'],
    additionalProperties: false,
  },
  annotations: { readOnlyHint: true, openWorldHint: false },
  async handler(args, ctx) {
    const filter = ctx.filters.compose(args.kfl);
    const window = timeWindow(args);
    const query = { ...window, ...(filter.text ? { kfl: filter.text } : {}) };
    const names = { ...QUERY_TO_ARGUMENT, kfl: 'kfl' };
    const [count, list] = await Promise.all([
      inArgumentTerms(ctx.source.countApiCalls!(query, { signal: ctx.signal }), names),
      inArgumentTerms(ctx.source.listApiCalls!({ ...query, limit: args.limit }, { signal: ctx.signal }), names),
    ]);
    const calls = list.calls.slice(0, args.limit);
    const last = calls[calls.length - 1];
    const nextCursor = list.more && last ? encodeCursor(listApiCalls.name, { ...query, after: last.cursor }, calls.length) : undefined;
    const matched = count.counts.reduce((n, c) => n + c.matched, 0);
    const views = calls.map(apiCallView);
    const lines = [
      `Filter ${filter.normalized === '' ? '(empty: matches everything)' : filter.normalized} matches ${matched} API calls (${count.counts.map((c) => `${c.node}: ${c.matched} of ${c.scanned}${c.errors ? `, ${c.errors} evaluation errors` : ''}`).join('; ') || 'no nodes'}) (nodes: ${nodesLine(count.nodes)})`,
      ...filter.notes.map((n) => `Note: ${n}`),
      ...(filter.text !== filter.normalized ? [`Applied with the configured policy: ${filter.text}`] : []),
      ...views.map((c) => `${c.timestamp} ${c.protocol} ${c.method} ${c.url || c.path} -> ${c.status_code} (id ${c.id})`),
      ...(nextCursor ? [`More: call list_api_calls with cursor "${nextCursor}".`] : []),
    ];
    return {
      structured: {
        normalized: filter.normalized,
        notes: filter.notes,
        applied: filter.text,
        matched,
        counts: count.counts,
        calls: views,
        ...(nextCursor ? { nextCursor } : {}),
        nodes: count.nodes,
      },
      text: lines.join('\n'),
    };
  },
};
