import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { structuredJson } from '../src/registry';
import { messageJson, serializeOnce } from '../src/wire';

/** The JSON of the messages sent: a tool result's page serialized once, the SDK's framing kept. */

const page = (n: number): Record<string, unknown> => ({
  flows: Array.from({ length: n }, (_, i) => ({ id: `n/${i}`, client: { ip: '10.0.0.1', port: 40000 + i }, note: 'quote " backslash \\ tab \t é 😀' })),
  total: n,
  truncated: false,
  nodes: [{ node: 'n', state: 'ok' }],
});

/** A tool result as the SDK sends it: its validated copy of the result, the structured content a shallow copy. */
function response(id: string | number, structured: Record<string, unknown>): JSONRPCMessage {
  return { result: { content: [{ type: 'text', text: 'line 1\nline "2"' }], structuredContent: { ...structured } }, jsonrpc: '2.0', id } as JSONRPCMessage;
}

test('a tool result whose page the registry serialized is written around that text, to the same JSON value', () => {
  for (const id of [7, 'req-"1"']) {
    const structured = page(3);
    const known = structuredJson(structured);
    const message = response(id, structured);
    const json = messageJson(message);
    expect(JSON.parse(json)).toEqual(message);
    expect(json).toContain(known); // the registry's text, not a second serialization
    expect(json.length).toBe(JSON.stringify(message).length);
    expect(messageJson(message)).toBe(json); // made once per message
  }
});

test('anything else is serialized as JSON.stringify does', () => {
  const unknownPage = response(1, page(2)); // never measured by the registry
  const changed = page(2);
  structuredJson(changed);
  const edited = response(2, { ...changed, total: 99 });
  const extra = { ...(response(3, page(1)) as object), extra: true } as unknown as JSONRPCMessage;
  const known = page(1);
  structuredJson(known);
  const extraMember = { ...(response(4, known) as object), extra: true } as unknown as JSONRPCMessage;
  const notification: JSONRPCMessage = { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 't', progress: 1 } };
  const error: JSONRPCMessage = { jsonrpc: '2.0', id: 5, error: { code: -32602, message: 'bad' } };
  for (const m of [unknownPage, edited, extra, extraMember, notification, error]) expect(messageJson(m)).toBe(JSON.stringify(m));
  const empty = page(0);
  const emptyKnown = structuredJson(empty);
  const bare = { jsonrpc: '2.0', id: 6, result: { structuredContent: { ...empty } } } as JSONRPCMessage;
  expect(messageJson(bare)).toBe(`{"jsonrpc":"2.0","id":6,"result":{"structuredContent":${emptyKnown}}}`);
});

/** What a transport's event writer puts on the stream for `message`. */
function written(write: (...args: unknown[]) => boolean, self: unknown, message: JSONRPCMessage, eventId?: string): string {
  const chunks: Uint8Array[] = [];
  const ok = write.call(self, { enqueue: (c: Uint8Array) => chunks.push(c) }, new TextEncoder(), message, eventId);
  expect(ok).toBe(true);
  return Buffer.concat(chunks).toString('utf8');
}

test('events are framed as the SDK frames them', () => {
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
  const inner = (transport as unknown as { _webStandardTransport: { writeSSEEvent: (...args: unknown[]) => boolean } })._webStandardTransport;
  const sdkWrite = (WebStandardStreamableHTTPServerTransport.prototype as unknown as { writeSSEEvent: (...args: unknown[]) => boolean }).writeSSEEvent;
  expect(inner.writeSSEEvent).toBe(sdkWrite);
  expect(serializeOnce(transport)).toBe(true);
  expect(inner.writeSSEEvent).not.toBe(sdkWrite);

  const notification: JSONRPCMessage = { jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'a\nb' } };
  for (const eventId of [undefined, 'stream:1']) {
    // Byte for byte where nothing is known; the same events, fields and JSON value where the page is.
    expect(written(inner.writeSSEEvent, inner, notification, eventId)).toBe(written(sdkWrite, inner, notification, eventId));
    const structured = page(2);
    structuredJson(structured);
    const message = response(9, structured);
    const ours = written(inner.writeSSEEvent, inner, message, eventId);
    const sdk = written(sdkWrite, inner, message, eventId);
    const fields = (s: string): string[] => s.split('\n').map((l) => l.split(': ')[0]!);
    expect(fields(ours)).toEqual(fields(sdk));
    const data = (s: string): unknown => JSON.parse(s.split('\n').find((l) => l.startsWith('data: '))!.slice(6));
    expect(data(ours)).toEqual(data(sdk));
    expect(ours.length).toBe(sdk.length);
  }
});

test('a transport without the event writer this was written against is left alone', () => {
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
  const inner = (transport as unknown as { _webStandardTransport: Record<string, unknown> })._webStandardTransport;
  inner.writeSSEEvent = (message: unknown) => Boolean(message); // another signature
  expect(serializeOnce(transport)).toBe(false);
  delete (transport as unknown as Record<string, unknown>)._webStandardTransport;
  expect(serializeOnce(transport)).toBe(false);
});

test('a failing write is reported to the transport, as the SDK does', () => {
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
  const errors: Error[] = [];
  transport.onerror = (e) => errors.push(e);
  serializeOnce(transport);
  const inner = (transport as unknown as { _webStandardTransport: { writeSSEEvent: (...args: unknown[]) => boolean } })._webStandardTransport;
  const closed = {
    enqueue: () => {
      throw new TypeError('Invalid state: Controller is already closed');
    },
  };
  expect(inner.writeSSEEvent.call(inner, closed, new TextEncoder(), { jsonrpc: '2.0', method: 'x' })).toBe(false);
  expect(errors.map((e) => e.message)).toEqual(['Invalid state: Controller is already closed']);
});
