import zlib from 'node:zlib';
import * as protobuf from 'protobufjs';
import * as descriptor from 'protobufjs/ext/descriptor';
import type { HeaderList } from './entry';
import { grpcServiceMethod } from './grpc';

/**
 * gRPC messages to JSON, from a protobuf FileDescriptorSet (the binary `protoc
 * --descriptor_set_out=x.binpb --include_imports` or `buf build -o x.binpb` write). The
 * descriptor bytes come in as an argument, so this stays pure: the caller reads the file.
 *
 * A call's request or response body (the DATA payload as the HTTP/2 dissector kept it: gRPC
 * messages, each a 1-byte compressed flag, a 4-byte big-endian length and the message) is split
 * into its messages, each inflated when its flag says so (grpc-encoding gzip or deflate, bounded)
 * and decoded with the input or output type of the method the path names. JSON follows the
 * proto3 JSON mapping: json_name keys (lowerCamelCase unless the .proto chose another), fields
 * with implicit presence left out at their default, enums by name (the number when unknown),
 * 64-bit integers as strings, bytes as base64, maps as objects, NaN and infinities as strings,
 * and the well-known types in their JSON forms (Timestamp, Duration, the wrappers, Struct, Value,
 * ListValue, FieldMask, Empty, Any when its type is in the set). Unknown fields are left out.
 *
 * Never throws while decoding: a message that cannot be decoded (unknown method, cut by the body
 * limit, corrupt bytes, unsupported compression, over the output limits) gets a short `error`
 * instead of `json`. Only loading the descriptor set throws (`GrpcDescriptorError`).
 */

/** The descriptor set given is not one protobufjs can load, or holds no service. */
export class GrpcDescriptorError extends Error {
  override readonly name = 'GrpcDescriptorError';
}

export interface GrpcJsonLimits {
  /** Messages decoded per body; the rest are counted in `omitted`. Default 100. */
  maxMessages?: number;
  /** JSON characters per body, all messages together; a message beyond gets an error. Default 64 KiB. */
  maxJsonChars?: number;
  /** Bytes a compressed message may inflate to. Default 1 MiB. */
  maxInflatedSize?: number;
  /** Nesting depth of messages converted to JSON. Default 64. */
  maxDepth?: number;
}

/** One gRPC message of a body: `json` when it decoded, else `error` saying why not. */
export interface GrpcJsonMessage {
  /** The length in its prefix (compressed size when compressed); absent when the prefix itself was cut. */
  size?: number;
  /** Present (true) when the compressed flag was set. */
  compressed?: true;
  json?: unknown;
  error?: string;
}

/** The messages of one side of a call. */
export interface GrpcJsonBody {
  /** Full name of the message type the method declares for this side (absent for unknown methods). */
  type?: string;
  messages: GrpcJsonMessage[];
  /** Messages not listed (over `maxMessages`). */
  omitted: number;
}

const DEFAULTS: Required<GrpcJsonLimits> = { maxMessages: 100, maxJsonChars: 64 * 1024, maxInflatedSize: 1024 * 1024, maxDepth: 64 };

const WRAPPERS = new Set(['DoubleValue', 'FloatValue', 'Int64Value', 'UInt64Value', 'Int32Value', 'UInt32Value', 'BoolValue', 'StringValue', 'BytesValue'].map((n) => `.google.protobuf.${n}`));

/** Wire type a field's declared type is sent with (0 varint, 1 64-bit, 2 length-delimited, 5 32-bit). */
function wireType(field: protobuf.Field): number {
  if (field.resolvedType instanceof protobuf.Type) return 2;
  if (field.resolvedType instanceof protobuf.Enum) return 0;
  switch (field.type) {
    case 'double':
    case 'fixed64':
    case 'sfixed64':
      return 1;
    case 'float':
    case 'fixed32':
    case 'sfixed32':
      return 5;
    case 'string':
    case 'bytes':
      return 2;
    default:
      return 0;
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });
function validUtf8(b: Uint8Array): boolean {
  try {
    UTF8.decode(b);
    return true;
  } catch {
    return false;
  }
}

/** A type without fields: the fields of a group of an unknown field are only walked. */
const EMPTY_TYPE = new protobuf.Type('Unknown');

/** Depth or size limits hit while converting: reported as the message's error. */
class LimitError extends Error {}

interface DescriptorMessage {
  name?: string;
  field?: { name?: string; jsonName?: string }[];
  nestedType?: DescriptorMessage[];
  options?: { mapEntry?: boolean };
}

interface DescriptorFile {
  name?: string;
  package?: string;
  messageType?: DescriptorMessage[];
  service?: { name?: string; method?: unknown[] }[];
}

type FromDescriptor = (set: protobuf.Message) => protobuf.Root;

/** protoc's default json_name: underscores dropped, the letter after each one upper-cased. */
function lowerCamel(name: string): string {
  let out = '';
  let up = false;
  for (const ch of name) {
    if (ch === '_') up = true;
    else {
      out += up ? ch.toUpperCase() : ch;
      up = false;
    }
  }
  return out;
}

/** Two's-complement 64-bit value of a protobufjs long (a Long, or a number without the long package) as a decimal string. */
function longString(v: unknown, unsigned: boolean): string {
  if (typeof v === 'number') return String(v);
  if (typeof v === 'object' && v !== null && 'low' in v && 'high' in v) {
    const l = v as { low: number; high: number };
    const bits = (BigInt(l.high >>> 0) << 32n) | BigInt(l.low >>> 0);
    return (unsigned ? bits : BigInt.asIntN(64, bits)).toString();
  }
  return String(v);
}

function floatJson(v: number): number | string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return 'Infinity';
  if (v === -Infinity) return '-Infinity';
  return v;
}

const pad = (n: number, w: number): string => String(n).padStart(w, '0');

/** 0, 3, 6 or 9 fraction digits, as the proto3 JSON mapping prints them. */
function nanosText(nanos: number): string {
  if (nanos === 0) return '';
  if (nanos % 1_000_000 === 0) return `.${pad(nanos / 1_000_000, 3)}`;
  if (nanos % 1000 === 0) return `.${pad(nanos / 1000, 6)}`;
  return `.${pad(nanos, 9)}`;
}

export class GrpcJsonDecoder {
  private readonly root: protobuf.Root;
  /** `.pkg.Msg.field_name` -> JSON key. */
  private readonly jsonNames = new Map<string, string>();
  /** Full names of map entry types (`.pkg.Msg.FooEntry`). */
  private readonly mapEntries = new Set<string>();
  private readonly limits: Required<GrpcJsonLimits>;
  /** Methods in the set, `/pkg.Service/Method`. */
  readonly methods: readonly string[];
  /** Files in the set. */
  readonly files: readonly string[];

  /**
   * Loads a FileDescriptorSet. Throws `GrpcDescriptorError` when the bytes are not one, when a
   * type it references is missing (built without --include_imports) or when it has no service.
   */
  constructor(descriptorSet: Uint8Array, limits: GrpcJsonLimits = {}) {
    this.limits = { ...DEFAULTS, ...limits };
    let set: protobuf.Message;
    try {
      set = descriptor.FileDescriptorSet.decode(descriptorSet);
    } catch (err) {
      throw new GrpcDescriptorError(`not a protobuf FileDescriptorSet (${(err as Error).message})`);
    }
    const files = ((set as unknown as { file?: DescriptorFile[] }).file ?? []) as DescriptorFile[];
    if (files.length === 0 || files.some((f) => !f.name)) throw new GrpcDescriptorError('not a protobuf FileDescriptorSet (no named file descriptors in it)');
    try {
      this.root = (protobuf.Root as unknown as { fromDescriptor: FromDescriptor }).fromDescriptor(set);
    } catch (err) {
      throw new GrpcDescriptorError(`the descriptor set does not load: ${(err as Error).message} (was it built with --include_imports?)`);
    }
    for (const f of files) {
      const prefix = f.package ? `.${f.package}` : '';
      for (const m of f.messageType ?? []) this.indexMessage(prefix, m);
    }
    const methods: string[] = [];
    const walk = (ns: protobuf.NamespaceBase): void => {
      for (const child of ns.nestedArray) {
        if (child instanceof protobuf.Service) for (const name of Object.keys(child.methods)) methods.push(`/${child.fullName.slice(1)}/${name}`);
        if (child instanceof protobuf.Namespace || child instanceof protobuf.Type || child instanceof protobuf.Service) walk(child);
      }
    };
    walk(this.root);
    if (methods.length === 0) throw new GrpcDescriptorError('the descriptor set defines no service, so no gRPC method can be decoded');
    this.methods = methods.sort();
    this.files = files.map((f) => f.name!);
  }

  private indexMessage(prefix: string, m: DescriptorMessage): void {
    const full = `${prefix}.${m.name ?? ''}`;
    if (m.options?.mapEntry) this.mapEntries.add(full);
    for (const f of m.field ?? []) if (f.name) this.jsonNames.set(`${full}.${f.name}`, f.jsonName || lowerCamel(f.name));
    for (const n of m.nestedType ?? []) this.indexMessage(full, n);
  }

  /** The request and response types of `/pkg.Service/Method`, or null when the set does not have it. */
  method(path: string): { request: protobuf.Type; response: protobuf.Type } | null {
    const sm = grpcServiceMethod(path);
    if (!sm) return null;
    try {
      const svc = this.root.lookupService(sm.service);
      const m = svc.methods[sm.method];
      if (!m) return null;
      m.resolve();
      if (!m.resolvedRequestType || !m.resolvedResponseType) return null;
      return { request: m.resolvedRequestType, response: m.resolvedResponseType };
    } catch {
      return null;
    }
  }

  /**
   * The messages of one side of a call. `body` is the kept DATA payload (null when none was
   * kept), `truncated` whether bytes of it are missing, `headers` that side's header fields (for
   * grpc-encoding), `counted` how many messages the dissector counted on that side (messages
   * beyond the kept bytes are listed as not kept).
   */
  decode(path: string, side: 'request' | 'response', m: { body: Uint8Array | null; truncated: boolean; headers: HeaderList; body_size?: number }, counted = 0): GrpcJsonBody {
    const types = this.method(path);
    const type = types ? (side === 'request' ? types.request : types.response) : null;
    const encoding = m.headers.find(([k]) => k.toLowerCase() === 'grpc-encoding')?.[1]?.trim().toLowerCase() ?? 'identity';
    const body = m.body ?? new Uint8Array(0);
    const out: GrpcJsonMessage[] = [];
    let seen = 0;
    let jsonChars = 0;
    const add = (msg: GrpcJsonMessage): void => {
      seen++;
      if (out.length < this.limits.maxMessages) out.push(msg);
    };
    let pos = 0;
    while (pos < body.length) {
      if (out.length >= this.limits.maxMessages) {
        // Only counting from here: walk the prefixes without decoding.
        if (body.length - pos < 5) break;
        const len = ((body[pos + 1]! << 24) >>> 0) + ((body[pos + 2]! << 16) | (body[pos + 3]! << 8) | body[pos + 4]!);
        seen++;
        pos += 5 + len;
        continue;
      }
      if (body.length - pos < 5) {
        add({ error: `truncated: ${body.length - pos} of the 5 prefix bytes kept` });
        pos = body.length;
        break;
      }
      const flag = body[pos]!;
      const len = ((body[pos + 1]! << 24) >>> 0) + ((body[pos + 2]! << 16) | (body[pos + 3]! << 8) | body[pos + 4]!);
      const compressed = (flag & 1) === 1;
      const start = pos + 5;
      pos = start + len;
      const msg: GrpcJsonMessage = { size: len, ...(compressed ? { compressed: true as const } : {}) };
      if (pos > body.length) {
        msg.error = `truncated: ${body.length - start} of ${len} bytes kept${m.truncated ? ' (body size limit or bytes missing)' : ''}`;
        add(msg);
        break;
      }
      if (!type) {
        msg.error = `method ${path || '(no path)'} is not in the descriptor set`;
        add(msg);
        continue;
      }
      let bytes = body.subarray(start, pos);
      if (compressed) {
        const inflated = this.inflate(bytes, encoding);
        if (typeof inflated === 'string') {
          msg.error = inflated;
          add(msg);
          continue;
        }
        bytes = inflated;
      }
      try {
        // protobufjs decodes leniently (a string longer than its message, a wire type that does
        // not fit the field): check the wire format against the schema first, so corrupt bytes
        // are reported rather than shown as plausible values.
        const bad = this.checkWire(type, bytes, 0, bytes.length, 0);
        if (bad) throw new Error(bad);
        const decoded = type.decode(bytes);
        const json = this.message(type, decoded, 0);
        const chars = JSON.stringify(json).length;
        if (jsonChars + chars > this.limits.maxJsonChars) msg.error = `JSON of ${chars} characters over the output limit (${this.limits.maxJsonChars} per body)`;
        else {
          jsonChars += chars;
          msg.json = json;
        }
      } catch (err) {
        msg.error = err instanceof LimitError ? err.message : `does not decode as ${type.fullName.slice(1)}: ${(err as Error).message}`;
      }
      add(msg);
    }
    // Messages counted on the wire whose bytes were not kept at all.
    for (; seen < counted; seen++) if (out.length < this.limits.maxMessages) out.push({ error: 'not kept (body size limit or bytes missing)' });
    return { ...(type ? { type: type.fullName.slice(1) } : {}), messages: out, omitted: seen - out.length };
  }

  /**
   * Why `buf[start, end)` is not a well-formed `type` message (null when it is): tags, varints,
   * lengths and group ends in range, field number 0 and wire types 6 and 7 refused, known fields
   * with the wire type of their declared type (or length-delimited when packed), strings valid
   * UTF-8, nested messages checked the same way.
   */
  private checkWire(type: protobuf.Type, buf: Uint8Array, start: number, end: number, depth: number, group = 0): string | null {
    if (depth > this.limits.maxDepth) return `nested deeper than ${this.limits.maxDepth} messages`;
    let pos = start;
    const varint = (): number | null => {
      let v = 0;
      for (let i = 0; i < 10; i++) {
        if (pos >= end) return null;
        const b = buf[pos++]!;
        if (i < 7) v += (b & 0x7f) * 2 ** (7 * i);
        if ((b & 0x80) === 0) return v;
      }
      return null;
    };
    while (pos < end) {
      const at = pos;
      const tag = varint();
      if (tag === null) return `bad tag at byte ${at}`;
      const no = Math.floor(tag / 8);
      const wt = tag % 8;
      if (no === 0 || no > 0x1fffffff) return `field number ${no} at byte ${at}`;
      if (wt === 4) {
        if (no !== group) return `unexpected end of group ${no} at byte ${at}`;
        this.groupEnd = pos;
        return null;
      }
      if (wt === 6 || wt === 7) return `invalid wire type ${wt} at byte ${at}`;
      const field = type.fieldsById[no];
      if (field) {
        field.resolve();
        const expected = wireType(field);
        const packed = wt === 2 && field.repeated && expected !== 2;
        if (wt !== expected && !packed && !(wt === 3 && field.resolvedType instanceof protobuf.Type)) return `field ${field.name} (${no}) has wire type ${wt}, not ${expected}`;
      }
      switch (wt) {
        case 0:
          if (varint() === null) return `bad varint in field ${no} at byte ${at}`;
          break;
        case 1:
        case 5:
          pos += wt === 1 ? 8 : 4;
          if (pos > end) return `field ${no} runs past the end of the message`;
          break;
        case 2: {
          const len = varint();
          if (len === null || pos + len > end) return `field ${no} runs past the end of the message`;
          const rt = field?.resolvedType;
          if (field && rt instanceof protobuf.Type) {
            const bad = this.checkWire(rt, buf, pos, pos + len, depth + 1);
            if (bad) return `${field.name}: ${bad}`;
          } else if (field?.type === 'string' && !validUtf8(buf.subarray(pos, pos + len))) return `field ${field.name} (${no}) is not valid UTF-8`;
          pos += len;
          break;
        }
        case 3: {
          const rt = field?.resolvedType;
          const bad = this.checkWire(rt instanceof protobuf.Type ? rt : EMPTY_TYPE, buf, pos, end, depth + 1, no);
          if (bad) return bad;
          // The group's end tag was found: skip to just after it.
          pos = this.groupEnd;
          break;
        }
      }
    }
    return group ? `group ${group} has no end` : null;
  }

  /** Where the last group checked by `checkWire` ended. */
  private groupEnd = 0;

  /** The inflated message, or why not. */
  private inflate(bytes: Uint8Array, encoding: string): Uint8Array | string {
    const opts = { maxOutputLength: this.limits.maxInflatedSize };
    try {
      switch (encoding) {
        case 'gzip':
          return zlib.gunzipSync(bytes, opts);
        case 'deflate':
          // gRPC's deflate is the zlib format; some implementations send raw deflate.
          try {
            return zlib.inflateSync(bytes, opts);
          } catch (err) {
            if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw err;
            return zlib.inflateRawSync(bytes, opts);
          }
        case 'identity':
          return 'compressed flag set but grpc-encoding is identity or absent';
        default:
          return `grpc-encoding ${encoding} is not supported (gzip and deflate are)`;
      }
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) return `inflates to more than ${this.limits.maxInflatedSize} bytes`;
      return `does not inflate as ${encoding}: ${(err as Error).message}`;
    }
  }

  private message(type: protobuf.Type, msg: protobuf.Message, depth: number): unknown {
    if (depth > this.limits.maxDepth) throw new LimitError(`nested deeper than ${this.limits.maxDepth} messages`);
    const wkt = this.wellKnown(type, msg, depth);
    if (wkt !== undefined) return wkt;
    const out: Record<string, unknown> = {};
    const own = msg as unknown as Record<string, unknown>;
    for (const field of type.fieldsArray) {
      if (!Object.prototype.hasOwnProperty.call(own, field.name)) continue;
      const v = own[field.name];
      if (v === undefined || v === null) continue;
      const key = this.jsonNames.get(`${type.fullName}.${field.name}`) ?? lowerCamel(field.name);
      field.resolve();
      const rt = field.resolvedType;
      if (field.repeated) {
        const list = v as unknown[];
        if (list.length === 0) continue;
        if (rt instanceof protobuf.Type && this.mapEntries.has(rt.fullName)) {
          const obj: Record<string, unknown> = {};
          const kf = rt.fields.key;
          const vf = rt.fields.value;
          for (const e of list as Record<string, unknown>[]) {
            const k = kf ? this.scalar(kf, e.key ?? kf.typeDefault) : '';
            obj[String(k)] = vf ? this.value(vf, e.value ?? (vf.resolvedType instanceof protobuf.Type ? vf.resolvedType.create() : vf.typeDefault), depth) : null;
          }
          out[key] = obj;
        } else out[key] = list.map((x) => this.value(field, x, depth));
        continue;
      }
      // Implicit presence (proto3 scalars outside oneofs): the default value is not sent in JSON.
      const presence = rt instanceof protobuf.Type || field.hasPresence;
      if (!presence && this.isDefault(field, v)) continue;
      out[key] = this.value(field, v, depth);
    }
    return out;
  }

  private isDefault(field: protobuf.Field, v: unknown): boolean {
    if (v instanceof Uint8Array) return v.length === 0;
    if (typeof v === 'object' && v !== null && 'low' in v) return (v as { low: number; high: number }).low === 0 && (v as { low: number; high: number }).high === 0;
    if (typeof v === 'number') return v === 0 && !Object.is(v, -0);
    return v === '' || v === false || (field.resolvedType instanceof protobuf.Enum && v === 0);
  }

  private value(field: protobuf.Field, v: unknown, depth: number): unknown {
    field.resolve();
    const rt = field.resolvedType;
    if (rt instanceof protobuf.Type) return this.message(rt, v as protobuf.Message, depth + 1);
    return this.scalar(field, v);
  }

  private scalar(field: protobuf.Field, v: unknown): unknown {
    const rt = field.resolvedType;
    if (rt instanceof protobuf.Enum) {
      if (rt.fullName === '.google.protobuf.NullValue') return null;
      const name = rt.valuesById[v as number];
      return name ?? v;
    }
    switch (field.type) {
      case 'int64':
      case 'sint64':
      case 'sfixed64':
        return longString(v, false);
      case 'uint64':
      case 'fixed64':
        return longString(v, true);
      case 'double':
      case 'float':
        return floatJson(v as number);
      case 'bytes':
        return Buffer.from(v as Uint8Array).toString('base64');
      default:
        return v;
    }
  }

  /** The JSON form of a well-known type, or undefined for other types. */
  private wellKnown(type: protobuf.Type, msg: protobuf.Message, depth: number): unknown {
    const m = msg as unknown as Record<string, unknown>;
    const name = type.fullName;
    if (!name.startsWith('.google.protobuf.')) return undefined;
    const num = (k: string): number => {
      const v = m[k];
      return typeof v === 'number' ? v : v === undefined ? 0 : Number(longString(v, false));
    };
    switch (name) {
      case '.google.protobuf.Timestamp': {
        const seconds = num('seconds');
        const nanos = num('nanos');
        const d = new Date(seconds * 1000);
        if (!Number.isFinite(d.getTime()) || d.getUTCFullYear() < 1 || d.getUTCFullYear() > 9999 || nanos < 0 || nanos > 999_999_999) return undefined;
        return `${d.toISOString().slice(0, 19)}${nanosText(nanos)}Z`;
      }
      case '.google.protobuf.Duration': {
        const seconds = BigInt(longString(m.seconds ?? 0, false));
        const nanos = num('nanos');
        if (nanos < -999_999_999 || nanos > 999_999_999 || (seconds > 0n && nanos < 0) || (seconds < 0n && nanos > 0)) return undefined;
        const neg = seconds < 0n || nanos < 0;
        const abs = seconds < 0n ? -seconds : seconds;
        return `${neg ? '-' : ''}${abs}${nanosText(Math.abs(nanos))}s`;
      }
      case '.google.protobuf.Empty':
        return {};
      case '.google.protobuf.FieldMask':
        return ((m.paths as string[] | undefined) ?? []).map(lowerCamel).join(',');
      case '.google.protobuf.Struct': {
        const out: Record<string, unknown> = {};
        const fields = (m.fields as Record<string, unknown>[] | undefined) ?? [];
        const vt = type.fields.fields?.resolve().resolvedType;
        const valueType = vt instanceof protobuf.Type ? vt.fields.value?.resolve().resolvedType : null;
        for (const e of fields) out[String(e.key ?? '')] = valueType instanceof protobuf.Type && e.value ? this.message(valueType, e.value as protobuf.Message, depth + 1) : null;
        return out;
      }
      case '.google.protobuf.ListValue': {
        const vf = type.fields.values;
        return ((m.values as protobuf.Message[] | undefined) ?? []).map((x) => (vf ? this.value(vf, x, depth) : null));
      }
      case '.google.protobuf.Value': {
        for (const f of type.fieldsArray) {
          if (!Object.prototype.hasOwnProperty.call(m, f.name)) continue;
          return this.value(f, m[f.name], depth);
        }
        return null;
      }
      case '.google.protobuf.Any': {
        const url = typeof m.type_url === 'string' ? m.type_url : '';
        const value = m.value instanceof Uint8Array ? m.value : new Uint8Array(0);
        let inner: protobuf.Type | null = null;
        try {
          inner = this.root.lookupType(url.slice(url.lastIndexOf('/') + 1));
        } catch {
          inner = null;
        }
        if (!inner) return { '@type': url, value: Buffer.from(value).toString('base64') };
        const json = this.message(inner, inner.decode(value), depth + 1);
        return typeof json === 'object' && json !== null && !Array.isArray(json) && !inner.fullName.startsWith('.google.protobuf.') ? { '@type': url, ...json } : { '@type': url, value: json };
      }
      default:
        if (WRAPPERS.has(name)) {
          const f = type.fields.value;
          if (!f) return undefined;
          const v = Object.prototype.hasOwnProperty.call(m, 'value') ? m.value : f.typeDefault;
          return this.scalar(f, v);
        }
        return undefined;
    }
  }
}
