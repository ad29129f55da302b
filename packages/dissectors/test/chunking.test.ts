import type { TcpChunk, TcpEnd, TcpGap } from '@kubeshark-mcp/capture';
import { goldenCaptures } from '@kubeshark-mcp/testkit';
import {
  AmqpDissector,
  DnsDissector,
  Http2Dissector,
  HttpDissector,
  KafkaDissector,
  MongodbDissector,
  MysqlDissector,
  PostgresqlDissector,
  RedisDissector,
  type Entry,
  type StreamOpen,
  type TcpDissector,
} from '../src';
import { allDissectors } from './support/all-dissectors';
import { DNS_CAPTURES, HTTP1_CAPTURES, HTTP2_CAPTURES } from './support/captures';
import { feedCapture } from './support/feed';

/**
 * Entries must not depend on how the reassembled byte stream is cut. TCP delivers segments of
 * any size and reassembly hands over pieces at any boundary, so every dissector is fed each
 * capture its own tests use once as delivered and again with every chunk cut into pieces of
 * 1, 5 and 37 bytes (each piece keeping the times of the chunk, i.e. the segment, it came
 * from), and must emit exactly the same entries. Each piece is a copy that is overwritten once
 * `onData` returns, and the chunk object is reused, as the reassembler's are: a dissector that
 * keeps a view of its input past the call reads garbage. Then every golden capture goes through
 * all dissectors behind the stream router, cut the same way before the router, so detection on
 * short prefixes and the upgrade hand-offs (WebSocket, h2c) are covered too.
 */

const SIZES = [1, 5, 37];

/** Wraps a dissector so that every chunk reaches it in pieces of at most `size` bytes. */
function cutInto(size: number, target: TcpDissector): TcpDissector {
  const scratch = Buffer.alloc(size);
  const piece: TcpChunk = { stream: 0, dir: 0, offset: 0, buf: scratch, start: 0, length: 0, firstSec: 0, firstNsec: 0, lastSec: 0, lastNsec: 0, midStream: false };
  return {
    open: (s: number, i: StreamOpen) => target.open(s, i),
    flush: () => target.flush(),
    onGap: (g: TcpGap) => target.onGap(g),
    onEnd: (e: TcpEnd) => target.onEnd(e),
    onData: (c: TcpChunk) => {
      for (let at = 0; at < c.length; at += size) {
        const n = Math.min(size, c.length - at);
        scratch.set(c.buf.subarray(c.start + at, c.start + at + n));
        piece.stream = c.stream;
        piece.dir = c.dir;
        piece.offset = c.offset + at;
        piece.start = 0;
        piece.length = n;
        piece.firstSec = c.firstSec;
        piece.firstNsec = c.firstNsec;
        piece.lastSec = c.lastSec;
        piece.lastNsec = c.lastNsec;
        piece.midStream = c.midStream;
        target.onData(piece);
        scratch.fill(0xa5);
        piece.offset = -1;
      }
    },
  };
}

/** An entry as plain data (bytes as hex), so that equality is by value and diffs are readable. */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return `hex:${Buffer.from(v).toString('hex')}`;
  if (v instanceof Map) return [...(v as Map<unknown, unknown>)].map(plain);
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).map(([k, x]) => [k, plain(x)]));
  return v;
}

/** Entries per stream in index order (emission order across streams is not part of the contract). */
const ordered = (entries: Entry[]): unknown[] => [...entries].sort((a, b) => a.stream - b.stream || a.index - b.index).map(plain);

interface Case {
  name: string;
  captures: string[];
  make: (emit: (e: Entry) => void) => TcpDissector;
  /** The streams the dissector's own tests feed it (by port), all when absent. */
  ports?: number[];
}

// The captures each dissector's own test file feeds it directly.
const CASES: Case[] = [
  {
    name: 'http',
    make: (emit) => new HttpDissector(emit),
    captures: HTTP1_CAPTURES,
  },
  {
    name: 'http2',
    make: (emit) => new Http2Dissector(emit),
    captures: [...HTTP2_CAPTURES, 'derived/grpc-inventory.pcap'],
  },
  {
    name: 'dns (TCP)',
    make: (emit) => new DnsDissector(emit),
    ports: [53],
    captures: DNS_CAPTURES,
  },
  {
    name: 'redis',
    make: (emit) => new RedisDissector(emit),
    ports: [6379, 10625],
    captures: ['zeek/redis_django-cloud.pcapng', 'zeek/redis_pipelining-example.pcap', 'zeek/redis_pubsub.pcap', 'zeek/redis_set.pcap', 'zeek/redis_stream.pcap'],
  },
  {
    name: 'postgresql',
    make: (emit) => new PostgresqlDissector(emit),
    ports: [5432],
    captures: [
      'ndpi/pgsql.pcap',
      'suricata-verify/pgsql-simple-query-rollback.pcap',
      'zeek/postgresql_psql-aws-ssl-require.pcap',
      'zeek/postgresql_psql-create-insert-select-delete-drop.pcap',
      'zeek/postgresql_psql-login.pcap',
    ],
  },
  { name: 'mysql', make: (emit) => new MysqlDissector(emit), captures: ['ndpi/mysql.pcapng', 'zeek/mysql_mysql.pcap'] },
  { name: 'mongodb', make: (emit) => new MongodbDissector(emit), captures: ['ndpi/mongodb.pcap'] },
  { name: 'kafka', make: (emit) => new KafkaDissector(emit), captures: ['ndpi/kafka.pcapng'] },
  { name: 'amqp', make: (emit) => new AmqpDissector(emit), captures: ['ndpi/amqp.pcap'] },
];

async function direct(c: Case, capture: string, size?: number): Promise<Entry[]> {
  const entries: Entry[] = [];
  const d = c.make((e) => entries.push(e));
  const ports = c.ports;
  await feedCapture(capture, size === undefined ? d : cutInto(size, d), ports ? { accept: (s, t) => ports.includes(s) || ports.includes(t) } : {});
  return entries;
}

describe.each(CASES)('$name fed directly', (c) => {
  describe.each(c.captures)('%s', (capture) => {
    let whole: unknown[];
    beforeAll(async () => {
      whole = ordered(await direct(c, capture));
    });
    test.each(SIZES)('cut into %d-byte pieces: the same entries', async (size) => {
      expect(ordered(await direct(c, capture, size))).toEqual(whole);
    });
  });
});

/** Every TCP dissector behind one router, with the upgrade hand-offs, as the worker wires them. */
async function routed(capture: string, size?: number): Promise<Entry[]> {
  const entries: Entry[] = [];
  const emit = (e: Entry): void => {
    entries.push(e);
  };
  const { router, clientDirs, flush } = allDissectors(emit);
  const front: TcpDissector = {
    open: (s, i) => clientDirs.set(s, i.clientDir),
    onData: (x) => router.onData(x),
    onGap: (g) => router.onGap(g),
    onEnd: (e) => router.onEnd(e),
    flush,
  };
  await feedCapture(capture, size === undefined ? front : cutInto(size, front));
  return entries;
}

describe.each(goldenCaptures().filter((c) => !c.startsWith('gopacket/le_test')))('%s behind the router', (capture) => {
  let whole: unknown[];
  beforeAll(async () => {
    whole = ordered(await routed(capture));
  });
  test.each(SIZES)('cut into %d-byte pieces: the same entries', async (size) => {
    expect(ordered(await routed(capture, size))).toEqual(whole);
  });
});
