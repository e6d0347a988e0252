import { consentProblems } from '../access/consent-rules';
import { forgetConsents, GOVERNING_TYPES } from '../access/consent';
import { badRequest } from '../kernel/outcome';
import { CONSENTS_CHANGED_NOTICE } from './cache-notices';
import { eachWrite, type Stages } from '../pipeline';

/**
 * Consents and caregiver links in the write pipeline:
 * - validate: a patient-privacy Consent this server could not enforce is a 400, never stored
 *   to be half-applied;
 * - rules: the write tells the other nodes to drop their cache at its commit (./cache-notices.ts);
 * - after-commit: the access policy's cache of Consents is dropped before the write's
 *   response is sent, so the next request, with any token, meets the new state;
 * - erase: an erasure commits no writes, so it has no after-commit; the cache is dropped in its
 *   unit instead (a request between that and the commit may cache the old state again, for the
 *   cache's own second at most).
 */
export function registerConsentStages(stages: Stages): void {
  stages.use('validate', 'auth.consent', async (_uow, writes) =>
    eachWrite(writes, (w) => {
      if (w.type !== 'Consent' || !w.resource) return;
      const problems = consentProblems(w.resource as fhir4.Consent);
      if (problems.length) throw badRequest(`this Consent cannot be enforced: ${problems.join('; ')}`);
    }),
  );
  stages.use('rules', 'auth.consent-notice', async (uow, committed) => {
    if (committed.some((w) => GOVERNING_TYPES.has(w.type))) uow.tx.later(CONSENTS_CHANGED_NOTICE);
  });
  stages.use('after-commit', 'auth.consent-cache', async (committed) => {
    if (committed.some((w) => GOVERNING_TYPES.has(w.type))) forgetConsents();
  });
  stages.use('erase', 'auth.consent-cache', async (uow) => {
    forgetConsents();
    uow.tx.later(CONSENTS_CHANGED_NOTICE);
  });
}
