import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { ARGUMENT_METADATA_KEY, type ExchangeReply, type ExchangeRequest__Output } from '@kubeshark-mcp/proto';

/**
 * Calls one stream may have in flight; more are refused with RESOURCE_EXHAUSTED (the hub keeps
 * fewer in flight and makes separate calls beyond that).
 */
export const EXCHANGE_MAX_IN_FLIGHT = 256;

/** Methods that Exchange never runs: large or long streams, and Exchange itself. */
const REFUSED = new Set(['ExportPcap', 'Exchange']);

/** A unary or server-streaming handler of the service, as Exchange calls it. */
export type ExchangeHandler = (call: unknown, callback?: grpc.sendUnaryData<unknown>) => void;

/** One call running inside an Exchange stream. */
interface Running {
  /** The call object the handler sees (an EventEmitter with the parts of a gRPC call it uses). */
  shim: EventEmitter & { cancelled: boolean };
  timer?: NodeJS.Timeout;
}

/**
 * The Exchange handler: runs the service's own handlers for calls multiplexed over one stream.
 * A handler sees a call object with what the worker's handlers use of a real one: `request`,
 * `metadata`, `cancelled` and the `cancelled` event; for a server stream `write` (with the
 * stream's back-pressure and `drain`), `end`, and `emit('error', status)`.
 */
export function exchangeHandler(definition: grpc.ServiceDefinition, handlers: Record<string, ExchangeHandler>): grpc.handleBidiStreamingCall<ExchangeRequest__Output, ExchangeReply> {
  return (stream) => {
    const running = new Map<number, Running>();
    let closed = false;
    let halfClosed = false;

    const send = (reply: ExchangeReply): boolean => (closed ? false : stream.write(reply));
    /** Ends call `id` with its status (OK when none), carrying a unary method's response if given. */
    const finish = (id: number, status?: Partial<grpc.StatusObject>, response?: Buffer): void => {
      const r = running.get(id);
      if (!r) return;
      running.delete(id);
      if (r.timer) clearTimeout(r.timer);
      const code = status?.code ?? grpc.status.OK;
      const argument = status?.metadata?.get(ARGUMENT_METADATA_KEY)[0];
      send({
        id,
        ...(response ? { response, has_response: true } : {}),
        end: true,
        code,
        details: code === grpc.status.OK ? '' : (status?.details ?? ''),
        argument: argument ? String(argument) : '',
      });
      if (halfClosed && running.size === 0) stream.end();
    };
    const refuse = (id: number, code: grpc.status, details: string): void => {
      send({ id, end: true, code, details });
    };
    const cancel = (r: Running): void => {
      if (r.shim.cancelled) return;
      r.shim.cancelled = true;
      r.shim.emit('cancelled');
    };

    stream.on('data', (req: ExchangeRequest__Output) => {
      const id = req.id;
      if (req.cancel) {
        const r = running.get(id);
        if (!r) return;
        cancel(r);
        finish(id, { code: grpc.status.CANCELLED, details: 'cancelled by the caller' });
        return;
      }
      if (running.has(id)) return refuse(id, grpc.status.INVALID_ARGUMENT, `call id ${id} is already in flight on this stream`);
      if (running.size >= EXCHANGE_MAX_IN_FLIGHT) return refuse(id, grpc.status.RESOURCE_EXHAUSTED, `more than ${EXCHANGE_MAX_IN_FLIGHT} calls in flight on one Exchange stream`);
      const def = Object.prototype.hasOwnProperty.call(definition, req.method) ? definition[req.method] : undefined;
      const handler = def ? handlers[req.method] : undefined;
      if (!def || !handler || def.requestStream || REFUSED.has(req.method)) {
        return refuse(id, grpc.status.UNIMPLEMENTED, `method "${req.method}" cannot be called through Exchange${def ? '; call it on its own' : ' (no such method)'}`);
      }
      let request: unknown;
      try {
        request = def.requestDeserialize(req.request);
      } catch (err) {
        return refuse(id, grpc.status.INTERNAL, `the ${req.method} request did not decode: ${(err as Error).message}`);
      }
      const shim = Object.assign(new EventEmitter(), { cancelled: false, request, metadata: stream.metadata });
      const r: Running = { shim };
      running.set(id, r);
      if (req.timeout_ms > 0) {
        r.timer = setTimeout(() => {
          cancel(r);
          finish(id, { code: grpc.status.DEADLINE_EXCEEDED, details: 'Deadline exceeded' });
        }, req.timeout_ms);
      }
      const serialize = (msg: unknown): Buffer => def.responseSerialize(msg);
      try {
        if (def.responseStream) {
          // A server stream: its messages are replies without `end`; end() or an error ends it.
          Object.assign(shim, {
            write: (msg: unknown): boolean => {
              if (!running.has(id)) return false;
              return send({ id, response: serialize(msg), has_response: true });
            },
            end: (): void => finish(id),
            emit: (event: string | symbol, ...args: unknown[]): boolean => {
              if (event === 'error') {
                finish(id, toStatusObject(args[0]));
                return true;
              }
              return EventEmitter.prototype.emit.call(shim, event, ...args);
            },
          });
          handler(shim);
        } else {
          handler(shim, (err, value) => {
            if (!running.has(id)) return;
            if (err) return finish(id, toStatusObject(err));
            let response: Buffer;
            try {
              response = serialize(value);
            } catch (e) {
              return finish(id, { code: grpc.status.INTERNAL, details: `the ${req.method} response did not encode: ${(e as Error).message}` });
            }
            finish(id, undefined, response);
          });
        }
      } catch (err) {
        finish(id, { code: grpc.status.INTERNAL, details: (err as Error).message ?? String(err) });
      }
    });
    // Back-pressure: a handler that waits for 'drain' gets it when the stream drains.
    stream.on('drain', () => {
      for (const r of running.values()) r.shim.emit('drain');
    });
    stream.on('end', () => {
      halfClosed = true;
      if (running.size === 0) stream.end();
    });
    const abandon = (): void => {
      closed = true;
      for (const r of running.values()) {
        if (r.timer) clearTimeout(r.timer);
        cancel(r);
      }
      running.clear();
    };
    stream.on('cancelled', abandon);
    stream.on('error', abandon);
    stream.on('close', abandon);
  };
}

/** A handler's error (a status object or an Error) as a status. */
function toStatusObject(err: unknown): Partial<grpc.StatusObject> {
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'number') return err as Partial<grpc.StatusObject>;
  return { code: grpc.status.INTERNAL, details: (err as Error)?.message ?? String(err) };
}
