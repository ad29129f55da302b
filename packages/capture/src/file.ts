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
 * With `reuseChunks` (and no `signal`), an uncompressed file is read into three buffers in turn
 * (the reads of the next two chunks run while one is parsed) instead of fresh memory for every
 * read, whose page faults cost about as much as parsing a large-packet capture. Only for
 * consumers that keep nothing of a packet after its callback (the `RawPacket` contract).
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

/** Read buffers of `readReusingChunks`: one being parsed while the reads of the next two run side by side. */
const REUSED_BUFFERS = 3;

/** `readCaptureFile` with read buffers used in turn; undefined for a gzip file (nothing delivered). */
async function readReusingChunks(path: string, onPacket: (p: RawPacket) => void, size: number): Promise<ReadResult | undefined> {
  const fh = await open(path, 'r');
  const reader = new CaptureReader(onPacket);
  const bufs = Array.from({ length: REUSED_BUFFERS }, () => Buffer.allocUnsafeSlow(size));
  const inFlight: { at: number; into: number; read: Promise<{ bytesRead: number; buffer: Buffer }> }[] = [];
  let position = 0;
  let turn = 0;
  const readNext = (): void => {
    // Into the buffer parsed REUSED_BUFFERS - 1 turns ago (done with: packets are views valid during their callback only).
    inFlight.push({ at: position, into: turn, read: fh.read(bufs[turn]!, 0, size, position) });
    turn = (turn + 1) % REUSED_BUFFERS;
    position += size;
  };
  const settle = async (): Promise<void> => {
    await Promise.allSettled(inFlight.map((x) => x.read));
    inFlight.length = 0;
  };
  try {
    for (let i = 1; i < REUSED_BUFFERS; i++) readNext();
    let first = true;
    for (;;) {
      const { at, into, read } = inFlight.shift()!;
      const { bytesRead, buffer } = await read;
      if (bytesRead === 0) break;
      if (first) {
        first = false;
        if (bytesRead >= 2 && buffer.readUInt16BE(0) === GZIP_MAGIC) return undefined;
      }
      if (bytesRead < size) {
        // A short read (the end of the file, or a file still growing): the reads ahead assumed a
        // full one, so they start again right after it.
        await settle();
        position = at + bytesRead;
        turn = (into + 1) % REUSED_BUFFERS;
      }
      while (inFlight.length < REUSED_BUFFERS - 1) readNext();
      reader.push(buffer.subarray(0, bytesRead));
    }
    reader.end();
  } catch (err) {
    if (err instanceof CaptureFormatError) return { format: reader.format, packets: reader.packets, bytes: reader.bytesRead, error: err };
    throw err;
  } finally {
    // Reads still in flight finish before the file is closed.
    await settle();
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
