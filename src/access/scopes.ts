/**
 * SMART scopes (App Launch 2.2 §Scopes and Launch Context): parsing of v1 and v2 resource scopes
 * into one v2 form, and the cut of a requested scope set to a client's pre-authorised set.
 */
export type ScopeContext = 'patient' | 'user' | 'system';
export type Action = 'c' | 'r' | 'u' | 'd' | 's';
const ACTIONS: readonly Action[] = ['c', 'r', 'u', 'd', 's'];

export interface ResourceScope {
  /** The scope as written (v1 or v2). */
  readonly text: string;
  readonly context: ScopeContext;
  /** A resource type, or `*`. */
  readonly type: string;
  readonly actions: ReadonlySet<Action>;
  /** Granular scope: search parameters a resource must match (v2 only). */
  readonly query?: URLSearchParams;
}

// v2: permissions are a non-empty subsequence of "cruds", in that order.
const V2 = /^(patient|user|system)\/(\*|[A-Z][A-Za-z]*)\.(c?r?u?d?s?)(?:\?(.+))?$/;
// v1: read, write or * (App Launch 2 §"Scopes for requesting clinical data": read = rs, write = cud).
const V1 = /^(patient|user|system)\/(\*|[A-Z][A-Za-z]*)\.(read|write|\*)$/;
const V1_ACTIONS: Record<string, Action[]> = { read: ['r', 's'], write: ['c', 'u', 'd'], '*': ['c', 'r', 'u', 'd', 's'] };

/** The scopes that are not about resources and that this server knows. */
export const NON_RESOURCE_SCOPES = new Set([
  'openid', 'fhirUser', 'profile', 'launch', 'launch/patient', 'launch/encounter', 'offline_access', 'online_access',
]);

/** Parses one resource scope, v1 or v2; undefined when it is not one. */
export function parseResourceScope(text: string): ResourceScope | undefined {
  const v1 = V1.exec(text);
  if (v1) {
    return { text, context: v1[1] as ScopeContext, type: v1[2]!, actions: new Set(V1_ACTIONS[v1[3]!]) };
  }
  const v2 = V2.exec(text);
  if (!v2 || v2[3] === '') return undefined;
  const query = v2[4] === undefined ? undefined : new URLSearchParams(v2[4]);
  if (query && [...query.keys()].length === 0) return undefined;
  return {
    text,
    context: v2[1] as ScopeContext,
    type: v2[2]!,
    actions: new Set(v2[3]!.split('') as Action[]),
    ...(query ? { query } : {}),
  };
}

export function splitScope(scope: string | undefined): string[] {
  return (scope ?? '').split(' ').filter((s) => s !== '');
}

/** Whether a scope string is one this server can grant (a resource scope or a known other scope). */
export function isKnownScope(text: string): boolean {
  return NON_RESOURCE_SCOPES.has(text) || parseResourceScope(text) !== undefined;
}

/** The v2 text of a resource scope. */
export function renderScope(s: Omit<ResourceScope, 'text'>): string {
  const perms = ACTIONS.filter((a) => s.actions.has(a)).join('');
  const query = s.query ? `?${s.query.toString()}` : '';
  return `${s.context}/${s.type}.${perms}${query}`;
}

function sameQuery(a: URLSearchParams | undefined, b: URLSearchParams | undefined): boolean {
  const norm = (q: URLSearchParams | undefined) => (q ? [...q].map(([k, v]) => `${k}=${v}`).sort().join('&') : '');
  return norm(a) === norm(b);
}

/**
 * What `requested` keeps of `allowed`: same context, the narrower type, the common permissions,
 * and both queries (a resource must then match both: AND). Undefined when nothing is left.
 */
export function intersectScope(requested: ResourceScope, allowed: ResourceScope): ResourceScope | undefined {
  if (requested.context !== allowed.context) return undefined;
  let type: string;
  if (requested.type === allowed.type || allowed.type === '*') type = requested.type;
  else if (requested.type === '*') type = allowed.type;
  else return undefined;
  const actions = new Set([...requested.actions].filter((a) => allowed.actions.has(a)));
  if (actions.size === 0) return undefined;
  let query: URLSearchParams | undefined;
  if (requested.query || allowed.query) {
    query = new URLSearchParams(requested.query);
    for (const [k, v] of allowed.query ?? []) {
      if (!query.getAll(k).includes(v)) query.append(k, v);
    }
  }
  const cut = { context: requested.context, type, actions, ...(query ? { query } : {}) };
  // Granted exactly as asked: answer in the client's own words (a v1 client gets v1 back).
  const unchanged = type === requested.type && actions.size === requested.actions.size && sameQuery(query, requested.query);
  return { ...cut, text: unchanged ? requested.text : renderScope(cut) };
}

/**
 * The granted scopes: each requested scope cut to the pre-authorised set. Resource scopes of a
 * context not in `contexts` are dropped (a backend service has no patient or user); other scopes
 * are granted only when pre-authorised verbatim and `otherScopes` allows them.
 */
export function grantScopes(
  requested: readonly string[],
  preAuthorised: readonly string[],
  options: { contexts: readonly ScopeContext[]; otherScopes: boolean },
): string[] {
  const allowed = preAuthorised.map(parseResourceScope).filter((s): s is ResourceScope => s !== undefined);
  const granted: string[] = [];
  for (const text of requested) {
    const scope = parseResourceScope(text);
    if (!scope) {
      if (options.otherScopes && NON_RESOURCE_SCOPES.has(text) && preAuthorised.includes(text)) granted.push(text);
      continue;
    }
    if (!options.contexts.includes(scope.context)) continue;
    const cuts = allowed.map((a) => intersectScope(scope, a)).filter((c): c is ResourceScope => c !== undefined);
    // Several pre-authorised scopes may overlap: keep only cuts no other cut covers.
    const kept = cuts.filter((c, i) => !cuts.some((o, j) => j !== i && covers(o, c) && (!covers(c, o) || j < i)));
    granted.push(...kept.map((c) => c.text));
  }
  return [...new Set(granted)];
}

/**
 * Whether every access `b` grants is granted by `a` too: same context, `a`'s type is `b`'s or
 * `*`, `b`'s permissions are among `a`'s, and `b` keeps every parameter of `a`'s granular query
 * (it may add more: a scope's parameters are ANDed, so more of them only narrow it).
 */
function covers(a: ResourceScope, b: ResourceScope): boolean {
  return a.context === b.context && (a.type === '*' || a.type === b.type) && [...b.actions].every((x) => a.actions.has(x)) && keepsQuery(b.query, a.query);
}

/** Whether `narrower` carries every parameter of `query` (no query restricts nothing). */
function keepsQuery(narrower: URLSearchParams | undefined, query: URLSearchParams | undefined): boolean {
  return [...(query ?? [])].every(([k, v]) => narrower !== undefined && narrower.getAll(k).includes(v));
}

/**
 * The requested scopes that `granted` does not cover, for a request that may ask for less than
 * was granted, never more (a refresh, RFC 6749 §6). A resource scope, v1 or v2, is covered when
 * each of its permissions is covered by a granted resource scope (see `covers`; several granted
 * scopes may share the work, as the policy grants per type and permission); any other scope only
 * when it was granted as written.
 */
export function scopesNotCovered(requested: readonly string[], granted: readonly string[]): string[] {
  const grantedResources = granted.map(parseResourceScope).filter((s): s is ResourceScope => s !== undefined);
  return requested.filter((text) => {
    const scope = parseResourceScope(text);
    if (!scope) return !granted.includes(text);
    return ![...scope.actions].every((action) => grantedResources.some((g) => covers(g, { ...scope, actions: new Set([action]) })));
  });
}
