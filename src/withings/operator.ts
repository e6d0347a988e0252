import type { Server } from '@hapi/hapi';
import { findVisibleAmong, readVisible, requireAction } from '../access/enforce';
import { policyOf } from '../access/request';
import type { FhirContext } from '../fhir/context';
import { DEFAULT_INPUT_LIMITS } from '../kernel/input-limits';
import { badRequest, notFound } from '../kernel/outcome';
import { accountById, type AccountRow, accountView, deleteAccount, listAccounts, requestSync } from './accounts';
import { requireLinkRight } from './link';

const ACCOUNT_ID = /^[0-9a-f-]{36}$/;
/** The most accounts one list answer shows. */
const LIST_MAX = 1_000;

/**
 * The linked accounts and their sync state for operators and care teams: last success, last
 * error, next attempt. A caller sees the accounts of the patients it may see (the access policy,
 * as for any read); it unlinks or asks for a sync where it may file the patient's readings.
 */
export function registerOperatorRoutes(server: Server, ctx: FhirContext, hooks: { unlink(account: AccountRow): Promise<void>; kick(): void }): void {
  const visibleAccount = async (request: Parameters<typeof policyOf>[0]) => {
    const policy = policyOf(request);
    const id = request.params.id as string;
    const row = ACCOUNT_ID.test(id) ? await accountById(ctx.db, id) : undefined;
    if (!row || !(await readVisible(ctx.db, policy, 'Patient', row.patient_id))) throw notFound(`Withings account ${id.slice(0, 40)} is not known`);
    return { policy, row };
  };
  /** An account the caller sees and may act on: the right to file the patient's readings. */
  const manageableAccount = async (request: Parameters<typeof policyOf>[0]) => {
    const { policy, row } = await visibleAccount(request);
    await requireLinkRight(ctx, policy, row.patient_id);
    return row;
  };

  server.route({
    method: 'GET',
    path: '/withings/accounts',
    handler: async (request, h) => {
      const policy = policyOf(request);
      requireAction(policy, 'Patient', 's');
      const patient = request.query.patient;
      let patientId: string | undefined;
      if (patient !== undefined) {
        patientId = typeof patient === 'string' ? /^(?:Patient\/)?([A-Za-z0-9\-.]{1,64})$/.exec(patient)?.[1] : undefined;
        if (!patientId) throw badRequest('patient must be a Patient reference', ['patient']);
      }
      // Page by page, each page's patients filtered by the policy's compartment and constraints
      // in SQL (a search of Patient by _id, so a page holds at most as many ids as a search takes
      // values), until LIST_MAX visible accounts or the end.
      const shown: AccountRow[] = [];
      const pageSize = DEFAULT_INPUT_LIMITS.maxOrValues;
      for (let after: AccountRow | undefined; shown.length < LIST_MAX; ) {
        const page = await listAccounts(ctx.db, { patientId, after, limit: pageSize });
        if (page.length === 0) break;
        const ids = [...new Set(page.map((r) => r.patient_id))];
        const visible = await findVisibleAmong(ctx.db, policy, 'Patient', ids);
        shown.push(...page.filter((r) => visible.has(r.patient_id)));
        if (page.length < pageSize) break;
        after = page[page.length - 1];
      }
      return h.response({ accounts: shown.slice(0, LIST_MAX).map(accountView) }).type('application/json');
    },
  });

  server.route({
    method: 'GET',
    path: '/withings/accounts/{id}',
    handler: async (request, h) => h.response(accountView((await visibleAccount(request)).row)).type('application/json'),
  });

  server.route({
    method: 'POST',
    path: '/withings/accounts/{id}/sync',
    handler: async (request, h) => {
      const row = await manageableAccount(request);
      await requestSync(ctx.db, { id: row.id });
      hooks.kick();
      return h.response(accountView((await accountById(ctx.db, row.id))!)).code(202).type('application/json');
    },
  });

  server.route({
    method: 'DELETE',
    path: '/withings/accounts/{id}',
    handler: async (request, h) => {
      const row = await manageableAccount(request);
      await hooks.unlink(row);
      await deleteAccount(ctx.db, row.id);
      return h.response().code(204);
    },
  });
}
