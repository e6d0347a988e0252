import * as Lab from '@hapi/lab';
import { expect } from '@hapi/code';
import { openDb } from '../../src/store/db';
import { onPostgres } from '../helpers/pass';

export const lab = Lab.script();
const { describe, it } = lab;

const url = process.env.DATABASE_URL ?? '';

/**
 * The settings every pooled PostgreSQL session starts with (src/store/postgres.ts,
 * withSessionSettings). PostgreSQL only: the embedded database has neither JIT, parallel workers
 * nor timeouts.
 */
describe('PostgreSQL session settings', { skip: !onPostgres }, () => {
  async function shown(connectionString: string, setting: string, options: { statementTimeoutMs?: number } = {}): Promise<string> {
    return (await settingOf(connectionString, setting, options)).value;
  }

  /** A setting's value in a session of the pool, and where it came from (`client`: the startup options). */
  async function settingOf(connectionString: string, setting: string, options: { statementTimeoutMs?: number } = {}): Promise<{ value: string; source: string }> {
    const db = await openDb(connectionString, '', options);
    try {
      const { rows } = await db.query<{ value: string; source: string }>(`SELECT current_setting($1) AS value, source FROM pg_settings WHERE name = $1`, [setting]);
      return rows[0]!;
    } finally {
      await db.close();
    }
  }

  function withOptions(options: string): string {
    const u = new URL(url);
    u.searchParams.set('options', `${u.searchParams.get('options') ?? ''} ${options}`.trim());
    return u.toString();
  }

  it('runs without JIT, whose compilation cost a page of search 40–100 ms', async () => {
    expect(await shown(url, 'jit')).to.equal('off');
  });

  it('runs without parallel workers, which cost concurrent searches more than they gave one', async () => {
    expect(await shown(url, 'max_parallel_workers_per_gather')).to.equal('0');
  });

  it("keeps the URL's own jit, parallel workers and other options, beside the statement timeout", async () => {
    expect(await shown(withOptions('-c jit=on'), 'jit')).to.equal('on');
    expect(await shown(withOptions('-c max_parallel_workers_per_gather=3'), 'max_parallel_workers_per_gather')).to.equal('3');
    expect(await shown(withOptions('-c max_parallel_workers_per_gather=3'), 'jit')).to.equal('off');
    expect(await shown(withOptions('-c work_mem=7MB'), 'work_mem', { statementTimeoutMs: 1234 })).to.equal('7MB');
    expect(await shown(withOptions('-c work_mem=7MB'), 'statement_timeout', { statementTimeoutMs: 1234 })).to.equal('1234ms');
    expect(await shown(withOptions('-c work_mem=7MB'), 'jit', { statementTimeoutMs: 1234 })).to.equal('off');
  });

  it('sends no startup options with a timeout of 0, as behind PgBouncer (which refuses them)', async () => {
    expect((await settingOf(url, 'jit', { statementTimeoutMs: 0 })).source).to.not.equal('client');
    expect((await settingOf(url, 'statement_timeout', { statementTimeoutMs: 0 })).source).to.not.equal('client');
    expect((await settingOf(url, 'max_parallel_workers_per_gather', { statementTimeoutMs: 0 })).source).to.not.equal('client');
    expect(await settingOf(url, 'jit')).to.equal({ value: 'off', source: 'client' });
  });
});
