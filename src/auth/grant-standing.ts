import type { GrantRef, GrantStanding } from '../access/grant';
import { grantScopes, splitScope } from '../access/scopes';
import type { AuthConfig } from '../config';
import type { Queryable } from '../store/db';

/**
 * Whether grants still stand, for what acts under one after its request (a Subscription,
 * decision 032) and for the token endpoint's refresh. A grant is, by what the token recorded:
 *
 * - a user's authorization (the code flow's grant_id): it stands while its client is registered,
 *   its user exists (a local login, or a federated one of the identity provider configured now)
 *   and it has a live refresh token whose online_access login session, if any, has not ended;
 *   a grant issued without refresh token lives as long as its access tokens. Revocation,
 *   rotation reuse, user or client removal and erasure all end it here, as they end its tokens or
 *   session.
 * - a backend service's (no grant_id, no user, a registered client): its registration. It stands
 *   while the client is registered, with no more than the registration allows now.
 * - anything else (a token minted by the operator's CLI for an unregistered client id): the one
 *   token, at most ACCESS_TOKEN_LIFETIME.
 *
 * One statement for any number of grants, so that a caller checks a whole batch at once.
 */
export async function grantStandings(db: Queryable, config: AuthConfig, grants: readonly GrantRef[]): Promise<GrantStanding[]> {
  if (grants.length === 0) return [];
  const { rows } = await db.query<StandingRow>(
    `SELECT g.i::int AS i, c.scope AS client_scope,
            (u.username IS NOT NULL OR ($5::text IS NOT NULL AND starts_with(g.subject, $5::text))) AS user_known,
            EXISTS (SELECT 1 FROM auth_token t WHERE t.grant_id = g.grant_id AND t.kind = 'refresh') AS refreshable,
            EXISTS (SELECT 1 FROM auth_token t WHERE t.grant_id = g.grant_id AND t.kind = 'refresh' AND t.revoked_at IS NULL AND t.expires_at > now()) AS refresh_live,
            EXISTS (SELECT 1 FROM auth_token t WHERE t.grant_id = g.grant_id AND t.kind = 'refresh' AND t.revoked_at IS NULL AND t.expires_at > now()
                      AND (coalesce((t.context->>'online')::boolean, false) = false
                           OR EXISTS (SELECT 1 FROM auth_session s WHERE s.id_hash = t.context->>'session' AND s.expires_at > now()))) AS session_live,
            EXISTS (SELECT 1 FROM auth_token t WHERE t.grant_id = g.grant_id AND t.kind = 'access' AND t.revoked_at IS NULL AND t.expires_at > now()) AS access_live,
            EXISTS (SELECT 1 FROM auth_token t WHERE t.jti = g.token_id AND t.revoked_at IS NULL AND t.expires_at > now()) AS token_live
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS g(client_id, subject, grant_id, token_id, i)
       LEFT JOIN auth_client c ON c.client_id = g.client_id
       LEFT JOIN auth_user u ON u.username = g.subject`,
    [
      grants.map((g) => g.clientId), grants.map((g) => g.subject ?? null), grants.map((g) => g.grantId ?? null), grants.map((g) => g.tokenId ?? null),
      config.oidc ? `${config.oidc.issuer}#` : null,
    ],
  );
  const byIndex = new Map(rows.map((r) => [r.i, r]));
  return grants.map((g, i) => standing(g, byIndex.get(i + 1)!));
}

interface StandingRow {
  i: number;
  client_scope: string | null;
  user_known: boolean;
  refreshable: boolean;
  refresh_live: boolean;
  session_live: boolean;
  access_live: boolean;
  token_live: boolean;
}

const ended = (reason: string): GrantStanding => ({ alive: false, reason });

function standing(g: GrantRef, row: StandingRow): GrantStanding {
  // What the client's registration allows now: a narrowed registration narrows what stands.
  const registered = (scope: string) => ({ alive: true as const, scopes: grantScopes(g.scopes, splitScope(scope), { contexts: ['patient', 'user', 'system'], otherScopes: true }) });
  if (g.grantId) {
    if (row.client_scope === null) return ended(`client ${g.clientId} is no longer registered`);
    if (g.subject !== undefined && !row.user_known) return ended(`user ${g.subject} no longer exists`);
    if (row.refreshable ? !row.refresh_live : !row.access_live) return ended('the grant was revoked or has expired');
    if (!row.session_live) return ended('the login session of this online_access grant has ended');
    return registered(row.client_scope);
  }
  if (g.subject === undefined && row.client_scope !== null) return registered(row.client_scope);
  if (g.tokenId && row.token_live) return { alive: true, scopes: [...g.scopes] };
  if (g.tokenId) return ended(`the token it was set with has expired or was revoked, and client ${g.clientId} has no registration or grant behind it`);
  // Recorded before grants were (decision 032): nothing says which grant it was.
  return ended(row.client_scope === null ? `client ${g.clientId} is no longer registered` : 'no grant was recorded for it; set it again');
}
