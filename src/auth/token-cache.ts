/**
 * Access tokens this process verified in the last second (docs/decisions/024-verified-token-cache.md).
 *
 * Verifying a Bearer token costs an RS384 signature check (~35 µs) and a database round trip for
 * its record (recorded, not revoked); a monitoring client sends the same token with every request
 * for its five-minute life. A token verified here is taken as verified again for at most
 * TOKEN_CACHE_MS, never past its `exp`, by exactly the same token text.
 *
 * Revocation: every revocation and erasure in this process forgets the whole cache before its
 * answer is sent, and a verification that overlapped one is not kept (the generation moved), so
 * this process refuses a revoked token at once. Another process's revocations are seen within
 * TOKEN_CACHE_MS, the bound the access policy's Consent cache already has (src/access/consent.ts).
 * The cache is per server instance (AuthState), never per module: two servers in one process
 * (tests) must not take each other's tokens.
 */
export const TOKEN_CACHE_MS = 1000;
const MAX_CACHED_TOKENS = 10_000;

/** What verification established about a token: its claims, and the user its record names. */
export interface VerifiedToken {
  header: Record<string, unknown>;
  payload: Record<string, unknown> & { exp: number };
  /** The FHIR identity of the token's record (auth_token.fhir_user), not of its claims. */
  fhirUser?: string;
  /** The authorization grant of the token's record (auth_token.grant_id), when it has one. */
  grantId?: string;
}

export class VerifiedTokens {
  private generation = 0;
  private readonly entries = new Map<string, { generation: number; until: number; token: VerifiedToken }>();

  /** The token verified from exactly this text, while it is fresh, unexpired and nothing was revoked here since. */
  get(text: string, now = Date.now()): VerifiedToken | undefined {
    const hit = this.entries.get(text);
    if (!hit) return undefined;
    if (hit.generation === this.generation && now < hit.until) return hit.token;
    this.entries.delete(text);
    return undefined;
  }

  /** Taken before a verification starts, handed to keep() after it. */
  get started(): number {
    return this.generation;
  }

  keep(text: string, token: VerifiedToken, started: number, now = Date.now()): void {
    if (started !== this.generation) return;
    if (this.entries.size >= MAX_CACHED_TOKENS) this.entries.clear();
    this.entries.set(text, { generation: started, until: Math.min(now + TOKEN_CACHE_MS, token.payload.exp * 1000), token });
  }

  /** After a revocation or erasure in this process: nothing verified before it is taken again. */
  forget(): void {
    this.generation++;
    this.entries.clear();
  }
}
