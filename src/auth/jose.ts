/**
 * jose 6 is ESM-only. Node >= 20.19 loads ES modules through require() (engines in package.json
 * says so), which keeps jose synchronous to reach from this CommonJS build.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
type Jose = typeof import('jose');
let loaded: Jose | undefined;
export function jose(): Jose {
  loaded ??= require('jose') as Jose;
  return loaded;
}
