import type { ServerInjectOptions, ServerInjectResponse } from '@hapi/hapi';
import pino from 'pino';
import { SUBSCRIBER_TAG_SYSTEM } from '../../src/access/subscriber';
import { loadConfig } from '../../src/config';
import { serveBase } from '../../src/search';
import { type App, createServer } from '../../src/server';
import { type Db, openDb } from '../../src/store/db';
import { tableOf } from '../../src/store/tables';
import { migratedMemoryDb } from './data-dir';

/**
 * The database tests run on: an in-memory PGlite, or, when DATABASE_URL names a PostgreSQL
 * (CI's second pass), a schema of its own on it, so runs never see each other's rows or
 * leftovers of earlier runs. Opened once per test process and shared by every suite.
 */
let shared: Promise<Db> | undefined;
export function testDb(): Promise<Db> {
  // In memory, it is the process's migrated template itself (helpers/data-dir.ts).
  shared ??= testDatabaseUrl().then((url) => (url === 'pglite://memory' ? migratedMemoryDb() : openDb(url, '')));
  return shared;
}

let sharedUrl: Promise<string> | undefined;
/** The connection URL of that database, for server processes a test starts (test/scale). */
export function testDatabaseUrl(): Promise<string> {
  const url = process.env.DATABASE_URL || 'pglite://memory';
  sharedUrl ??= url.startsWith('postgres') ? freshSchemaUrl(url) : Promise.resolve(url);
  return sharedUrl;
}

/**
 * A new, empty schema on the PostgreSQL `url` names, as a connection URL whose sessions use it
 * (search_path). Schemas of runs that ended more than two hours ago are dropped; newer ones may be
 * running.
 */
async function freshSchemaUrl(url: string): Promise<string> {
  const admin = await openDb(url, '');
  const stale = await admin.query<{ nspname: string }>(
    `SELECT nspname FROM pg_namespace WHERE nspname ~ '^test_run_[0-9]+_' AND substring(nspname from 10 for 13)::bigint < $1`,
    [Date.now() - 2 * 3600_000],
  );
  for (const { nspname } of stale.rows) await admin.query(`DROP SCHEMA IF EXISTS ${nspname} CASCADE`);
  const schema = `test_run_${Date.now()}_${process.pid}`;
  await admin.query(`CREATE SCHEMA ${schema}`);
  await admin.close();
  const withSchema = new URL(url);
  withSchema.searchParams.set('options', `-c search_path=${schema}`);
  return withSchema.toString();
}

export interface TestServer extends App {
  /** server.inject with FHIR JSON defaults; the body is parsed when it is JSON. */
  request(options: ServerInjectOptions): Promise<ServerInjectResponse & { json: any }>;
}

/** A server on the shared test database, not listening unless `listen` is set; `logger` to read what it logs. */
export async function startTestServer(env: Record<string, string> = {}, { listen = false, db, logger }: { listen?: boolean; db?: (shared: Db) => Db; logger?: pino.Logger } = {}): Promise<TestServer> {
  // Suites not about auth run without tokens; auth tests pass AUTH_DISABLED: 'false'.
  const config = loadConfig({ PORT: listen ? '0' : '8080', HOST: '127.0.0.1', LOG_LEVEL: 'silent', AUTH_DISABLED: 'true', ...env });
  const shared = await testDb();
  const app = await createServer(config, { db: db ? db(shared) : shared, logger: logger ?? pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }) });
  if (listen) {
    await app.server.start();
    // The real port is known only now; links must use it.
    (app.ctx as { baseUrl: string }).baseUrl = `http://127.0.0.1:${app.server.info.port}/fhir`;
    serveBase(app.ctx.baseUrl);
  }
  return {
    ...app,
    async request(options) {
      const headers: Record<string, string> = { ...(options.headers as Record<string, string>) };
      let payload = options.payload;
      if (payload !== undefined && typeof payload !== 'string' && !Buffer.isBuffer(payload)) {
        payload = JSON.stringify(payload);
        headers['content-type'] ??= 'application/fhir+json';
      }
      const res = await app.server.inject({ ...options, headers, payload });
      let json: unknown;
      try {
        json = res.payload ? JSON.parse(res.payload) : undefined;
      } catch {
        json = undefined;
      }
      return Object.assign(res, { json });
    },
  };
}

/** POSTs `resource` to its type's endpoint and returns the id the server gave it; anything but 201 throws. */
export async function createResource(app: TestServer, resource: { resourceType: string } & Record<string, unknown>): Promise<string> {
  const res = await app.request({ method: 'POST', url: `/fhir/${resource.resourceType}`, payload: resource });
  if (res.statusCode !== 201) throw new Error(`POST ${resource.resourceType}: ${res.statusCode} ${res.payload}`);
  return res.json.id as string;
}

/** Every resource a search lists, page after page along its `next` links; anything but 200 throws. */
export async function searchAll(app: TestServer, url: string): Promise<any[]> {
  const resources: any[] = [];
  for (let next: string | undefined = url; next; ) {
    const res = await app.request({ method: 'GET', url: next });
    if (res.statusCode !== 200) throw new Error(`GET ${next}: ${res.statusCode} ${res.payload}`);
    resources.push(...(res.json.entry ?? []).map((e: { resource: unknown }) => e.resource));
    const link = (res.json.link as Array<{ relation: string; url: string }>).find((l) => l.relation === 'next')?.url;
    next = link ? link.slice(link.indexOf('/fhir/')) : undefined;
  }
  return resources;
}

/** A value unique to this test run, for identifiers on a shared database. */
export function unique(prefix = 'test'): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * A type's current resources and all its versions (the current ones plus those in history): a
 * failed request must leave both unchanged.
 */
export async function countRows(app: App, type: string): Promise<{ current: number; history: number }> {
  const table = tableOf(type);
  const { rows } = await app.ctx.db.query<{ current: string; history: string }>(
    `SELECT (SELECT count(*) FROM ${table}) AS current, (SELECT count(*) FROM ${table}) + (SELECT count(*) FROM ${table}_history) AS history`,
  );
  return { current: Number(rows[0]!.current), history: Number(rows[0]!.history) };
}

const VERSION_AUTHOR_URL = 'http://rpm.example.org/fhir/StructureDefinition/version-author';

/**
 * A resource as its client sent it: without what the server sets in meta on every version
 * (versionId, lastUpdated, the version-author extension of src/audit/authorship.ts, and on a
 * Subscription the tag naming its subscriber, src/access/subscriber.ts).
 */
export function withoutServerMeta<T>(r: T): T {
  const copy = structuredClone(r) as { meta?: Record<string, unknown> & { extension?: Array<{ url: string }>; tag?: Array<{ system?: string }> } };
  if (copy.meta) {
    delete copy.meta.versionId;
    delete copy.meta.lastUpdated;
    if (copy.meta.extension) {
      copy.meta.extension = copy.meta.extension.filter((e) => e.url !== VERSION_AUTHOR_URL);
      if (copy.meta.extension.length === 0) delete copy.meta.extension;
    }
    if (copy.meta.tag) {
      copy.meta.tag = copy.meta.tag.filter((t) => t.system !== SUBSCRIBER_TAG_SYSTEM);
      if (copy.meta.tag.length === 0) delete copy.meta.tag;
    }
    if (Object.keys(copy.meta).length === 0) delete copy.meta;
  }
  return copy as T;
}
