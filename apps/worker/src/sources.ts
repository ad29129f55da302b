import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';

const CAPTURE_EXT = /\.(pcap|pcapng|cap|dmp)(\.gz)?$/i;

/** A named error for inputs that cannot be replayed, with the path that failed. */
export class InputError extends Error {
  override readonly name = 'InputError';
}

/**
 * Expands the command-line inputs into capture files: files are taken as given, directories
 * contribute the captures they contain (recursively, sorted by path so replays are
 * deterministic). A missing input is an error that names it.
 */
export async function expandInputs(inputs: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const input of inputs) {
    let st;
    try {
      st = await stat(input);
    } catch {
      throw new InputError(`capture not found: ${input}`);
    }
    if (st.isDirectory()) {
      const found = await walk(input);
      if (found.length === 0) throw new InputError(`no capture files (*.pcap, *.pcapng, *.cap, optionally .gz) in directory ${input}`);
      out.push(...found);
    } else {
      out.push(input);
    }
  }
  return out;
}

async function walk(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const files: string[] = [];
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) files.push(...(await walk(p)));
    else if (e.isFile() && CAPTURE_EXT.test(e.name)) files.push(p);
  }
  return files;
}
