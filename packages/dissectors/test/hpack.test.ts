import { HPACK_STATIC_TABLE, HpackDecoder, HpackError, type HpackErrorCode } from '../src/hpack';
import { HUFFMAN_CODE_LENGTHS, HUFFMAN_CODES, HUFFMAN_EOS, huffmanDecode } from '../src/hpack-huffman';

/**
 * The HPACK decoder against the examples of RFC 7541 Appendix C (header lists and dynamic
 * tables as the RFC prints them), the Huffman code against codes quoted from Appendix B, and
 * every error the decoder must report.
 */

const hex = (s: string): Uint8Array => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** The RFC prints tables newest first, with each entry's size. */
function table(d: HpackDecoder): { entries: [string, string][]; size: number } {
  const t = d.table();
  return { entries: t.entries, size: t.size };
}

function errorOf(f: () => unknown): HpackErrorCode | 'none' {
  try {
    f();
    return 'none';
  } catch (e) {
    if (e instanceof HpackError) return e.code;
    throw e;
  }
}

describe('RFC 7541 C.2: header field representations', () => {
  test('C.2.1 literal with indexing', () => {
    const d = new HpackDecoder();
    expect(d.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572')).headers).toEqual([['custom-key', 'custom-header']]);
    expect(table(d)).toEqual({ entries: [['custom-key', 'custom-header']], size: 55 });
  });

  test('C.2.2 literal without indexing', () => {
    const d = new HpackDecoder();
    expect(d.decode(hex('040c 2f73 616d 706c 652f 7061 7468')).headers).toEqual([[':path', '/sample/path']]);
    expect(table(d)).toEqual({ entries: [], size: 0 });
  });

  test('C.2.3 literal never indexed', () => {
    const d = new HpackDecoder();
    expect(d.decode(hex('1008 7061 7373 776f 7264 0673 6563 7265 74')).headers).toEqual([['password', 'secret']]);
    expect(table(d)).toEqual({ entries: [], size: 0 });
  });

  test('C.2.4 indexed', () => {
    const d = new HpackDecoder();
    expect(d.decode(hex('82')).headers).toEqual([[':method', 'GET']]);
    expect(table(d)).toEqual({ entries: [], size: 0 });
  });
});

const REQUESTS = {
  plain: ['8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d', '8286 84be 5808 6e6f 2d63 6163 6865', '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65'],
  huffman: ['8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff', '8286 84be 5886 a8eb 1064 9cbf', '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf'],
};

describe.each([
  ['C.3 requests without Huffman', REQUESTS.plain],
  ['C.4 requests with Huffman', REQUESTS.huffman],
])('RFC 7541 %s', (_name, blocks) => {
  test('three requests on one connection: lists and tables', () => {
    const d = new HpackDecoder();
    expect(d.decode(hex(blocks[0]!)).headers).toEqual([
      [':method', 'GET'],
      [':scheme', 'http'],
      [':path', '/'],
      [':authority', 'www.example.com'],
    ]);
    expect(table(d)).toEqual({ entries: [[':authority', 'www.example.com']], size: 57 });
    expect(d.decode(hex(blocks[1]!)).headers).toEqual([
      [':method', 'GET'],
      [':scheme', 'http'],
      [':path', '/'],
      [':authority', 'www.example.com'],
      ['cache-control', 'no-cache'],
    ]);
    expect(table(d)).toEqual({
      entries: [
        ['cache-control', 'no-cache'],
        [':authority', 'www.example.com'],
      ],
      size: 110,
    });
    expect(d.decode(hex(blocks[2]!)).headers).toEqual([
      [':method', 'GET'],
      [':scheme', 'https'],
      [':path', '/index.html'],
      [':authority', 'www.example.com'],
      ['custom-key', 'custom-value'],
    ]);
    expect(table(d)).toEqual({
      entries: [
        ['custom-key', 'custom-value'],
        ['cache-control', 'no-cache'],
        [':authority', 'www.example.com'],
      ],
      size: 164,
    });
  });
});

const RESPONSES = {
  plain: [
    '4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
    '4803 3330 37c1 c0bf',
    '88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31',
  ],
  huffman: [
    '4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3',
    '4883 640e ffc1 c0bf',
    '88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07',
  ],
};
const DATE1 = 'Mon, 21 Oct 2013 20:13:21 GMT';
const DATE2 = 'Mon, 21 Oct 2013 20:13:22 GMT';
const LOCATION = 'https://www.example.com';
const COOKIE = 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1';

describe.each([
  ['C.5 responses without Huffman', RESPONSES.plain],
  ['C.6 responses with Huffman', RESPONSES.huffman],
])('RFC 7541 %s', (_name, blocks) => {
  test('three responses with a 256-octet table: evictions', () => {
    const d = new HpackDecoder({ maxTableSize: 256 });
    expect(d.decode(hex(blocks[0]!)).headers).toEqual([
      [':status', '302'],
      ['cache-control', 'private'],
      ['date', DATE1],
      ['location', LOCATION],
    ]);
    expect(table(d)).toEqual({
      entries: [
        ['location', LOCATION],
        ['date', DATE1],
        ['cache-control', 'private'],
        [':status', '302'],
      ],
      size: 222,
    });
    expect(d.decode(hex(blocks[1]!)).headers).toEqual([
      [':status', '307'],
      ['cache-control', 'private'],
      ['date', DATE1],
      ['location', LOCATION],
    ]);
    expect(table(d)).toEqual({
      entries: [
        [':status', '307'],
        ['location', LOCATION],
        ['date', DATE1],
        ['cache-control', 'private'],
      ],
      size: 222,
    });
    expect(d.decode(hex(blocks[2]!)).headers).toEqual([
      [':status', '200'],
      ['cache-control', 'private'],
      ['date', DATE2],
      ['location', LOCATION],
      ['content-encoding', 'gzip'],
      ['set-cookie', COOKIE],
    ]);
    expect(table(d)).toEqual({
      entries: [
        ['set-cookie', COOKIE],
        ['content-encoding', 'gzip'],
        ['date', DATE2],
      ],
      size: 215,
    });
  });
});

describe('Huffman code (RFC 7541 Appendix B)', () => {
  test('the derived canonical codes are the RFC table`s', () => {
    // sym: [code as hex, len], quoted from Appendix B.
    const quoted: Record<number, [number, number]> = {
      0: [0x1ff8, 13],
      1: [0x7fffd8, 23],
      9: [0xffffea, 24],
      10: [0x3ffffffc, 30],
      13: [0x3ffffffd, 30],
      22: [0x3ffffffe, 30],
      32: [0x14, 6],
      48: [0x0, 5],
      58: [0x5c, 7],
      65: [0x21, 6],
      88: [0xfc, 8],
      92: [0x7fff0, 19],
      116: [0x9, 5],
      127: [0xffffffc, 28],
      128: [0xfffe6, 20],
      192: [0x3ffffe0, 26],
      203: [0x7ffffde, 27],
      220: [0xffffffd, 28],
      249: [0xffffffe, 28],
      255: [0x3ffffee, 26],
      256: [0x3fffffff, 30],
    };
    for (const [sym, [code, len]] of Object.entries(quoted)) expect([Number(sym), HUFFMAN_CODES[Number(sym)], HUFFMAN_CODE_LENGTHS[Number(sym)]]).toEqual([Number(sym), code, len]);
    expect(HUFFMAN_CODE_LENGTHS).toHaveLength(257);
    // A complete prefix code: the Kraft sum is exactly 1.
    expect(HUFFMAN_CODE_LENGTHS.reduce((s, l) => s + 2 ** (30 - l), 0)).toBe(2 ** 30);
  });

  test('every byte value decodes back from its code; padding and EOS are checked', () => {
    // Encode all 256 byte values (with EOS-prefix padding) and decode.
    let bits = '';
    for (let b = 0; b < 256; b++) bits += HUFFMAN_CODES[b]!.toString(2).padStart(HUFFMAN_CODE_LENGTHS[b]!, '0');
    bits += '1'.repeat((8 - (bits.length % 8)) % 8);
    const bytes = Uint8Array.from(bits.match(/.{8}/g)!.map((x) => parseInt(x, 2)));
    const out = huffmanDecode(bytes, 0, bytes.length);
    expect(out).toEqual(Uint8Array.from({ length: 256 }, (_, i) => i));
    // '0' is 00000: 3 zero bits of padding are not a prefix of EOS.
    expect(huffmanDecode(Uint8Array.from([0x00]), 0, 1)).toBe('padding');
    // 'a' (00011) then 111: valid.
    expect(Buffer.from(huffmanDecode(Uint8Array.from([0x1f]), 0, 1) as Uint8Array).toString()).toBe('a');
    // 8 bits or more of padding.
    expect(huffmanDecode(Uint8Array.from([0x1f, 0xff]), 0, 2)).toBe('padding');
    // EOS (30 ones) inside a string.
    expect(huffmanDecode(Uint8Array.from([0xff, 0xff, 0xff, 0xfc]), 0, 4)).toBe('eos');
    expect(HUFFMAN_EOS).toBe(256);
  });
});

describe('decoder rules and errors', () => {
  test('the static table has the 61 entries of Appendix A', () => {
    expect(HPACK_STATIC_TABLE).toHaveLength(61);
    expect(HPACK_STATIC_TABLE[0]).toEqual([':authority', '']);
    expect(HPACK_STATIC_TABLE[7]).toEqual([':status', '200']);
    expect(HPACK_STATIC_TABLE[60]).toEqual(['www-authenticate', '']);
  });

  test('malformed blocks throw typed errors', () => {
    const d = (): HpackDecoder => new HpackDecoder();
    expect(errorOf(() => d().decode(hex('80')))).toBe('index');
    expect(errorOf(() => d().decode(hex('be')))).toBe('index');
    expect(errorOf(() => d().decode(hex('0f30 00')))).toBe('index');
    expect(errorOf(() => d().decode(hex('40')))).toBe('truncated');
    expect(errorOf(() => d().decode(hex('400a 6375')))).toBe('truncated');
    expect(errorOf(() => d().decode(hex('ff')))).toBe('truncated');
    expect(errorOf(() => d().decode(hex('0181 00')))).toBe('huffman');
    expect(errorOf(() => d().decode(hex('ffff ffff ffff ff7f')))).toBe('integer');
    expect(errorOf(() => d().decode(hex('8220')))).toBe('size-update');
    expect(errorOf(() => d().decode(hex('3fe2 1f')))).toBe('size-update'); // 4097 > 4096
    expect(errorOf(() => d().decode(hex('3fe1 1f 82')))).toBe('none'); // 4096
    expect(errorOf(() => d().decode(new Uint8Array(0)))).toBe('none');
  });

  test('size updates evict; an entry larger than the table empties it', () => {
    const d = new HpackDecoder({ maxTableSize: 256 });
    d.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'));
    expect(table(d).size).toBe(55);
    expect(d.decode(hex('20 82')).headers).toEqual([[':method', 'GET']]);
    expect(table(d)).toEqual({ entries: [], size: 0 });
    expect(d.decode(hex('3f19')).headers).toEqual([]); // size update to 56
    d.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'));
    expect(table(d).size).toBe(55);
    // x: * (34 octets) does not fit next to it: the older entry goes.
    d.decode(hex('4001 7801 2a'));
    expect(table(d)).toEqual({ entries: [['x', '*']], size: 34 });
    // 63 octets > 56: the table empties and the field is still emitted.
    const long = Buffer.from('y'.repeat(30)).toString('hex');
    expect(d.decode(hex(`4001 781e ${long}`)).headers).toEqual([['x', 'y'.repeat(30)]]);
    expect(table(d)).toEqual({ entries: [], size: 0 });
  });

  test('SETTINGS limits: both values until acknowledged, the new one after; shrinking evicts', () => {
    const d = new HpackDecoder();
    d.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'));
    d.setLimit(100, false);
    expect(errorOf(() => d.decode(hex('3fe1 1f')))).toBe('none'); // 4096 still allowed
    d.setLimit(40, true);
    expect(table(d)).toEqual({ entries: [], size: 0 }); // 55 > 40: evicted
    expect(errorOf(() => d.decode(hex('3f0a')))).toBe('size-update'); // 41 > 40
  });

  test('maxHeaderListSize: fields past it are left out, but still inserted in the table', () => {
    const d = new HpackDecoder({ maxHeaderListSize: 60 });
    const out = d.decode(hex('82 400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'));
    expect(out).toEqual({ headers: [[':method', 'GET']], truncated: true });
    expect(d.decode(hex('be')).headers).toEqual([['custom-key', 'custom-header']]);
  });

  test('unknown base (joined mid-connection): new entries resolve, older ones are refused', () => {
    const d = new HpackDecoder({ unknownBase: true });
    expect(errorOf(() => d.decode(hex('be')))).toBe('unknown-index');
    d.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'));
    expect(d.decode(hex('be')).headers).toEqual([['custom-key', 'custom-header']]);
    expect(errorOf(() => d.decode(hex('bf')))).toBe('unknown-index');
    d.reset();
    expect(errorOf(() => d.decode(hex('be')))).toBe('unknown-index');
  });

  test('octets that are not UTF-8 decode with replacement characters but count as sent', () => {
    const d = new HpackDecoder({ maxTableSize: 100 });
    // name "n", value 0xff 0xfe (2 octets): entry size 1 + 2 + 32 = 35.
    expect(d.decode(hex('4001 6e02 fffe')).headers).toEqual([['n', '\ufffd\ufffd']]);
    expect(table(d).size).toBe(35);
  });
});
