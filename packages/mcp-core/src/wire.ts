import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import type { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { knownStructuredJson } from './registry';

/** The JSON text of each message sent, made once for the event store and the wire. */
const messageText = new WeakMap<object, string>();

/**
 * `JSON.stringify(message)` in substance, made once per message: a tool result whose structured
 * content the registry has serialized already (to measure it against the output budget) is
 * written around that text instead of serializing the page a second time. The keys come in
 * another order than `JSON.stringify` would give (jsonrpc, id, result; structuredContent last
 * in the result); JSON objects are unordered, and the values are the same.
 */
export function messageJson(message: JSONRPCMessage): string {
  let json = messageText.get(message);
  if (json === undefined) {
    json = spliced(message) ?? JSON.stringify(message);
    messageText.set(message, json);
  }
  return json;
}

function spliced(message: JSONRPCMessage): string | undefined {
  const m = message as { jsonrpc?: unknown; id?: unknown; result?: Record<string, unknown> };
  const result = m.result;
  if (typeof result !== 'object' || result === null) return undefined;
  const sc = result.structuredContent;
  if (typeof sc !== 'object' || sc === null) return undefined;
  const known = knownStructuredJson(sc as Record<string, unknown>);
  if (known === undefined) return undefined;
  // Only a plain response: anything else (extra members, an id that is not JSON) the usual way.
  let keys = 0;
  for (const _ in m) keys++;
  if (keys !== 3 || m.jsonrpc !== '2.0' || (typeof m.id !== 'string' && typeof m.id !== 'number')) return undefined;
  const { structuredContent: _, ...rest } = result;
  const restJson = JSON.stringify(rest);
  // `rest` is a plain object, so its text ends in '}' and is '{}' when empty.
  const body = restJson.length === 2 ? `{"structuredContent":${known}}` : `${restJson.slice(0, -1)},"structuredContent":${known}}`;
  return `{"jsonrpc":"2.0","id":${JSON.stringify(m.id)},"result":${body}}`;
}

type WriteSseEvent = (controller: { enqueue(chunk: Uint8Array): void }, encoder: { encode(text: string): Uint8Array }, message: JSONRPCMessage, eventId?: string) => boolean;

/**
 * Makes the transport write each SSE event with `messageJson`, so the page a tool returned is
 * serialized once in the hub (for its output budget, the event store and the wire) rather than
 * twice. The SDK's event writer is not public API: it is replaced only where it has the shape
 * this was written against (SDK 1.x: `_webStandardTransport.writeSSEEvent(controller, encoder,
 * message, eventId)`), and the event is framed as the SDK frames it (tested against it);
 * elsewhere the transport is left as it is. Returns whether it was installed.
 */
export function serializeOnce(transport: StreamableHTTPServerTransport): boolean {
  const inner = (transport as unknown as { _webStandardTransport?: { writeSSEEvent?: unknown; onerror?: (err: Error) => void } })._webStandardTransport;
  if (!inner || typeof inner.writeSSEEvent !== 'function' || inner.writeSSEEvent.length !== 4) return false;
  const write: WriteSseEvent = function (controller, encoder, message, eventId) {
    try {
      const head = eventId ? `event: message\nid: ${eventId}\n` : 'event: message\n';
      controller.enqueue(encoder.encode(`${head}data: ${messageJson(message)}\n\n`));
      return true;
    } catch (error) {
      inner.onerror?.(error as Error);
      return false;
    }
  };
  inner.writeSSEEvent = write;
  return true;
}
