/**
 * The API-call record every dissector produces, in the shared vocabulary of ARCHITECTURE.md
 * (Kubeshark's KFL2 names where it has one). Dissectors are pure: they know the flow index of
 * the stream they parse, not node names, Kubernetes identities or entry ids, which the worker
 * fills in when it stores the entry (`id` = `<node>/<stream>/<index>`, `node`, `worker`,
 * `src`/`dst` from the flow table, `flow_id`). Protocol-specific fields (DNS questions, gRPC
 * status, ...) go in the protocol's own interface extending this one.
 */

/** Why an entry is incomplete: no answer before the stream ended, no answer in time, bytes that could not be parsed (or were missing). */
export const ENTRY_ERRORS = ['pair-not-found', 'timeout', 'dissection'] as const;
export type EntryError = (typeof ENTRY_ERRORS)[number];

/** Header fields in wire order, duplicates kept, names as sent. */
export type HeaderList = [name: string, value: string][];

/** One side of an API call (request or response). */
export interface EntryMessage {
  headers: HeaderList;
  /**
   * The body decoded (de-chunked and decompressed), at most the dissector's configured size;
   * null when the message has none or it was not kept.
   */
  body: Uint8Array | null;
  /** Body bytes on the wire (after de-chunking, before decompression). */
  body_size: number;
  /** The stored body is shorter than the decoded body (size limit, or bytes missing). */
  truncated: boolean;
}

export interface Entry {
  /** `http`, `dns`, ... */
  protocol: string;
  /** Flow index of the connection or datagram flow (`FlowTable.add`). */
  stream: number;
  /** Position of the entry within its stream, from 0, in request order. */
  index: number;
  /** Request time: capture time of its first byte, microseconds since the epoch. */
  timestamp: number;
  /** Response time minus request time (first bytes), microseconds; 0 without a response. */
  elapsed_time: number;
  method: string;
  path: string;
  url: string;
  /** 0 without a response. */
  status_code: number;
  request: EntryMessage | null;
  response: EntryMessage | null;
  /** Absent on a complete call. */
  error?: EntryError;
  /**
   * Set when the protocol itself reports that the call failed, as the protocol words it
   * (`HTTP 503 Service Unavailable`, `SQLSTATE 42P01: relation "x" does not exist`,
   * `ERR unknown command`, `NXDOMAIN`); absent on success. Error rates count these.
   */
  failure?: string;
}
