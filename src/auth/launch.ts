import type { Server } from '@hapi/hapi';
import { findClient } from './clients';
import { randomToken } from './session';
import type { AuthState } from './state';
import type { SmartCredentials } from './strategy';

/** Long enough for a clinician to sign in at the app; the id is also single-use. */
export const LAUNCH_LIFETIME_S = 300;

/**
 * EHR launch (SMART App Launch 2.2 §"EHR launch"): an EHR, or a clinician's own app, asks for a
 * launch context and gets the app's launch URL with `iss` and `launch`. The caller must be able
 * to read any patient (a system token, or a clinician's user token, with Patient read not
 * confined to one compartment): a launch hands that patient's context to the app.
 */
export function registerLaunchRoute(server: Server, state: AuthState): void {
  server.route({
    method: 'POST',
    path: '/auth/launch',
    options: { auth: { strategy: 'smart', mode: 'required' }, payload: { parse: false, output: 'data', maxBytes: 16 * 1024 } },
    handler: async (request, h) => {
      const error = (status: number, code: string, description: string) =>
        h.response({ error: code, error_description: description }).code(status).type('application/json').header('cache-control', 'no-store');
      const credentials = request.auth.credentials as unknown as SmartCredentials;
      const payload = (request.auth.artifacts as { decoded?: { payload?: Record<string, unknown> } } | undefined)?.decoded?.payload ?? {};
      const fhirUser = typeof payload.fhirUser === 'string' ? payload.fhirUser : undefined;
      // A backend-services token: no user, and only system/ scopes.
      const isSystem = credentials.subject === undefined && fhirUser === undefined && credentials.scope.every((s) => !/^(patient|user)\//.test(s));
      const isClinician = fhirUser?.startsWith('Practitioner/') ?? false;
      if (!(isSystem || isClinician) || !credentials.policy.allows('Patient', 'r') || credentials.policy.confinedToPatient('Patient', 'r')) {
        return error(403, 'insufficient_scope', 'an EHR launch needs a system token or a clinician (Practitioner) token that may read any Patient');
      }
      let body: { client_id?: unknown; patient?: unknown; encounter?: unknown };
      try {
        body = JSON.parse(String(request.payload ?? '')) as typeof body;
        if (!body || typeof body !== 'object' || Array.isArray(body)) throw new Error('not an object');
      } catch {
        return error(400, 'invalid_request', 'the body must be a JSON object {"client_id", "patient", "encounter"?}');
      }
      if (typeof body.client_id !== 'string') return error(400, 'invalid_request', 'client_id is required');
      const client = await findClient(state.db, body.client_id);
      if (!client) return error(400, 'invalid_request', 'unknown client_id');
      if (!client.initiateLoginUri) return error(400, 'invalid_request', 'the client has no initiate_login_uri (its launch URL) registered');
      if (!client.grantTypes.includes('authorization_code')) return error(400, 'invalid_request', 'the client is not registered for authorization_code');
      const patient = typeof body.patient === 'string' ? /^(?:Patient\/)?([A-Za-z0-9\-.]{1,64})$/.exec(body.patient)?.[1] : undefined;
      if (!patient) return error(400, 'invalid_request', 'patient must be "Patient/ID"');
      // Read with the caller's policy, Consents included: a patient whose Consent denies this
      // clinician or EHR is, to it, one that does not exist (the same answer, so no oracle).
      if (!(await state.directory.isReadable(credentials.policy, patient))) return error(400, 'invalid_request', `Patient/${patient} does not exist`);
      let encounter: string | undefined;
      if (body.encounter !== undefined) {
        encounter = typeof body.encounter === 'string' ? /^(?:Encounter\/)?([A-Za-z0-9\-.]{1,64})$/.exec(body.encounter)?.[1] : undefined;
        if (!encounter) return error(400, 'invalid_request', 'encounter must be "Encounter/ID"');
      }
      const id = randomToken(24);
      await state.db.query(
        'INSERT INTO auth_launch (id, client_id, patient, encounter, created_by, expires_at) VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))',
        [id, client.clientId, patient, encounter ?? null, fhirUser ?? credentials.clientId, LAUNCH_LIFETIME_S],
      );
      const url = new URL(client.initiateLoginUri);
      url.searchParams.set('iss', state.urls().fhirBase);
      url.searchParams.set('launch', id);
      state.log.info({ clientId: client.clientId, patient, by: fhirUser ?? credentials.clientId }, 'EHR launch created');
      return h.response({ launch: id, url: url.toString(), expires_in: LAUNCH_LIFETIME_S }).code(200).type('application/json').header('cache-control', 'no-store');
    },
  });
}
