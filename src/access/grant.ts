import type { Queryable } from '../store/db';

/**
 * The grant behind access that outlives its request. A Subscription acts under the grant of the
 * token that set it, and only while that grant lives (decision 032): the authorization server
 * says which grants still stand (src/auth/grant-standing.ts), the monitoring capability asks
 * before it matches or delivers. This is the contract between the two; neither imports the other.
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
