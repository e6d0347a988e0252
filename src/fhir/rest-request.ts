import type { VersionCondition } from '../kernel/etag';
import type { AccessPolicy } from '../access/policy';
import type { InteractionResult } from './context';
import type { ReturnPreference } from './negotiation';
import { etag, httpDate } from '../kernel/etag';
import { informationOutcome } from '../kernel/outcome';
import type { WriteOutcome } from '../pipeline';

/** A FHIR REST request as the interactions see it: no Hapi types, so bundles can replay it. */
export interface RestRequest {
  /** The resource type; '' for system-level interactions (a Bundle at the base, system history). */
  type: string;
  id?: string;
  versionId?: string;
  query: URLSearchParams;
  ifMatch?: VersionCondition;
  ifNoneExist?: string;
  ifNoneMatch?: string;
  ifModifiedSince?: string;
  prefer: ReturnPreference;
  /** Whether the client sent `Prefer: return=…` at all (bundles default to minimal). */
  preferExplicit?: boolean;
  /** Parsed JSON body (a resource, or a JSON Patch array). */
  body?: unknown;
  bodyKind?: 'resource' | 'json-patch';
  /** `Prefer: handling=lenient`: unknown search parameters are reported, not refused. */
  lenient: boolean;
  /** The request's URL on this server's public base (BASE_URL), its query as sent. */
  url: string;
  /** `/Patient/{id}/{compartmentType}` compartment searches. */
  compartmentType?: string;
  /** `$validate` and other operations. */
  operation?: string;
  /** What the requester may do (SMART scopes); `unrestricted` when auth is off. */
  policy: AccessPolicy;
  /** `X-Commit-LSN`: the client's last write, which a search on a replica must see (src/store/replica.ts). */
  commitLsn?: string;
}


/** Status, ETag, Location, Last-Modified and the body chosen by `Prefer: return=` for a write. */
export function writeResult(baseUrl: string, outcome: WriteOutcome, prefer: ReturnPreference): InteractionResult {
  const headers: Record<string, string> = {};
  if (outcome.versionId !== undefined && outcome.id) {
    headers.etag = etag(outcome.versionId);
    if (outcome.status === 201 || outcome.status === 200) {
      headers.location = `${baseUrl}/${outcome.type}/${outcome.id}/_history/${outcome.versionId}`;
    }
  }
  if (outcome.lastUpdated) headers['last-modified'] = httpDate(outcome.lastUpdated);
  if (outcome.status === 204) {
    // R4 http.html#delete: a delete may answer 200 with an OperationOutcome; do so only when asked.
    if (prefer !== 'OperationOutcome') return { status: 204, headers };
    const said = outcome.unwritten || outcome.versionId === undefined ? 'nothing to delete; nothing was written' : `deleted, version ${outcome.versionId}`;
    return { status: 200, headers, body: informationOutcome(`${outcome.id ? `${outcome.type}/${outcome.id}` : outcome.type} ${said}`) };
  }
  if (prefer === 'minimal') return { status: outcome.status, headers };
  if (prefer === 'OperationOutcome') {
    const said = outcome.unwritten ? `version ${outcome.versionId} is current; nothing was written` : `written, version ${outcome.versionId}`;
    return { status: outcome.status, headers, body: informationOutcome(`${outcome.type}/${outcome.id} ${said}`) };
  }
  return { status: outcome.status, headers, body: outcome.resource };
}
