import { compile, composeFilter, generatedSource, KflError, namespaceRestriction, validatePolicy } from '../src';

/**
 * Filters arrive from AI assistants and users; compiled filters are JavaScript built with
 * `new Function`. No filter text may become code, reach the prototype chain or escape a
 * restriction.
 */
describe('code injection', () => {
  const HOSTILE = [
    '"); process.exit(1); ("',
    '" + globalThis.process.exit(1) + "',
    '`${process.exit(1)}`',
    '\\u0022); throw 1; //',
    '*/ process.exit(1) /*',
    '\u2028process.exit(1)\u2029',
    '</script>',
    '${1}',
  ];

  test.each(HOSTILE)('string literal %j is a constant, never code', (payload) => {
    const literal = JSON.stringify(payload);
    const filter = `path == ${literal} || path.contains(${literal}) || path.matches(${JSON.stringify(payload.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&'))})`;
    const f = compile(filter);
    const src = generatedSource(filter);
    expect(src).not.toContain('process');
    expect(src).not.toContain('script');
    expect(f.matches({ path: payload })).toBe(true);
    expect(f.matches({ path: 'other' })).toBe(false);
  });

  test('generated code holds only catalogue names, generated locals, numbers and operators', () => {
    const filter = 'http && request.headers["x-evil\\"];alert(1);//"] == "v" && dns_questions.exists(evil_var, evil_var == "a") && status_code == -1 && 1.5 < 2.0';
    const src = generatedSource(filter);
    expect(src).not.toMatch(/evil|alert/);
    // Every identifier in the generated code is ours.
    const idents = new Set(src.replace(/"[^"]*"/g, '').match(/[A-Za-z_$][A-Za-z0-9_$]*/g));
    const allowed = /^(use|strict|const|return|function|kflMatch|r|rt|st|K|k\d+|v\d+|true|false|null|now|http|request|headers|dns_questions|status_code|getKey|eqKey|exists|newBudget|and|EMPTY_LIST|EMPTY_MAP)$/;
    for (const id of idents) expect(id).toMatch(allowed);
  });

  test('identifiers that are not catalogue names never reach code: they are refused', () => {
    for (const f of ['constructor', '__proto__ == 1', 'this', 'process.exit(1)', 'globalThis', 'r.constructor', 'src.constructor == ""', 'request.headers.constructor == ""']) {
      try {
        const c = compile(f);
        // request.headers.constructor is a map key lookup: a missing key, not a property.
        expect(c.matches({ request: { headers: {} } })).toBe(false);
        expect(generatedSource(f)).not.toMatch(/\.constructor/);
      } catch (e) {
        expect(e).toBeInstanceOf(KflError);
      }
    }
  });

  test('map keys never read the prototype chain', () => {
    const r = { request: { headers: { a: '1' } } };
    expect(compile('"toString" in request.headers').matches(r)).toBe(false);
    expect(compile('has(request.headers.hasOwnProperty)').matches(r)).toBe(false);
    expect(compile('map_get(request.headers, "constructor", "none") == "none"').matches(r)).toBe(true);
    expect(compile('{"__proto__": "x"}["__proto__"] == "x"').matches(r)).toBe(true);
    expect(compile('size({"__proto__": "x"}) == 1').matches(r)).toBe(true);
  });
});

describe('composition cannot be escaped', () => {
  const policy = { restrictions: [namespaceRestriction(['team-a'])], global: '!(path == "/health")', macros: { https: 'tls && (http || grpc)' } };
  const inA = { http: true, tls: true, path: '/x', namespaces: ['team-a'] };
  const inB = { http: true, tls: true, path: '/x', namespaces: ['team-b'] };

  test('the policy is valid', () => {
    expect(() => validatePolicy(policy)).not.toThrow();
  });

  test.each(['true || x', 'true', 'true || true', '"a" == "a" || http', 'https || !https', 'true ) || ( true', ') || (true', 'true // ) || (true'])('user filter %j sees only the restricted namespace', (user) => {
    let c;
    try {
      c = composeFilter(user, policy);
    } catch (e) {
      // Unbalanced text is refused outright.
      expect(e).toBeInstanceOf(KflError);
      return;
    }
    expect(c.matches(inA)).toBe(true);
    expect(c.matches(inB)).toBe(false);
    // The joined text sent to workers is just as tight.
    const text = compile(c.text);
    expect(text.matches(inA)).toBe(true);
    expect(text.matches(inB)).toBe(false);
  });

  test('the joined text is the parenthesized conjunction, macros expanded', () => {
    const c = composeFilter('https && method == "GET"', policy);
    expect(c.text).toBe('(namespaces.exists(ns, ns in ["team-a"])) && (!(path == "/health")) && (tls && (http || grpc) && method == "GET")');
    expect(c.matches({ ...inA, method: 'GET' })).toBe(true);
    expect(c.matches({ ...inA, method: 'GET', path: '/health' })).toBe(false);
    expect(c.matches({ ...inA, method: 'GET', tls: false })).toBe(false);
    expect(composeFilter('', {}).text).toBe('');
    expect(composeFilter('', {}).matches({})).toBe(true);
  });

  test('namespace names are validated, and bad policies are refused when configured', () => {
    expect(() => namespaceRestriction(['a"] || true || ["'])).toThrow(KflError);
    expect(namespaceRestriction([])).toBe('false');
    expect(() => validatePolicy({ macros: { http: 'dns' } })).toThrow(/already a field/);
    expect(() => validatePolicy({ macros: { 'bad name': 'dns' } })).toThrow(/not an identifier/);
    expect(() => validatePolicy({ macros: { m: 'staus_code == 1' } })).toThrow(/macro "m": unknown field "staus_code" at 1:1; did you mean "status_code"\?/);
    expect(() => validatePolicy({ restrictions: ['namespaces =='] })).toThrow(/restriction 1: unexpected end/);
  });
});
