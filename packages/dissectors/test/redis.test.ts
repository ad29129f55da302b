import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { TcpChunk, TcpDirection, TcpEndReason } from '@kubeshark-mcp/capture';
import { GOLDEN_DIR, goldenCaptures } from '@kubeshark-mcp/testkit';
import { decodeResp, REDIS_PROTOCOL, RedisDissector, type RedisDissectorOptions, type RedisEntry, type RespValue } from '../src/redis';
import type { StreamOpen, TcpDissector } from '../src/stream';
import { feedCapture } from './support/feed';
import { prng, damage } from './support/damage';

/**
 * The Redis dissector against tshark's RESP fields for the same captures
 * (fixtures/golden/<capture>/redis.psv, scripts/golden-redis.sh), then behaviour on hand-made
 * streams, then robustness on damaged captures.
 *
 * How we compare: tshark shows the RESP values of each frame as flat field lists (array
 * lengths, bulk string lengths and payloads, simple strings, errors, integers). Per tcp.stream
 * and direction we concatenate those lists over the frames, in order; on our side we decode the
 * raw bytes our entries keep for each command and reply (in entry order, which is wire order
 * per direction) and flatten them the same way. Our entry fields (command, key, arguments,
 * reply type and text, failure) are then checked against the decoded values.
 */

const CAPTURES: Record<string, number[]> = {
  'zeek/redis_django-cloud.pcapng': [10625],
  'zeek/redis_pipelining-example.pcap': [6379],
  'zeek/redis_pubsub.pcap': [6379],
  'zeek/redis_set.pcap': [6379],
  'zeek/redis_stream.pcap': [6379],
};

/**
 * Deliberate differences: tshark 4.0 does not decode inline commands (a text line such as
 * `PING` or `PUBLISH Foo "Hi there :)"`); it shows those frames as RESP without any value. We
 * decode them as commands. The count is of inline commands per capture; they are left out of
 * the flat comparison and checked against the text of the stream instead.
 */
const INLINE: Record<string, string[][]> = {
  'zeek/redis_pipelining-example.pcap': [['PING'], ['PING'], ['PING']],
  'zeek/redis_pubsub.pcap': [
    ['PUBLISH', 'Foo', 'Hi there :)'],
    ['PUBLISH', 'FeeFooFiiFum', 'Hello! :)'],
    ['SET', 'sanity_check', 'you_are_sane'],
  ],
};

interface Flat {
  arrays: string[];
  bulkLengths: string[];
  bulkValues: string[];
  strings: string[];
  errors: string[];
  integers: string[];
}

const emptyFlat = (): Flat => ({ arrays: [], bulkLengths: [], bulkValues: [], strings: [], errors: [], integers: [] });
const list = (s: string | undefined): string[] => (s === undefined || s === '' ? [] : s.split(';'));

/** tshark's values per `${tcp.stream}/${client|server}`. */
function loadGolden(capture: string, serverPorts: number[]): Map<string, Flat> {
  const [head, ...lines] = readFileSync(path.join(GOLDEN_DIR, capture, 'redis.psv'), 'utf8').split('\n');
  const cols = head!.split('|');
  const out = new Map<string, Flat>();
  for (const l of lines) {
    if (l.trim() === '') continue;
    const f = l.split('|');
    const at = (n: string): string => f[cols.indexOf(n)] ?? '';
    const side = serverPorts.includes(Number(at('tcp.srcport'))) ? 'server' : 'client';
    const key = `${at('tcp.stream')}/${side}`;
    const flat = out.get(key) ?? emptyFlat();
    out.set(key, flat);
    flat.arrays.push(...list(at('resp.array.length')));
    flat.bulkLengths.push(...list(at('resp.bulk_string.length')));
    flat.bulkValues.push(...list(at('resp.bulk_string.value')));
    flat.strings.push(...list(at('resp.string')));
    flat.errors.push(...list(at('resp.error')));
    flat.integers.push(...list(at('resp.integer')));
  }
  for (const [k, v] of out) if (Object.values(v).every((a: string[]) => a.length === 0)) out.delete(k);
  return out;
}

/** Our decoded values flattened as tshark shows them (inline commands excluded). */
function flatten(v: RespValue, flat: Flat): void {
  switch (v.type) {
    case 'inline':
      return;
    case 'null':
      if (v.nullOf === 'array') flat.arrays.push('-1');
      else flat.bulkLengths.push('-1');
      return;
    case 'array':
      flat.arrays.push(String(v.size));
      for (const it of v.items) flatten(it, flat);
      return;
    case 'bulk-string':
      flat.bulkLengths.push(String(v.size));
      flat.bulkValues.push(v.data!.toString('hex'));
      return;
    case 'simple-string':
      flat.strings.push(v.data!.toString('latin1'));
      return;
    case 'error':
      flat.errors.push(v.data!.toString('latin1'));
      return;
    case 'integer':
      flat.integers.push(v.data!.toString('latin1'));
      return;
    default:
      throw new Error(`RESP3 type ${v.type} in a RESP2 capture`);
  }
}

interface Run {
  entries: RedisEntry[];
  tcpStream: Map<number, number>;
  dissector: RedisDissector;
}

async function run(capture: string, options: RedisDissectorOptions = {}, wrap?: (d: TcpDissector) => TcpDissector): Promise<Run> {
  const entries: RedisEntry[] = [];
  const dissector = new RedisDissector((e) => entries.push(e), options);
  const ports = CAPTURES[capture]!;
  const { tcpStream } = await feedCapture(capture, wrap ? wrap(dissector) : dissector, { accept: (s, d) => ports.includes(s) || ports.includes(d) });
  entries.sort((a, b) => tcpStream.get(a.stream)! - tcpStream.get(b.stream)! || a.index - b.index);
  return { entries, tcpStream, dissector };
}

function ourFlat(r: Run): { flat: Map<string, Flat>; inline: string[][] } {
  const flat = new Map<string, Flat>();
  const inline: string[][] = [];
  const add = (key: string, body: Uint8Array | null, client: boolean): void => {
    if (!body) return;
    for (const v of decodeResp(body, client)) {
      if (v.type === 'inline') inline.push(v.items.map((i) => i.data!.toString('latin1')));
      const f = flat.get(key) ?? emptyFlat();
      flat.set(key, f);
      flatten(v, f);
    }
  };
  for (const e of r.entries) {
    const s = r.tcpStream.get(e.stream)!;
    add(`${s}/client`, e.request?.body ?? null, true);
    add(`${s}/server`, e.response?.body ?? null, false);
  }
  for (const [k, v] of flat) if (Object.values(v).every((a: string[]) => a.length === 0)) flat.delete(k);
  return { flat, inline };
}

const words = (v: RespValue): string[] => v.items.map((i) => i.data!.toString('utf8'));

describe.each(Object.keys(CAPTURES))('%s against tshark', (capture) => {
  let r: Run;
  beforeAll(async () => {
    r = await run(capture);
  });

  test('same RESP values per tcp.stream and direction, in order', () => {
    const expected = loadGolden(capture, CAPTURES[capture]!);
    const { flat, inline } = ourFlat(r);
    expect(Object.fromEntries(flat)).toEqual(Object.fromEntries(expected));
    expect(inline).toEqual(INLINE[capture] ?? []);
    for (const e of r.entries) {
      expect(e.request?.truncated ?? false).toBe(false);
      expect(e.response?.truncated ?? false).toBe(false);
    }
  });

  test('entry fields follow from the command and its reply', () => {
    expect(r.entries.length).toBeGreaterThan(0);
    // Indexes count from 0 per stream, in order.
    const seen = new Map<number, number>();
    for (const e of r.entries) {
      expect(e.index).toBe(seen.get(e.stream) ?? 0);
      seen.set(e.stream, e.index + 1);
    }
    for (const e of r.entries) {
      expect(e).toMatchObject({ protocol: 'redis', status_code: 0, path: e.redis_key ?? '', url: e.redis_key ?? '' });
      const replies = e.response ? decodeResp(e.response.body!, false) : [];
      expect(e.redis_response_type).toBe(replies[0]?.type ?? '');
      const err = replies.find((v) => v.type === 'error');
      if (e.request === null) {
        // Pushed pub/sub messages: the kind in lower case, the channel as path.
        expect(['message', 'pmessage']).toContain(e.method);
        expect(e.error).toBeUndefined();
        continue;
      }
      const [cmd] = decodeResp(e.request.body!, true);
      const w = words(cmd!);
      expect(e.redis_command.split(' ')[0]).toBe(w[0]!.toUpperCase());
      expect(e.method).toBe(e.redis_command);
      expect(e.redis_args).toEqual(w.slice(e.redis_command.split(' ').length));
      expect(e.failure).toBe(err ? err.data!.toString() : undefined);
      expect(e.error).toBeUndefined();
    }
  });
});

describe('what the golden captures exercise', () => {
  test('redis_set: three SETs with keys, each answered OK', async () => {
    const { entries } = await run('zeek/redis_set.pcap');
    expect(entries.map((e) => [e.method, e.redis_key, e.redis_args, e.redis_response, e.redis_response_type])).toEqual([
      ['SET', 'test', ['test', 'hi'], 'OK', 'simple-string'],
      ['SET', 'one:1', ['one:1', '2'], 'OK', 'simple-string'],
      ['SET', 'two:2', ['two:2', 'three'], 'OK', 'simple-string'],
    ]);
    expect(entries.every((e) => e.elapsed_time > 0 && e.request!.body_size > 0)).toBe(true);
  });

  test('redis_pubsub: subscriptions are confirmed, published messages are entries of their own, RESET ends pub/sub', async () => {
    const { entries, tcpStream } = await run('zeek/redis_pubsub.pcap');
    const s0 = entries.filter((e) => tcpStream.get(e.stream) === 0);
    expect(s0.map((e) => [e.method, e.path, e.redis_response, e.error])).toEqual([
      ['SUBSCRIBE', '', '["subscribe", "Foo", 1]', undefined],
      ['PSUBSCRIBE', '', '["psubscribe", "F*", 2]', undefined],
      ['message', 'Foo', '["message", "Foo", "Hi there :)"]', undefined],
      ['pmessage', 'Foo', '["pmessage", "F*", "Foo", "Hi there :)"]', undefined],
      ['pmessage', 'FeeFooFiiFum', '["pmessage", "F*", "FeeFooFiiFum", "Hello! :)"]', undefined],
      ['RESET', '', 'RESET', undefined],
      ['GET', 'sanity_check', '"you_are_sane"', undefined],
    ]);
    expect(s0.filter((e) => e.request === null).every((e) => e.response!.body_size > 0)).toBe(true);
    const publish = entries.filter((e) => e.method === 'PUBLISH');
    expect(publish.map((e) => [e.redis_args, e.redis_response, e.redis_response_type])).toEqual([
      [['Foo', 'Hi there :)'], '2', 'integer'],
      [['FeeFooFiiFum', 'Hello! :)'], '1', 'integer'],
    ]);
  });

  test('redis_stream: XADD and XRANGE, keys and nested replies', async () => {
    const { entries } = await run('zeek/redis_stream.pcap');
    expect(entries.map((e) => [e.method, e.redis_key])).toEqual([
      ['XADD', 'race:france'],
      ['XADD', 'race:france'],
      ['XADD', 'race:france'],
      ['XRANGE', 'race:france'],
    ]);
    expect(entries[3]!.redis_response_type).toBe('array');
    expect(entries[3]!.redis_response.startsWith('[["1729622770972-0", ["rider", "Castilla"')).toBe(true);
  });

  test('redis_pipelining-example: three pipelined inline PINGs pair with three PONGs', async () => {
    const { entries } = await run('zeek/redis_pipelining-example.pcap');
    expect(entries.map((e) => [e.method, e.redis_response])).toEqual([
      ['PING', 'PONG'],
      ['PING', 'PONG'],
      ['PING', 'PONG'],
    ]);
  });

  test('redis_django-cloud: GET misses are null bulk strings', async () => {
    const { entries } = await run('zeek/redis_django-cloud.pcapng');
    const nil = entries.filter((e) => e.redis_response === '(nil)');
    expect(nil.length).toBeGreaterThan(0);
    expect(nil.every((e) => e.redis_response_type === 'null' && e.method === 'GET')).toBe(true);
  });
});

/** Feeds hand-made bytes as the reassembler would; each `data` call is one packet at time `t` (ms). */
class Feed {
  readonly entries: RedisEntry[] = [];
  readonly d: RedisDissector;
  private readonly offsets: [number, number] = [0, 0];
  private ended = 0;

  constructor(
    options: RedisDissectorOptions = {},
    open: StreamOpen = { clientDir: 0 },
    readonly stream = 3,
  ) {
    this.d = new RedisDissector((e) => this.entries.push(e), options);
    this.d.open(stream, open);
  }

  data(dir: TcpDirection, bytes: string | Uint8Array, t: number): this {
    const buf = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
    const sec = Math.floor(t / 1000);
    const nsec = (t % 1000) * 1e6;
    const wrapped = Buffer.concat([Buffer.from('xx'), buf, Buffer.from('yy')]);
    const chunk: TcpChunk = { stream: this.stream, dir, offset: this.offsets[dir], buf: wrapped, start: 2, length: buf.length, firstSec: sec, firstNsec: nsec, lastSec: sec, lastNsec: nsec, midStream: false };
    this.d.onData(chunk);
    wrapped.fill(0); // the view is only valid during the call
    this.offsets[dir] += buf.length;
    return this;
  }

  /** Like `data` without copying: the bytes are passed as they are (no garbage to skew memory measurements). */
  raw(dir: TcpDirection, bytes: Uint8Array, t: number): this {
    const sec = Math.floor(t / 1000);
    this.d.onData({ stream: this.stream, dir, offset: this.offsets[dir], buf: bytes, start: 0, length: bytes.length, firstSec: sec, firstNsec: 0, lastSec: sec, lastNsec: 0, midStream: false });
    this.offsets[dir] += bytes.length;
    return this;
  }

  gap(dir: TcpDirection, length: number, t: number): this {
    this.d.onGap({ stream: this.stream, dir, offset: this.offsets[dir], length, reason: 'acked', sec: Math.floor(t / 1000), nsec: 0 });
    this.offsets[dir] += length;
    return this;
  }

  end(reason: TcpEndReason = 'fin'): RedisEntry[] {
    for (const dir of [0, 1] as const) this.d.onEnd({ stream: this.stream, dir, offset: this.offsets[dir], reason, sec: 0, nsec: 0, closed: ++this.ended === 2 });
    return this.entries;
  }
}

const cmd = (...w: string[]): string => `*${w.length}\r\n${w.map((x) => `$${Buffer.byteLength(x, 'latin1')}\r\n${x}\r\n`).join('')}`;
const summary = (es: RedisEntry[]): unknown[] => es.map((e) => [e.method, e.path, e.redis_response_type, e.redis_response, e.failure, e.error]);

describe('behaviour on hand-made streams', () => {
  test('pipelined commands pair in order, whatever the packet boundaries', () => {
    const req = cmd('SET', 'k', 'v') + cmd('GET', 'k') + cmd('INCR', 'n') + cmd('DEL', 'k', 'j') + 'PING\r\n';
    const res = '+OK\r\n$1\r\nv\r\n:7\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n+PONG\r\n';
    const wholeEntries = new Feed().data(0, req, 1).data(1, res, 2).end();
    const whole = summary(wholeEntries);
    // Commands at 1 ms, replies at 2 ms: timestamps in µs, elapsed first byte to first byte.
    expect(wholeEntries.map((e) => [e.timestamp, e.elapsed_time])).toEqual(wholeEntries.map(() => [1000, 1000]));
    const bodies = (es: RedisEntry[]): string[][] => es.map((e) => [Buffer.from(e.request!.body!).toString('latin1'), Buffer.from(e.response!.body!).toString('latin1')]);
    // The kept bytes of the messages, back to back, are the two streams.
    expect(bodies(wholeEntries).map((b) => b[0]).join('')).toBe(req);
    expect(bodies(wholeEntries).map((b) => b[1]).join('')).toBe(res);
    expect(whole).toEqual([
      ['SET', 'k', 'simple-string', 'OK', undefined, undefined],
      ['GET', 'k', 'bulk-string', '"v"', undefined, undefined],
      ['INCR', 'n', 'integer', '7', undefined, undefined],
      ['DEL', 'k', 'error', 'WRONGTYPE Operation against a key holding the wrong kind of value', 'WRONGTYPE Operation against a key holding the wrong kind of value', undefined],
      ['PING', '', 'simple-string', 'PONG', undefined, undefined],
    ]);
    for (let cut = 1; cut < req.length; cut++) {
      const f = new Feed().data(0, req.slice(0, cut), 1).data(0, req.slice(cut), 2);
      for (let i = 0; i < res.length; i += 3) f.data(1, res.slice(i, i + 3), 3);
      const es = f.end();
      expect(summary(es)).toEqual(whole);
      expect(bodies(es)).toEqual(bodies(wholeEntries));
    }
    const bytewise = new Feed();
    for (const ch of req) bytewise.data(0, ch, 1);
    for (const ch of res) bytewise.data(1, ch, 2);
    const es = bytewise.end();
    expect(summary(es)).toEqual(whole);
    expect(bodies(es)).toEqual(bodies(wholeEntries));
    expect(Buffer.from(es[0]!.request!.body!).toString()).toBe(cmd('SET', 'k', 'v'));
    expect(es[0]!.redis_args).toEqual(['k', 'v']);
  });

  test('every RESP3 type is decoded and rendered', () => {
    const replies: [string, string, string][] = [
      ['_\r\n', 'null', '(nil)'],
      ['#t\r\n', 'boolean', 't'],
      [',3.25\r\n', 'double', '3.25'],
      [',inf\r\n', 'double', 'inf'],
      ['(3492890328409238509324850943850943825024385\r\n', 'big-number', '3492890328409238509324850943850943825024385'],
      ['!21\r\nSYNTAX invalid syntax\r\n', 'bulk-error', 'SYNTAX invalid syntax'],
      ['=15\r\ntxt:Some string\r\n', 'verbatim-string', 'Some string'],
      ['%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n', 'map', '{first: 1, second: 2}'],
      ['~3\r\n+a\r\n+b\r\n_\r\n', 'set', '~[a, b, (nil)]'],
      ['|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*2\r\n:2039123\r\n:9543892\r\n', 'array', '[2039123, 9543892]'],
      ['*3\r\n:1\r\n*-1\r\n$-1\r\n', 'array', '[1, (nil), (nil)]'],
      ['$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;1\r\nd\r\n;0\r\n', 'bulk-string', '"Hello word"'],
      ['*?\r\n:1\r\n:2\r\n.\r\n', 'array', '[1, 2]'],
    ];
    const f = new Feed();
    for (const [i] of replies.entries()) f.data(0, cmd('GET', `k${i}`), i * 10 + 1);
    replies.forEach(([r], i) => f.data(1, r, i * 10 + 2));
    const es = f.end();
    expect(es.map((e) => [e.redis_response_type, e.redis_response])).toEqual(replies.map(([, t, s]) => [t, s]));
    expect(es.map((e) => e.failure)).toEqual(replies.map(([, t, s]) => (t === 'bulk-error' ? s : undefined)));
    const [withAttr] = decodeResp(Buffer.from(replies[9]![0]), false);
    expect(withAttr!.attribute).toMatchObject({ type: 'attribute', size: 2 });
    expect(es.every((e) => e.error === undefined)).toBe(true);
  });

  test('HELLO 3 then RESP3 pushes: subscription confirmations pair, messages and invalidations are entries', () => {
    const f = new Feed();
    f.data(0, cmd('HELLO', '3'), 1).data(1, '%1\r\n+server\r\n+redis\r\n', 2);
    f.data(0, cmd('SUBSCRIBE', 'a', 'b'), 3).data(1, '>3\r\n+subscribe\r\n+a\r\n:1\r\n>3\r\n+subscribe\r\n+b\r\n:2\r\n', 4);
    f.data(1, '>3\r\n+message\r\n+a\r\n$2\r\nhi\r\n', 5);
    f.data(0, cmd('GET', 'x'), 6).data(1, '>2\r\n+invalidate\r\n*1\r\n$1\r\nx\r\n$1\r\n1\r\n', 7);
    expect(f.end().map((e) => [e.method, e.path, e.redis_response_type, e.redis_response, e.request === null, e.error])).toEqual([
      ['HELLO', '', 'map', '{server: redis}', false, undefined],
      ['SUBSCRIBE', '', 'push', '>[subscribe, a, 1]; >[subscribe, b, 2]', false, undefined],
      ['message', 'a', 'push', '>[message, a, "hi"]', true, undefined],
      ['GET', 'x', 'bulk-string', '"1"', false, undefined],
      ['invalidate', '', 'push', '>[invalidate, ["x"]]', true, undefined],
    ]);
  });

  test('RESP2 pub/sub: UNSUBSCRIBE without channels takes one confirmation per subscription', () => {
    const f = new Feed();
    f.data(0, cmd('PSUBSCRIBE', 'n*', 'm*'), 1).data(1, '*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:1\r\n*3\r\n$10\r\npsubscribe\r\n$2\r\nm*\r\n:2\r\n', 2);
    f.data(1, '*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$2\r\nno\r\n$1\r\n1\r\n', 3);
    f.data(0, cmd('PUNSUBSCRIBE'), 4).data(1, '*3\r\n$12\r\npunsubscribe\r\n$2\r\nn*\r\n:1\r\n*3\r\n$12\r\npunsubscribe\r\n$2\r\nm*\r\n:0\r\n', 5);
    // Out of pub/sub, an array starting with "message" is an ordinary reply.
    f.data(0, cmd('LRANGE', 'l', '0', '-1'), 6).data(1, '*2\r\n$7\r\nmessage\r\n$1\r\nx\r\n', 7);
    expect(f.end().map((e) => [e.method, e.path, e.redis_response, e.error])).toEqual([
      ['PSUBSCRIBE', '', '["psubscribe", "n*", 1]; ["psubscribe", "m*", 2]', undefined],
      ['pmessage', 'no', '["pmessage", "n*", "no", "1"]', undefined],
      ['PUNSUBSCRIBE', '', '["punsubscribe", "n*", 1]; ["punsubscribe", "m*", 0]', undefined],
      ['LRANGE', 'l', '["message", "x"]', undefined],
    ]);
  });

  test('joined after SUBSCRIBE: messages are recognised by their shape when no command waits', () => {
    const f = new Feed();
    f.data(1, '*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n', 1);
    f.data(0, cmd('LRANGE', 'l', '0', '1'), 2).data(1, '*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\ny\r\n', 3);
    expect(f.end().map((e) => [e.method, e.path, e.request === null, e.error])).toEqual([
      ['message', 'ch', true, undefined],
      // A command waits: the same shape is its reply.
      ['LRANGE', 'l', false, undefined],
    ]);
  });

  test('CLIENT REPLY OFF and SKIP: unanswered commands are entries without a response or error', () => {
    const f = new Feed();
    f.data(0, cmd('CLIENT', 'REPLY', 'SKIP') + cmd('SET', 'a', '1') + cmd('SET', 'b', '2'), 1).data(1, '+OK\r\n', 2);
    f.data(0, cmd('CLIENT', 'REPLY', 'OFF') + cmd('INCR', 'c') + cmd('CLIENT', 'REPLY', 'ON') + cmd('GET', 'c'), 3).data(1, '+OK\r\n$1\r\n1\r\n', 4);
    expect(f.end().map((e) => [e.method, e.path, e.redis_response, e.response === null, e.error])).toEqual([
      ['CLIENT REPLY', '', '', true, undefined],
      ['SET', 'a', '', true, undefined],
      ['SET', 'b', 'OK', false, undefined],
      ['CLIENT REPLY', '', '', true, undefined],
      ['INCR', 'c', '', true, undefined],
      ['CLIENT REPLY', '', 'OK', false, undefined],
      ['GET', 'c', '"1"', false, undefined],
    ]);
  });

  test('MONITOR: the commands the server reports are entries of their own', () => {
    const f = new Feed();
    f.data(0, cmd('MONITOR'), 1).data(1, '+OK\r\n', 2).data(1, '+1700000000.000000 [0 127.0.0.1:5000] "GET" "k"\r\n', 3);
    f.data(0, cmd('PING'), 4).data(1, '+PONG\r\n', 5);
    expect(f.end().map((e) => [e.method, e.redis_args, e.redis_response, e.request === null, e.error])).toEqual([
      ['MONITOR', [], 'OK', false, undefined],
      ['monitor', ['1700000000.000000 [0 127.0.0.1:5000] "GET" "k"'], '1700000000.000000 [0 127.0.0.1:5000] "GET" "k"', true, undefined],
      ['PING', [], 'PONG', false, undefined],
    ]);
  });

  test('keys: container commands, EVAL, XREAD; commands without keys', () => {
    const f = new Feed();
    const cmds = [
      ['client', 'setname', 'app'],
      ['EVAL', 'return 1', '1', 'key1', 'arg'],
      ['EVAL', 'return 1', '0'],
      ['XREAD', 'COUNT', '2', 'STREAMS', 's1', 's2', '0', '0'],
      ['object', 'encoding', 'obj'],
      ['PUBLISH', 'chan', 'm'],
      ['hset', 'h', 'f', 'v'],
    ];
    cmds.forEach((c, i) => f.data(0, cmd(...c), i + 1));
    for (let i = 0; i < cmds.length; i++) f.data(1, '+OK\r\n', 20 + i);
    expect(f.end().map((e) => [e.method, e.redis_key, e.redis_args.length])).toEqual([
      ['CLIENT SETNAME', undefined, 1],
      ['EVAL', 'key1', 4],
      ['EVAL', undefined, 2],
      ['XREAD', 's1', 7],
      ['OBJECT ENCODING', 'obj', 1],
      ['PUBLISH', undefined, 2],
      ['HSET', 'h', 3],
    ]);
  });

  test('bounded: a 1 GB bulk claim allocates nothing, long values and bodies are cut', () => {
    const f = new Feed({ maxBodySize: 100 });
    f.data(0, cmd('GET', 'big'), 1).data(1, '$1000000000\r\n', 2);
    const before = process.memoryUsage().arrayBuffers;
    const block = Buffer.alloc(1 << 20, 0x61);
    for (let i = 0; i < 50; i++) f.raw(1, block, 3);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(4 << 20);
    const es = f.end();
    expect(es).toHaveLength(1);
    expect(es[0]).toMatchObject({ method: 'GET', error: 'pair-not-found', response: null });
    expect(es[0]!.request!.body_size).toBe(cmd('GET', 'big').length);
    const long = 'x'.repeat(10000);
    const g = new Feed({ maxBodySize: 100 }).data(0, cmd('SET', 'k', long), 1).data(1, `$${long.length}\r\n${long}\r\n`, 2);
    const e = g.end()[0]!;
    expect([e.request!.body!.length, e.request!.body_size, e.request!.truncated]).toEqual([100, cmd('SET', 'k', long).length, true]);
    expect(e.redis_args[1]!.length).toBe(256);
    expect(e.redis_response.length).toBe(256);
    expect(e.response!.truncated).toBe(true);
  });

  test('pending commands are bounded: past 1024 the oldest is given up, past 4 MiB bodies stop being kept', () => {
    const f = new Feed();
    for (let i = 0; i < 3000; i++) f.data(0, cmd('SET', `k${i}`, 'v'.repeat(10000)), 1);
    expect(f.entries).toHaveLength(3000 - 1024);
    expect(f.entries.every((e) => e.error === 'pair-not-found' && e.response === null)).toBe(true);
    const es = f.end();
    expect(es.map((e) => e.path)).toEqual(Array.from({ length: 3000 }, (_, i) => `k${i}`));
    const waiting = es.slice(-1024);
    expect(waiting.reduce((n, e) => n + (e.request!.body?.length ?? 0), 0)).toBeLessThanOrEqual(4 * 1024 * 1024);
    expect(waiting.some((e) => e.request!.truncated)).toBe(true);
    expect(waiting.every((e) => e.request!.body_size === cmd('SET', e.path, 'v'.repeat(10000)).length)).toBe(true);
  });

  test('a gap in the reply direction: later replies pair with the latest command sent before them', () => {
    const f = new Feed();
    f.data(0, cmd('GET', 'a'), 1).data(0, cmd('GET', 'b'), 2).data(1, '$5\r\nvalu', 3).gap(1, 10, 4);
    f.data(0, cmd('GET', 'c'), 5).data(1, 'e\r\n$1\r\nb\r\n', 6).data(1, '$1\r\nc\r\n', 7);
    expect(f.end().map((e) => [e.path, e.redis_response, e.error])).toEqual([
      ['a', '', 'pair-not-found'],
      ['b', '', 'pair-not-found'],
      ['c', '"c"', undefined],
    ]);
    expect(f.d.stats().resyncs).toBe(1);
  });

  test('a protocol error resyncs at a later packet; a damaged command is flagged', () => {
    const f = new Feed();
    f.data(0, '*2\r\n$3\r\nGET\r\n$x\r\n', 1).data(0, cmd('GET', 'ok'), 2).data(1, '-ERR Protocol error\r\n', 3).data(1, '$2\r\nok\r\n', 4);
    expect(f.end().map((e) => [e.path, e.redis_response, e.error])).toEqual([
      ['', 'ERR Protocol error', 'dissection'],
      ['ok', '"ok"', undefined],
    ]);
  });

  test('without the handshake the client is found by content; detection rejects other protocols', () => {
    const f = new Feed({}, { clientDir: undefined });
    f.data(1, cmd('GET', 'k'), 1).data(0, '$1\r\nv\r\n', 2);
    expect(f.end().map((e) => [e.method, e.redis_response])).toEqual([['GET', '"v"']]);
    const d = REDIS_PROTOCOL.detect;
    const b = (s: string): Buffer => Buffer.from(s, 'latin1');
    expect([d(b(cmd('PING')), true), d(b('PING\r\n'), true), d(b('+OK\r\n'), false), d(b('$-1\r\n'), false), d(b('*2\r\n$3\r\nGET'), undefined)]).toEqual(['yes', 'yes', 'yes', 'yes', 'yes']);
    expect([d(b('*2'), true), d(b('PIN'), true), d(b('+OK'), false), d(b(''), true)]).toEqual(['more', 'more', 'more', 'more']);
    const others = [
      'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /bad.html\r\n',
      'HTTP/1.1 200 OK\r\n\r\n',
      '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03',
      '\x00\x00\x00\x08\x04\xd2\x16/',
      'R\x00\x00\x00\x08\x00\x00\x00\x00',
      'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
      'AMQP\x00\x00\x09\x01',
      'SSH-2.0-OpenSSH\r\n',
      '$\x00\x00\x00\x0a5.7.33',
      '*\x00\x01',
    ];
    for (const o of others) for (const dir of [true, false, undefined]) expect([o, d(b(o), dir)]).toEqual([o, 'no']);
  });
});

/** The first bytes (up to 4 KiB) each direction of each TCP stream of a capture sent, and who sent them. */
async function firstBytes(capture: string, port?: number): Promise<{ bytes: Buffer; fromClient: boolean | undefined; key: string }[]> {
  const out = new Map<string, { parts: Buffer[]; size: number; fromClient: boolean | undefined }>();
  const client = new Map<number, TcpDirection | undefined>();
  const rec: TcpDissector = {
    open: (s: number, i: StreamOpen) => client.set(s, i.clientDir),
    flush: () => undefined,
    onGap: () => undefined,
    onEnd: () => undefined,
    onData: (c: TcpChunk) => {
      const key = `${c.stream}/${c.dir}`;
      const cd = client.get(c.stream);
      const o = out.get(key) ?? { parts: [], size: 0, fromClient: cd === undefined ? undefined : cd === c.dir };
      out.set(key, o);
      if (o.size >= 4096 || c.offset !== o.size) return; // contiguous from the first byte only
      o.parts.push(Buffer.from(c.buf.subarray(c.start, c.start + Math.min(c.length, 4096 - o.size))));
      o.size += Math.min(c.length, 4096 - o.size);
    },
  };
  await feedCapture(capture, rec, port === undefined ? {} : { accept: (s, d) => s === port || d === port });
  return [...out].map(([key, o]) => ({ key, bytes: Buffer.concat(o.parts), fromClient: o.fromClient }));
}

/** The verdicts the router would see as the bytes arrive: every prefix up to 64 bytes, then the whole. */
function verdicts(bytes: Buffer, fromClient: boolean | undefined): Set<string> {
  const seen = new Set<string>();
  for (let n = 1; n <= Math.min(64, bytes.length); n++) seen.add(REDIS_PROTOCOL.detect(bytes.subarray(0, n), fromClient));
  seen.add(REDIS_PROTOCOL.detect(bytes, fromClient));
  return seen;
}

describe('detection on every golden capture', () => {
  const others = goldenCaptures().filter((c) => !(c.startsWith('zeek/redis_')));
  test.each(Object.keys(CAPTURES))('%s: every direction is claimed, on its first bytes', async (capture) => {
    const firsts = await firstBytes(capture, CAPTURES[capture]![0]);
    expect(firsts.length).toBeGreaterThan(0);
    for (const { key, bytes, fromClient } of firsts) {
      // A server that only answered an SSLRequest or GSSENCRequest with one byte says no more.
      const expected = bytes.length === 1 ? 'more' : 'yes';
      for (const dir of new Set([fromClient, undefined])) expect([key, dir, REDIS_PROTOCOL.detect(bytes, dir)]).toEqual([key, dir, expected]);
    }
  });

  test.each(others)('%s: no stream is claimed', async (capture) => {
    for (const { key, bytes, fromClient } of await firstBytes(capture)) {
      for (const dir of new Set([fromClient, undefined])) expect([key, dir, verdicts(bytes, dir).has('yes')]).toEqual([key, dir, false]);
    }
  });
});

describe('random input', () => {
  test('bytes from the protocol alphabet and noise, both directions: no exception, bounded entries', () => {
    const alphabet = '*$+-:_#%~>|=!(,.;?0123456789\r\n';
    let entries = 0;
    for (let seed = 1; seed <= 100; seed++) {
      const rand = prng(seed);
      const out: RedisEntry[] = [];
      const d = new RedisDissector((e) => out.push(e), { maxBodySize: 1000 });
      d.open(1, { clientDir: rand() < 0.5 ? 0 : undefined });
      const off = [0, 0];
      for (let k = 0; k < 60; k++) {
        const dir: TcpDirection = rand() < 0.5 ? 0 : 1;
        const b = Buffer.alloc(Math.floor(rand() * 60));
        for (let j = 0; j < b.length; j++) b[j] = rand() < 0.6 ? alphabet.charCodeAt(Math.floor(rand() * alphabet.length)) : Math.floor(rand() * 256);
        if (rand() < 0.05) d.onGap({ stream: 1, dir, offset: off[dir]!, length: 10, reason: 'acked', sec: k, nsec: 0 });
        else d.onData({ stream: 1, dir, offset: off[dir]!, buf: b, start: 0, length: b.length, firstSec: k, firstNsec: 0, lastSec: k, lastNsec: 0, midStream: false });
        off[dir] = off[dir]! + (b.length || 10);
      }
      d.flush();
      for (const e of out) expect((e.request?.body?.length ?? 0) <= 1000 && (e.response?.body?.length ?? 0) <= 1000).toBe(true);
      entries += out.length;
    }
    // Some of the noise parsed as messages: the dissector was exercised, not idle.
    expect(entries).toBeGreaterThan(0);
  });
});



describe.each(Object.keys(CAPTURES))('%s damaged', (capture) => {
  test('truncated, flipped and holed streams: no exception, other streams unchanged', async () => {
    const clean = await run(capture);
    const streams = [...new Set(clean.entries.map((e) => e.stream))];
    const strip = (es: RedisEntry[], s: number): unknown[] => es.filter((e) => e.stream !== s).map((e) => ({ ...e }));
    let damagedRuns = 0;
    let changed = 0;
    for (const mode of ['flip', 'gap', 'truncate'] as const) {
      for (let seed = 1; seed <= 4; seed++) {
        const victim = streams[seed % streams.length]!;
        const r = await run(capture, {}, (d) => damage(d, victim, seed, mode));
        expect(strip(r.entries, victim)).toEqual(strip(clean.entries, victim));
        const mine = (es: RedisEntry[]): unknown[] => es.filter((e) => e.stream === victim).map((e) => [e.method, e.redis_response, e.error]);
        if (JSON.stringify(mine(r.entries)) !== JSON.stringify(mine(clean.entries))) changed++;
        for (const e of r.entries) {
          expect(e.protocol).toBe('redis');
          expect(e.redis_response.length).toBeLessThanOrEqual(256);
        }
        damagedRuns++;
      }
    }
    expect(damagedRuns).toBe(12);
    // The damage reached the dissector: the victim's entries differ in some runs.
    expect(changed).toBeGreaterThan(0);
  });
});
