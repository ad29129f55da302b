import { bodyText, compile, headerMap, queryMap } from '../src';

test('headerMap lower-cases names and joins repeats in order', () => {
  const m = headerMap([
    ['Content-Type', 'application/json'],
    ['Accept', 'a'],
    ['accept', 'b'],
    ['__proto__', 'x'],
  ]);
  expect({ ...m }).toEqual({ 'content-type': 'application/json', accept: 'a, b', ['__proto__']: 'x' });
  expect(compile('request.headers["accept"] == "a, b" && "__proto__" in request.headers').matches({ request: { headers: m } })).toBe(true);
});

test('queryMap decodes parameters; the first of a repeated name wins', () => {
  expect({ ...queryMap('/api/users?id=7&name=J%C3%B6rg+M&id=8&flag#frag') }).toEqual({ id: '7', name: 'Jörg M', flag: '' });
  expect({ ...queryMap('/plain') }).toEqual({});
  expect({ ...queryMap('/x?bad=%E0%A4%A') }).toEqual({ bad: '%E0%A4%A' });
});

test('bodyText: text bodies, bounded; binary bodies are empty', () => {
  expect(bodyText(new TextEncoder().encode('{"id":"ORD-1"}'))).toBe('{"id":"ORD-1"}');
  expect(bodyText(null)).toBe('');
  expect(bodyText(new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x00, 0x01]))).toBe('');
  expect(bodyText(new TextEncoder().encode('x'.repeat(100)), 10)).toBe('x'.repeat(10));
  // A character cut at the byte bound is not mistaken for binary.
  expect(bodyText(new TextEncoder().encode('ééééé'), 2)).toBe('éé');
  expect(bodyText(new TextEncoder().encode('€€€'), 1)).toBe('€');
});
