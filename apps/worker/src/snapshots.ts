import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Flow } from '@kubeshark-mcp/mcp-core/model';

/**
 * Named snapshots: a time range of packets (pcapng) and the flows active in it, frozen on
 * disk so they outlive retention and restarts. A snapshot is written into a temporary folder
 * and renamed into place only when complete (rename is atomic within a file system), so an
 * interrupted snapshot never shows up; leftovers are removed when the store opens.
 */

export interface SnapshotInfo {
  name: string;
  sinceUs: number;
  untilUs: number;
  createdAtUs: number;
  packets: number;
  /** Size of the packet file. */
  bytes: number;
  flows: number;
  state: 'complete';
}

export class SnapshotError extends Error {
  override readonly name = 'SnapshotError';
  constructor(
    readonly code: 'invalid' | 'exists' | 'not-found',
    message: string,
  ) {
    super(message);
  }
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const TMP_PREFIX = '.tmp-';
const MANIFEST = 'snapshot.json';
const PACKETS = 'packets.pcapng';
const FLOWS = 'flows.json';

export class SnapshotStore {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
    for (const entry of readdirSync(dir)) {
      if (entry.startsWith(TMP_PREFIX)) rmSync(path.join(dir, entry), { recursive: true, force: true });
    }
  }

  static validateName(name: string): void {
    if (!NAME.test(name)) {
      throw new SnapshotError('invalid', `snapshot name "${name}" must be 1-64 letters, digits, dots, dashes or underscores, starting with a letter or digit`);
    }
  }

  /**
   * Creates a snapshot. `writePackets` streams the packet file into the given writer and
   * returns how many packets it wrote.
   */
  async create(
    name: string,
    sinceUs: number,
    untilUs: number,
    writePackets: (write: (chunk: Buffer) => Promise<void>) => Promise<{ packets: number }>,
    flows: Flow[],
  ): Promise<SnapshotInfo> {
    SnapshotStore.validateName(name);
    const final = path.join(this.dir, name);
    if (existsSync(final)) throw new SnapshotError('exists', `snapshot "${name}" already exists`);
    const tmp = path.join(this.dir, `${TMP_PREFIX}${name}-${randomBytes(4).toString('hex')}`);
    mkdirSync(tmp);
    try {
      const out = createWriteStream(path.join(tmp, PACKETS));
      let bytes = 0;
      const write = (chunk: Buffer): Promise<void> =>
        new Promise((resolve, reject) => {
          bytes += chunk.length;
          out.write(chunk, (err) => (err ? reject(err) : resolve()));
        });
      const { packets } = await writePackets(write);
      await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
      writeFileSync(path.join(tmp, FLOWS), JSON.stringify(flows));
      const info: SnapshotInfo = { name, sinceUs, untilUs, createdAtUs: Date.now() * 1000, packets, bytes, flows: flows.length, state: 'complete' };
      writeFileSync(path.join(tmp, MANIFEST), JSON.stringify(info, null, 2));
      if (existsSync(final)) throw new SnapshotError('exists', `snapshot "${name}" already exists`);
      renameSync(tmp, final);
      return info;
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  list(): SnapshotInfo[] {
    return readdirSync(this.dir)
      .filter((n) => !n.startsWith(TMP_PREFIX) && existsSync(path.join(this.dir, n, MANIFEST)))
      .sort()
      .map((n) => this.get(n));
  }

  get(name: string): SnapshotInfo {
    SnapshotStore.validateName(name);
    const manifest = path.join(this.dir, name, MANIFEST);
    if (!existsSync(manifest)) throw new SnapshotError('not-found', `no snapshot named "${name}"`);
    return JSON.parse(readFileSync(manifest, 'utf8')) as SnapshotInfo;
  }

  /** The snapshot's packet file, for export. */
  packetFile(name: string): string {
    this.get(name);
    return path.join(this.dir, name, PACKETS);
  }

  flows(name: string): Flow[] {
    this.get(name);
    return JSON.parse(readFileSync(path.join(this.dir, name, FLOWS), 'utf8')) as Flow[];
  }

  delete(name: string): void {
    this.get(name);
    // Rename first so a crash mid-delete cannot leave a half-deleted snapshot that still lists.
    const doomed = path.join(this.dir, `${TMP_PREFIX}deleted-${name}-${randomBytes(4).toString('hex')}`);
    renameSync(path.join(this.dir, name), doomed);
    rmSync(doomed, { recursive: true, force: true });
  }
}
