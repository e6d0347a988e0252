import type { Logger } from 'pino';
import { findVisibleIds } from '../access/enforce';
import { type AccessPolicy, policyFromScopes } from '../access/policy';
import type { WithingsConfig } from '../config';
import { parseWithingsBody } from '../devices/doors';
import { ingestPayload } from '../devices/ingest';
import type { FhirContext } from '../fhir/context';
import { executeWrites } from '../pipeline';
import { readResources } from '../store/repository';
import { type ClaimedAccount, countReadings, failRun, finishRun, markRelinkNeeded, markSubscribed, noteError, releaseRun, renewLease } from './accounts';
import { type WithingsApi, WithingsError } from './api';
import { BudgetExhausted } from './budget';
import { callbackUrl } from './callback';
import { RelinkNeeded, type TokenKeeper } from './tokens';

/**
 * The connector writes as itself: readings of linked patients, and the Flag asking for a new
 * link. Every write still goes through the pipeline, whose stages (mapping, limits → Flags,
 * audit) treat them as any device door's.
 */
export const CONNECTOR_POLICY: AccessPolicy = policyFromScopes(
  ['system/Observation.cru', 'system/Patient.rs', 'system/Device.rs', 'system/DeviceUseStatement.rs', 'system/Flag.crus'],
  { clientId: 'withings-connector' },
);

/**
 * Meastypes asked for: the vital signs this server monitors among those the Withings ConceptMap
 * knows (weight and body composition, height, blood pressure, pulse, temperatures, SpO2, PWV);
 * the map has more (e.g. bone mass), which are not fetched.
 */
const MEASTYPES = '1,4,5,6,8,9,10,11,12,54,71,73,76,77,88,91';
/** The next lastupdate reaches this far behind the answer's updatetime: a group modified in the same second is fetched again (de-duplicated), never missed. */
const CURSOR_OVERLAP_S = 60;
/** Pages of one run at most: a runaway `more` never loops for ever. */
const MAX_PAGES = 1000;

export const RELINK_FLAG_SYSTEM = 'http://rpm.example.org/fhir/NamingSystem/withings-account';
export const CONNECTOR_CODE_SYSTEM = 'http://rpm.example.org/fhir/CodeSystem/withings-connector';

export interface SyncDeps {
  ctx: FhirContext;
  config: WithingsConfig;
  api: WithingsApi;
  tokens: TokenKeeper;
  log: Logger;
}

type Json = Record<string, unknown>;

/** Exponential backoff with jitter from the configured base, capped. */
export function backoffMs(config: WithingsConfig, failures: number): number {
  return Math.min(config.retryMaxMs, config.retryBaseMs * 2 ** Math.min(failures, 20)) * (0.5 + Math.random() / 2);
}

/**
 * One run of one account's sync, under its lease: subscriptions if missing, then getmeas from the
 * cursor (lastupdate), page by page (more/offset), each page's groups written through the device
 * door's ingest into the write pipeline as soon as it arrives. The cursor moves only when the
 * last page is in: a run cut short (restart, 601 beyond the budget, error) starts again from the
 * same cursor, and the readings it writes again are the same resources (their ids derive from
 * the Withings group id), so nothing is lost and nothing is doubled.
 */
export async function syncAccount(deps: SyncDeps, account: ClaimedAccount, owner: string, signal: AbortSignal): Promise<void> {
  const { ctx, config } = deps;
  try {
    let current = await deps.tokens.accessToken(account.id, undefined, signal);
    const call = async (path: string, params: Record<string, string | number>): Promise<Json> => {
      try {
        return await deps.api.call(path, params, current.token, signal);
      } catch (err) {
        if (!(err instanceof WithingsError && err.authFailed)) throw err;
        // Refused before its time (revoked, clock skew): refresh once, then give up this run.
        current = await deps.tokens.accessToken(account.id, current.version, signal);
        return deps.api.call(path, params, current.token, signal);
      }
    };

    if (!account.subscribed && config.notifyAppli.length > 0) await subscribe(deps, account, call);

    const since = account.cursor ?? Math.floor((Date.now() - config.backfillMs) / 1000);
    let cursor: number | undefined;
    let offset: number | undefined;
    for (let page = 0; page < MAX_PAGES; page++) {
      const body = await call('/measure', { action: 'getmeas', category: 1, meastypes: MEASTYPES, lastupdate: since, ...(offset !== undefined ? { offset } : {}) });
      // The first page's server time: anything changed after it is fetched by the next run.
      cursor ??= typeof body.updatetime === 'number' ? body.updatetime : Number(body.updatetime) || Math.floor(Date.now() / 1000);
      await ingestGroups(deps, account, body);
      if (!(await renewLease(ctx.db, account.id, owner, config.leaseMs))) return; // unlinked meanwhile
      // `more` is 0/1 in getmeas (absent when there is nothing more); the v2 endpoints say true/false.
      const more = body.more === 1 || body.more === true;
      if (!more) break;
      if (typeof body.offset !== 'number' || body.offset === offset) throw new WithingsError(-1, 'getmeas said more but gave no new offset');
      offset = body.offset;
      signal.throwIfAborted();
    }
    await finishRun(ctx.db, account, owner, Math.max(0, (cursor ?? since) - CURSOR_OVERLAP_S), config.pollIntervalMs);
  } catch (err) {
    await recordFailure(deps, account, owner, err, signal);
  }
}

async function recordFailure(deps: SyncDeps, account: ClaimedAccount, owner: string, err: unknown, signal: AbortSignal): Promise<void> {
  const { ctx, config, log } = deps;
  if (signal.aborted) {
    await releaseRun(ctx.db, account, owner);
    return;
  }
  if (err instanceof RelinkNeeded) {
    log.warn({ account: account.id }, `Withings account must be linked again: ${err.message}`);
    // The Flag first: once the operator API says relink-needed, the care team has been told.
    try {
      await raiseRelinkFlag(ctx, account);
    } finally {
      await markRelinkNeeded(ctx.db, account.id, `re-link needed: ${err.message}`);
    }
    return;
  }
  if (err instanceof BudgetExhausted) {
    await failRun(ctx.db, account, owner, err.message, err.retryInMs, false);
    return;
  }
  if (err instanceof WithingsError && err.status === 601) {
    await failRun(ctx.db, account, owner, err.message, (err.waitSeconds ?? config.rateWindowMs / 1000) * 1000, false);
    return;
  }
  log.warn({ err, account: account.id }, 'Withings sync failed');
  const message = err instanceof Error ? err.message : String(err);
  await failRun(ctx.db, account, owner, message, backoffMs(config, account.attempts), true);
}

/** Notify subscriptions for each configured appli; Withings checks the callback with a HEAD first (293 when it fails). */
async function subscribe(deps: SyncDeps, account: ClaimedAccount, call: (path: string, params: Record<string, string | number>) => Promise<Json>): Promise<void> {
  const callbackurl = callbackUrl(deps.config, account.userid);
  try {
    for (const appli of deps.config.notifyAppli) await call('/notify', { action: 'subscribe', callbackurl, appli, comment: 'rpm-fhir' });
    await markSubscribed(deps.ctx.db, account.id);
  } catch (err) {
    if (!(err instanceof WithingsError) || err.authFailed || err.status === 601 || err.status === 522) throw err;
    // Not fatal: the fallback poll keeps the data coming, and the next run tries again.
    deps.log.warn({ account: account.id, status: err.status }, 'Withings notify subscription refused');
    await noteError(deps.ctx.db, account.id, `notify subscription refused: ${err.message}`);
  }
}

/** One getmeas page through the device door's ingest (./devices): its mapping, limits and Flags are the pipeline's. */
async function ingestGroups(deps: SyncDeps, account: ClaimedAccount, body: Json): Promise<void> {
  const groups = body.measuregrps;
  if (groups === undefined) return;
  if (!Array.isArray(groups)) throw new WithingsError(-1, 'getmeas answered measuregrps that is not an array');
  if (groups.length === 0) return;
  const payload = parseWithingsBody({ measuregrps: groups }, new URLSearchParams({ patient: `Patient/${account.patientId}` }));
  const bundle = await ingestPayload(deps.ctx, payload, CONNECTOR_POLICY);
  let stored = 0;
  let refused = 0;
  let refusal: string | undefined;
  for (const entry of bundle.entry ?? []) {
    const status = Number(entry.response?.status.split(' ')[0]);
    if (status >= 500) throw new Error(`a reading could not be written (${entry.response?.status}); the page is fetched again`);
    if (status < 300) stored++;
    else {
      refused++;
      refusal ??= `a reading was refused (${entry.response?.status}): ${entry.response?.outcome && (entry.response.outcome as fhir4.OperationOutcome).issue?.[0]?.diagnostics}`;
    }
  }
  await countReadings(deps.ctx.db, account.id, stored, refused, refusal);
}

/**
 * The patient's care team learns that the readings stopped: an active Flag on the patient, one
 * per account (a conditional create, so a repeated failure adds none).
 */
async function raiseRelinkFlag(ctx: FhirContext, account: ClaimedAccount): Promise<void> {
  const identifier = { system: RELINK_FLAG_SYSTEM, value: account.id };
  await executeWrites(ctx, [{
    kind: 'create',
    type: 'Flag',
    ifNoneExist: new URLSearchParams({ identifier: `${identifier.system}|${identifier.value}`, status: 'active' }),
    resource: {
      resourceType: 'Flag',
      identifier: [identifier],
      status: 'active',
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/flag-category', code: 'admin', display: 'Administrative' }] }],
      code: {
        coding: [{ system: CONNECTOR_CODE_SYSTEM, code: 'relink-needed', display: 'Withings account must be linked again' }],
        text: 'Withings readings have stopped: the link to the Withings account was refused. Link the account again.',
      },
      subject: { reference: `Patient/${account.patientId}` },
      period: { start: new Date().toISOString() },
    },
  }], { policy: CONNECTOR_POLICY });
}

/** After a new link: the account's re-link Flag, if any, is closed. */
export async function closeRelinkFlags(ctx: FhirContext, accountId: string): Promise<void> {
  const ids = await findVisibleIds(ctx.db, CONNECTOR_POLICY, 'Flag', new URLSearchParams({ identifier: `${RELINK_FLAG_SYSTEM}|${accountId}`, status: 'active' }));
  if (ids.length === 0) return;
  const flags = await readResources<fhir4.Flag>(ctx.db, 'Flag', ids);
  const now = new Date().toISOString();
  await executeWrites(ctx, [...flags].map(([id, flag]) => ({
    kind: 'update' as const, type: 'Flag', id, resource: { ...flag, status: 'inactive' as const, period: { ...flag.period, end: now } },
  })), { policy: CONNECTOR_POLICY });
}
