import { contributeToCapabilities } from '../fhir/capability';
import { authUrls } from './state';

/**
 * CapabilityStatement.rest.security (SMART App Launch 2.2 §"Declaring support"): the SMART
 * service coding and the oauth-uris extension with the same URLs as smart-configuration.
 * Absent when auth is disabled, since no token is then needed.
 */
export function contributeSecurity(): void {
  contributeToCapabilities('auth.security', (statement, ctx) => {
    if (ctx.config.auth.disabled) return;
    const urls = authUrls(ctx.baseUrl);
    const rest = statement.rest?.[0];
    if (!rest) return;
    rest.security = {
      cors: true,
      service: [
        {
          coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'SMART-on-FHIR' }],
          text: 'OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)',
        },
      ],
      description: 'SMART App Launch 2.2 (EHR and standalone launch, authorization code with PKCE, OpenID Connect) and SMART Backend Services (client_credentials with private_key_jwt); access tokens are Bearer JWTs for this FHIR base.',
      extension: [
        {
          url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
          extension: [
            { url: 'authorize', valueUri: urls.authorize },
            { url: 'token', valueUri: urls.token },
            ...(ctx.config.auth.registrationToken ? [{ url: 'register', valueUri: urls.register }] : []),
            { url: 'introspect', valueUri: urls.introspect },
            { url: 'revoke', valueUri: urls.revoke },
          ],
        },
      ],
    };
  });
}
