import type { Server } from '@hapi/hapi';
import type { FhirContext } from '../fhir/context';
import { WithingsApi } from './api';
import { RequestBudget } from './budget';
import { callbackUrl } from './callback';
import { forgetWithings } from './erasure';
import { TokenCipher } from './cipher';
import { registerLinking } from './link';
import { registerNotify } from './notify';
import { registerOperatorRoutes } from './operator';
import { closeRelinkFlags, type SyncDeps } from './sync';
import { TokenKeeper } from './tokens';
import { SyncWorker } from './worker';

export { withingsMigrations } from './schema';

/**
 * The Withings cloud connector (issue 17; docs/decisions/016-withings-connector.md): patients'
 * Withings accounts linked by OAuth 2.0, their measurements fetched on notification and by a
 * fallback poll, written through the device door into the one write pipeline (so limits raise
 * Flags). Off unless WITHINGS_CLIENT_ID is configured.
 */
export interface Withings {
  stop(): Promise<void>;
}

export async function registerWithings(ctx: FhirContext, server: Server): Promise<Withings> {
  // Links made while the connector was configured are forgotten on erasure even when it is off now.
  ctx.stages.use('erase', 'withings', forgetWithings);
  const config = ctx.config.withings;
  if (!config) return { stop: async () => {} };
  const cipher = new TokenCipher(config.tokenKey);
  // A wait for the budget within one run stays well inside its lease.
  const budget = new RequestBudget(ctx.db, config.rateLimit, config.rateWindowMs, Math.min(config.rateWindowMs, config.leaseMs / 2));
  const api = new WithingsApi(config, budget, ctx.log);
  const tokens = new TokenKeeper(ctx.db, cipher, api, config.refreshMarginMs);
  const deps: SyncDeps = { ctx, config, api, tokens, log: ctx.log };
  const worker = new SyncWorker(deps);
  const kick = () => worker.kick();

  await registerLinking(server, ctx, config, cipher, async (accountId) => {
    await closeRelinkFlags(ctx, accountId);
    kick();
  });
  registerNotify(server, ctx, config, kick);
  registerOperatorRoutes(server, ctx, {
    kick,
    // Unlinking revokes the notify subscriptions while the tokens still work; they are forgotten either way.
    async unlink(account) {
      try {
        const access = await tokens.accessToken(account.id);
        for (const appli of config.notifyAppli) await api.call('/notify', { action: 'revoke', callbackurl: callbackUrl(config, account.withings_userid), appli }, access.token);
      } catch (err) {
        ctx.log.warn({ err, account: account.id }, 'Withings notify subscriptions could not be revoked; the tokens are forgotten anyway');
      }
    },
  });
  worker.start();
  return { stop: () => worker.stop() };
}
