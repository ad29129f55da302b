import { PAGING, RTT_BANDS, callOf, describeWindow, intValue, invalidPromptParams, timeValue, windowArgs, windowOf, type PromptDefinition } from './prompt-kit';

/**
 * The investigations that start from API calls (get_api_stats, list_api_calls, get_api_call)
 * and go down to flows and packets, plus the two-window comparison and the security audit.
 */

const COVERAGE =
  'Check the nodes list of every answer: a node that is unavailable or in error means its traffic is missing, not absent; ' +
  'get_data_boundaries tells whether the window was captured at all.';

/** `time` +- `window_minutes` as a start/end pair (RFC 3339 strings), for prompts centred on a moment. */
function around(prompt: string, args: Readonly<Record<string, string>>): { start: string; end: string } | undefined {
  const t = timeValue(prompt, 'time', args.time);
  if (t === undefined) return undefined;
  const minutes = intValue(prompt, 'window_minutes', args.window_minutes, 1, 1440) ?? 5;
  const ms = typeof t === 'number' ? t : Date.parse(t);
  return { start: new Date(ms - minutes * 60_000).toISOString(), end: new Date(ms + minutes * 60_000).toISOString() };
}

const namespaceArg = { name: 'namespace', description: 'Only traffic to or from this Kubernetes namespace (completes to the known namespaces).' };

/** The KFL filter a namespace argument adds (validated as a namespace name). */
function namespaceKfl(prompt: string, args: Readonly<Record<string, string>>): { kfl?: string } {
  const ns = args.namespace;
  if (ns === undefined || ns === '') return {};
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(ns) || ns.length > 63) throw invalidPromptParams(`Prompt ${prompt}: argument "namespace" must be a Kubernetes namespace name, got ${JSON.stringify(ns)}`);
  return { kfl: `${JSON.stringify(ns)} in namespaces` };
}

const aroundArgs = [
  { name: 'time', description: 'When it happened, roughly: RFC 3339 with a zone (2024-05-01T14:15:00Z) or Unix milliseconds. Default: everything stored.' },
  { name: 'window_minutes', description: 'Minutes to search on each side of time (1-1440, default 5).' },
];

export const investigateFailedRequestPrompt: PromptDefinition = {
  name: 'investigate_failed_request',
  title: 'Investigate a failed request',
  description:
    'Find why a request failed ("why did the checkout fail for user 12345 at 14:15?"): the failing endpoints around that time (get_api_stats), ' +
    'the failed calls (list_api_calls), their headers and bodies (get_api_call), the connection underneath (list_l4_flows) and a PCAP (export_pcap).',
  arguments: [
    ...aroundArgs,
    { name: 'path', description: 'Part of the URL path or endpoint to look at, e.g. /checkout.' },
    { name: 'search', description: 'Text to look for in headers and bodies, e.g. a user or order id.' },
  ],
  render(args) {
    const w: { start?: string; end?: string } = around(this.name, args) ?? {};
    const path = args.path ?? '';
    const search = args.search ?? '';
    return [
      `Investigate a failed request ${describeWindow(w)}${path ? ` on paths containing "${path}"` : ''}${search ? ` involving "${search}"` : ''}, using the kubeshark tools in this order:`,
      '',
      `1. ${COVERAGE}`,
      `2. Call ${callOf('get_api_stats', { ...w, order_by: 'failures', limit: 20 })}: which servers and endpoints failed (failures, error_rate, ` +
        `unanswered, statuses)${path ? `; focus on endpoints containing "${path}"` : ''}.`,
      `3. Call ${callOf('list_api_calls', { ...w, limit: 100 })} and keep the calls with status_code >= 400, status_code 0 (no response) or an error ` +
        `(pair-not-found = no response captured, dissection = bytes missing)${path ? ` whose path or url contains "${path}"` : ''}. ${PAGING}`,
      `4. Call get_api_call with the id of each candidate (start with the earliest failure): read the request and response headers and the body previews` +
        `${search ? `, and look for "${search}" in them to find the user's request` : ''}. The response body usually says why (an error message, a validation failure, an upstream timeout).`,
      '5. Follow the chain: a 5xx from a service often comes from a call that service made. Look for calls whose src is the failing server, made between the ' +
        'request time and its response time (list_api_calls with the same window), and repeat steps 3-4 for them.',
      `6. For the connection underneath, call list_l4_flows with ip and port set to the failed call's server (dst)${w.start ? ' and the same start and end' : ''}: resets (state "reset", rst_count), ` +
        `retransmissions or a slow handshake (bands: ${RTT_BANDS}) mean the network, not the application, failed.`,
      `7. Call ${callOf('export_pcap', { flow_ids: ['<flow_id of the failed call>'] })} and give the user the download link to open in Wireshark.`,
      '',
      'Answer with: the failed request (time, client, server, method, path, status, elapsed time), the root cause with evidence (call ids, the error text, ' +
        'the upstream call that failed, TCP problems if any), and the PCAP link.',
    ].join('\n');
  },
};

export const findErrorsPrompt: PromptDefinition = {
  name: 'find_errors',
  title: 'Find errors',
  description:
    'Find what is failing: endpoints by failures and error rate (get_api_stats), example failed calls (list_api_calls, get_api_call), ' +
    'DNS failures, and refused or reset connections (list_l4_flows).',
  arguments: [...windowArgs, namespaceArg],
  render(args) {
    const w = { ...windowOf(this.name, args), ...namespaceKfl(this.name, args) };
    return [
      `Find the errors in the traffic ${describeWindow(w)}, using the kubeshark tools in this order:`,
      '',
      `1. Call ${callOf('get_api_stats', { ...w, order_by: 'failures', limit: 30 })} and ${callOf('get_api_stats', { ...w, order_by: 'error_rate', limit: 30 })}: ` +
        'servers and endpoints with failures (HTTP >= 400, DNS rcode != 0, ...) and calls that got no answer (unanswered).',
      `2. For the worst endpoints, call ${callOf('list_api_calls', { ...w, limit: 50 })} and pick failed examples (status_code >= 400, or 0 with an error). ${PAGING} ` +
        'Call get_api_call on one or two per endpoint to read the error message in the response.',
      `3. DNS: call ${callOf('list_api_calls', { ...w, protocol: 'dns', limit: 100 })} and note NXDOMAIN (status_code 3) and SERVFAIL (2) answers and unanswered queries: ` +
        'a misspelt service name or a broken resolver explains many application errors.',
      `4. Connections: call ${callOf('list_l4_flows', { ...w, l4proto: 'tcp', order_by: 'recent', limit: 100 })} and note flows in state "reset" or "syn_sent" ` +
        '(refused or unanswered connections) and flows with many retransmissions.',
      `5. ${COVERAGE}`,
      '',
      'Answer with a table of problems ordered by impact (what fails, how often, since when, example call id), the likely cause of each, and what to look at next ' +
        '(investigate_failed_request for one of them).',
    ].join('\n');
  },
};

export const latencyAnalysisPrompt: PromptDefinition = {
  name: 'latency_analysis',
  title: 'Latency analysis',
  description:
    'Find what is slow and whether the network or the application is to blame: endpoints by p99 latency (get_api_stats), the slowest calls ' +
    '(list_api_calls, get_api_call), and TCP handshake times as the network baseline (get_l4_flow_summary, list_l4_flows).',
  arguments: [...windowArgs, { name: 'threshold_ms', description: 'Calls slower than this are slow (1-600000, default 1000).' }, namespaceArg],
  render(args) {
    const w = { ...windowOf(this.name, args), ...namespaceKfl(this.name, args) };
    const threshold = intValue(this.name, 'threshold_ms', args.threshold_ms, 1, 600_000) ?? 1000;
    return [
      `Analyse latency ${describeWindow(w)} (slow = over ${threshold} ms), using the kubeshark tools in this order:`,
      '',
      `1. Call ${callOf('get_api_stats', { ...w, order_by: 'p99', limit: 30 })}: endpoints by p99 latency with p50 and p90 (microseconds). ` +
        'A p99 far above p50 means occasional slow calls (contention, retries, GC); a high p50 means the endpoint is slow.',
      `2. Call ${callOf('get_l4_flow_summary', w)} for the TCP handshake p50/p90/p99: the network's round trip. Bands: ${RTT_BANDS}. ` +
        'If call latency is close to the handshake time, the network dominates; if it is much larger, the server (or what it calls) does.',
      `3. For the slowest endpoints, call ${callOf('list_api_calls', { ...w, limit: 100 })} and keep calls with elapsed_time_us over ${threshold * 1000}. ${PAGING} ` +
        'Call get_api_call on a few to see request sizes, response sizes and headers (caching, retries, upstream timing headers).',
      `4. For the servers involved, call ${callOf('list_l4_flows', { ...w, aggregate: 'ip_pair', order_by: 'bytes', limit: 50 })}: per client/server pair ` +
        'handshake p50/p90/p99 and retransmissions show a slow or lossy path.',
      `5. ${COVERAGE}`,
      '',
      'Answer with: the slowest endpoints (p50/p90/p99 in ms), whether network or application time dominates for each (with the handshake numbers), ' +
        'example slow call ids, and the next step.',
    ].join('\n');
  },
};

export const securityAuditPrompt: PromptDefinition = {
  name: 'security_audit',
  title: 'Security audit',
  description:
    'Audit the traffic for risks: connections to public addresses and unusual ports (get_l4_flow_summary, list_l4_flows), cleartext HTTP carrying ' +
    'credentials (list_api_calls, get_api_call), suspicious DNS names, and failed or refused connections that look like scanning.',
  arguments: [...windowArgs],
  render(args) {
    const w = windowOf(this.name, args);
    return [
      `Audit the traffic ${describeWindow(w)} for security risks, using the kubeshark tools in this order:`,
      '',
      `1. Call ${callOf('get_l4_flow_summary', { ...w, top: 20 })}: top talkers; flag addresses outside the private ranges (10/8, 172.16/12, 192.168/16, fc00::/7) ` +
        'and unusually heavy senders (possible exfiltration).',
      `2. Call ${callOf('list_l4_flows', { ...w, aggregate: 'ip_pair', order_by: 'bytes', limit: 100 })}: who talks to public addresses, and how much. ${PAGING}`,
      `3. Call ${callOf('list_l4_flows', { ...w, l4proto: 'tcp', order_by: 'recent', limit: 200 })}: many flows from one client in state "syn_sent" or "reset" to many ` +
        'ports or hosts looks like a scan; services on unusual ports deserve a note.',
      `4. Call ${callOf('list_api_calls', { ...w, protocol: 'http', limit: 100 })}: cleartext HTTP (this is captured unencrypted). Call get_api_call on calls to login, ` +
        'token or admin paths and check for Authorization headers, cookies, API keys or passwords in clear text; report them redacted (first 4 characters only).',
      `5. Call ${callOf('list_api_calls', { ...w, protocol: 'dns', limit: 200 })}: look for very long or random-looking names (DNS tunnelling), many NXDOMAIN answers ` +
        '(domain generation), and lookups of known-bad or unexpected external domains.',
      `6. ${COVERAGE}`,
      '',
      'Answer with findings ordered by severity (high, medium, low), each with evidence (flow or call ids, addresses, names) and a recommendation. Never repeat a secret in full.',
    ].join('\n');
  },
};

export const compareTrafficPrompt: PromptDefinition = {
  name: 'compare_traffic',
  title: 'Compare two time windows',
  description:
    'Compare traffic in two windows (before and after a deploy or an incident): volumes and handshake times (get_l4_flow_summary), ' +
    'per-endpoint calls, errors and latency (get_api_stats), and new or vanished peers (list_l4_flows).',
  arguments: [
    { name: 'baseline_start', description: 'Start of the baseline window (RFC 3339 with a zone, or Unix ms).', required: true },
    { name: 'baseline_end', description: 'End of the baseline window.', required: true },
    { name: 'compare_start', description: 'Start of the window to compare (RFC 3339 with a zone, or Unix ms).', required: true },
    { name: 'compare_end', description: 'End of the window to compare.', required: true },
  ],
  render(args) {
    const pair = (s: string, e: string): { start: string | number; end: string | number } => {
      const w = windowOf(this.name, { start: args[s] ?? '', end: args[e] ?? '' });
      if (w.start === undefined || w.end === undefined) throw invalidPromptParams(`Prompt ${this.name}: "${s}" and "${e}" are required`);
      return { start: w.start, end: w.end };
    };
    const a = pair('baseline_start', 'baseline_end');
    const b = pair('compare_start', 'compare_end');
    return [
      `Compare the traffic between ${a.start} and ${a.end} (baseline) with the traffic between ${b.start} and ${b.end}, using the kubeshark tools:`,
      '',
      `1. Call ${callOf('get_l4_flow_summary', { ...a, top: 20 })} and ${callOf('get_l4_flow_summary', { ...b, top: 20 })}: compare flows, packets, bytes (normalise ` +
        `per minute when the windows differ in length), TCP vs UDP, unique clients and servers, and handshake p50/p90/p99 (bands: ${RTT_BANDS}).`,
      `2. Call ${callOf('get_api_stats', { ...a, limit: 100 })} and ${callOf('get_api_stats', { ...b, limit: 100 })}: per endpoint, compare requests, error_rate and ` +
        'p50/p99 latency; list endpoints that appeared or disappeared. Page with cursor when nextCursor is present.',
      `3. Call ${callOf('list_l4_flows', { ...a, aggregate: 'ip_pair', order_by: 'bytes', limit: 100 })} and the same for the second window: peers that are new, gone, or changed a lot.`,
      `4. ${COVERAGE} A node missing from one window makes that window look quieter than it was.`,
      '',
      'Answer with a before/after table of the key numbers with the change in percent, the endpoints and peers that changed most, and whether the change looks like a problem.',
    ].join('\n');
  },
};

export const traceRequestPrompt: PromptDefinition = {
  name: 'trace_request',
  title: 'Trace a request through services',
  description:
    'Follow one API call through the services it touched: the call itself (get_api_call), the calls its server made while handling it (list_api_calls in its ' +
    'time span from that server), the DNS lookups before them, and the connections underneath (list_l4_flows).',
  arguments: [{ name: 'id', description: 'The API call id (from list_api_calls), <node>/<flow>/<index>.', required: true }],
  render(args) {
    const id = args.id ?? '';
    if (!/^[^/\s]+\/[^/\s]+\/\d+$/.test(id)) throw invalidPromptParams(`Prompt ${this.name}: argument "id" must be an API call id as list_api_calls returns it (<node>/<flow>/<index>), got ${JSON.stringify(id)}`);
    return [
      `Trace the API call ${id} through the services it touched, using the kubeshark tools in this order:`,
      '',
      `1. Call ${callOf('get_api_call', { id })}: note its timestamp, elapsed_time, client (src) and server (dst), method, path, status and flow_id.`,
      `2. Downstream calls: call list_api_calls with start = its timestamp and end = timestamp + elapsed_time (as RFC 3339), and keep the calls whose src.ip is ` +
        `the server's IP: these are the calls it made while handling the request. ${PAGING} Repeat for each of them (depth first) to build the tree.`,
      '3. DNS: calls with protocol dns from those IPs just before each downstream call show name resolution time and failures.',
      `4. For each hop, call list_l4_flows with ip and port of the server, in the same window: handshake times (bands: ${RTT_BANDS}), resets and retransmissions.`,
      '5. Where a hop is missing, say which node it would have been captured on and whether that node is covered (the nodes list).',
      '',
      'Answer with the call tree (indented: service, method path, status, elapsed ms, call id), the time spent in each hop versus its children, and where the time or the failure comes from.',
    ].join('\n');
  },
};
