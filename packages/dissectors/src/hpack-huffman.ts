/**
 * The HPACK Huffman code (RFC 7541 Appendix B). The code is canonical: sorting the symbols by
 * code length, then by value, and counting up gives exactly the codes of the RFC's table, so
 * the table is kept as its `len` column and the codes are derived (tests check the derived codes
 * against codes quoted from the RFC). Symbol 256 is EOS.
 */

/** Code length in bits of symbols 0..256 (RFC 7541 Appendix B, column `len`). */
// prettier-ignore
export const HUFFMAN_CODE_LENGTHS: readonly number[] = [
  // 0x00-0x1f: control characters
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  // 0x20-0x3f: ' ' ! " # $ % & ' ( ) * + , - . / 0-9 : ; < = > ?
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  // 0x40-0x5f: @ A-Z [ \ ] ^ _
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  // 0x60-0x7f: ` a-z { | } ~ DEL
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  // 0x80-0xff
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  // EOS
  30,
];

export const HUFFMAN_EOS = 256;

/** Codes of symbols 0..256, right-aligned (the RFC's `code as hex` column), derived canonically. */
export const HUFFMAN_CODES: readonly number[] = (() => {
  const order = HUFFMAN_CODE_LENGTHS.map((len, sym) => ({ len, sym })).sort((a, b) => a.len - b.len || a.sym - b.sym);
  const codes = new Array<number>(HUFFMAN_CODE_LENGTHS.length).fill(0);
  let code = 0;
  let prevLen = order[0]!.len;
  for (const { len, sym } of order) {
    code *= 2 ** (len - prevLen);
    prevLen = len;
    codes[sym] = code;
    code++;
  }
  return codes;
})();

/**
 * Decoding tree as two arrays: node n's children are `child[2n]` (bit 0) and `child[2n + 1]`
 * (bit 1); a child >= 0 is a node, a child < 0 is the leaf of symbol `-child - 1`.
 */
const TREE: Int32Array = (() => {
  const child = new Int32Array(2 * 512).fill(0);
  let nodes = 1;
  for (let sym = 0; sym < HUFFMAN_CODE_LENGTHS.length; sym++) {
    const len = HUFFMAN_CODE_LENGTHS[sym]!;
    const code = HUFFMAN_CODES[sym]!;
    let node = 0;
    for (let i = len - 1; i >= 0; i--) {
      const bit = Math.floor(code / 2 ** i) % 2;
      const slot = 2 * node + bit;
      if (i === 0) child[slot] = -sym - 1;
      else {
        if (child[slot] === 0) child[slot] = nodes++;
        node = child[slot]!;
      }
    }
  }
  return child;
})();

/** Why a Huffman string is invalid (RFC 7541 §5.2). */
export type HuffmanErrorReason = 'eos' | 'padding';

/**
 * Decodes a Huffman-coded string literal into bytes. Returns the reason instead when the input
 * is invalid: the EOS symbol appears, or the padding is longer than 7 bits or not all ones.
 * `max` bounds the output: decoding stops (returning what fits) past it.
 */
export function huffmanDecode(src: Uint8Array, from: number, to: number, max = Infinity): Uint8Array | HuffmanErrorReason {
  // Every symbol is at least 5 bits long: 8 bytes give at most 12 symbols.
  const out = new Uint8Array(Math.min(Math.ceil(((to - from) * 8) / 5), max));
  let n = 0;
  let node = 0;
  // Bits read since the last complete symbol, and whether they were all ones.
  let pending = 0;
  let allOnes = true;
  for (let i = from; i < to; i++) {
    const byte = src[i]!;
    for (let b = 7; b >= 0; b--) {
      const bit = (byte >> b) & 1;
      pending++;
      if (bit === 0) allOnes = false;
      const next = TREE[2 * node + bit]!;
      if (next < 0) {
        const sym = -next - 1;
        if (sym === HUFFMAN_EOS) return 'eos';
        if (n >= out.length) return out.subarray(0, n);
        out[n++] = sym;
        node = 0;
        pending = 0;
        allOnes = true;
      } else node = next;
    }
  }
  if (pending > 7 || !allOnes) return 'padding';
  return out.subarray(0, n);
}
