import type { Db } from '../store/db';
import { type WithingsApi, WithingsError } from './api';
import { sleep } from './budget';
import type { TokenCipher } from './cipher';

/** The refresh token was refused: the user must link the account again. */
export class RelinkNeeded extends Error {}

/** How long one node may hold an account's token lock (a refresh is one request). */
const LOCK_MS = 30_000;

export interface AccessToken {
  token: string;
  version: number;
}

/**
 * Access tokens of linked accounts, refreshed before they expire (3 h at Withings). Refresh
 * tokens rotate: each refresh answers a new one and the old one dies once the new access token
 * is used (or 8 h later), so two concurrent refreshes of one account would leave one node with a
 * dead token. The per-account lock is a row column taken by compare-and-set (refresh_lock_until),
 * so it holds across nodes without keeping a transaction open over the HTTP call; the new pair is
 * stored in one UPDATE with the version bumped.
 */
export class TokenKeeper {
  /** One refresh at a time per account in this process too, so waiting costs no polling here. */
  private readonly inFlight = new Map<string, Promise<AccessToken>>();

  constructor(
    private readonly db: Db,
    private readonly cipher: TokenCipher,
    private readonly api: WithingsApi,
    private readonly marginMs: number,
  ) {}

  /**
   * A usable access token. `rejected`: the version Withings just refused (401); a newer stored
   * one is used as it is, else the account is refreshed.
   */
  async accessToken(accountId: string, rejected?: number, signal?: AbortSignal): Promise<AccessToken> {
    const pending = this.inFlight.get(accountId);
    if (pending) return pending;
    const work = this.obtain(accountId, rejected, signal).finally(() => this.inFlight.delete(accountId));
    this.inFlight.set(accountId, work);
    return work;
  }

  private async obtain(accountId: string, rejected: number | undefined, signal?: AbortSignal): Promise<AccessToken> {
    for (;;) {
      const { rows } = await this.db.query<{ access_token: string; token_version: number; fresh: boolean; status: string }>(
        `SELECT access_token, token_version, status, access_expires_at > now() + $2 * interval '1 millisecond' AS fresh FROM withings_account WHERE id = $1`,
        [accountId, this.marginMs],
      );
      const row = rows[0];
      if (!row || row.status !== 'active') throw new RelinkNeeded('the account is unlinked or must be linked again');
      if (row.fresh && row.token_version !== rejected) return { token: this.cipher.open(row.access_token, accountId), version: row.token_version };
      const { rows: locked } = await this.db.query<{ refresh_token: string }>(
        `UPDATE withings_account SET refresh_lock_until = now() + $3 * interval '1 millisecond'
          WHERE id = $1 AND token_version = $2 AND (refresh_lock_until IS NULL OR refresh_lock_until < now())
          RETURNING refresh_token`,
        [accountId, row.token_version, LOCK_MS],
      );
      if (!locked[0]) {
        // Another node refreshes (or just did: the version moved): read again shortly.
        await sleep(100, signal);
        continue;
      }
      return this.refresh(accountId, row.token_version, this.cipher.open(locked[0].refresh_token, accountId), signal);
    }
  }

  private async refresh(accountId: string, version: number, refreshToken: string, signal?: AbortSignal): Promise<AccessToken> {
    let tokens;
    try {
      tokens = await this.api.refresh(refreshToken, signal);
    } catch (err) {
      await this.db.query('UPDATE withings_account SET refresh_lock_until = NULL WHERE id = $1 AND token_version = $2', [accountId, version]);
      // 503 "Invalid Params" on requesttoken: the refresh token is dead (revoked, expired, or rotated away).
      if (err instanceof WithingsError && (err.status === 503 || err.authFailed)) throw new RelinkNeeded(err.message);
      throw err;
    }
    const { rows } = await this.db.query<{ token_version: number }>(
      `UPDATE withings_account SET access_token = $3, refresh_token = $4, access_expires_at = now() + $5 * interval '1 second', scope = $6,
         token_version = token_version + 1, refresh_lock_until = NULL
       WHERE id = $1 AND token_version = $2 RETURNING token_version`,
      [accountId, version, this.cipher.seal(tokens.accessToken, accountId), this.cipher.seal(tokens.refreshToken, accountId), tokens.expiresIn, tokens.scope],
    );
    if (!rows[0]) throw new RelinkNeeded('the account was unlinked or linked again during a refresh');
    return { token: tokens.accessToken, version: rows[0].token_version };
  }
}
