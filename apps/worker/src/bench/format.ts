/** Small formatting helpers shared by the benchmark sections. */

export const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;
export const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
/** Decimal megabytes per second (10^6 bytes), as throughput targets are stated. */
export const mbps = (bytes: number, seconds: number): number => bytes / 1e6 / seconds;

/**
 * A plain-text table: the first column is left-aligned, the last one too (free text), the
 * others right-aligned.
 */
export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return `${line(head)}\n${line(head.map((_, i) => '-'.repeat(widths[i]!)))}\n${rows.map(line).join('\n')}\n`;
}
