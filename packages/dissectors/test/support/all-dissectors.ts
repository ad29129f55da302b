import type { TcpDirection } from '@kubeshark-mcp/capture';
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
} from '../../src';

export interface AllDissectors {
  router: StreamRouter;
  /** The client's direction of each stream, for the router's facts: set it when a stream opens. */
  clientDirs: Map<number, TcpDirection | undefined>;
  /** Flushes every dissector (the end of input). */
  flush: () => void;
}

/** Every TCP dissector behind one router, with the upgrade hand-offs (WebSocket, h2c), as the worker wires them. */
export function allDissectors(emit: (e: Entry) => void): AllDissectors {
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
  return { router, clientDirs, flush: () => [...protocols.map((p) => p.dissector), ws].forEach((d) => d.flush()) };
}
