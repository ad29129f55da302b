import type { ServerResponse } from 'node:http';

/** How long a POST response's start is held back at most (see `coalesceStart`). */
export const COALESCE_MS = 100;

type Write = ServerResponse['write'];
type End = ServerResponse['end'];

/**
 * Holds back the start of a response (status line, headers, body) until it ends or `holdMs`
 * passes, then sends what was held at once and lets the rest through.
 *
 * Why: with resumability on, the SDK starts every POST response stream with a priming event
 * (an event id to resume from) before the tool has answered, and the HTTP layer sends the
 * headers and that event as soon as it has them. A call that answers within milliseconds then
 * costs two writes here and, in the client, a second network read and a pass through its fetch
 * and event-stream machinery for an empty event: about a tenth of the client's CPU for a page of
 * results. Held back, headers, priming event and result leave in one write. A long call (a
 * capture with progress notifications) starts streaming after `holdMs`, with the priming event
 * first, as before. A response whose client went away in the meantime is dropped, never written.
 * What was held goes out as one body chunk (with chunked encoding each write is a chunk of its
 * own, and a client's fetch passes each through its stream machinery): priming event and result
 * reach the client as one piece, as a server without an event store sends its one event.
 */
export function coalesceStart(res: ServerResponse, holdMs = COALESCE_MS): void {
  let held: Parameters<Write>[] | undefined = [];
  let timer: NodeJS.Timeout | undefined;
  const write = res.write;
  const end = res.end;
  const stopHolding = (): Parameters<Write>[] => {
    const h = held ?? [];
    held = undefined;
    clearTimeout(timer);
    // The instance's own methods go; the prototype's are back.
    delete (res as { write?: Write }).write;
    delete (res as { end?: End }).end;
    delete (res as { flushHeaders?: unknown }).flushHeaders;
    return h;
  };
  const release = (): void => {
    if (held === undefined) return;
    const writes = stopHolding();
    const merged = writes.length > 1 ? concat(writes) : undefined;
    if (merged) (write as (chunk: Buffer, cb: Callback) => boolean).call(res, merged.bytes, merged.done);
    else for (const args of writes) write.apply(res, args);
  };
  res.flushHeaders = () => undefined; // sent with the first body bytes instead
  res.write = function (this: ServerResponse, ...args: Parameters<Write>): boolean {
    if (held === undefined) return write.apply(res, args);
    held.push(args);
    timer ??= setTimeout(release, holdMs);
    return true;
  } as Write;
  res.end = function (this: ServerResponse, ...args: Parameters<End>): ServerResponse {
    release();
    return end.apply(res, args);
  } as End;
  res.once('close', () => {
    if (held === undefined) return;
    // The client is gone: nothing to send; writes that wanted to know hear that they failed.
    for (const args of stopHolding()) {
      const callback = args.find((a): a is (err?: Error | null) => void => typeof a === 'function');
      if (callback) process.nextTick(callback, new Error('the response was closed before it was sent'));
    }
  });
}

type Callback = (err?: Error | null) => void;

/**
 * The held writes as one: their bytes in order, and a callback that calls each of theirs.
 * Undefined when one of them is not bytes or text (left to write as it was held).
 */
function concat(writes: Parameters<Write>[]): { bytes: Buffer; done: Callback } | undefined {
  const parts: Buffer[] = [];
  const callbacks: Callback[] = [];
  for (const args of writes) {
    const [chunk, second, third] = args as unknown[];
    const encoding = typeof second === 'string' ? (second as BufferEncoding) : undefined;
    const callback = typeof second === 'function' ? second : third;
    if (typeof chunk === 'string') {
      if (encoding !== undefined && !Buffer.isEncoding(encoding)) return undefined;
      parts.push(Buffer.from(chunk, encoding));
    } else if (chunk instanceof Uint8Array) parts.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    else return undefined;
    if (typeof callback === 'function') callbacks.push(callback as Callback);
  }
  return { bytes: Buffer.concat(parts), done: (err) => callbacks.forEach((cb) => cb(err)) };
}
