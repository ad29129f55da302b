import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import type { Readable } from 'node:stream';
import { CaptureFormatError, CaptureReader, type CaptureFormat, type RawPacket } from './reader';

/** What reading a whole capture produced. */
export interface ReadResult {
  format: CaptureFormat | undefined;
  packets: number;
  /** Capture bytes consumed (after gzip decompression). */
  bytes: number;
  /** Set when the capture is corrupt or cut short; the packets before it were delivered. */
  error?: CaptureFormatError;
}

const GZIP_MAGIC = 0x1f8b;

/**
 * Reads a pcap or pcapng file (optionally gzip-compressed, as tshark accepts) and hands every
 * packet to `onPacket`. File-system errors reject; format errors resolve with `error` set so
 * that the packets read before the damage are not lost.
 *
 * With `reuseChunks` (and no `signal`), an uncompressed file is read into two buffers in turn
 * (the next read runs while a chunk is parsed) instead of fresh memory for every read, whose
 * page faults cost about as much as parsing a large-packet capture. Only for consumers that
 * keep nothing of a packet after its callback (the `RawPacket` contract).
 */
export async function readCaptureFile(
  path: string,
  onPacket: (p: RawPacket) => void,
  options: { signal?: AbortSignal; chunkSize?: number; reuseChunks?: boolean } = {},
): Promise<ReadResult> {
  const highWaterMark = options.chunkSize ?? 1 << 20;
  if (options.reuseChunks && !options.signal) {
    const direct = await readReusingChunks(path, onPacket, highWaterMark);
    if (direct) return direct;
  }
  const raw = createReadStream(path, { highWaterMark, signal: options.signal });
  return readCaptureStream(raw, onPacket);
}

/** `readCaptureFile` with two read buffers used in turn; undefined for a gzip file (nothing delivered). */
async function readReusingChunks(path: string, onPacket: (p: RawPacket) => void, size: number): Promise<ReadResult | undefined> {
  const fh = await open(path, 'r');
  const reader = new CaptureReader(onPacket);
  const bufs = [Buffer.allocUnsafeSlow(size), Buffer.allocUnsafeSlow(size)];
  let next: Promise<{ bytesRead: number; buffer: Buffer }> | undefined = fh.read(bufs[0]!, 0, size, null);
  let turn = 0;
  let first = true;
  try {
    for (;;) {
      const { bytesRead, buffer }: { bytesRead: number; buffer: Buffer } = await next;
      next = undefined;
      if (bytesRead === 0) break;
      if (first) {
        first = false;
        if (bytesRead >= 2 && buffer.readUInt16BE(0) === GZIP_MAGIC) return undefined;
      }
      turn ^= 1;
      next = fh.read(bufs[turn]!, 0, size, null);
      reader.push(buffer.subarray(0, bytesRead));
    }
    reader.end();
  } catch (err) {
    if (err instanceof CaptureFormatError) return { format: reader.format, packets: reader.packets, bytes: reader.bytesRead, error: err };
    throw err;
  } finally {
    // A read still in flight finishes before the file is closed.
    await next?.catch(() => undefined);
    await fh.close();
  }
  return { format: reader.format, packets: reader.packets, bytes: reader.bytesRead };
}

/** As `readCaptureFile`, from any byte stream (a file, a pipe from tcpdump, a socket). */
export async function readCaptureStream(input: Readable, onPacket: (p: RawPacket) => void): Promise<ReadResult> {
  const reader = new CaptureReader(onPacket);
  const result = (error?: CaptureFormatError): ReadResult => ({
    format: reader.format,
    packets: reader.packets,
    bytes: reader.bytesRead,
    ...(error ? { error } : {}),
  });
  try {
    for await (const chunk of gunzipIfCompressed(input)) reader.push(chunk);
    reader.end();
  } catch (err) {
    input.destroy();
    if (err instanceof CaptureFormatError) return result(err);
    if (isZlibError(err)) {
      return result(new CaptureFormatError('truncated', `gzip stream is damaged: ${(err as Error).message}`, reader.bytesRead, reader.packets));
    }
    throw err;
  }
  return result();
}

function isZlibError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('Z_');
}

/**
 * Yields the input's chunks, transparently gunzipping when the stream starts with the gzip
 * magic. The first chunk decides; a gzip stream is then decompressed to its end.
 */
async function* gunzipIfCompressed(input: Readable): AsyncGenerator<Buffer> {
  const it = input[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const head = await it.next();
  if (head.done) return;
  const firstChunk = head.value;
  if (firstChunk.length >= 2 && firstChunk.readUInt16BE(0) === GZIP_MAGIC) {
    const gunzip = createGunzip();
    const feed = (async () => {
      try {
        gunzip.write(firstChunk);
        for (;;) {
          const next = await it.next();
          if (next.done) break;
          if (!gunzip.write(next.value)) await new Promise((r) => gunzip.once('drain', r));
        }
        gunzip.end();
      } catch (err) {
        gunzip.destroy(err as Error);
      }
    })();
    yield* gunzip as AsyncIterable<Buffer>;
    await feed;
    return;
  }
  yield firstChunk;
  for (;;) {
    const next = await it.next();
    if (next.done) return;
    yield next.value;
  }
}
