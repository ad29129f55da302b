import { ALIASES, compile, field, FIELDS, FUNCTIONS, renderReference, type KflRecord } from '../src';

type Leaf = string | number | boolean | readonly unknown[] | Record<string, string>;
/** Every property required, all the way down (maps and lists are leaves). */
type DeepRequired<T> = { [K in keyof T]-?: NonNullable<T[K]> extends Leaf ? NonNullable<T[K]> : DeepRequired<NonNullable<T[K]>> };

const m = { k: 'v' };
const ep = { ip: '1', port: 1, pod: { name: 'p', namespace: 'n' }, service: { name: 's', namespace: 'n' }, name: 'x', namespace: 'n', node: { name: 'n' }, dns: 'd' };
/** A record with every field of `KflRecord` set; the compiler rejects a missing one. */
const FULL: DeepRequired<KflRecord> = {
  http: true, grpc: true, dns: true, redis: true, kafka: true, amqp: true, postgresql: true, mysql: true, mongodb: true, ws: true, tcp: true, udp: true, tls: true, flow: true, tcp_flow: true, udp_flow: true,
  src: ep, dst: ep, protocol: 'HTTP', namespaces: ['n'], pods: ['p'], services: ['s'], node_name: 'n', node_ip: '1',
  local_labels: m, remote_labels: m, local_annotations: m, remote_annotations: m, local_node_name: 'n', remote_node_name: 'n',
  id: 'a/1/0', flow_id: 'a/1', index: 0, worker: 'w', timestamp: 1, elapsed_time: 1, failure: 'f', error: 'timeout',
  method: 'GET', path: '/', url: '/', status_code: 200, status_text: 'OK', http_version: 'HTTP/1.1', query_string: m,
  request: { headers: m, body: 'b' }, response: { headers: m, body: 'b' },
  request_headers_size: 1, response_headers_size: 1, request_body_size: 1, response_body_size: 1,
  dns_questions: ['q'], dns_answers: ['a'], dns_question_types: ['A'], dns_request: true, dns_response: true, dns_request_length: 1, dns_response_length: 1,
  grpc_method: 'm', grpc_service: 's', grpc_status: 0,
  redis_type: 'GET', redis_command: 'GET k', redis_key: 'k',
  kafka_api_key: 0, kafka_api_key_name: 'PRODUCE', kafka_client_id: 'c', kafka_request_summary: 's', kafka_topics: ['t'],
  amqp_method: 'basic.publish', amqp_summary: 's', amqp_exchange: 'e', amqp_routing_key: 'r',
  postgresql_command: 'SELECT', postgresql_query: 'q', postgresql_database: 'd', postgresql_user: 'u', postgresql_success: true, postgresql_error_code: '42P01',
  mysql_command: 'COM_QUERY', mysql_query: 'q', mysql_database: 'd', mysql_success: true, mysql_error_code: 1,
  mongodb_command: 'find', mongodb_database: 'd', mongodb_collection: 'c', mongodb_success: true,
  ws_opcode: 'text',
  flow_state: 'open', flow_local_pkts: 1, flow_local_bytes: 1, flow_remote_pkts: 1, flow_remote_bytes: 1, flow_local_pps: 1, flow_local_bps: 1, flow_remote_pps: 1, flow_remote_bps: 1, flow_duration: 1,
  tcp_handshake_client_us: 1, tcp_handshake_server_us: 1, tcp_retransmissions: 1, tcp_rst_count: 1,
};

function leaves(o: Record<string, unknown>, prefix = ''): [string, unknown][] {
  const out: [string, unknown][] = [];
  for (const [k, v] of Object.entries(o)) {
    const path = prefix + k;
    const f = field(path);
    if (f || v === null || typeof v !== 'object' || Array.isArray(v)) out.push([path, v]);
    else out.push(...leaves(v as Record<string, unknown>, `${path}.`));
  }
  return out;
}

describe('the catalogue', () => {
  test('KflRecord and the catalogue have exactly the same paths, with matching value types', () => {
    const got = leaves(FULL as unknown as Record<string, unknown>);
    expect(got.map(([p]) => p).sort()).toEqual(FIELDS.map((f) => f.name).sort());
    for (const [p, v] of got) {
      const t = field(p)!.type;
      const kind = Array.isArray(v) ? 'list<string>' : typeof v === 'object' ? 'map<string, string>' : typeof v === 'boolean' ? 'bool' : typeof v === 'number' ? (t === 'timestamp' ? 'timestamp' : 'int') : 'string';
      expect(`${p}: ${kind}`).toBe(`${p}: ${t}`);
    }
  });

  test('names are unique, described, and safe as property names', () => {
    const names = FIELDS.map((f) => f.name);
    expect(new Set(names).size).toBe(names.length);
    for (const f of FIELDS) {
      expect(f.description.length).toBeGreaterThan(5);
      for (const seg of f.name.split('.')) {
        expect(seg).toMatch(/^[a-z_][a-z0-9_]*$/);
        expect(seg in Object.prototype).toBe(false);
      }
    }
    expect(FIELDS.length).toBeGreaterThanOrEqual(100);
  });

  test('every field compiles and reads its value from a full record', () => {
    for (const f of FIELDS) {
      const filter = f.type === 'bool' ? f.name : f.type.startsWith('list') || f.type.startsWith('map') ? `size(${f.name}) > 0` : f.type === 'timestamp' ? `${f.name} > timestamp(0)` : f.type === 'int' ? `${f.name} == ${f.name}` : `${f.name} != ""`;
      const c = compile(filter);
      expect([f.name, c.matches(FULL)]).toEqual([f.name, true]);
      expect([f.name, c.interpret(FULL)]).toEqual([f.name, true]);
    }
  });

  test('aliases point at catalogue fields', () => {
    for (const a of ALIASES) {
      expect(field(a.name)).toBeUndefined();
      expect(compile(`${a.replacement} == ${a.replacement}`).fields.length).toBe(1);
    }
  });

  test('the reference lists every field, function and alias, and its examples compile', () => {
    const ref = renderReference();
    for (const f of FIELDS) expect(ref).toContain(`| \`${f.name}\``);
    for (const fn of FUNCTIONS) expect(ref).toContain(fn.signature.replace(/\|/g, '\\|'));
    // Every table row has as many cells as its header (pipes inside cells are escaped).
    const cells = (l: string): number => l.replace(/\\\|/g, '').split('|').length;
    let header = 0;
    let rows = 0;
    let prev = '';
    for (const line of ref.split('\n')) {
      if (line.startsWith('|') && !prev.startsWith('|')) header = cells(line);
      else if (line.startsWith('|')) {
        expect([line, cells(line)]).toEqual([line, header]);
        rows++;
      }
      prev = line;
    }
    expect(rows).toBeGreaterThan(FIELDS.length + FUNCTIONS.length);
    for (const a of ALIASES) expect(ref).toContain(`\`${a.name}\``);
    const examples = ref.split('```')[1]!.trim().split('\n');
    expect(examples.length).toBeGreaterThan(5);
    for (const ex of examples) expect(() => compile(ex)).not.toThrow();
  });
});
