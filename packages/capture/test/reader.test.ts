import { readFileSync } from 'node:fs';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { capturePath, loadPcapngConformance } from '@kubeshark-mcp/testkit';
import { CaptureFormatError, CaptureReader, readCaptureFile, type RawPacket } from '../src';

interface Seen {
  frame: number;
  linkType: number;
  interfaceId: number;
  capLen: number;
  origLen: number;
  tsSec: number;
  tsNsec: number;
  hex: string;
}

const snapshot = (p: RawPacket): Seen => ({
  frame: p.frame,
  linkType: p.linkType,
  interfaceId: p.interfaceId,
  capLen: p.capLen,
  origLen: p.origLen,
  tsSec: p.tsSec,
  tsNsec: p.tsNsec,
  hex: p.buf.subarray(p.offset, p.offset + p.capLen).toString('hex'),
});

function readAll(bytes: Buffer, chunk = bytes.length): { packets: Seen[]; error?: CaptureFormatError } {
  const packets: Seen[] = [];
  const r = new CaptureReader((p) => packets.push(snapshot(p)));
  try {
    for (let o = 0; o < bytes.length; o += chunk) r.push(bytes.subarray(o, o + chunk));
    r.end();
    return { packets };
  } catch (err) {
    if (err instanceof CaptureFormatError) return { packets, error: err };
    throw err;
  }
}

describe('pcapng conformance files (gopacket) against tshark packet counts', () => {
  test.each(loadPcapngConformance())('$file', ({ file, packets, error }) => {
    const result = readAll(readFileSync(capturePath(`gopacket/${file}`)));
    expect(result.packets).toHaveLength(packets);
    if (error) {
      // tshark reads what precedes the damage and then stops with an error; so do we.
      expect(result.error).toBeInstanceOf(CaptureFormatError);
      expect(result.error!.message).toMatch(/pcapng/);
    } else {
      expect(result.error).toBeUndefined();
    }
  });
});

test('the broken pcapng gives a clear error through the file API, not a crash', async () => {
  const packets: number[] = [];
  const result = await readCaptureFile(capturePath('gopacket/le_test901.pcapng'), (p) => packets.push(p.frame));
  expect(packets).toEqual([1]);
  expect(result.error?.code).toBe('unsupported-version');
  expect(result.error?.message).toMatch(/pcapng version 2 is not supported/);
  expect(result.error?.packets).toBe(1);
});

test('chunk boundaries do not change what is read (1-byte and 7-byte pushes)', () => {
  for (const name of ['zeek/pcapng-multi-interface.pcapng', 'zeek/http_get.pcap', 'gopacket/le_test202.pcapng']) {
    const bytes = readFileSync(capturePath(name));
    const whole = readAll(bytes);
    expect(readAll(bytes, 1)).toEqual(whole);
    expect(readAll(bytes, 7)).toEqual(whole);
  }
});

test('pcapng with several interfaces keeps each interface link type', () => {
  const { packets } = readAll(readFileSync(capturePath('zeek/pcapng-multi-interface.pcapng')));
  expect(new Set(packets.map((p) => p.interfaceId)).size).toBeGreaterThan(1);
});

test('byte order and nanosecond variants read the same packets with exact timestamps', () => {
  const base = readAll(readFileSync(capturePath('zeek/tcp_handshake-reorder.pcap'))).packets;
  for (const v of ['be-usec', 'be-nsec', 'le-nsec']) {
    const got = readAll(readFileSync(capturePath(`derived/tcp_handshake-reorder.${v}.pcap`))).packets;
    const extra = v.endsWith('nsec') ? 7 : 0; // the variant script adds 7 ns to every timestamp
    expect(got).toEqual(base.map((p) => ({ ...p, tsNsec: p.tsNsec + extra })));
  }
});

test('a capture cut inside a record reports truncation after the whole packets', () => {
  const bytes = readFileSync(capturePath('zeek/http_get.pcap'));
  const whole = readAll(bytes).packets;
  const cut = readAll(bytes.subarray(0, bytes.length - 10));
  expect(cut.packets).toEqual(whole.slice(0, -1));
  expect(cut.error?.code).toBe('truncated');
});

test('not a capture: clear error naming the magic', () => {
  const r = readAll(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
  expect(r.error?.code).toBe('unknown-format');
  expect(r.error?.message).toContain('0x47455420');
  expect(readAll(Buffer.alloc(0)).error?.message).toMatch(/empty input/);
});

test('a record claiming an absurd length is refused, not buffered', () => {
  const bytes = Buffer.from(readFileSync(capturePath('zeek/http_get.pcap')));
  bytes.writeUInt32LE(0x7fffffff, 24 + 8); // first record's captured length
  const r = readAll(bytes);
  expect(r.packets).toHaveLength(0);
  expect(r.error?.code).toBe('bad-record-length');
});

test('gzip-compressed captures are read transparently', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'capture-'));
  const plain = capturePath('zeek/http_get.pcap');
  const gz = path.join(dir, 'http_get.pcap.gz');
  writeFileSync(gz, gzipSync(readFileSync(plain)));
  const a: Seen[] = [];
  const b: Seen[] = [];
  await readCaptureFile(plain, (p) => a.push(snapshot(p)));
  const result = await readCaptureFile(gz, (p) => b.push(snapshot(p)));
  expect(result.error).toBeUndefined();
  expect(b).toEqual(a);
  expect(a).toHaveLength(14);
});

test('a missing file rejects with the file-system error', async () => {
  await expect(readCaptureFile('/nonexistent/capture.pcap', () => undefined)).rejects.toThrow(/ENOENT/);
});
