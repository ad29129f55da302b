import { KflError, composeFilter, validatePolicy, type FilterPolicy } from '@kubeshark-mcp/kfl';
import { TrafficSourceError } from './errors';

/**
 * KFL on the hub: the user's `kfl` argument is checked here, before any worker is asked, and
 * combined with the configured policy (a global filter, named macros, and restrictions that
 * roles will add) into the one filter the workers run. A bad filter is an invalid-argument
 * error on `kfl` whose message carries the position and a suggestion.
 */

export type { FilterPolicy } from '@kubeshark-mcp/kfl';

export interface ComposedKfl {
  /** The filter for the workers ('' = everything). */
  text: string;
  /** The user's filter alone, normalized (aliases and macros expanded), for showing back. */
  normalized: string;
  /** Notes on the user's filter (legacy names and what they became). */
  notes: string[];
}

export class FilterComposer {
  constructor(readonly policy: FilterPolicy = {}) {
    validatePolicy(policy);
  }

  /** Composes `kfl` (absent = everything) with the policy; `extra` clauses (from other arguments) are ANDed. */
  compose(kfl: string | undefined, extra: readonly string[] = []): ComposedKfl {
    const user = kfl ?? '';
    let composed: ReturnType<typeof composeFilter>;
    try {
      composed = composeFilter(user, { ...this.policy, restrictions: [...(this.policy.restrictions ?? []), ...extra] });
    } catch (err) {
      if (err instanceof KflError) throw new TrafficSourceError('invalid_argument', `invalid KFL filter: ${err.message}`, { field: 'kfl', cause: err });
      throw err;
    }
    return { text: composed.text, normalized: composed.user.normalized, notes: [...composed.notes] };
  }
}

/** The KFL clause for a `protocol` argument (an entry protocol name, or tcp/udp for flows). */
export const protocolClause = (protocol: string): string => protocol;
