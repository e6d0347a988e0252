/** Configuration from the environment; the names are the interface of DESIGN.md. */
export interface Config {
  port: number;
  host: string;
  baseUrl: string;
  databaseUrl: string;
  dataDir: string;
  logLevel: string;
  /** Largest accepted request body in bytes; larger gets 413. */
  maxBodyBytes: number;
  /** Search page size when `_count` is absent, and the largest `_count` honoured. */
  defaultPageSize: number;
  maxPageSize: number;
  /** Most entries accepted in one transaction or batch Bundle. */
  maxBundleEntries: number;
}

function int(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) {
    throw new Error(`${name} must be a non-negative integer, got "${value}"`);
  }
  return n;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const port = int(env.PORT, 8080, 'PORT');
  const host = env.HOST || '0.0.0.0';
  const baseUrl = (env.BASE_URL || `http://localhost:${port}`).replace(/\/+$/, '');
  return {
    port,
    host,
    baseUrl,
    databaseUrl: env.DATABASE_URL ?? '',
    dataDir: env.DATA_DIR || './.data',
    logLevel: env.LOG_LEVEL || 'info',
    maxBodyBytes: int(env.MAX_BODY_BYTES, 16 * 1024 * 1024, 'MAX_BODY_BYTES'),
    defaultPageSize: int(env.DEFAULT_PAGE_SIZE, 50, 'DEFAULT_PAGE_SIZE'),
    maxPageSize: int(env.MAX_PAGE_SIZE, 1000, 'MAX_PAGE_SIZE'),
    maxBundleEntries: int(env.MAX_BUNDLE_ENTRIES, 10_000, 'MAX_BUNDLE_ENTRIES'),
  };
}
