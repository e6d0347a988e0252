import { createReadStream, createWriteStream, existsSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createBackup, restoreBackup, verifyBackup } from '../src/backup';
import { decryptFromFile, encryptToFile, parseBackupKey } from '../src/backup/encryption';
import { loadConfig } from '../src/config';

const USAGE = `npm run -s backup -- <command>     (BACKUP_KEY: 32 bytes, hex or base64; BACKUP_DIR: ./backups)
  create                  a full, encrypted backup set of the configured database (DATABASE_URL,
                          or the embedded one in DATA_DIR: stop the server first) in BACKUP_DIR
  verify SET              each file's sha256 against the manifest, the manifest's MAC, and that
                          every file decrypts (exit 1 if anything is wrong)
  restore SET             into a fresh database (an empty DATABASE_URL, or a new DATA_DIR), then
                          verifies the restored audit chain
  archive-wal PATH NAME   PostgreSQL archive_command: encrypts WAL segment PATH as BACKUP_DIR/wal/NAME.enc
  restore-wal NAME PATH   PostgreSQL restore_command: decrypts BACKUP_DIR/wal/NAME.enc to PATH`;

/** The command; answers the exit code. Tests call it in-process. */
export async function runBackup(argv: string[], env: NodeJS.ProcessEnv, out: (text: string) => void): Promise<number> {
  const [command, ...args] = argv;
  const known = ['create', 'verify', 'restore', 'archive-wal', 'restore-wal'];
  if (!command || !known.includes(command)) {
    out(`${USAGE}\n`);
    return 2;
  }
  const key = parseBackupKey(env.BACKUP_KEY);
  const backupDir = env.BACKUP_DIR || './backups';
  const config = loadConfig(env);
  const target = { databaseUrl: config.databaseUrl, dataDir: config.dataDir };
  switch (command) {
    case 'create': {
      const { dir, manifest } = await createBackup(target, backupDir, key);
      out(`${dir}: ${manifest.engine} ${manifest.serverVersion}, ${manifest.files.map((f) => `${f.name} ${f.bytes} bytes sha256 ${f.sha256}`).join(', ')}, audit head ${manifest.auditHead?.seq ?? 'none'}\n`);
      return 0;
    }
    case 'verify': {
      if (!args[0]) return usage(out);
      const problems = await verifyBackup(args[0], key);
      for (const p of problems) out(`${p}\n`);
      out(problems.length ? `${args[0]}: ${problems.length} problem(s)\n` : `${args[0]}: sound\n`);
      return problems.length ? 1 : 0;
    }
    case 'restore': {
      if (!args[0]) return usage(out);
      const result = await restoreBackup(args[0], target, key);
      out(`restored ${args[0]}; audit chain intact: ${result.auditRows} rows, head ${result.auditHead.seq}\n`);
      return 0;
    }
    case 'archive-wal': {
      const [path, name] = args;
      if (!path || !name || !/^[0-9A-Za-z._-]+$/.test(name)) return usage(out);
      const walDir = join(backupDir, 'wal');
      mkdirSync(walDir, { recursive: true, mode: 0o700 });
      const file = join(walDir, `${name}.enc`);
      // PostgreSQL's rule for archive_command: never overwrite an archived segment; a non-zero exit makes it retry.
      if (existsSync(file)) {
        out(`${file} exists already\n`);
        return 1;
      }
      await encryptToFile(createReadStream(path), `${file}.partial`, key);
      renameSync(`${file}.partial`, file);
      return 0;
    }
    case 'restore-wal': {
      const [name, path] = args;
      if (!name || !path || !/^[0-9A-Za-z._-]+$/.test(name)) return usage(out);
      const file = join(backupDir, 'wal', `${name}.enc`);
      // restore_command asks for segments that may not exist (the end of the archive): a quiet non-zero exit.
      if (!existsSync(file)) return 1;
      await pipeline(decryptFromFile(file, key), createWriteStream(path));
      return 0;
    }
  }
  return usage(out);
}

function usage(out: (text: string) => void): number {
  out(`${USAGE}\n`);
  return 2;
}

if (require.main === module) {
  runBackup(process.argv.slice(2), process.env, (text) => process.stdout.write(text))
    .then((code) => (process.exitCode = code))
    .catch((err: unknown) => {
      console.error((err as Error).message);
      process.exit(2);
    });
}
