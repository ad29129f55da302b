import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdtempSync, renameSync, rmSync, unlinkSync, type WriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { ERROR_CODES, TrafficSourceError } from '@kubeshark-mcp/mcp-core';

/** URL path under which downloads are served: `/downloads/<token>/<name>`. */
export const DOWNLOADS_PATH = '/downloads';

export interface DownloadStoreOptions {
  /** The store makes a private folder in here, removed on close. */
  parentDir: string;
  /** Files larger than this are refused while they are written. */
  maxBytes: number;
  /** How long a finished file can be downloaded. */
  ttlMs: number;
  /** Base URL clients reach the hub at (resolved when a link is made: the port may be known only after listen). */
  baseUrl: () => string;
}

/** A finished file, downloadable until `expiresAtMs`. */
export interface Download {
  token: string;
  name: string;
  file: string;
  mediaType: string;
  bytes: number;
  expiresAtMs: number;
  url: string;
}

const MIB = 1024 * 1024;
const sizeText = (bytes: number): string => (bytes % MIB === 0 ? `${bytes / MIB} MiB` : `${bytes} bytes`);

/** File names are part of the URL and of Content-Disposition: keep them to a safe alphabet. */
export const safeFileName = (name: string): string => name.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 200) || 'export';

/**
 * One file being written. Bytes beyond the store's limit are refused (the partial file is
 * deleted); `abort` deletes it too; `finish` makes it downloadable under an unguessable token.
 */
export class PendingDownload {
  private readonly out: WriteStream;
  private failed: Error | undefined;
  private settled = false;
  bytes = 0;

  constructor(
    private readonly store: DownloadStore,
    readonly file: string,
    readonly name: string,
    readonly mediaType: string,
  ) {
    this.out = createWriteStream(file, { flags: 'wx', mode: 0o600 });
    this.out.on('error', (err) => (this.failed ??= err));
  }

  /**
   * Appends a chunk. Returns false when the caller should wait for `onDrain` before the next
   * one; throws a resource_exhausted TrafficSourceError past the size limit.
   */
  write(chunk: Buffer): boolean {
    if (this.failed) throw this.failed;
    if (this.bytes + chunk.length > this.store.maxBytes) {
      throw new TrafficSourceError(
        ERROR_CODES.RESOURCE_EXHAUSTED,
        `the export is larger than the hub's limit of ${sizeText(this.store.maxBytes)} (HUB_EXPORT_MAX_MIB): narrow it with start/end, flow_ids, ips, ports or l4proto`,
      );
    }
    this.bytes += chunk.length;
    return this.out.write(chunk);
  }

  onDrain(fn: () => void): void {
    this.out.once('drain', fn);
  }

  /** Closes the file and makes it downloadable. */
  async finish(): Promise<Download> {
    await new Promise<void>((resolve, reject) => {
      this.out.end((err?: Error | null) => (err ? reject(err) : resolve()));
    });
    if (this.failed) throw this.failed;
    // Finished files lose the ".part" suffix: what still has it is being written.
    const done = this.file.slice(0, -'.part'.length);
    renameSync(this.file, done);
    this.settled = true;
    return this.store.publish(this, done);
  }

  /** Stops writing and deletes what was written. Safe to call more than once. */
  abort(): void {
    if (this.settled) return;
    this.settled = true;
    this.store.forget(this);
    // Unlink once the stream has closed: the file may not even be open yet.
    if (this.out.closed) rmQuietly(this.file);
    else this.out.once('close', () => rmQuietly(this.file));
    this.out.destroy();
  }
}

/**
 * PCAP exports on the hub's disk, each behind a random token, deleted when their link expires
 * and when the hub closes. Nothing here knows gRPC: the traffic source writes, the route reads.
 */
export class DownloadStore {
  readonly dir: string;
  readonly maxBytes: number;
  private readonly downloads = new Map<string, Download & { timer: NodeJS.Timeout }>();
  private readonly pending = new Set<PendingDownload>();
  private closed = false;

  constructor(private readonly options: DownloadStoreOptions) {
    this.dir = mkdtempSync(path.join(options.parentDir, 'kubeshark-hub-exports-'));
    this.maxBytes = options.maxBytes;
  }

  /** Starts a new file named `name` (made safe) with the given media type. */
  begin(name: string, mediaType: string): PendingDownload {
    if (this.closed) throw new TrafficSourceError(ERROR_CODES.UNAVAILABLE, 'the hub is shutting down');
    const file = path.join(this.dir, `${randomBytes(8).toString('hex')}.part`);
    const p = new PendingDownload(this, file, safeFileName(name), mediaType);
    this.pending.add(p);
    return p;
  }

  /** @internal Called by PendingDownload.finish with the finished file. */
  publish(p: PendingDownload, file: string): Download {
    this.pending.delete(p);
    if (this.closed) {
      rmQuietly(file);
      throw new TrafficSourceError(ERROR_CODES.UNAVAILABLE, 'the hub is shutting down');
    }
    const token = randomBytes(24).toString('base64url');
    const expiresAtMs = Date.now() + this.options.ttlMs;
    const url = `${this.options.baseUrl()}${DOWNLOADS_PATH}/${token}/${encodeURIComponent(p.name)}`;
    const timer = setTimeout(() => this.expire(token), this.options.ttlMs);
    timer.unref();
    const d = { token, name: p.name, file, mediaType: p.mediaType, bytes: p.bytes, expiresAtMs, url, timer };
    this.downloads.set(token, d);
    const { timer: _t, ...download } = d;
    return download;
  }

  /** @internal Called by PendingDownload.abort. */
  forget(p: PendingDownload): void {
    this.pending.delete(p);
  }

  /** A live download, or undefined when the token is unknown or expired. */
  get(token: string): Download | undefined {
    const d = this.downloads.get(token);
    if (!d) return undefined;
    if (Date.now() >= d.expiresAtMs) {
      this.expire(token);
      return undefined;
    }
    const { timer: _t, ...download } = d;
    return download;
  }

  /** Downloads currently served (for /healthz and tests). */
  count(): number {
    return this.downloads.size;
  }

  private expire(token: string): void {
    const d = this.downloads.get(token);
    if (!d) return;
    clearTimeout(d.timer);
    this.downloads.delete(token);
    rmQuietly(d.file);
  }

  /** Aborts files being written, forgets every download and removes the folder. */
  close(): void {
    this.closed = true;
    for (const p of [...this.pending]) p.abort();
    for (const d of this.downloads.values()) clearTimeout(d.timer);
    this.downloads.clear();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function rmQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // Already gone (expired twice, or removed with the folder).
  }
}

/** GET /downloads/:token/:name: the file as an attachment, or 404 for an unknown or expired link. */
export async function downloadRoutes(app: FastifyInstance, opts: { store: DownloadStore }): Promise<void> {
  app.get<{ Params: { token: string; name: string } }>(`${DOWNLOADS_PATH}/:token/:name`, async (request, reply) => {
    const d = opts.store.get(request.params.token);
    const handle = d && d.name === request.params.name ? await open(d.file, 'r').catch(() => undefined) : undefined;
    if (!d || !handle) {
      return reply.code(404).send({ error: 'not_found', message: 'No such download, or its link has expired: export again with export_pcap.' });
    }
    return reply
      .header('content-type', d.mediaType)
      .header('content-length', d.bytes)
      .header('content-disposition', `attachment; filename="${d.name}"`)
      .header('cache-control', 'no-store')
      .header('x-content-type-options', 'nosniff')
      .send(handle.createReadStream());
  });
}
