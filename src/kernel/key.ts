/**
 * A 256-bit key from the environment: 64 hex digits or base64 (`openssl rand -hex 32`), as
 * WITHINGS_TOKEN_KEY and BACKUP_KEY take it. Throws with `name` and what the key protects when
 * the value is not 32 bytes.
 */
export function parseKey32(value: string, name: string, protects: string): Buffer {
  const key = /^[0-9a-fA-F]{64}$/.test(value) ? Buffer.from(value, 'hex') : Buffer.from(value, 'base64');
  if (key.length !== 32) throw new Error(`${name} must be 32 bytes (64 hex digits or 44 base64 characters): ${protects}`);
  return key;
}
