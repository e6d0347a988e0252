import type { Queryable } from '../store/db';
import { unrestricted } from './policy';

/**
 * The grant behind access that outlives its request. A Subscription acts under the grant of the
 * token that set it, and a bulk export under its kick-off token's, only while that grant lives
 * (decision 032): the authorization server says which grants still stand
 * (src/auth/grant-standing.ts), the monitoring capability asks before it matches or delivers, the
 * bulk export before each batch and download. This is the contract between them; none imports another.
 */
export interface GrantRef {
  readonly clientId: string;
  /** The user, for a user's authorization. */
  readonly subject?: string;
  /** The authorization grant its tokens share (authorization code flow), when there is one. */
  readonly grantId?: string;
  /** The access token (jti) it was recorded from; absent for the server's own access. */
  readonly tokenId?: string;
  /** The scopes as they were granted then. */
  readonly scopes: readonly string[];
}

/** Alive, with the scopes it still holds (never wider than granted); or ended, and why. */
export type GrantStanding = { readonly alive: true; readonly scopes: string[] } | { readonly alive: false; readonly reason: string };

/** The standing of each grant of `grants`, in the same order, read in one statement on `db`. */
export type GrantStandings = (db: Queryable, grants: readonly GrantRef[]) => Promise<GrantStanding[]>;

/**
 * The grant recorded work acts under, as `grantStandings` asks after it; undefined for the
 * server's own access (AUTH_DISABLED, internal work: the unrestricted policy's client and no
 * token), which no grant bounds and which always stands. A record with neither `grantId` nor
 * `tokenId` (made before they were recorded) is judged by its client's registration.
 */
export function recordedGrant(record: {
  clientId: string;
  scopes: readonly string[];
  subject?: string | null;
  grantId?: string | null;
  tokenId?: string | null;
}): GrantRef | undefined {
  if (!record.grantId && !record.tokenId && record.clientId === unrestricted.clientId) return undefined;
  return {
    clientId: record.clientId,
    scopes: record.scopes,
    ...(record.subject ? { subject: record.subject } : {}),
    ...(record.grantId ? { grantId: record.grantId } : {}),
    ...(record.tokenId ? { tokenId: record.tokenId } : {}),
  };
}
