import type { HeaderList } from './entry';
import { huffmanDecode } from './hpack-huffman';

/**
 * HPACK header block decoder (RFC 7541) for a passive observer: one decoder per direction of
 * an HTTP/2 connection, fed every header block of that direction in order (HEADERS or
 * PUSH_PROMISE plus its CONTINUATIONs, concatenated), so that its dynamic table follows the
 * encoder's. Malformed input throws an `HpackError`; the block's fields are then lost and the
 * table may no longer match the encoder's (the caller decides whether to go on).
 *
 * Names and values are octet strings on the wire; they are decoded as UTF-8 (invalid sequences
 * become U+FFFD), what HTTP/2 peers send in practice and what Wireshark shows.
 *
 * Joined mid-connection (`unknownBase`), the entries inserted before the join are unknown:
 * entries inserted since are still at the right indices (the newest come first), and a
 * reference past them throws `HpackError('unknown-index')` instead of guessing.
 */

export const HPACK_ERROR_CODES = ['truncated', 'integer', 'index', 'unknown-index', 'huffman', 'size-update', 'too-large'] as const;
export type HpackErrorCode = (typeof HPACK_ERROR_CODES)[number];

/** A header block the decoder could not decode, and why. */
export class HpackError extends Error {
  constructor(
    readonly code: HpackErrorCode,
    message: string,
  ) {
    super(`HPACK ${code}: ${message}`);
    this.name = 'HpackError';
  }
}

/** The static table (RFC 7541 Appendix A); index 1 is element 0. */
export const HPACK_STATIC_TABLE: readonly (readonly [string, string])[] = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];

/** Default SETTINGS_HEADER_TABLE_SIZE (RFC 7540 §6.5.2). */
export const HPACK_DEFAULT_TABLE_SIZE = 4096;
/** Per-entry overhead counted in the table size (RFC 7541 §4.1). */
const ENTRY_OVERHEAD = 32;

export interface HpackDecoderOptions {
  /** The table size limit the decoder's side announced (SETTINGS_HEADER_TABLE_SIZE). Default 4096. */
  maxTableSize?: number;
  /**
   * Decoded bytes kept per block (names + values + 32 per field, RFC 7540's header list size).
   * Fields past it are still decoded (the table must stay in step) but not returned. Default 64 KiB.
   */
  maxHeaderListSize?: number;
  /** The decoder starts after the connection did (see the module comment). */
  unknownBase?: boolean;
}

/** A decoded header block. */
export interface HpackBlock {
  headers: HeaderList;
  /** Fields were left out: the list exceeded `maxHeaderListSize`. */
  truncated: boolean;
}

interface TableEntry {
  name: string;
  value: string;
  /** Octets of the name on the wire, and of the whole entry (name + value + 32). */
  nameOctets: number;
  size: number;
}

const STATIC_ENTRIES: readonly TableEntry[] = HPACK_STATIC_TABLE.map(([name, value]) => ({ name, value, nameOctets: name.length, size: name.length + value.length + ENTRY_OVERHEAD }));

const utf8 = new TextDecoder('utf-8', { fatal: false });

export class HpackDecoder {
  /** Dynamic table, oldest first: index 62 is the last element. Sizes count wire octets. */
  private entries: TableEntry[] = [];
  private size = 0;
  /** Current maximum size (changed by dynamic table size updates). */
  private capacity: number;
  /** The largest size update the encoder may send (the SETTINGS value in force). */
  private limit: number;
  private readonly maxList: number;
  private unknownBase: boolean;

  constructor(options: HpackDecoderOptions = {}) {
    this.limit = options.maxTableSize ?? HPACK_DEFAULT_TABLE_SIZE;
    this.capacity = this.limit;
    this.maxList = options.maxHeaderListSize ?? 64 * 1024;
    this.unknownBase = options.unknownBase ?? false;
  }

  /** Entries of the dynamic table, newest first (index 62 first), and its size in octets. */
  table(): { entries: [string, string][]; size: number; capacity: number } {
    return { entries: this.entries.map((e): [string, string] => [e.name, e.value]).reverse(), size: this.size, capacity: this.capacity };
  }

  /**
   * The decoder's side announced a new SETTINGS_HEADER_TABLE_SIZE (`acknowledged` when the
   * encoder acknowledged it: before that, both the old and the new limit are valid). Shrinking
   * below the current size evicts, as the encoder must too.
   */
  setLimit(limit: number, acknowledged: boolean): void {
    this.limit = acknowledged ? limit : Math.max(this.limit, limit);
    if (acknowledged && this.capacity > limit) {
      this.capacity = limit;
      this.evict(0);
    }
  }

  /** Forgets the table: bytes of this direction were lost (entries may have been inserted unseen). */
  reset(): void {
    this.entries = [];
    this.size = 0;
    this.unknownBase = true;
  }

  /** Decodes one complete header block. Throws `HpackError`; the table keeps the inserts made before the error. */
  decode(block: Uint8Array): HpackBlock {
    const headers: HeaderList = [];
    let listSize = 0;
    let truncated = false;
    let pos = 0;
    let fieldSeen = false;
    const end = block.length;

    const integer = (prefixBits: number): number => {
      if (pos >= end) throw new HpackError('truncated', 'integer past the end of the block');
      const mask = (1 << prefixBits) - 1;
      let value = block[pos++]! & mask;
      if (value < mask) return value;
      let shift = 0;
      for (;;) {
        if (pos >= end) throw new HpackError('truncated', 'integer past the end of the block');
        const b = block[pos++]!;
        // 2^53 is far beyond any legitimate value; reject long encodings before they lose precision.
        if (shift > 28) throw new HpackError('integer', 'integer too large');
        value += (b & 0x7f) * 2 ** shift;
        shift += 7;
        if ((b & 0x80) === 0) return value;
      }
    };

    /** Reads a string literal; `octets` is its decoded length in octets. */
    let octets = 0;
    const string = (): string => {
      if (pos >= end) throw new HpackError('truncated', 'string past the end of the block');
      const huffman = (block[pos]! & 0x80) !== 0;
      const len = integer(7);
      if (len > end - pos) throw new HpackError('truncated', `string of ${len} octets, ${end - pos} left`);
      const from = pos;
      pos += len;
      if (!huffman) {
        octets = len;
        return utf8.decode(block.subarray(from, pos));
      }
      const out = huffmanDecode(block, from, pos);
      if (typeof out === 'string') throw new HpackError('huffman', out === 'eos' ? 'EOS symbol in a string' : 'invalid padding');
      octets = out.length;
      return utf8.decode(out);
    };

    const entry = (index: number): TableEntry => {
      if (index === 0) throw new HpackError('index', 'index 0');
      if (index <= HPACK_STATIC_TABLE.length) return STATIC_ENTRIES[index - 1]!;
      const d = index - HPACK_STATIC_TABLE.length - 1;
      if (d < this.entries.length) return this.entries[this.entries.length - 1 - d]!;
      if (this.unknownBase) throw new HpackError('unknown-index', `index ${index}: the entry was inserted before the capture joined`);
      throw new HpackError('index', `index ${index} past the table (${this.entries.length} dynamic entries)`);
    };

    const emit = (name: string, value: string, size: number): void => {
      fieldSeen = true;
      listSize += size;
      if (listSize > this.maxList) truncated = true;
      else headers.push([name, value]);
    };

    const literalName = (idx: number): { name: string; nameOctets: number } => {
      if (idx !== 0) {
        const e = entry(idx);
        return { name: e.name, nameOctets: e.nameOctets };
      }
      const name = string();
      return { name, nameOctets: octets };
    };

    while (pos < end) {
      const b = block[pos]!;
      if (b & 0x80) {
        // Indexed header field (§6.1).
        const e = entry(integer(7));
        emit(e.name, e.value, e.size);
      } else if (b & 0x40) {
        // Literal with incremental indexing (§6.2.1).
        const { name, nameOctets } = literalName(integer(6));
        const value = string();
        const e: TableEntry = { name, value, nameOctets, size: nameOctets + octets + ENTRY_OVERHEAD };
        this.insert(e);
        emit(name, value, e.size);
      } else if (b & 0x20) {
        // Dynamic table size update (§6.3): only at the start of a block (§4.2).
        if (fieldSeen) throw new HpackError('size-update', 'table size update after a header field');
        const size = integer(5);
        if (size > this.limit) throw new HpackError('size-update', `table size ${size} above the limit ${this.limit}`);
        this.capacity = size;
        this.evict(0);
      } else {
        // Literal without indexing (0000) or never indexed (0001) (§6.2.2, §6.2.3).
        const { name, nameOctets } = literalName(integer(4));
        const value = string();
        emit(name, value, nameOctets + octets + ENTRY_OVERHEAD);
      }
    }
    return { headers, truncated };
  }

  private insert(e: TableEntry): void {
    this.evict(e.size);
    // An entry larger than the table empties it and is not inserted (§4.4).
    if (e.size > this.capacity) return;
    this.entries.push(e);
    this.size += e.size;
  }

  /** Evicts oldest entries until `room` more octets fit. */
  private evict(room: number): void {
    let drop = 0;
    while (drop < this.entries.length && this.size + room > this.capacity) {
      this.size -= this.entries[drop]!.size;
      drop++;
    }
    if (drop > 0) this.entries.splice(0, drop);
  }
}
