import type { Server } from '@hapi/hapi';
import type { WithingsConfig } from '../config';
import type { FhirContext } from '../fhir/context';
import { forbidden } from '../access/enforce';
import { badRequest, notFound } from '../kernel/outcome';
import { requestSync } from './accounts';
import { NOTIFY_PATH, validCallbackMac } from './callback';

/** appli codes Withings sends (research §4): a notification of any of them asks for a sync. */
const KNOWN_APPLI = new Set([1, 2, 4, 16, 44, 46, 50, 51, 52, 53, 54, 55, 58]);

/**
 * Withings' notify callback: public (Withings holds no token of ours), checked by the MAC in its
 * URL (./callback.ts). HEAD and GET answer 200: Withings checks the URL with a HEAD before it
 * accepts a subscription. A POST (form-encoded userid, appli, startdate, enddate) only records
 * that the account is due and answers at once: Withings wants 2xx within 2 s and retries
 * otherwise; the sync runs behind the answer.
 */
export function registerNotify(server: Server, ctx: FhirContext, config: WithingsConfig, kick: () => void): void {
  server.route({ method: 'GET', path: NOTIFY_PATH, options: { auth: false }, handler: (_request, h) => h.response().code(200) });
  server.route({
    method: 'POST',
    path: NOTIFY_PATH,
    options: { auth: false, payload: { parse: true, allow: ['application/x-www-form-urlencoded'], maxBytes: 4096 } },
    handler: async (request, h) => {
      const form = (request.payload ?? {}) as Record<string, unknown>;
      const userid = form.userid;
      const appli = Number(form.appli);
      if (typeof userid !== 'string' || !/^\d{1,20}$/.test(userid)) throw badRequest('userid must be a Withings user id (digits)', ['userid']);
      if (typeof form.appli !== 'string' || !KNOWN_APPLI.has(appli)) throw badRequest('appli must be a Withings notification category', ['appli']);
      for (const name of ['startdate', 'enddate']) {
        const v = form[name];
        if (v !== undefined && (typeof v !== 'string' || !/^\d{1,12}$/.test(v))) throw badRequest(`${name} must be a UNIX time`, [name]);
      }
      const mac = typeof request.query.s === 'string' ? request.query.s : undefined;
      if (!validCallbackMac(config, userid, mac)) throw forbidden('this callback URL was not issued for this Withings user');
      if (!(await requestSync(ctx.db, { userid }))) throw notFound('no active link for this Withings user');
      kick();
      return h.response().code(200);
    },
  });
}
