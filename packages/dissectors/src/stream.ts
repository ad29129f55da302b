import type { TcpDirection, TcpStreamConsumer } from '@kubeshark-mcp/capture';

/**
 * How TCP dissectors plug into the worker. The worker's stream router sees the first bytes of
 * every TCP stream, asks each registered `TcpProtocol` whether they are its own (`detect`),
 * and hands the stream to the matching dissector: `open` first, then every reassembler event
 * of that stream (including the bytes it already saw, replayed). Streams no protocol claims
 * stay L4 flows. Ports are hints only: the protocols whose ports match are asked first, but a
 * stream is claimed by its content.
 *
 * A protocol can also take over a stream mid-way, after an HTTP/1.1 `Upgrade` (WebSocket,
 * h2c): the router then calls `open` with `upgrade` set and delivers the bytes that follow the
 * upgrade response (client bytes after the upgrade request), at their stream offsets.
 */

/** A detector's answer on the first bytes a direction sent. */
export type Verdict = 'yes' | 'no' | 'more';

/** A TCP protocol the router can recognise. */
export interface TcpProtocol {
  /** The entries' `protocol` (`redis`, `postgresql`, ...). */
  readonly name: string;
  /** Well-known ports, asked first. Users can add ports per protocol (Kubeshark's `portMapping`). */
  readonly ports: readonly number[];
  /**
   * Judges the first `bytes` one direction sent (from its first byte, or the first byte seen
   * when the capture joined mid-stream). `fromClient` says whether the sender is the side that
   * opened the connection, when the handshake was seen. `more` asks for more bytes (the
   * router stops asking after a few KiB, then takes `more` as `no`). Pure and cheap.
   */
  detect(bytes: Uint8Array, fromClient: boolean | undefined): Verdict;
}

/** What the router tells a dissector about a stream it hands over. */
export interface StreamOpen {
  /** Direction of the client (the side that sent the SYN); undefined when the handshake was not captured. */
  clientDir: TcpDirection | undefined;
  /** Set when the stream changed protocol after an HTTP/1.1 Upgrade (101 Switching Protocols). */
  upgrade?: {
    /** The request's method (GET when absent), target and Host, for the entries' `method`, `path` and `url`. */
    method?: string;
    path: string;
    host: string;
    /** Request and response header fields of the upgrade exchange (WebSocket key, subprotocol, HTTP2-Settings). */
    requestHeaders: [name: string, value: string][];
    responseHeaders: [name: string, value: string][];
    /** Index to give the first entry of this stream: the HTTP/1.x entries before the upgrade took the ones below. */
    firstIndex: number;
  };
}

/**
 * A dissector of TCP streams. It receives `open` before any event of a stream, then the
 * reassembler's events for it (see `TcpStreamConsumer`: everything passed in is valid only
 * during the call), and emits entries through the callback it was constructed with. Per-stream
 * state is dropped on the `closed` end. Pure: no I/O, no timers, time is capture time.
 */
export interface TcpDissector extends TcpStreamConsumer {
  open(stream: number, info: StreamOpen): void;
  /** End of input: what is still pending (requests never answered) comes out as entries. */
  flush(): void;
}
