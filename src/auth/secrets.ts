import { randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';

/**
 * Secrets the authorization server keeps (user passwords, client secrets) as scrypt hashes in one
 * self-describing format, `scrypt$N$r$p$salt$hash`, so parameters can change without breaking
 * stored hashes; and the one constant-time comparison of the auth code.
 */

export interface ScryptCost {
  N: number;
  r: number;
  p: number;
}

/**
 * Passwords: N = 2^15, r = 8, p = 1, about 50 ms and 32 MiB per hash on this kind of machine
 * (OWASP's scrypt floor is N = 2^17 with p = 1 at 128 MiB; we trade some of that for a server
 * that also serves device traffic, and throttle guessing per account and address instead).
 */
export const PASSWORD_COST: ScryptCost = { N: 32768, r: 8, p: 1 };
/** Client secrets are 256 random bits, not guessable words: node's default cost is plenty. */
export const CLIENT_SECRET_COST: ScryptCost = { N: 16384, r: 8, p: 1 };

const KEYLEN = 32;

function scrypt(secret: string, salt: Buffer, cost: ScryptCost, keylen = KEYLEN): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scryptCb(secret.normalize('NFC'), salt, keylen, { ...cost, maxmem: 128 * cost.N * cost.r * 2 }, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

export async function hashSecret(secret: string, cost: ScryptCost): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scrypt(secret, salt, cost);
  return `scrypt$${cost.N}$${cost.r}$${cost.p}$${salt.toString('base64url')}$${hash.toString('base64url')}`;
}

/** A hash of nothing, verified when there is no stored hash: an unknown name costs the same time as a known one. */
const DUMMY = `scrypt$${PASSWORD_COST.N}$${PASSWORD_COST.r}$${PASSWORD_COST.p}$${Buffer.alloc(16).toString('base64url')}$${Buffer.alloc(KEYLEN).toString('base64url')}`;

export async function verifySecret(secret: string, stored: string | undefined): Promise<boolean> {
  let parts = (stored ?? DUMMY).split('$');
  // Client secrets stored before the parameters were named: `scrypt$salt$hash` at node's default cost.
  if (parts.length === 3 && parts[0] === 'scrypt') parts = ['scrypt', '16384', '8', '1', parts[1]!, parts[2]!];
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [, n, r, p, salt, hash] = parts as [string, string, string, string, string, string];
  const cost = { N: Number(n), r: Number(r), p: Number(p) };
  if (![cost.N, cost.r, cost.p].every((x) => Number.isInteger(x) && x > 0) || cost.N > 1 << 20) return false;
  const expected = Buffer.from(hash, 'base64url');
  const actual = await scrypt(secret, Buffer.from(salt, 'base64url'), cost, expected.length || KEYLEN);
  return stored !== undefined && actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** Whether two strings are equal, in time that does not depend on where they differ. */
export function constantTimeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
