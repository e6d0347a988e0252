import { OperationOutcomeError } from '../kernel/outcome';
import type { Queryable } from '../store/db';
import { readResources } from '../store/repository';
import type { TerminologyLookUp, TerminologySource } from '../terminology/valueset';
import { escapeSearchValue } from './escape';
import { TerminologyNeeded } from './types/token';

/**
 * The stored ValueSets and CodeSystems a client's search may expand for `:in`/`:not-in`
 * (decision 039), found through the search layer under the caller's own access policy: `find`
 * is `GET ValueSet?url=…` as the caller would send it (its scopes, compartment, granular
 * limits and Consent exclusions are conditions of the SQL), so a ValueSet the caller may not
 * read is, to the expander, one that does not exist — the same 400, no oracle.
 */

/** The ids of `type` matching `params` that the caller may search; none when it may not search the type. */
export type FindVisible = (type: 'ValueSet' | 'CodeSystem', params: URLSearchParams, limit: number) => Promise<string[]>;

/** How many stored ValueSets and CodeSystems one search may look up (nesting, several `:in`). */
export const MAX_TERMINOLOGY_LOOKUPS = 16;
/** Versions of one canonical URL considered when choosing (more are not read). */
const MAX_CANDIDATES = 20;

export class StoredTerminology implements TerminologySource {
  private readonly found = new Map<string, fhir4.ValueSet | fhir4.CodeSystem | null>();

  constructor(
    private readonly db: Queryable,
    private readonly find: FindVisible,
  ) {}

  get lookUps(): number {
    return this.found.size;
  }

  valueSet(ref: string): fhir4.ValueSet | null | undefined {
    return this.found.get(`ValueSet ${ref}`) as fhir4.ValueSet | null | undefined;
  }

  codeSystem(ref: string): fhir4.CodeSystem | null | undefined {
    return this.found.get(`CodeSystem ${ref}`) as fhir4.CodeSystem | null | undefined;
  }

  /** Looks `ref` up: `ValueSet/{id}` by id, a canonical `url[|version]` by `url` (and `version`). */
  async lookUp({ kind, ref }: TerminologyLookUp): Promise<void> {
    const params = new URLSearchParams();
    const relative = kind === 'ValueSet' && ref.startsWith('ValueSet/');
    if (relative) params.set('_id', ref.slice('ValueSet/'.length));
    else {
      const bar = ref.indexOf('|');
      params.set('url', escapeSearchValue(bar < 0 ? ref : ref.slice(0, bar)));
      if (bar >= 0 && bar < ref.length - 1) params.set('version', escapeSearchValue(ref.slice(bar + 1)));
    }
    const ids = await this.find(kind, params, MAX_CANDIDATES);
    const candidates = [...(await readResources<fhir4.ValueSet | fhir4.CodeSystem>(this.db, kind, ids)).values()];
    this.found.set(`${kind} ${ref}`, chooseVersion(candidates) ?? null);
  }
}

const STATUS_RANK: Record<string, number> = { active: 0, draft: 1, unknown: 2, retired: 3 };

/**
 * One resource among those sharing a canonical URL (and version, when the reference names one).
 * R4 canonical references (references.html#canonical) may carry `|version`; without one the
 * choice is the resolver's: here the `active` one before drafts and retired ones, then the one
 * stored last (meta.lastUpdated), then the greatest id, so the answer does not depend on the
 * order rows come back in.
 */
function chooseVersion<T extends fhir4.ValueSet | fhir4.CodeSystem>(candidates: T[]): T | undefined {
  const rank = (r: T) => STATUS_RANK[r.status] ?? 2;
  return [...candidates].sort(
    (a, b) => rank(a) - rank(b) || (b.meta?.lastUpdated ?? '').localeCompare(a.meta?.lastUpdated ?? '') || (b.id ?? '').localeCompare(a.id ?? ''),
  )[0];
}

/**
 * `parse(terminology)` (a parseSearch), with the stored ValueSets and CodeSystems its `:in`
 * terms name looked up as the expander asks for them: each ask ends that parse, and the next one
 * finds it answered. At most MAX_TERMINOLOGY_LOOKUPS look-ups, then a 400 `too-costly`.
 */
export async function parseWithStoredTerminology<T>(terminology: StoredTerminology, parse: (terminology: TerminologySource) => T): Promise<T> {
  for (;;) {
    try {
      return parse(terminology);
    } catch (err) {
      if (!(err instanceof TerminologyNeeded)) throw err;
      if (terminology.lookUps >= MAX_TERMINOLOGY_LOOKUPS) {
        throw new OperationOutcomeError(400, {
          code: 'too-costly',
          diagnostics: `${err.param}: expanding the value sets of this search needs more than ${MAX_TERMINOLOGY_LOOKUPS} stored ValueSets and CodeSystems`,
          expression: [err.param],
        });
      }
      await terminology.lookUp(err.lookUp);
    }
  }
}
