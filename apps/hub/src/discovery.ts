import { Resolver } from 'node:dns/promises';

/**
 * Where the hub learns its workers' addresses. A discovery source tells a sink which addresses
 * appeared and which went away; the sink (the worker pool) keeps one gRPC channel per address.
 * Static lists and DNS live here; a source that is asked for the whole set from time to time
 * (DNS, Kubernetes EndpointSlices) extends PollingDiscovery and only says how to ask.
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

/** What every polling discovery reports to besides the sink. */
export interface PollingOptions {
  /** How often the source is asked again. */
  intervalMs: number;
  /** Called when a lookup fails; the known workers are kept meanwhile. */
  onError?: (err: Error) => void;
  /** Called after each lookup with the addresses it found. */
  onResolved?: (addresses: string[]) => void;
}

/**
 * A discovery that asks its source for the whole address set every `intervalMs` and adds or
 * removes workers as the set changes. A failed lookup changes nothing: only an answer removes
 * workers, so a hiccup of the source never drops every channel.
 */
export abstract class PollingDiscovery implements WorkerDiscovery {
  abstract readonly description: string;
  private timer: NodeJS.Timeout | undefined;
  private known = new Set<string>();
  private running = false;
  private inFlight: Promise<void> | undefined;
  private first: Promise<void> | undefined;

  constructor(private readonly polling: PollingOptions) {}

  /** The addresses (host:port) the source names now; throws when it cannot tell. */
  protected abstract lookup(): Promise<string[]>;

  start(sink: WorkerSink): void {
    this.running = true;
    const tick = (): void => {
      this.inFlight = this.refresh(sink).finally(() => {
        this.inFlight = undefined;
        if (this.running) this.timer = setTimeout(tick, this.polling.intervalMs);
      });
      this.first ??= this.inFlight;
    };
    tick();
  }

  async ready(): Promise<void> {
    await this.first;
  }

  /** Looks up once now and applies the answer (while started); for tests and for start. */
  async refresh(sink: WorkerSink): Promise<void> {
    let addresses: string[];
    try {
      addresses = await this.lookup();
    } catch (err) {
      this.polling.onError?.(err as Error);
      return;
    }
    if (!this.running) return;
    const next = new Set(addresses);
    for (const a of this.known) if (!next.has(a)) sink.remove(a);
    for (const a of next) if (!this.known.has(a)) sink.add(a);
    this.known = next;
    this.polling.onResolved?.([...next]);
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

/** The part of `dns.promises.Resolver` DNS discovery uses; tests inject their own. */
export interface AddressResolver {
  resolve4(name: string): Promise<string[]>;
  resolve6(name: string): Promise<string[]>;
}

export interface DnsDiscoveryOptions extends PollingOptions {
  /** The headless Service's DNS name. */
  name: string;
  /** The workers' gRPC port. */
  port: number;
  resolver?: AddressResolver;
}

/** DNS codes that mean "the name has no records of this type", not "DNS failed". */
const NO_RECORDS = new Set(['ENODATA', 'ENOTFOUND']);

/**
 * Resolves the A and AAAA records of a headless Service every `intervalMs` and adds or removes
 * workers as the record set changes. A failed lookup (a DNS server down) changes nothing: only
 * an answer removes workers, so a DNS hiccup never drops every channel. A name with no records
 * at all does remove them: the Service has no ready pods.
 */
export class DnsDiscovery extends PollingDiscovery {
  readonly description: string;
  private readonly resolver: AddressResolver;

  constructor(private readonly options: DnsDiscoveryOptions) {
    super(options);
    this.resolver = options.resolver ?? new Resolver();
    this.description = `dns ${options.name}:${options.port} every ${options.intervalMs} ms`;
  }

  protected async lookup(): Promise<string[]> {
    const resolve = async (family: 4 | 6): Promise<string[]> => {
      try {
        return await (family === 4 ? this.resolver.resolve4(this.options.name) : this.resolver.resolve6(this.options.name));
      } catch (err) {
        if (NO_RECORDS.has((err as NodeJS.ErrnoException).code ?? '')) return [];
        throw err;
      }
    };
    const [v4, v6] = await Promise.all([resolve(4), resolve(6)]);
    return [...v4.map((ip) => `${ip}:${this.options.port}`), ...v6.map((ip) => `[${ip}]:${this.options.port}`)];
  }
}
