import { createHmac } from 'node:crypto';
import { constantTimeEqual } from '../auth/secrets';
import type { WithingsConfig } from '../config';

/**
 * The notify callback URL of one Withings user: `<base>/withings/notify?s=<mac>`. Withings signs
 * nothing it posts, so the URL itself carries a MAC of the user id (keyed from the token key):
 * a forged notification for a user cannot make the server spend its request budget.
 */
export const NOTIFY_PATH = '/withings/notify';

function mac(config: WithingsConfig, userid: string): string {
  return createHmac('sha256', config.tokenKey).update(`withings-notify|${userid}`).digest('base64url').slice(0, 22);
}

export function callbackUrl(config: WithingsConfig, userid: string): string {
  return `${config.callbackBase}${NOTIFY_PATH}?s=${mac(config, userid)}`;
}

export function validCallbackMac(config: WithingsConfig, userid: string, given: string | undefined): boolean {
  return constantTimeEqual(given ?? '', mac(config, userid));
}
