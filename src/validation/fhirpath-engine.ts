import type * as Fhirpath from 'fhirpath';

/**
 * The fhirpath engine, loaded when an expression first needs it: it holds 7 MB of heap (its
 * ANTLR parser) and ~20 MB of RSS, and neither the vital-signs profiles' invariants nor the
 * search parameters a monitoring server meets need it (decision 023). Profile invariants and
 * search's fallback accessors both load it here.
 */
let engine: typeof Fhirpath | undefined;

export function fhirpathEngine(): typeof Fhirpath {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  engine ??= require('fhirpath') as typeof Fhirpath;
  return engine;
}
