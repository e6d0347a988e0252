import { type KeyObject, createPrivateKey, createPublicKey } from 'node:crypto';
import type { JWK } from 'jose';
import type { Db, Queryable } from '../store/db';
import { jose } from './jose';

/** The algorithms this server signs with and accepts (SMART Backend Services: RS384 and ES384). */
export type SigningAlg = 'RS384' | 'ES384' | 'RS256';
/** Accepted on access tokens and client assertions; RS256 (id_tokens only) is not among them. */
export const ACCEPTED_ALGS: readonly SigningAlg[] = ['RS384', 'ES384'];
/** OpenID Connect Core §15.1: id_tokens are signed RS256, with a key of their own. */
export const ID_TOKEN_ALG: SigningAlg = 'RS256';
/** Access tokens are signed with this one. */
export const ACCESS_TOKEN_ALG: SigningAlg = 'RS384';

/** A retired key keeps verifying (and stays in the JWKS) this long, far beyond any token it signed. */
const RETIRED_KEY_GRACE_MS = 3600_000;
/** How stale the in-memory key set may be before signing reloads it (picks up another process's rotation). */
const RELOAD_MS = 60_000;
/** An unknown kid reloads the keys at most this often, so garbage kids cannot hammer the database. */
const UNKNOWN_KID_RELOAD_MS = 5_000;
/** An arbitrary constant: serialises first-start key generation across processes. */
const KEY_LOCK = 7_400_201;

export interface SigningKey {
  kid: string;
  alg: SigningAlg;
  /** Public JWK with kid, alg and use, as published. */
  publicJwk: JWK;
  privateKey: KeyObject;
  publicKey: KeyObject;
  retiredAt?: number;
  createdAt: number;
  /** From AUTH_SIGNING_KEY rather than the database. */
  configured: boolean;
}

interface KeyRow {
  kid: string;
  alg: SigningAlg;
  private_jwk: JWK;
  public_jwk: JWK;
  created_at: string;
  retired_at: string | null;
}

/**
 * The server's signing keys. Kept in the database so that every process signs and verifies with
 * the same set and a restart keeps live tokens valid; or one key from configuration
 * (AUTH_SIGNING_KEY), which then signs while database keys still verify until they age out.
 */
export class KeyStore {
  private keys: SigningKey[] = [];
  private loadedAt = 0;
  private lastUnknownReload = 0;
  private configured?: SigningKey;

  constructor(private readonly db: Db) {}

  /** Loads the keys, generating the first ones on an empty database. */
  async init(configuredKey?: string): Promise<void> {
    if (configuredKey) this.configured = await keyFromConfig(configuredKey);
    await this.reload();
    if (!this.configured && !this.keys.some((k) => k.alg === ACCESS_TOKEN_ALG && !k.retiredAt)) {
      await this.db.transaction(async (tx) => {
        await tx.query('SELECT pg_advisory_xact_lock($1)', [KEY_LOCK]);
        const { rows } = await tx.query('SELECT 1 FROM auth_signing_key WHERE alg = $1 AND retired_at IS NULL', [ACCESS_TOKEN_ALG]);
        if (rows.length === 0) await insertNewKey(tx, ACCESS_TOKEN_ALG);
      });
      await this.reload();
    }
    // The id_token key is always database-kept: a configured key may be EC or not RS256.
    if (!this.keys.some((k) => k.alg === ID_TOKEN_ALG && !k.retiredAt && !k.configured)) {
      await this.db.transaction(async (tx) => {
        await tx.query('SELECT pg_advisory_xact_lock($1)', [KEY_LOCK]);
        const { rows } = await tx.query('SELECT 1 FROM auth_signing_key WHERE alg = $1 AND retired_at IS NULL', [ID_TOKEN_ALG]);
        if (rows.length === 0) await insertNewKey(tx, ID_TOKEN_ALG);
      });
      await this.reload();
    }
  }

  async reload(): Promise<void> {
    const { rows } = await this.db.query<KeyRow>(
      `SELECT kid, alg, private_jwk, public_jwk, created_at, retired_at FROM auth_signing_key
        WHERE retired_at IS NULL OR retired_at > now() - make_interval(secs => $1)
        ORDER BY created_at DESC, kid`,
      [RETIRED_KEY_GRACE_MS / 1000],
    );
    const fromDb = rows.map((r) => ({
      kid: r.kid,
      alg: r.alg,
      publicJwk: r.public_jwk,
      privateKey: createPrivateKey({ key: r.private_jwk as never, format: 'jwk' }),
      publicKey: createPublicKey({ key: r.public_jwk as never, format: 'jwk' }),
      createdAt: Date.parse(r.created_at),
      ...(r.retired_at ? { retiredAt: Date.parse(r.retired_at) } : {}),
      configured: false,
    }));
    this.keys = this.configured ? [this.configured, ...fromDb.filter((k) => k.kid !== this.configured!.kid)] : fromDb;
    this.loadedAt = Date.now();
  }

  /** The key that signs access tokens (the configured one, else the newest unretired), or the newest of `alg`. */
  async signingKey(alg?: SigningAlg): Promise<SigningKey> {
    if (Date.now() - this.loadedAt > RELOAD_MS) await this.reload();
    if (!alg && this.configured) return this.configured;
    alg ??= ACCESS_TOKEN_ALG;
    const key = this.keys.find((k) => k.alg === alg && !k.retiredAt && (alg !== ID_TOKEN_ALG || !k.configured));
    if (!key) throw new Error(`no ${alg} signing key (configure AUTH_SIGNING_KEY with a ${alg} key, or let the server generate one)`);
    return key;
  }

  /** The key with this kid, if it may still verify; reloads once in a while for kids minted by other processes. */
  async verificationKey(kid: unknown): Promise<SigningKey | undefined> {
    if (typeof kid !== 'string') return undefined;
    let key = this.usable(kid);
    if (!key && Date.now() - this.lastUnknownReload > UNKNOWN_KID_RELOAD_MS) {
      this.lastUnknownReload = Date.now();
      await this.reload();
      key = this.usable(kid);
    }
    return key;
  }

  private usable(kid: string): SigningKey | undefined {
    const key = this.keys.find((k) => k.kid === kid);
    if (!key) return undefined;
    if (key.retiredAt && Date.now() - key.retiredAt > RETIRED_KEY_GRACE_MS) return undefined;
    return key;
  }

  /** The published key set (jwks_uri). */
  jwks(): { keys: JWK[] } {
    return { keys: this.keys.map((k) => k.publicJwk) };
  }
}

/**
 * Rotation: a new key signs from now on (in other processes within RELOAD_MS); the old ones are
 * retired but keep verifying, so no live token is invalidated.
 */
export async function rotateSigningKey(db: Db, alg: SigningAlg = ACCESS_TOKEN_ALG): Promise<string> {
  return db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [KEY_LOCK]);
    const kid = await insertNewKey(tx, alg);
    await tx.query('UPDATE auth_signing_key SET retired_at = now() WHERE alg = $1 AND kid <> $2 AND retired_at IS NULL', [alg, kid]);
    return kid;
  });
}

async function insertNewKey(tx: Queryable, alg: SigningAlg): Promise<string> {
  const { privateKey, publicKey } = await jose().generateKeyPair(alg, { extractable: true, ...(alg !== 'ES384' ? { modulusLength: 2048 } : {}) });
  const privateJwk = await jose().exportJWK(privateKey);
  const publicJwk = await jose().exportJWK(publicKey);
  const kid = await jose().calculateJwkThumbprint(publicJwk);
  await tx.query('INSERT INTO auth_signing_key (kid, alg, private_jwk, public_jwk) VALUES ($1, $2, $3, $4)', [
    kid,
    alg,
    JSON.stringify({ ...privateJwk, kid, alg }),
    JSON.stringify({ ...publicJwk, kid, alg, use: 'sig' }),
  ]);
  return kid;
}

/** AUTH_SIGNING_KEY: a private JWK (JSON) or a PKCS#8 PEM; RSA keys sign RS384, P-384 keys ES384. */
async function keyFromConfig(text: string): Promise<SigningKey> {
  const trimmed = text.trim();
  const privateKey = trimmed.startsWith('{')
    ? createPrivateKey({ key: JSON.parse(trimmed) as never, format: 'jwk' })
    : createPrivateKey({ key: trimmed, format: 'pem' });
  const publicKey = createPublicKey(privateKey);
  let alg: SigningAlg;
  if (privateKey.asymmetricKeyType === 'rsa') alg = 'RS384';
  else if (privateKey.asymmetricKeyType === 'ec' && privateKey.asymmetricKeyDetails?.namedCurve === 'secp384r1') alg = 'ES384';
  else throw new Error('AUTH_SIGNING_KEY must be an RSA or a P-384 EC private key');
  const jwk = publicKey.export({ format: 'jwk' }) as JWK;
  const kid = trimmed.startsWith('{') && typeof JSON.parse(trimmed).kid === 'string' ? (JSON.parse(trimmed).kid as string) : await jose().calculateJwkThumbprint(jwk);
  return { kid, alg, publicJwk: { ...jwk, kid, alg, use: 'sig' }, privateKey, publicKey, createdAt: Date.now(), configured: true };
}
