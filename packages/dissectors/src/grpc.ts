/**
 * gRPC over HTTP/2 (the "gRPC over HTTP2" protocol description): status code names, the
 * service and method of a request path, grpc-message decoding, and the parser of the
 * length-prefixed messages carried in DATA frames.
 */

/** Canonical status code names, by code (0..16). */
export const GRPC_STATUS_NAMES: readonly string[] = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
];

export function grpcStatusName(code: number): string {
  return GRPC_STATUS_NAMES[code] ?? 'UNKNOWN';
}

/** `/pkg.Service/Method` -> service and method; null for other paths. */
export function grpcServiceMethod(path: string): { service: string; method: string } | null {
  const m = /^\/([^/]+)\/([^/?]+)$/.exec(path);
  return m ? { service: m[1]!, method: m[2]! } : null;
}

/** grpc-message is percent-encoded UTF-8; a malformed encoding is returned as sent. */
export function decodeGrpcMessage(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/** Content types that make an HTTP/2 exchange gRPC. */
export function isGrpcContentType(contentType: string | undefined): boolean {
  return contentType !== undefined && contentType.toLowerCase().startsWith('application/grpc');
}

/** Message sizes kept per direction; beyond, messages are only counted. */
export const GRPC_MAX_SIZES_KEPT = 10_000;

/**
 * Splits one direction's DATA payload into gRPC messages (1-byte compressed flag, 4-byte
 * big-endian length, then the message), across frame boundaries. A message counts when its
 * 5-byte prefix has arrived.
 */
export class GrpcMessageParser {
  messages = 0;
  readonly sizes: number[] = [];
  readonly compressed: boolean[] = [];
  /** Prefix bytes collected so far (0..5). */
  private prefixLen = 0;
  private readonly prefix = new Uint8Array(5);
  /** Message bytes still to come. */
  private remaining = 0;
  /** Bytes were lost: message boundaries are unknown from here on. */
  lost = false;

  push(buf: Uint8Array, from: number, to: number): void {
    if (this.lost) return;
    let pos = from;
    while (pos < to) {
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, to - pos);
        this.remaining -= n;
        pos += n;
        continue;
      }
      this.prefix[this.prefixLen++] = buf[pos++]!;
      if (this.prefixLen < 5) continue;
      this.prefixLen = 0;
      const p = this.prefix;
      const len = p[1]! * 0x1000000 + ((p[2]! << 16) | (p[3]! << 8) | p[4]!);
      this.messages++;
      if (this.sizes.length < GRPC_MAX_SIZES_KEPT) {
        this.sizes.push(len);
        this.compressed.push((p[0]! & 1) === 1);
      }
      this.remaining = len;
    }
  }

  /** `n` payload bytes are missing. */
  skip(n: number): void {
    if (n > 0) this.lost = true;
  }
}
