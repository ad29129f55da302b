import { Resolver } from 'node:dns/promises';

/**
 * Where the hub learns its workers' addresses. A discovery source tells a sink which addresses
 * appeared and which went away; the sink (the worker pool) keeps one gRPC channel per address.
 * Static lists and DNS live here; another source (Kubernetes EndpointSlices, say) only has to
 * implement this interface.
 */
export interface WorkerSink {
  /** A worker at `address` (host:port) exists; adding one already known does nothing. */
  add(address: string): void;
  /** The worker at `address` is gone: its channel is closed. Unknown addresses are ignored. */
  remove(address: string): void;
}

export interface WorkerDiscovery {
  /** A short description for logs and /healthz, e.g. "dns kubeshark-worker:50151 every 10000 ms". */
  readonly description: string;
  /** Starts reporting to `sink`; the first addresses may be added before this returns. */
  start(sink: WorkerSink): void;
  /** Stops reporting; the sink keeps what it has. */
  stop(): void;
  /** Resolves once the first addresses have been reported (or the first attempt failed). */
  ready?(): Promise<void>;
}

/** A fixed list of addresses, added once. */
export class StaticDiscovery implements WorkerDiscovery {
  readonly description: string;
  constructor(private readonly addresses: readonly string[]) {
    this.description = `static ${addresses.join(', ')}`;
  }

  start(sink: WorkerSink): void {
    for (const a of this.addresses) sink.add(a);
  }

  stop(): void {}
}

/** The part of `dns.promises.Resolver` DNS discovery uses; tests inject their own. */
export interface AddressResolver {
  resolve4(name: string): Promise<string[]>;
  resolve6(name: string): Promise<string[]>;
}

export interface DnsDiscoveryOptions {
  /** The headless Service's DNS name. */
  name: string;
  /** The workers' gRPC port. */
  port: number;
  /** How often the name is resolved again. */
  intervalMs: number;
  resolver?: AddressResolver;
  /** Called when a resolution fails; the known workers are kept meanwhile. */
  onError?: (err: Error) => void;
  /** Called after each resolution with the addresses it found. */
  onResolved?: (addresses: string[]) => void;
}

/** DNS codes that mean "the name has no records of this type", not "DNS failed". */
const NO_RECORDS = new Set(['ENODATA', 'ENOTFOUND']);

/**
 * Resolves the A and AAAA records of a headless Service every `intervalMs` and adds or removes
 * workers as the record set changes. A failed lookup (a DNS server down) changes nothing: only
 * an answer removes workers, so a DNS hiccup never drops every channel. A name with no records
 * at all does remove them: the Service has no ready pods.
 */
export class DnsDiscovery implements WorkerDiscovery {
  readonly description: string;
  private readonly resolver: AddressResolver;
  private timer: NodeJS.Timeout | undefined;
  private known = new Set<string>();
  private running = false;
  private inFlight: Promise<void> | undefined;
  private first: Promise<void> | undefined;

  constructor(private readonly options: DnsDiscoveryOptions) {
    this.resolver = options.resolver ?? new Resolver();
    this.description = `dns ${options.name}:${options.port} every ${options.intervalMs} ms`;
  }

  start(sink: WorkerSink): void {
    this.running = true;
    const tick = (): void => {
      this.inFlight = this.refresh(sink).finally(() => {
        this.inFlight = undefined;
        if (this.running) this.timer = setTimeout(tick, this.options.intervalMs);
      });
      this.first ??= this.inFlight;
    };
    tick();
  }

  async ready(): Promise<void> {
    await this.first;
  }

  /** Resolves once now and applies the answer; for tests and for start. */
  async refresh(sink: WorkerSink): Promise<void> {
    const lookup = async (family: 4 | 6): Promise<string[]> => {
      try {
        return await (family === 4 ? this.resolver.resolve4(this.options.name) : this.resolver.resolve6(this.options.name));
      } catch (err) {
        if (NO_RECORDS.has((err as NodeJS.ErrnoException).code ?? '')) return [];
        throw err;
      }
    };
    let addresses: string[];
    try {
      const [v4, v6] = await Promise.all([lookup(4), lookup(6)]);
      addresses = [...v4.map((ip) => `${ip}:${this.options.port}`), ...v6.map((ip) => `[${ip}]:${this.options.port}`)];
    } catch (err) {
      this.options.onError?.(err as Error);
      return;
    }
    if (!this.running) return;
    const next = new Set(addresses);
    for (const a of this.known) if (!next.has(a)) sink.remove(a);
    for (const a of next) if (!this.known.has(a)) sink.add(a);
    this.known = next;
    this.options.onResolved?.([...next]);
  }

  /** Resolves when the lookup under way, if any, is done. */
  async settled(): Promise<void> {
    await this.inFlight;
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.timer);
  }
}
