/**
 * A minimal, bounded BSON reader (bsonspec.org 1.1) for the MongoDB dissector: every element
 * type of the spec, nesting at most `maxDepth` levels, element counts and string sizes checked
 * against the bytes actually present (nothing is allocated from a length claim). Malformed
 * input does not throw: the reader returns what it could read and says the document is cut.
 */

/** A BSON value as read; documents keep key order (the first key of a command names it) and duplicates. */
export type BsonValue =
  | { t: 'double'; v: number }
  | { t: 'string'; v: string }
  | { t: 'doc'; v: BsonDoc }
  | { t: 'array'; v: BsonDoc }
  | { t: 'binary'; subtype: number; v: Uint8Array; size: number }
  | { t: 'undefined' }
  | { t: 'objectId'; v: string }
  | { t: 'bool'; v: boolean }
  | { t: 'date'; v: bigint }
  | { t: 'null' }
  | { t: 'regex'; pattern: string; options: string }
  | { t: 'dbPointer'; ns: string; id: string }
  | { t: 'code'; v: string }
  | { t: 'symbol'; v: string }
  | { t: 'codeWithScope'; v: string; scope: BsonDoc }
  | { t: 'int32'; v: number }
  | { t: 'timestamp'; increment: number; time: number }
  | { t: 'int64'; v: bigint }
  | { t: 'decimal128'; hex: string }
  | { t: 'minKey' }
  | { t: 'maxKey' };

export interface BsonDoc {
  entries: [key: string, value: BsonValue][];
  /** The document was cut short (bytes missing or malformed); `entries` holds what came before. */
  cut: boolean;
}

export interface BsonLimits {
  /** Nesting depth (documents and arrays). Default 32. */
  maxDepth?: number;
  /** Elements read over the whole document tree. Default 10000. */
  maxElements?: number;
  /** Bytes of a binary value kept. Default 64. */
  maxBinary?: number;
}

interface Reader {
  buf: Uint8Array;
  elements: number;
  maxElements: number;
  maxBinary: number;
  maxDepth: number;
}

const i32 = (b: Uint8Array, at: number): number => b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24);
const u32 = (b: Uint8Array, at: number): number => i32(b, at) >>> 0;
const i64 = (b: Uint8Array, at: number): bigint => (BigInt(i32(b, at + 4)) << 32n) | BigInt(u32(b, at));
const hex = (b: Uint8Array, from: number, to: number): string => Buffer.from(b.buffer, b.byteOffset + from, to - from).toString('hex');
const utf8 = (b: Uint8Array, from: number, to: number): string => Buffer.from(b.buffer, b.byteOffset + from, to - from).toString('utf8');

/** Reads the document at buf[at]; `end` is just past it (or where reading stopped). */
export function readBsonDocument(buf: Uint8Array, at = 0, limits: BsonLimits = {}): { doc: BsonDoc; end: number } {
  const r: Reader = { buf, elements: 0, maxElements: limits.maxElements ?? 10000, maxBinary: limits.maxBinary ?? 64, maxDepth: limits.maxDepth ?? 32 };
  return readDoc(r, at, 0);
}

function readDoc(r: Reader, at: number, depth: number): { doc: BsonDoc; end: number } {
  const b = r.buf;
  const doc: BsonDoc = { entries: [], cut: false };
  if (at + 5 > b.length) return { doc: { entries: [], cut: true }, end: b.length };
  const size = i32(b, at);
  if (size < 5) return { doc: { entries: [], cut: true }, end: b.length };
  const declaredEnd = at + size;
  const end = Math.min(declaredEnd, b.length);
  if (declaredEnd > b.length) doc.cut = true;
  if (depth >= r.maxDepth) return { doc: { entries: [], cut: true }, end };
  let p = at + 4;
  while (p < end) {
    const type = b[p]!;
    if (type === 0) return { doc, end: declaredEnd };
    p++;
    const nul = b.indexOf(0, p);
    if (nul < 0 || nul >= end) break;
    const key = utf8(b, p, nul);
    p = nul + 1;
    if (++r.elements > r.maxElements) break;
    const v = readValue(r, type, p, end, depth);
    if (!v) break;
    doc.entries.push([key, v.value]);
    if (v.cut) break;
    p = v.end;
  }
  doc.cut = true;
  return { doc, end };
}

function cstr(b: Uint8Array, p: number, end: number): [string, number] | null {
  const nul = b.indexOf(0, p);
  if (nul < 0 || nul >= end) return null;
  return [utf8(b, p, nul), nul + 1];
}

function str(b: Uint8Array, p: number, end: number): [string, number] | null {
  if (p + 4 > end) return null;
  const n = i32(b, p);
  if (n < 1 || p + 4 + n > end || b[p + 4 + n - 1] !== 0) return null;
  return [utf8(b, p + 4, p + 4 + n - 1), p + 4 + n];
}

/** One element's value starting at p (bounded by end); null when it does not fit. */
function readValue(r: Reader, type: number, p: number, end: number, depth: number): { value: BsonValue; end: number; cut?: boolean } | null {
  const b = r.buf;
  const need = (n: number): boolean => p + n <= end;
  switch (type) {
    case 0x01:
      return need(8) ? { value: { t: 'double', v: Buffer.from(b.buffer, b.byteOffset + p, 8).readDoubleLE(0) }, end: p + 8 } : null;
    case 0x02:
    case 0x0d:
    case 0x0e: {
      const s = str(b, p, end);
      if (!s) return null;
      return { value: type === 0x02 ? { t: 'string', v: s[0] } : type === 0x0d ? { t: 'code', v: s[0] } : { t: 'symbol', v: s[0] }, end: s[1] };
    }
    case 0x03:
    case 0x04: {
      if (!need(5)) return null;
      const d = readDoc(r, p, depth + 1);
      return { value: type === 0x03 ? { t: 'doc', v: d.doc } : { t: 'array', v: d.doc }, end: d.end, cut: d.doc.cut };
    }
    case 0x05: {
      if (!need(5)) return null;
      const n = i32(b, p);
      if (n < 0 || p + 5 + n > end) return null;
      const keep = Math.min(n, r.maxBinary);
      return { value: { t: 'binary', subtype: b[p + 4]!, v: Buffer.from(b.subarray(p + 5, p + 5 + keep)), size: n }, end: p + 5 + n };
    }
    case 0x06:
      return { value: { t: 'undefined' }, end: p };
    case 0x07:
      return need(12) ? { value: { t: 'objectId', v: hex(b, p, p + 12) }, end: p + 12 } : null;
    case 0x08:
      return need(1) ? { value: { t: 'bool', v: b[p] !== 0 }, end: p + 1 } : null;
    case 0x09:
      return need(8) ? { value: { t: 'date', v: i64(b, p) }, end: p + 8 } : null;
    case 0x0a:
      return { value: { t: 'null' }, end: p };
    case 0x0b: {
      const pat = cstr(b, p, end);
      if (!pat) return null;
      const opt = cstr(b, pat[1], end);
      if (!opt) return null;
      return { value: { t: 'regex', pattern: pat[0], options: opt[0] }, end: opt[1] };
    }
    case 0x0c: {
      const s = str(b, p, end);
      if (!s || s[1] + 12 > end) return null;
      return { value: { t: 'dbPointer', ns: s[0], id: hex(b, s[1], s[1] + 12) }, end: s[1] + 12 };
    }
    case 0x0f: {
      if (!need(4)) return null;
      const total = i32(b, p);
      if (total < 14 || p + total > end) return null;
      const s = str(b, p + 4, p + total);
      if (!s) return null;
      const d = readDoc(r, s[1], depth + 1);
      return { value: { t: 'codeWithScope', v: s[0], scope: d.doc }, end: p + total, cut: d.doc.cut };
    }
    case 0x10:
      return need(4) ? { value: { t: 'int32', v: i32(b, p) }, end: p + 4 } : null;
    case 0x11:
      return need(8) ? { value: { t: 'timestamp', increment: u32(b, p), time: u32(b, p + 4) }, end: p + 8 } : null;
    case 0x12:
      return need(8) ? { value: { t: 'int64', v: i64(b, p) }, end: p + 8 } : null;
    case 0x13:
      return need(16) ? { value: { t: 'decimal128', hex: hex(b, p, p + 16) }, end: p + 16 } : null;
    case 0xff:
      return { value: { t: 'minKey' }, end: p };
    case 0x7f:
      return { value: { t: 'maxKey' }, end: p };
    default:
      return null; // unknown type: its size is unknown, reading cannot continue
  }
}

/** The first value of `key` in a document. */
export function bsonGet(doc: BsonDoc, key: string): BsonValue | undefined {
  for (const [k, v] of doc.entries) if (k === key) return v;
  return undefined;
}

/** A value as a JS number when it is numeric (double, int32, int64, bool), else undefined. */
export function bsonNumber(v: BsonValue | undefined): number | undefined {
  if (!v) return undefined;
  switch (v.t) {
    case 'double':
    case 'int32':
      return v.v;
    case 'int64':
      return Number(v.v);
    case 'bool':
      return v.v ? 1 : 0;
    default:
      return undefined;
  }
}

export function bsonString(v: BsonValue | undefined): string | undefined {
  return v?.t === 'string' ? v.v : undefined;
}

/**
 * Relaxed-Extended-JSON-like text of a document, at most `max` characters (cut with `…`).
 * Types JSON lacks are wrapped as Extended JSON does (`{"$oid": ...}`, `{"$date": ...}`).
 */
export function bsonToJson(doc: BsonDoc, max = 4096): string {
  const out: string[] = [];
  let len = 0;
  const push = (s: string): boolean => {
    out.push(s);
    len += s.length;
    return len <= max;
  };
  const value = (v: BsonValue): boolean => {
    switch (v.t) {
      case 'double':
        return push(Number.isFinite(v.v) ? (Number.isInteger(v.v) ? `${v.v}.0` : String(v.v)) : `{"$numberDouble":"${String(v.v)}"}`);
      case 'string':
        return push(JSON.stringify(v.v));
      case 'doc':
        return doc2(v.v, false);
      case 'array':
        return doc2(v.v, true);
      case 'binary':
        return push(`{"$binary":{"base64":"${Buffer.from(v.v).toString('base64')}${v.v.length < v.size ? '…' : ''}","subType":"${v.subtype.toString(16).padStart(2, '0')}"}}`);
      case 'undefined':
        return push('{"$undefined":true}');
      case 'objectId':
        return push(`{"$oid":"${v.v}"}`);
      case 'bool':
        return push(String(v.v));
      case 'date':
        return push(`{"$date":{"$numberLong":"${v.v}"}}`);
      case 'null':
        return push('null');
      case 'regex':
        return push(`{"$regularExpression":{"pattern":${JSON.stringify(v.pattern)},"options":${JSON.stringify(v.options)}}}`);
      case 'dbPointer':
        return push(`{"$dbPointer":{"$ref":${JSON.stringify(v.ns)},"$id":{"$oid":"${v.id}"}}}`);
      case 'code':
        return push(`{"$code":${JSON.stringify(v.v)}}`);
      case 'symbol':
        return push(`{"$symbol":${JSON.stringify(v.v)}}`);
      case 'codeWithScope':
        return push(`{"$code":${JSON.stringify(v.v)},"$scope":`) && doc2(v.scope, false) && push('}');
      case 'int32':
        return push(String(v.v));
      case 'timestamp':
        return push(`{"$timestamp":{"t":${v.time},"i":${v.increment}}}`);
      case 'int64':
        return push(`{"$numberLong":"${v.v}"}`);
      case 'decimal128':
        return push(`{"$numberDecimal":"0x${v.hex}"}`);
      case 'minKey':
        return push('{"$minKey":1}');
      case 'maxKey':
        return push('{"$maxKey":1}');
      default: {
        const never: never = v;
        throw new Error(`unknown BSON value ${JSON.stringify(never)}`);
      }
    }
  };
  const doc2 = (d: BsonDoc, array: boolean): boolean => {
    if (!push(array ? '[' : '{')) return false;
    let first = true;
    for (const [k, v] of d.entries) {
      if (!first && !push(',')) return false;
      first = false;
      if (!array && !push(`${JSON.stringify(k)}:`)) return false;
      if (!value(v)) return false;
    }
    if (d.cut && !push(first ? '…' : ',…')) return false;
    return push(array ? ']' : '}');
  };
  const complete = doc2(doc, false);
  const text = out.join('');
  return complete && text.length <= max ? text : `${text.slice(0, max)}…`;
}
