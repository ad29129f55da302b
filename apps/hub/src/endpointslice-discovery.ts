import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { PollingDiscovery, type PollingOptions } from './discovery';

/**
 * Workers from the EndpointSlices of their Kubernetes Service: every `intervalMs` the hub lists
 * `discovery.k8s.io/v1` EndpointSlices labelled `kubernetes.io/service-name=<service>` in the
 * namespace and keeps one worker per ready endpoint address. A polled list rather than a
 * streaming watch: the set is small, the interval bounds how stale it can be, and there is no
 * watch state to lose; the worker's resolver (apps/worker/src/k8s/watch.ts) is where a full
 * list+watch earns its keep. The Kubernetes client library is not used for the same reason
 * the worker gives: it is large and ESM-only, and this is one GET.
 *
 * Credentials: in a pod, the service account (token re-read at every list, CA certificate,
 * `KUBERNETES_SERVICE_HOST`/`_PORT`); elsewhere an explicit API URL and token file. A failed
 * list (API down, 401/403) keeps the known workers and is reported through `onError`; only an
 * answer removes workers.
 */

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface EndpointSliceDiscoveryOptions extends PollingOptions {
  namespace: string;
  service: string;
  /** The workers' gRPC port (a slice port named `grpc` wins when present). */
  port: number;
  /** API server base URL; default: in-cluster from the environment. */
  apiUrl?: string;
  /** Bearer token file; default: the service account's. */
  tokenFile?: string;
  /** CA bundle file for https; default: the service account's (when it exists). */
  caFile?: string;
}

interface SliceList {
  items?: {
    addressType?: string;
    ports?: { name?: string; port?: number }[] | null;
    endpoints?: { addresses?: string[]; conditions?: { ready?: boolean | null } }[] | null;
  }[];
}

export class EndpointSliceDiscovery extends PollingDiscovery {
  readonly description: string;
  private readonly base: URL;

  constructor(private readonly options: EndpointSliceDiscoveryOptions) {
    super(options);
    this.description = `endpointslices ${options.namespace}/${options.service}:${options.port} every ${options.intervalMs} ms`;
    const host = process.env.KUBERNETES_SERVICE_HOST;
    const port = process.env.KUBERNETES_SERVICE_PORT ?? '443';
    const url = options.apiUrl ?? (host ? `https://${host.includes(':') ? `[${host}]` : host}:${port}` : undefined);
    if (!url) throw new Error('EndpointSlice discovery needs the API server: run in a pod (KUBERNETES_SERVICE_HOST) or set HUB_KUBE_API');
    this.base = new URL(url);
  }

  /** One list of the Service's slices: its ready endpoints' addresses. */
  protected async lookup(): Promise<string[]> {
    return addressesOf(await this.list(), this.options.port);
  }

  private list(): Promise<SliceList> {
    const { namespace, service } = this.options;
    const url = new URL(`/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/endpointslices`, this.base);
    url.searchParams.set('labelSelector', `kubernetes.io/service-name=${service}`);
    const tokenFile = this.options.tokenFile ?? `${SERVICE_ACCOUNT_DIR}/token`;
    let token: string;
    try {
      token = readFileSync(tokenFile, 'utf8').trim();
    } catch (err) {
      return Promise.reject(new Error(`cannot read the API token at ${tokenFile}: ${(err as Error).message}`));
    }
    let ca: Buffer | undefined;
    const caFile = this.options.caFile ?? (this.options.apiUrl ? undefined : `${SERVICE_ACCOUNT_DIR}/ca.crt`);
    if (caFile) {
      try {
        ca = readFileSync(caFile);
      } catch (err) {
        return Promise.reject(new Error(`cannot read the API CA certificate at ${caFile}: ${(err as Error).message}`));
      }
    }
    const get = url.protocol === 'https:' ? https.get : http.get;
    return new Promise((resolve, reject) => {
      const req = get(url, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' }, timeout: 10_000, ...(ca ? { ca } : {}) }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => {
          const body = Buffer.concat(parts).toString('utf8');
          if (res.statusCode === 401) return reject(new Error(`the API server refused the token (401); check the hub's service account token (${tokenFile})`));
          if (res.statusCode === 403) return reject(new Error(`the hub may not list endpointslices in ${namespace} (403); grant list on discovery.k8s.io endpointslices to its service account`));
          if (res.statusCode !== 200) return reject(new Error(`listing endpointslices answered ${res.statusCode}: ${body.slice(0, 200)}`));
          try {
            resolve(JSON.parse(body) as SliceList);
          } catch {
            reject(new Error('the API server answered with something that is not JSON'));
          }
        });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error('the API server did not answer within 10 s')));
      req.on('error', reject);
    });
  }
}

/** Ready endpoint addresses of the slices as host:port (IPv6 bracketed). Endpoints without a ready condition count as ready, as Kubernetes says. */
export function addressesOf(list: SliceList, defaultPort: number): string[] {
  const out = new Set<string>();
  for (const slice of list.items ?? []) {
    if (slice.addressType === 'FQDN') continue;
    const port = slice.ports?.find((p) => p.name === 'grpc')?.port ?? defaultPort;
    for (const ep of slice.endpoints ?? []) {
      if (ep.conditions?.ready === false) continue;
      for (const ip of ep.addresses ?? []) out.add(ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`);
    }
  }
  return [...out].sort();
}
