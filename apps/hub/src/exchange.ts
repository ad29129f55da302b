import * as grpc from '@grpc/grpc-js';
import { ARGUMENT_METADATA_KEY, type ExchangeReply__Output, type ExchangeRequest, type WorkerClient } from '@kubeshark-mcp/proto';

/** What Exchange needs of a method: the attributes grpc-js puts on a generated client method. */
export interface ExchangeMethod {
  path: string;
  requestSerialize: (value: never) => Buffer;
  responseDeserialize: (bytes: Buffer) => unknown;
}

/** Calls in flight on one stream; beyond this the caller makes separate calls (the worker allows more). */
export const EXCHANGE_IN_FLIGHT = 64;

/** Thrown by `call` when the worker has no Exchange (an older worker): make the call on its own. */
export class ExchangeUnsupported extends Error {}

interface Pending {
  onMessage: (message: unknown) => void;
  resolve: () => void;
  reject: (err: Error) => void;
  deserialize: (bytes: Buffer) => unknown;
  timer: NodeJS.Timeout;
  /** The gRPC stream the call went out on. */
  stream: grpc.ClientDuplexStream<ExchangeRequest, ExchangeReply__Output>;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/** A gRPC status as a grpc-js call error looks: code, details and trailing metadata. */
function statusError(code: grpc.status, details: string, argument = ''): grpc.ServiceError {
  const metadata = new grpc.Metadata();
  if (argument) metadata.set(ARGUMENT_METADATA_KEY, argument);
  return Object.assign(new Error(`${code} ${grpc.status[code]}: ${details}`), { code, details, metadata });
}

/**
 * The hub's end of a worker's Exchange stream (see worker.proto): many calls over one
 * long-lived gRPC stream, each with its own deadline and cancellation, errors shaped as a
 * separate call's would be. The stream opens on the first call and again after it fails; every
 * call in flight fails with the stream's status (a worker that went away: UNAVAILABLE).
 */
export class ExchangeStream {
  private stream?: grpc.ClientDuplexStream<ExchangeRequest, ExchangeReply__Output>;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private unsupported = false;
  private closed = false;

  constructor(private readonly client: WorkerClient) {}

  /** Whether a call can go over the stream now (else make it on its own). */
  get available(): boolean {
    return !this.unsupported && !this.closed && this.pending.size < EXCHANGE_IN_FLIGHT;
  }

  /**
   * One call: `onMessage` gets each response message (one for a unary method); the promise
   * resolves when the call ends OK and rejects with a grpc-js style error otherwise, or with
   * ExchangeUnsupported when the worker has no Exchange.
   */
  call(method: ExchangeMethod, request: unknown, deadlineMs: number, onMessage: (message: unknown) => void, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(statusError(grpc.status.CANCELLED, 'Cancelled on client'));
        return;
      }
      if (!this.available) {
        reject(this.unsupported ? new ExchangeUnsupported('the worker has no Exchange') : statusError(grpc.status.RESOURCE_EXHAUSTED, 'too many calls in flight'));
        return;
      }
      let bytes: Buffer;
      try {
        bytes = method.requestSerialize(request as never);
      } catch (err) {
        reject(statusError(grpc.status.INTERNAL, `request serialization failure: ${(err as Error).message}`));
        return;
      }
      const id = this.nextId;
      this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
      const name = method.path.slice(method.path.lastIndexOf('/') + 1);
      const stream = this.open();
      const p: Pending = {
        stream,
        onMessage,
        resolve,
        reject,
        deserialize: method.responseDeserialize,
        timer: setTimeout(() => {
          this.settle(id, statusError(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded'));
          stream.write({ id, cancel: true });
        }, deadlineMs),
      };
      if (signal) {
        p.signal = signal;
        p.onAbort = () => {
          this.settle(id, statusError(grpc.status.CANCELLED, 'Cancelled on client'));
          stream.write({ id, cancel: true });
        };
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
      this.pending.set(id, p);
      stream.write({ id, method: name, request: bytes, timeout_ms: Math.max(1, Math.ceil(deadlineMs)) });
    });
  }

  /**
   * `call` when the stream can take it. Resolves true when the call was made over the stream,
   * false when the caller must make it on its own (the stream is full, closed, or the worker has
   * no Exchange); rejects as `call` does otherwise.
   */
  async tryCall(method: ExchangeMethod, request: unknown, deadlineMs: number, onMessage: (message: unknown) => void, signal?: AbortSignal): Promise<boolean> {
    if (!this.available) return false;
    try {
      await this.call(method, request, deadlineMs, onMessage, signal);
      return true;
    } catch (err) {
      if (err instanceof ExchangeUnsupported) return false;
      throw err;
    }
  }

  /** Ends the stream; calls in flight fail as cancelled. */
  close(): void {
    this.closed = true;
    this.fail(statusError(grpc.status.CANCELLED, 'the worker connection was closed'));
    this.stream?.cancel();
    this.stream = undefined;
  }

  private open(): grpc.ClientDuplexStream<ExchangeRequest, ExchangeReply__Output> {
    if (this.stream) return this.stream;
    const stream = this.client.Exchange();
    this.stream = stream;
    stream.on('data', (r: ExchangeReply__Output) => this.reply(r));
    stream.on('error', (err: grpc.ServiceError) => {
      if (this.stream === stream) this.stream = undefined;
      if (err.code === grpc.status.UNIMPLEMENTED && /Exchange/i.test(err.details ?? '')) {
        this.unsupported = true;
        this.fail(new ExchangeUnsupported(err.details), stream);
        return;
      }
      // The stream's status is every call's: the worker went away (it cancels the stream when it
      // shuts down) or the connection failed. Not a cancellation of the calls themselves.
      this.fail(err.code === grpc.status.CANCELLED && !this.closed ? statusError(grpc.status.UNAVAILABLE, `the worker closed the connection (${err.details})`) : err, stream);
    });
    stream.on('end', () => {
      if (this.stream === stream) this.stream = undefined;
      this.fail(statusError(grpc.status.UNAVAILABLE, 'the worker ended the Exchange stream'), stream);
    });
    return stream;
  }

  private reply(r: ExchangeReply__Output): void {
    const p = this.pending.get(r.id);
    if (!p) return; // settled already (deadline, cancel): its late replies are dropped
    if (r.has_response) {
      let message: unknown;
      try {
        message = p.deserialize(r.response);
      } catch (err) {
        this.settle(r.id, statusError(grpc.status.INTERNAL, `response deserialization failure: ${(err as Error).message}`));
        p.stream.write({ id: r.id, cancel: true });
        return;
      }
      p.onMessage(message);
    }
    if (r.end) this.settle(r.id, r.code === grpc.status.OK ? undefined : statusError(r.code, r.details, r.argument));
  }

  private settle(id: number, err?: Error): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    if (p.onAbort) p.signal?.removeEventListener('abort', p.onAbort);
    if (err) p.reject(err);
    else p.resolve();
  }

  /** Fails the calls in flight (on `stream` only, when given). */
  private fail(err: Error, stream?: Pending['stream']): void {
    for (const [id, p] of [...this.pending]) if (!stream || p.stream === stream) this.settle(id, err);
  }
}
