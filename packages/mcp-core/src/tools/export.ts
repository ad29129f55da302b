import { ERROR_CODES } from '../errors';
import type { ProgressUpdate, ToolContext, ToolDefinition } from '../registry';
import type { L4Protocol, PcapFormat, PcapProgress } from '../traffic-source';
import { QUERY_TO_ARGUMENT, inArgumentTerms, nodesLine, snapshotNameArg, timeWindow, type TimeArgs } from './common';
import { kflArg, nodesSchema, timeArg } from './schemas';

/** Media types of the export formats, for the download's Content-Type and the resource link. */
export const PCAP_MEDIA_TYPES: Readonly<Record<PcapFormat, string>> = {
  pcapng: 'application/x-pcapng',
  pcap: 'application/vnd.tcpdump.pcap',
};

/** Progress notifications at most this often; the first and the last are always sent. */
const PROGRESS_INTERVAL_MS = 100;

/**
 * Turns a stream of byte counts into progress notifications: the first at once, then at most one
 * per interval; `flush` sends the last count if it was held back. Sending is serialised so the
 * values reach the client in increasing order.
 */
function progressReporter(send: (update: ProgressUpdate) => Promise<void>): { update: (p: PcapProgress) => void; flush: () => Promise<void> } {
  let last = 0;
  let sent = -1;
  let pending: PcapProgress | undefined;
  let chain = Promise.resolve();
  const emit = (p: PcapProgress): void => {
    if (p.bytes <= sent) return;
    sent = p.bytes;
    last = Date.now();
    pending = undefined;
    chain = chain.then(() => send({ progress: p.bytes, message: `${p.packets} packets, ${p.bytes} bytes` })).catch(() => undefined);
  };
  return {
    update(p) {
      if (Date.now() - last >= PROGRESS_INTERVAL_MS) emit(p);
      else pending = p;
    },
    async flush() {
      if (pending) emit(pending);
      await chain;
    },
  };
}

interface ExportArgs extends TimeArgs {
  kfl?: string;
  flow_ids?: string[];
  ips?: string[];
  ports?: number[];
  l4proto?: L4Protocol;
  format: PcapFormat;
  snapshot?: string;
}

export const exportPcap: ToolDefinition<ExportArgs> = {
  name: 'export_pcap',
  title: 'Export packets as PCAP',
  description:
    'Writes the captured packets that match into a pcapng (default) or pcap file and returns a download link ' +
    '(a resource_link; the URL expires) to open in Wireshark or tshark. Filter by kfl (KFL2: the packets of the flows of matching API calls, e.g. ' +
    'http && status_code >= 500, or of matching flows), a start/end window, flow_ids ' +
    '(ids from list_l4_flows), ips and ports (either end), and l4proto; conditions combine with AND, values within ' +
    'one list with OR. Set snapshot to export from a named snapshot instead of the live packet store. Packets are ' +
    'exported byte for byte with their original timestamps. The packet window (get_data_boundaries) says what can ' +
    'be exported; narrow large exports, the hub refuses files above its size limit.',
  inputSchema: {
    type: 'object',
    properties: {
      kfl: kflArg('flows and API calls: the packets of the flows it selects, or of the flows its API calls rode on', 'http && status_code >= 500, tcp_flow && flow_state == "reset"'),
      start: timeArg('Only packets captured at or after this time'),
      end: timeArg('Only packets captured at or before this time'),
      flow_ids: {
        type: 'array',
        items: { type: 'string', minLength: 1 },
        minItems: 1,
        maxItems: 1000,
        uniqueItems: true,
        description: 'Only packets of these flows: ids as list_l4_flows returns them ("node/12").',
      },
      ips: {
        type: 'array',
        items: { type: 'string', format: 'ip' },
        minItems: 1,
        maxItems: 100,
        description: 'Only packets with one of these addresses at either end.',
      },
      ports: {
        type: 'array',
        items: { type: 'integer', minimum: 1, maximum: 65535 },
        minItems: 1,
        maxItems: 100,
        description: 'Only packets with one of these ports at either end.',
      },
      l4proto: { type: 'string', enum: ['tcp', 'udp'], description: 'Only TCP or only UDP packets.' },
      format: {
        type: 'string',
        enum: ['pcapng', 'pcap'],
        default: 'pcapng',
        description: 'pcapng (default; any mix of link types) or pcap (nanosecond timestamps, one link type).',
      },
      snapshot: snapshotNameArg('Export from this snapshot (see list_snapshots) instead of the live packet store'),
    },
    additionalProperties: false,
  },
  outputSchema: {
    type: 'object',
    properties: {
      url: { type: 'string', description: 'Where to download the file (HTTP GET); it stops working at expires_at.' },
      name: { type: 'string', description: 'File name.' },
      mime_type: { type: 'string' },
      bytes: { type: 'integer', minimum: 0, description: 'File size.' },
      packets: { type: 'integer', minimum: 0 },
      format: { type: 'string', enum: ['pcapng', 'pcap'] },
      expires_at: { type: 'string', description: 'RFC 3339.' },
      nodes: nodesSchema,
    },
    required: ['url', 'name', 'mime_type', 'bytes', 'packets', 'format', 'expires_at', 'nodes'],
    additionalProperties: false,
  },
  // Read-only: it copies what was captured and changes nothing the other tools see.
  annotations: { readOnlyHint: true, openWorldHint: false },
  async handler(args, ctx: ToolContext) {
    const progress = ctx.progress ? progressReporter(ctx.progress) : undefined;
    const result = await inArgumentTerms(
      ctx.source.exportPcap!(
        {
          format: args.format,
          ...timeWindow(args),
          ...(args.flow_ids ? { flow_ids: args.flow_ids } : {}),
          ...(args.ips ? { ips: args.ips } : {}),
          ...(args.ports ? { ports: args.ports } : {}),
          ...(args.l4proto ? { protocol: args.l4proto } : {}),
          ...(args.snapshot ? { snapshot: args.snapshot } : {}),
          ...((k) => (k ? { kfl: k } : {}))(ctx.filters.compose(args.kfl).text),
        },
        { signal: ctx.signal },
        progress?.update,
      ),
      QUERY_TO_ARGUMENT,
      // The only thing an export can fail to find is the snapshot it names.
      args.snapshot ? { [ERROR_CODES.NOT_FOUND]: 'snapshot' } : {},
    );
    await progress?.flush();
    const mimeType = PCAP_MEDIA_TYPES[result.format];
    const expiresAt = new Date(result.expires_at_ms).toISOString();
    const what = `${result.packets} packets (${result.bytes} bytes, ${result.format})`;
    const text =
      result.packets === 0
        ? `No packets matched (nodes: ${nodesLine(result.nodes)}): ${result.url} is an empty ${result.format} file. ` +
          'get_data_boundaries shows the packet window each node holds; get_status shows whether capture is running.'
        : `Exported ${what} from ${nodesLine(result.nodes)}: ${result.url} (expires ${expiresAt}). Open it in Wireshark or tshark.`;
    return {
      structured: {
        url: result.url,
        name: result.name,
        mime_type: mimeType,
        bytes: result.bytes,
        packets: result.packets,
        format: result.format,
        expires_at: expiresAt,
        nodes: result.nodes,
      },
      text,
      links: [{ uri: result.url, name: result.name, mimeType, size: result.bytes, description: `${what}, expires ${expiresAt}` }],
    };
  },
};
