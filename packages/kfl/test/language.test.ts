import { compile, normalize, parse, print, type KflRecord } from '../src';

const NOW = Date.UTC(2026, 2, 14, 22, 0, 0) * 1000;

/** Evaluates a filter both ways and insists they agree. */
function run(filter: string, rec: KflRecord = {}): boolean {
  const f = compile(filter, { now: NOW });
  const a = f.matches(rec);
  expect(f.interpret(rec)).toBe(a);
  return a;
}

describe('literals', () => {
  test.each([
    ['"a\\tb" == "a\tb"', true],
    ["'single' == \"single\"", true],
    ['"""multi\nline""" == "multi\\nline"', true],
    ["'''it's''' == \"it's\"", true],
    ['r"\\d+" == "\\\\d+"', true],
    ['R"a\\"b" == "a\\\\\\"b"', true],
    ['"\\x41\\u00e9\\U0001F600\\101" == "Aé😀A"', true],
    ['"\\\\ \\" \\\' \\` \\?" == "\\\\ \\" \' ` ?"', true],
    ['0x1F == 31', true],
    ['31u == 31u', true],
    ['1.5e3 == 1500.0', true],
    ['.5 == 0.5', true],
    ['-7 / 2 == -3', true],
    ['-7 % 2 == -1', true],
    ['7.0 / 2.0 == 3.5', true],
    ['null == null', true],
    ['b"ab" == b"\\x61\\x62"', true],
    ['size(b"\\xff\\x00") == 2', true],
    ['size("😀é") == 2', true],
    ['[1, 2, 3][1] == 2', true],
    ['{"a": 1, "b": 2}["b"] == 2', true],
    ['{"a": 1}.a == 1', true],
    ['[1, 2] + [3] == [1, 2, 3]', true],
    ['"ab" + "c" == "abc"', true],
    ['// a comment\n true', true],
    ['true ? false : true', false],
    ['false ? 1 == 1 : 2 == 3', false],
    ['!!true', true],
  ])('%s', (filter, want) => {
    expect(run(filter)).toBe(want);
  });

  test('precedence: && binds tighter than ||, comparisons than &&, * than +', () => {
    expect(print(parse('a || b && c'))).toBe('a || b && c');
    expect(print(parse('(a || b) && c'))).toBe('(a || b) && c');
    expect(run('1 + 2 * 3 == 7')).toBe(true);
    expect(run('(1 + 2) * 3 == 9')).toBe(true);
    expect(run('true || false && false')).toBe(true);
    expect(run('10 - 2 - 3 == 5')).toBe(true);
    expect(run('false ? true : false ? false : true')).toBe(true);
  });

  test('printing is canonical and reparses to the same tree', () => {
    const cases = ['http&&(method=="GET"||method=="HEAD")', '-(-5) == 5', '- -5 == 5', '!(-x == 1)', 'a ? (b ? c : d) : e', '(a ? b : c) ? d : e', 'x.y[0].z(1, "a")', '{"k": [1, 2.5, -3]}', 'b"\\x00a" == b""', '1e300 > 2.0', '(1 + 2).foo()'];
    for (const c of cases) {
      const once = print(parse(c));
      expect(print(parse(once))).toBe(once);
      expect(withoutPositions(parse(once))).toEqual(withoutPositions(parse(c)));
    }
    expect(normalize('  http &&\n\t( method  == \'GET\' )  ')).toBe('http && method == "GET"');
    expect(normalize('// only a comment')).toBe('');
  });
});

/** A tree as JSON without positions, to compare the shape of trees parsed from different text. */
function withoutPositions(n: unknown): unknown {
  return JSON.parse(JSON.stringify(n, (k, v: unknown) => (k === 'pos' ? undefined : v instanceof Uint8Array ? [...v] : v)));
}

describe('record semantics', () => {
  test('a missing field reads as its zero value', () => {
    expect(run('method == ""')).toBe(true);
    expect(run('status_code == 0')).toBe(true);
    expect(run('!http')).toBe(true);
    expect(run('size(dns_questions) == 0')).toBe(true);
    expect(run('size(request.headers) == 0')).toBe(true);
    expect(run('src.pod.name == ""', { src: {} })).toBe(true);
    expect(run('timestamp == timestamp("1970-01-01T00:00:00Z")')).toBe(true);
  });

  test('has() tells set from zero', () => {
    expect(run('has(status_code)', { status_code: 0 })).toBe(true);
    expect(run('has(status_code)')).toBe(false);
    expect(run('has(src.pod.name)', { src: { pod: { name: 'x' } } })).toBe(true);
    expect(run('has(request.headers.host)', { request: { headers: { host: 'a' } } })).toBe(true);
    expect(run('has(request.headers.host)', { request: { headers: {} } })).toBe(false);
  });

  test('string functions', () => {
    const r: KflRecord = { path: '/api/users/42', method: 'GET' };
    expect(run('path.contains("users")', r)).toBe(true);
    expect(run('path.startsWith("/api") && path.endsWith("42")', r)).toBe(true);
    expect(run('path.endsWith("")', r)).toBe(true);
    expect(run('path.matches("/users/[0-9]+$")', r)).toBe(true);
    expect(run('matches(path, "^/api")', r)).toBe(true);
    expect(run('path.matches(method)', r)).toBe(false);
    expect(run('size(path) == 13 && path.size() == 13', r)).toBe(true);
  });

  test('map_get, in, indexing', () => {
    const r: KflRecord = { local_labels: { app: 'checkout' }, request: { headers: { 'x-id': '1' } }, namespaces: ['a', 'b'] };
    expect(run('map_get(local_labels, "app", "") == "checkout"', r)).toBe(true);
    expect(run('map_get(local_labels, "tier", "none") == "none"', r)).toBe(true);
    expect(run('"b" in namespaces && !("c" in namespaces)', r)).toBe(true);
    expect(run('namespaces[1] == "b"', r)).toBe(true);
    expect(run('request.headers["x-id"] == "1"', r)).toBe(true);
    expect(run('"__proto__" in request.headers || "constructor" in local_labels', r)).toBe(false);
    expect(run('map_get(request.headers, "__proto__", "none") == "none"', r)).toBe(true);
  });

  test('macros', () => {
    const r: KflRecord = { dns_questions: ['a.com', 'b.org', 'c.com'], local_labels: { app: 'x', tier: 'web' } };
    expect(run('dns_questions.exists(q, q.endsWith(".org"))', r)).toBe(true);
    expect(run('dns_questions.all(q, q.contains("."))', r)).toBe(true);
    expect(run('dns_questions.exists_one(q, q.endsWith(".com"))', r)).toBe(false);
    expect(run('dns_questions.filter(q, q.endsWith(".com")) == ["a.com", "c.com"]', r)).toBe(true);
    expect(run('dns_questions.map(q, size(q)) == [5, 5, 5]', r)).toBe(true);
    expect(run('dns_questions.map(q, q.endsWith(".com"), q + "!") == ["a.com!", "c.com!"]', r)).toBe(true);
    expect(run('local_labels.exists(k, k == "tier")', r)).toBe(true);
    expect(run('[].exists(x, x == 1)')).toBe(false);
    expect(run('[1, 2].all(x, [3, 4].exists(y, y > x))')).toBe(true);
  });

  test('time: timestamps and durations', () => {
    const r: KflRecord = { timestamp: NOW - 90 * 1e6 };
    expect(run('timestamp > now() - duration("2m")', r)).toBe(true);
    expect(run('timestamp > now() - duration("1m30s")', r)).toBe(false);
    expect(run('now() - timestamp == duration("90s")', r)).toBe(true);
    expect(run('timestamp("2026-03-14T23:00:00+01:00") == now()')).toBe(true);
    expect(run('timestamp("2026-03-14T22:00:00.5Z") - now() == duration("500ms")')).toBe(true);
    expect(run('duration("1h") == duration("60m") && duration("1.5s") == duration("1500ms")')).toBe(true);
    expect(run('duration("-1m") < duration("0") && duration("1us") > duration("999ns")')).toBe(true);
    expect(run('string(now()) == "2026-03-14T22:00:00Z"')).toBe(true);
    expect(run('string(duration("1m30s")) == "90s"')).toBe(true);
    expect(run('int(now()) == 1773525600')).toBe(true);
    expect(run('timestamp(1773525600) == now()')).toBe(true);
  });

  test('conversions', () => {
    expect(run('int("42") == 42 && int(3.9) == 3 && int(-3.9) == -3')).toBe(true);
    expect(run('double("2.5") == 2.5 && double(2) == 2.0')).toBe(true);
    expect(run('string(404) == "404" && string(true) == "true" && string(2.5) == "2.5"')).toBe(true);
    expect(run('string(status_code).startsWith("5")', { status_code: 503 })).toBe(true);
    expect(run('uint(5) == 5u')).toBe(true);
  });

  test('runtime errors: the record does not match, unless the other side of && or || decides (as in CEL)', () => {
    const f = compile('1 / status_code == 0');
    expect(f.matches({ status_code: 0 })).toBe(false);
    expect(f.stats.errors).toBe(1);
    expect(run('1 / status_code == 0 || true')).toBe(true);
    expect(run('true || 1 / status_code == 0')).toBe(true);
    expect(run('1 / status_code == 0 && false')).toBe(false);
    expect(run('false && 1 / status_code == 0')).toBe(false);
    expect(run('1 / status_code == 0 && true')).toBe(false);
    expect(run('!(1 / status_code == 0)')).toBe(false);
    expect(run('[0, 1].exists(x, 1 / x == 1)')).toBe(true);
    expect(run('[0, 1].all(x, 1 / x == 5)')).toBe(false);
    expect(run('[0].all(x, 1 / x == 5)')).toBe(false);
    expect(run('int("abc") == 1 || int("x") == 2')).toBe(false);
    expect(run('9007199254740991 + 1 > 0')).toBe(false);
    expect(run('path.matches(method)', { path: 'a', method: '(a' })).toBe(false);
    expect(run('path.matches(method)', { path: 'aab', method: 'a+b' })).toBe(true);
    expect(run('namespaces[3] == ""')).toBe(false);
    expect(run('{"a": 1, "a": 2}["a"] == 1')).toBe(false);
  });
});
