import type { Server } from '@hapi/hapi';
import { findVisibleIds, readVisible, requireAction } from '../access/enforce';
import { policyOf } from '../access/request';
import type { FhirContext } from '../fhir/context';
import { badRequest, notFound } from '../kernel/outcome';
import { accountById, accountView, deleteAccount, listAccounts, requestSync } from './accounts';
import { requireLinkRight } from './link';

const ACCOUNT_ID = /^[0-9a-f-]{36}$/;

/**
 * The linked accounts and their sync state for operators and care teams: last success, last
 * error, next attempt. A caller sees the accounts of the patients it may see (the access policy,
 * as for any read); it unlinks or asks for a sync where it may file the patient's readings.
 */
export function registerOperatorRoutes(server: Server, ctx: FhirContext, hooks: { unlink(accountId: string): Promise<void>; kick(): void }): void {
  const visibleAccount = async (request: Parameters<typeof policyOf>[0]) => {
    const policy = policyOf(request);
    const id = request.params.id as string;
    const row = ACCOUNT_ID.test(id) ? await accountById(ctx.db, id) : undefined;
    if (!row || !(await readVisible(ctx.db, policy, 'Patient', row.patient_id))) throw notFound(`Withings account ${id.slice(0, 40)} is not known`);
    return { policy, row };
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
      const rows = await listAccounts(ctx.db, patientId);
      const ids = [...new Set(rows.map((r) => r.patient_id))];
      // The policy's compartment and constraints, in SQL: only patients the caller may search.
      const visible = new Set(ids.length ? await findVisibleIds(ctx.db, policy, 'Patient', new URLSearchParams({ _id: ids.join(',') })) : []);
      return h.response({ accounts: rows.filter((r) => visible.has(r.patient_id)).map(accountView) }).type('application/json');
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
      const { policy, row } = await visibleAccount(request);
      await requireLinkRight(ctx, policy, row.patient_id);
      await requestSync(ctx.db, { id: row.id });
      hooks.kick();
      return h.response(accountView((await accountById(ctx.db, row.id))!)).code(202).type('application/json');
    },
  });

  server.route({
    method: 'DELETE',
    path: '/withings/accounts/{id}',
    handler: async (request, h) => {
      const { policy, row } = await visibleAccount(request);
      await requireLinkRight(ctx, policy, row.patient_id);
      await hooks.unlink(row.id);
      await deleteAccount(ctx.db, row.id);
      return h.response().code(204);
    },
  });
}
