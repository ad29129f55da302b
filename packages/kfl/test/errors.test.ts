import { compile, KflError, LIMITS, normalize } from '../src';

function refusal(filter: string, opts: Parameters<typeof compile>[1] = {}): KflError {
  try {
    compile(filter, opts);
  } catch (e) {
    if (e instanceof KflError) return e;
    throw new Error(`expected a KflError, got ${String(e)}`);
  }
  throw new Error(`expected "${filter}" to be refused`);
}

describe('errors that teach', () => {
  test('unknown field: position and the closest name, aliases mapped to their KFL2 name', () => {
    const e = refusal('http && respone.status == 500');
    expect(e.message).toBe('unknown field "respone.status" at 1:9; did you mean "status_code"?');
    expect([e.code, e.line, e.column, e.suggestion]).toEqual(['unknown-field', 1, 9, 'status_code']);
    expect(refusal('staus_code == 200').suggestion).toBe('status_code');
    expect(refusal('src.pod.nam == "x"').suggestion).toBe('src.pod.name');
    expect(refusal('dns_question.exists(q, q == "a")').suggestion).toBe('dns_questions');
    expect(refusal('kafka_api_key_nam == "PRODUCE"').suggestion).toBe('kafka_api_key_name');
    expect(refusal('totally_unrelated_thing == 1').suggestion).toBeUndefined();
    expect(JSON.parse(JSON.stringify(refusal('http && respone.status == 500')))).toEqual({
      code: 'unknown-field',
      message: 'unknown field "respone.status" at 1:9; did you mean "status_code"?',
      line: 1,
      column: 9,
      suggestion: 'status_code',
    });
    expect(refusal('http && respone.status == 500').detail).toBe('unknown field "respone.status"');
  });

  test('positions count lines and columns', () => {
    const e = refusal('http &&\n  method == "GET" &&\n    sttus_code >= 400');
    expect([e.line, e.column]).toEqual([3, 5]);
    const s = refusal('http && (method == "GET"');
    expect(s.code).toBe('syntax');
    expect(s.message).toMatch(/expected "\)" to close "\(", found the end of the filter at 1:25/);
  });

  test('type errors name both types and hint at the fix', () => {
    const e = refusal('status_code == "200"');
    expect(e.code).toBe('type');
    expect(e.message).toBe('cannot compare int and string (status_code is int, "200" is string); write 200 without quotes at 1:13');
    expect(refusal('method == 1').message).toMatch(/cannot compare string and int .*write "1" in quotes/);
    expect(refusal('http && elapsed_time > duration("5s")').message).toMatch(/durations are not numbers/);
    expect(refusal('timestamp > 1773525600').message).toMatch(/cannot order timestamp and int .*timestamp\(<Unix seconds>\)/);
    expect(refusal('method').message).toMatch(/a filter must be a bool expression, but this one is string at 1:1/);
    expect(refusal('method && http').message).toMatch(/"&&" needs bool operands, but method is string at 1:1/);
    expect(refusal('"a" in method').message).toMatch(/for substrings use method.contains/);
    expect(refusal('status_code + 1.5 > 2').message).toMatch(/convert one side with int\(\) or double\(\)/);
    expect(refusal('size(status_code) > 1').code).toBe('type');
    expect(refusal('map_get(request.headers, "a", 1) == 1').message).toMatch(/default of map_get\(\) must be string/);
    expect(refusal('src == "x"').message).toMatch(/"src" is a group of fields/);
    expect(refusal('dns_questions == "google.com"').message).toMatch(/to test membership write "google.com" in dns_questions/);
    expect(refusal('dns_questions.contains("google")').message).toMatch(/dns_questions is list<string>: test membership with x in dns_questions, or dns_questions.exists/);
    expect(refusal('namespace == "prod"').suggestion).toBe('namespaces');
  });

  test('CEL is forgiving where CEL is: int, uint and double compare with each other', () => {
    expect(compile('status_code == 404.0').matches({ status_code: 404 })).toBe(true);
    expect(compile('status_code > 399.5').matches({ status_code: 400 })).toBe(true);
    expect(compile('status_code == 404u').matches({ status_code: 404 })).toBe(true);
    expect(compile('[1, 2].exists(x, x == 2.0)').matches({})).toBe(true);
  });

  test('unknown functions are suggested; lower/upper point at (?i)', () => {
    const e = refusal('path.startswith("/api")');
    expect([e.code, e.suggestion]).toEqual(['unknown-function', 'startsWith']);
    expect(refusal('path.contain("a")').suggestion).toBe('contains');
    expect(refusal('lower(method) == "get"').message).toMatch(/no lower\(\).*matches\("\(\?i\)/);
  });

  test('syntax errors say what was expected', () => {
    expect(refusal('status_code = 200').message).toMatch(/use "==" to compare at 1:13/);
    expect(refusal('http & dns').message).toMatch(/use "&&"/);
    expect(refusal('http &&').message).toMatch(/unexpected end of filter at 1:8/);
    expect(refusal('"abc').message).toMatch(/unterminated string at 1:1/);
    expect(refusal('"a\\qb" == path').message).toMatch(/unknown escape \\q at 1:3/);
    expect(refusal('12abc == 1').message).toMatch(/malformed number/);
    expect(refusal('9007199254740993 > 0').message).toMatch(/exact up to 2\^53/);
    expect(refusal('path.contains("a",)').code).toBe('syntax');
    expect(refusal('!-http').code).toBe('syntax');
    expect(refusal('timestamp > timestamp("yesterday")').message).toMatch(/invalid timestamp "yesterday" .* at 1:23/);
    expect(refusal('timestamp > now() - duration("5 minutes")').code).toBe('literal');
    expect(refusal('timestamp > now() - duration("5")').message).toMatch(/missing unit/);
    expect(refusal('timestamp > timestamp("2026-02-30T00:00:00Z")').message).toMatch(/no such date/);
  });

  test('regexes: RE2 syntax only; backreferences, lookaround and exponential nesting are refused', () => {
    expect(refusal('path.matches("(a)\\\\1")').message).toMatch(/backreferences \(\\1\) are not RE2 syntax at 1:14/);
    expect(refusal('path.matches("foo(?=bar)")').message).toMatch(/lookahead and lookbehind/);
    expect(refusal('path.matches("(?<!x)y")').code).toBe('regex');
    expect(refusal('path.matches("(?P=n)")').message).toMatch(/backreferences/);
    expect(refusal('path.matches("(a+)+$")').message).toMatch(/nested unbounded repetition/);
    expect(refusal('path.matches("((ab)*c)*")').code).toBe('regex');
    expect(refusal('path.matches("a{1001}")').message).toMatch(/above 1000/);
    expect(refusal('path.matches("[")').code).toBe('regex');
    expect(refusal('path.matches("(?U)a+")').message).toMatch(/ungreedy/);
    // RE2 forms that JavaScript spells differently are translated.
    expect(compile('path.matches("^(?P<v>v[0-9]+)/")').matches({ path: 'v2/users' })).toBe(true);
    expect(compile('path.matches("(?i)^/API/")').matches({ path: '/api/x' })).toBe(true);
    expect(compile('path.matches("[[:digit:]]{3}")').matches({ path: '/a/123' })).toBe(true);
    expect(compile('path.matches("\\\\A/x\\\\z")').matches({ path: '/x' })).toBe(true);
    expect(compile('path.matches("\\\\Qa.b\\\\E")').matches({ path: 'axb' })).toBe(false);
    expect(compile('path.matches("\\\\Qa.b\\\\E")').matches({ path: 'a.b' })).toBe(true);
    expect(compile('path.matches("\\\\pL+")').matches({ path: 'ж' })).toBe(true);
    expect(compile('path.matches("\\\\Q/a-b\\\\E\\\\pL")').matches({ path: '/a-bж' })).toBe(true);
    expect(compile('path.matches("(\\\\d{1,3}\\\\.){3}\\\\d{1,3}")').matches({ path: '10.0.0.1' })).toBe(true);
  });
});

describe('legacy aliases', () => {
  test('accepted, noted, normalized to the KFL2 name', () => {
    const f = compile('response.status == 503 && request.path.startsWith("/api") && src.ns == "a" && dst.ns == "b"');
    expect(f.normalized).toBe('status_code == 503 && path.startsWith("/api") && src.namespace == "a" && dst.namespace == "b"');
    expect(f.notes).toEqual([
      '"response.status" is the legacy name of "status_code"',
      '"request.path" is the legacy name of "path"',
      '"src.ns" is the legacy name of "src.namespace"',
      '"dst.ns" is the legacy name of "dst.namespace"',
    ]);
    expect(f.matches({ status_code: 503, path: '/api/v1', src: { namespace: 'a' }, dst: { namespace: 'b' } })).toBe(true);
    expect(f.matches({ status_code: 503, path: '/api/v1', src: { namespace: 'a' }, dst: { namespace: 'c' } })).toBe(false);
  });

  test('has() of a legacy name tests the KFL2 field', () => {
    const f = compile('has(response.status)');
    expect(f.normalized).toBe('has(status_code)');
    expect(f.matches({ status_code: 0 })).toBe(true);
    expect(f.matches({})).toBe(false);
  });

  test('response.latency is milliseconds, elapsed_time microseconds', () => {
    const f = compile('response.latency > 500');
    expect(f.normalized).toBe('double(elapsed_time) / 1000.0 > 500');
    expect(f.notes[0]).toMatch(/milliseconds.*microseconds/);
    expect(f.matches({ elapsed_time: 500_001 })).toBe(true);
    expect(f.matches({ elapsed_time: 500_000 })).toBe(false);
  });

  test('header names are lower-case: a constant key written otherwise is lower-cased, with a note', () => {
    const f = compile('request.headers["Content-Type"] == "application/json" && "Authorization" in request.headers && map_get(response.headers, "Server", "") == "nginx"');
    expect(f.normalized).toBe('request.headers["content-type"] == "application/json" && "authorization" in request.headers && map_get(response.headers, "server", "") == "nginx"');
    expect(f.notes).toEqual([
      'header names are lower-case: "Content-Type" was read as "content-type"',
      'header names are lower-case: "Authorization" was read as "authorization"',
      'header names are lower-case: "Server" was read as "server"',
    ]);
    expect(f.matches({ request: { headers: { 'content-type': 'application/json', authorization: 'x' } }, response: { headers: { server: 'nginx' } } })).toBe(true);
    // Other maps keep their keys as written.
    expect(compile('"App" in local_labels').normalized).toBe('"App" in local_labels');
  });

  test('a comprehension variable shadows an alias or field of the same name', () => {
    expect(compile('["a"].exists(src, src == "a")').matches({})).toBe(true);
  });
});

describe('limits', () => {
  test('length, depth, nodes', () => {
    expect(refusal(`path == "${'x'.repeat(LIMITS.maxLength)}"`).message).toMatch(/characters long; the limit is 4096/);
    expect(refusal(`${'('.repeat(200)}http${')'.repeat(200)}`).message).toMatch(/nests deeper than 64 levels/);
    expect(refusal(`${'!'.repeat(100)}http`).code).toBe('limit');
    expect(refusal(`${'1+'.repeat(1100)}1 > 0`).message).toMatch(/more than 1000 nodes/);
    expect(refusal(`[${Array.from({ length: 1200 }, () => '1').join(',')}].size() > 0`).code).toBe('limit');
  });

  test('macro iterations are bounded per record: over the budget the record does not match, and it is counted', () => {
    const big = Array.from({ length: 200 }, (_, i) => `n${i}`);
    const f = compile('dns_questions.exists(a, dns_questions.exists(b, a == b && a == "zzz"))');
    expect(f.matches({ dns_questions: big.slice(0, 50) })).toBe(false);
    expect(f.stats.errors).toBe(0);
    expect(f.matches({ dns_questions: big })).toBe(false); // 200 x 200 > 10,000
    expect(f.stats.errors).toBe(1);
    expect(f.stats.lastError).toMatch(/more than 10000 macro iterations/);
    expect(f.interpret({ dns_questions: big })).toBe(false);
    // The spent budget is not absorbed by "||".
    expect(compile('dns_questions.exists(a, dns_questions.exists(b, false)) || true').matches({ dns_questions: big })).toBe(false);
  });

  test('values built by "+" are bounded: doubling a string per macro step stops at the limit', () => {
    const doubling = `[path]${'.map(a, a + a)'.repeat(24)}.exists(z, z.contains("q"))`;
    const f = compile(doubling);
    expect(f.matches({ path: '/api/users' })).toBe(false); // 10 x 2^24 characters > 1 MiB
    expect(f.stats.lastError).toMatch(/larger than 1048576/);
    expect(f.interpret({ path: '/api/users' })).toBe(false);
    expect(compile(`[path]${'.map(a, a + a)'.repeat(4)}.exists(z, z.contains("q"))`).matches({ path: 'q' })).toBe(true);
    expect(compile(`[1]${'.map(a, [a, a]).filter(l, true).map(l, l + l)'.repeat(1)}.size() == 1`).matches({})).toBe(true);
  });

  test('macros expanded count against the node limit, and a macro may not refer to itself', () => {
    const macros = { a: 'b || b', b: 'c || c', c: 'd || d', d: 'e || e', e: 'f || f', f: 'g || g', g: 'h || h', h: 'i || i', i: 'j || j', j: 'http || dns' };
    expect(refusal('a', { macros }).code).toBe('limit');
    expect(refusal('selfref', { macros: { selfref: 'http && selfref' } }).message).toMatch(/macro "selfref" refers to itself \(selfref -> selfref\)/);
  });
});

describe('malformed filters never throw anything but KflError', () => {
  // A seeded generator of hostile text: fragments of real filters, operators and junk, shuffled.
  const FRAGMENTS = ['http', '&&', '||', '(', ')', '[', ']', '{', '}', '"', "'", '"""', 'r"', 'b"', '\\', '.', ',', ':', '?', '!', '-', '+', '*', '/', '%', '==', '<=', 'in', '1', '0x', '1.5e', '9999999999999999999', 'u', 'status_code', 'request.headers', '["a"]', '.exists(', 'x,', 'has(', 'matches("', '(a+)+', 'size(', 'map_get(', 'timestamp("', 'duration("', 'now()', '\n', '//', '\u2028', '\u0000', '__proto__', 'constructor', 'null', 'true', 'int(', 'string('];
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  test('5,000 random fragment soups', () => {
    let accepted = 0;
    for (let i = 0; i < 5000; i++) {
      const parts: string[] = [];
      const len = 1 + rnd(12);
      for (let j = 0; j < len; j++) parts.push(FRAGMENTS[rnd(FRAGMENTS.length)]!, rnd(3) === 0 ? ' ' : '');
      const text = parts.join('');
      try {
        const f = compile(text);
        accepted++;
        expect(typeof f.matches({ http: true, status_code: 1 })).toBe('boolean');
        expect(normalize(f.normalized)).toBe(f.normalized);
      } catch (e) {
        if (!(e instanceof KflError)) throw new Error(`${JSON.stringify(text)} threw ${String(e)}`);
        expect(e.message.length).toBeGreaterThan(0);
      }
    }
    expect(accepted).toBeGreaterThan(0);
  });
});
