import { compile } from '../src';
import { IDS, NOW, RECORDS } from './records';

/**
 * Issue 5's acceptance filters (from Kubeshark's KFL2 documentation), each with the records of
 * records.ts it must select, worked out by hand.
 */
const CASES: [filter: string, expected: string[]][] = [
  ['http && method == "GET" && status_code >= 400', ['r01', 'r04']],
  ['dst.pod.namespace == "production"', ['r01', 'r03', 'r05', 'r22']],
  ['dns && "google.com" in dns_questions', ['r07', 'r09']],
  ['http && response_body_size > 10000', ['r01', 'r04']],
  ['grpc && grpc_status != 0', ['r05']],
  ['http && elapsed_time > 5000000', ['r01', 'r04']],
  ['timestamp > now() - duration("5m")', ['r01', 'r03', 'r04', 'r05', 'r07', 'r11', 'r13', 'r15', 'r16', 'r18', 'r19']],
  ['timestamp >= now()', ['r03', 'r04']],
  ['src.ip.startsWith("192.168.")', ['r01', 'r03', 'r22']],
  ['dst.port >= 8000 && dst.port <= 9000', ['r01', 'r03', 'r04', 'r22']],
  ['src.service.name == "api-gateway" && dst.service.name == "user-service"', ['r01', 'r22']],
  ['"production" in namespaces', ['r01', 'r03', 'r05', 'r22']],
  ['http && "authorization" in request.headers', ['r01', 'r03']],
  ['http && request.headers["content-type"] == "application/json"', ['r01']],
  ['dns && dns_response && status_code != 0', ['r08', 'r10']],
  ['redis && redis_key.startsWith("session:")', ['r11']],
  ['kafka && kafka_api_key_name == "PRODUCE" && kafka_request_summary.contains("orders")', ['r13']],
  ['tcp_flow && flow_local_bps > 5000000', ['r16']],
  ['postgresql && postgresql_query.contains("UNION SELECT")', ['r19']],
  ['tcp_flow', ['r16', 'r17', 'r22']],
  ['', IDS],
];

describe('acceptance filters of issue 5', () => {
  test.each(CASES)('%s', (filter, expected) => {
    const f = compile(filter, { now: NOW });
    expect(f.notes).toEqual([]);
    const compiled = IDS.filter((id) => f.matches(RECORDS[id]!));
    const interpreted = IDS.filter((id) => f.interpret(RECORDS[id]!));
    expect(compiled).toEqual(expected);
    expect(interpreted).toEqual(expected);
    // The normalized text is a fixed point and selects the same records.
    const again = compile(f.normalized, { now: NOW });
    expect(again.normalized).toBe(f.normalized);
    expect(IDS.filter((id) => again.matches(RECORDS[id]!))).toEqual(expected);
  });

  test('a header the entry lacks: no match; under "!" it is a counted runtime error, as in CEL', () => {
    // Where the comparison's result only flows through && and || to the root, an absent key is
    // simply false (CEL's error would give the same decision), without an exception per record.
    const f = compile('http && request.headers["content-type"] == "application/json"', { now: NOW });
    for (const id of IDS) f.matches(RECORDS[id]!);
    expect(f.stats).toEqual({ evaluated: IDS.length, errors: 0 });
    // Negated, the absent key must not turn into a match: r04 and r06 (http, no content-type) are errors.
    const n = compile('http && !(request.headers["content-type"] == "application/json")', { now: NOW });
    expect(IDS.filter((id) => n.matches(RECORDS[id]!))).toEqual(['r02', 'r03', 'r05']);
    expect(IDS.filter((id) => n.interpret(RECORDS[id]!))).toEqual(['r02', 'r03', 'r05']);
    expect(n.stats.errors).toBe(2);
    expect(n.stats.lastError).toMatch(/no such key: "content-type"/);
  });

  test('fields used are reported', () => {
    expect(compile('http && request.headers["content-type"] == "x" && src.ip.startsWith("1")').fields).toEqual(['http', 'request.headers', 'src.ip']);
  });
});
