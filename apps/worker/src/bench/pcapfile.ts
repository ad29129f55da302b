import { closeSync, openSync, writeSync } from 'node:fs';

/**
 * Writes a classic pcap file (little-endian, microseconds, Ethernet) through one large buffer:
 * how the benchmarks generate their multi-gigabyte inputs without a write call per packet.
 */
export class PcapFileWriter {
  readonly buf: Buffer;
  private o = 24;
  private readonly fd: number;

  constructor(file: string, bufferBytes: number, snapLen: number) {
    this.fd = openSync(file, 'w');
    this.buf = Buffer.allocUnsafe(bufferBytes);
    this.buf.writeUInt32LE(0xa1b2c3d4, 0);
    this.buf.writeUInt16LE(2, 4);
    this.buf.writeUInt16LE(4, 6);
    this.buf.writeInt32LE(0, 8);
    this.buf.writeUInt32LE(0, 12);
    this.buf.writeUInt32LE(snapLen, 16);
    this.buf.writeUInt32LE(1, 20);
  }

  /** Starts a record and returns where its `capLen` packet bytes go in `buf`. */
  begin(sec: number, usec: number, capLen: number, origLen: number): number {
    if (this.o + 16 + capLen > this.buf.length) this.flush();
    const b = this.buf;
    b.writeUInt32LE(sec, this.o);
    b.writeUInt32LE(usec, this.o + 4);
    b.writeUInt32LE(capLen, this.o + 8);
    b.writeUInt32LE(origLen, this.o + 12);
    const at = this.o + 16;
    this.o = at + capLen;
    return at;
  }

  close(): void {
    this.flush();
    closeSync(this.fd);
  }

  private flush(): void {
    let done = 0;
    while (done < this.o) done += writeSync(this.fd, this.buf, done, this.o - done);
    this.o = 0;
  }
}
