import { type GrantStandings, recordedGrant } from '../access/grant';
import type { Queryable } from '../store/db';
import type { Job } from './jobs';

/**
 * Why a job may no longer export, nor be served: the grant of its kick-off token has ended
 * (revoked, its login session over, its user or client removed), or no longer holds every scope
 * the job runs under; undefined while it stands whole. An export is a copy of the record made
 * under that grant, and lives with it as a Subscription does (decision 032). One statement.
 *
 * The server's own jobs (AUTH_DISABLED) have no grant and always stand. Jobs recorded before
 * grants were (no grant_id, no token_id) are judged by what the contract says of such a record:
 * a backend service's stands by its client's registration, which is all a backend's access ever
 * rested on; a user's, or an unregistered client's, has ended, since nothing says which grant it
 * was, and a job whose user may have been removed or whose refresh token may have been revoked
 * must not run on by default. Exports live at most BULK_FILE_TTL, so little is lost.
 */
export async function grantEnded(db: Queryable, grants: GrantStandings, job: Job): Promise<string | undefined> {
  const ref = recordedGrant({ clientId: job.clientId, scopes: job.scopes, subject: job.grant.subject, grantId: job.token?.grantId, tokenId: job.token?.tokenId });
  if (!ref) return undefined;
  const [standing] = await grants(db, [ref]);
  if (!standing!.alive) return `the authorization this export was started under has ended: ${standing!.reason}`;
  // Narrower now (a registration cut down): files produced under the wider scopes must not go out.
  const lost = job.scopes.filter((s) => !standing!.scopes.includes(s));
  return lost.length ? `the authorization this export was started under no longer grants ${lost.join(' ')}` : undefined;
}
