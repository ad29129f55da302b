import type { TcpChunk, TcpDirection, TcpEnd, TcpGap } from '@kubeshark-mcp/capture';
import { goldenCaptures } from '@kubeshark-mcp/testkit';
import {
  AMQP_PROTOCOL,
  AmqpDissector,
  DNS_TCP_PROTOCOL,
  DnsDissector,
  HTTP2_PROTOCOL,
  HTTP_PROTOCOL,
  Http2Dissector,
  HttpDissector,
  KAFKA_PROTOCOL,
  KafkaDissector,
  MONGODB_PROTOCOL,
  MYSQL_PROTOCOL,
  MongodbDissector,
  MysqlDissector,
  POSTGRESQL_PROTOCOL,
  PostgresqlDissector,
  REDIS_PROTOCOL,
  RedisDissector,
  StreamRouter,
  WebSocketDissector,
  type Entry,
  type RoutedProtocol,
  type StreamOpen,
  type TcpDissector,
} from '../src';
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
    captures: [
      'zeek/http_get.pcap',
      'zeek/http_pipelined-requests.pcap',
      'zeek/http_get-gzip.pcap',
      'zeek/http_100-continue.pcap',
      'ndpi/http.pcapng',
      'zeek/http_1000-requests-one-dropped-response.pcap.gz',
      'suricata-verify/http-gap-simple.pcap',
      'zeek/http_docker-http-upgrade.pcap',
      'zeek/http_http-body-match.pcap',
      'suricata-verify/http-pipeline-files-with-gap.pcap',
      'suricata-verify/basic_websockets.pcap',
      'suricata-verify/decode-sll2-01.pcap',
      'suricata-verify/syn_retransmit_with_ts.pcap',
      'zeek/tcp_retransmit-timeout.pcapng',
      'zeek/tcp_handshake-reorder.pcap',
      'derived/tcp_handshake-reorder.be-nsec.pcap',
      'derived/tcp_handshake-reorder.be-usec.pcap',
      'derived/tcp_handshake-reorder.le-nsec.pcap',
      'gopacket/test_ethernet.pcap',
      'gopacket/test_loopback.pcap',
      'zeek/http-qinq-0.pcap',
      'zeek/http-vlan-0.pcap',
      'zeek/nflog-http.pcap',
    ],
  },
  {
    name: 'http2',
    make: (emit) => new Http2Dissector(emit),
    captures: [
      'grpc-go-book/grpc_Unary.pcapng',
      'grpc-go-book/grpc_Bidi_Streaming.pcapng',
      'grpc-go-book/grpc_Client_Streaming.pcapng',
      'grpc-go-book/grpc_Server_Streaming.pcapng',
      'ndpi/http2.pcapng',
      'suricata-verify/http2-keywords.pcap',
      'suricata-verify/http2-continuation.pcap',
      'suricata-verify/http2_multiple_headers.pcap',
      'suricata-verify/dns_over_https.pcap',
      'derived/grpc-inventory.pcap',
    ],
  },
  {
    name: 'dns (TCP)',
    make: (emit) => new DnsDissector(emit),
    ports: [53],
    captures: [
      'suricata-verify/dns-udp-google.com-a-aaaa-mx.pcap',
      'gopacket/test_dns.pcap',
      'ndpi/dns.pcap',
      'zeek/dns53.pcap',
      'zeek/ipv6-fragmented-dns.pcap',
      'suricata-verify/dns-tcp-multirequest-buffer.pcap',
      'zeek/pcapng-multi-interface.pcapng',
    ],
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
  const clientDirs = new Map<number, TcpDirection | undefined>();
  const http2 = new Http2Dissector(emit);
  const ws = new WebSocketDissector(emit);
  const holder: { router?: StreamRouter } = {};
  const protocols: RoutedProtocol[] = [
    { protocol: HTTP_PROTOCOL, dissector: new HttpDissector(emit, { onUpgrade: (u) => holder.router!.upgrade(u) }) },
    { protocol: HTTP2_PROTOCOL, dissector: http2 },
    { protocol: POSTGRESQL_PROTOCOL, dissector: new PostgresqlDissector(emit) },
    { protocol: AMQP_PROTOCOL, dissector: new AmqpDissector(emit) },
    { protocol: REDIS_PROTOCOL, dissector: new RedisDissector(emit) },
    { protocol: MYSQL_PROTOCOL, dissector: new MysqlDissector(emit) },
    { protocol: MONGODB_PROTOCOL, dissector: new MongodbDissector(emit) },
    { protocol: KAFKA_PROTOCOL, dissector: new KafkaDissector(emit) },
    { protocol: DNS_TCP_PROTOCOL, dissector: new DnsDissector(emit) },
  ];
  const router = new StreamRouter({ protocols, upgrades: { h2c: http2, websocket: ws }, facts: (s) => ({ clientDir: clientDirs.get(s), ports: [0, 0] }) });
  holder.router = router;
  const front: TcpDissector = {
    open: (s, i) => clientDirs.set(s, i.clientDir),
    onData: (x) => router.onData(x),
    onGap: (g) => router.onGap(g),
    onEnd: (e) => router.onEnd(e),
    flush: () => [...protocols.map((p) => p.dissector), ws].forEach((d) => d.flush()),
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
