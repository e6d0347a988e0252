import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, openSync, readSync, closeSync, statSync } from 'node:fs';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseKey32 } from '../kernel/key';

/**
 * Backup files encrypted at rest with AES-256-GCM (node:crypto), key from BACKUP_KEY. A file is
 * MAGIC, a fresh 12-byte IV, the ciphertext, and GCM's 16-byte tag: the tag authenticates every
 * byte, so a changed or truncated file fails to decrypt instead of restoring something else.
 * Encryption and decryption stream, so a PostgreSQL dump never sits in memory; an embedded
 * (PGlite) restore gathers the decrypted archive, as PGlite's loader takes a Blob.
 */
const MAGIC = Buffer.from('RPMBAK1\n');
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** BACKUP_KEY: 32 bytes as 64 hex digits or base64. */
export function parseBackupKey(value: string | undefined): Buffer {
  if (!value) throw new Error('BACKUP_KEY is not set: 32 random bytes as hex or base64 (openssl rand -hex 32)');
  return parseKey32(value, 'BACKUP_KEY', 'backups are encrypted with AES-256');
}

/** Names the key without revealing it, so a restore can say which key a backup needs. */
export function keyId(key: Buffer): string {
  return createHmac('sha256', key).update('rpm-backup-key-id').digest('hex').slice(0, 16);
}

export interface WrittenFile {
  bytes: number;
  sha256: string;
}

/** A pass-through that hashes and counts what flows. */
function measuring(): { stream: Transform; result: () => WrittenFile } {
  const hash = createHash('sha256');
  let bytes = 0;
  const stream = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  return { stream, result: () => ({ bytes, sha256: hash.digest('hex') }) };
}

/** Encrypts `source` into `file`; answers the size and sha256 of the file as written (for the manifest). */
export async function encryptToFile(source: Readable, file: string, key: Buffer): Promise<WrittenFile> {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const measured = measuring();
  // MAGIC + IV, then the ciphertext, then the tag, through one hash.
  const out = createWriteStream(file, { mode: 0o600 });
  const framed = new Transform({
    transform(chunk: Buffer, _enc, done) {
      done(null, chunk);
    },
    flush(done) {
      done(null, cipher.getAuthTag());
    },
  });
  framed.push(Buffer.concat([MAGIC, iv]));
  await pipeline(source, cipher, framed, measured.stream, out);
  return measured.result();
}

/** The plaintext of an encrypted file, as a stream that errors (bad tag) if the file was altered. */
export function decryptFromFile(file: string, key: Buffer): Readable {
  const size = statSync(file).size;
  if (size < MAGIC.length + IV_BYTES + TAG_BYTES) throw new Error(`${file} is too short to be a backup file`);
  const head = Buffer.alloc(MAGIC.length + IV_BYTES);
  const tag = Buffer.alloc(TAG_BYTES);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, head, 0, head.length, 0);
    readSync(fd, tag, 0, TAG_BYTES, size - TAG_BYTES);
  } finally {
    closeSync(fd);
  }
  if (!head.subarray(0, MAGIC.length).equals(MAGIC)) throw new Error(`${file} is not an encrypted backup file`);
  const decipher = createDecipheriv('aes-256-gcm', key, head.subarray(MAGIC.length));
  decipher.setAuthTag(tag);
  const body = createReadStream(file, { start: head.length, end: size - TAG_BYTES - 1 });
  body.on('error', (err) => decipher.destroy(err));
  return body.pipe(decipher);
}

/** sha256 of a file as stored. */
export async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Reads a stream to its end, discarding it (verifies a GCM tag without writing anything). */
export async function drain(stream: Readable): Promise<number> {
  let bytes = 0;
  for await (const chunk of stream) bytes += (chunk as Buffer).length;
  return bytes;
}
