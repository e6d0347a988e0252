import type { Config } from '../config';
import type { PipelineContext } from '../pipeline';
import type { ReadRouting } from '../store/replica';
import type { OperationRegistry } from './operations';

/** What every interaction needs, built once at start by src/server.ts. */
export interface FhirContext extends PipelineContext {
  readonly config: Config;
  /** The public FHIR base URL without trailing slash, e.g. `http://localhost:8080/fhir`. */
  readonly baseUrl: string;
  readonly operations: OperationRegistry;
  /** Searches on a streaming replica (DATABASE_REPLICA_URL), with read-your-writes; absent: all on `db`. */
  readonly reads?: ReadRouting;
  /** The request's lifetime, once a request runs with this context: statements on a replica end with it too. */
  readonly signal?: AbortSignal;
}

/**
 * What an interaction returns, independent of Hapi: the routes (and bundle processing) turn it
 * into a response. `body` is a resource, or pre-serialised JSON text when the stored JSON is
 * passed through without parsing.
 */
export interface InteractionResult {
  status: number;
  body?: fhir4.FhirResource | { json: string };
  headers?: Record<string, string>;
  /**
   * Patients whose data the body holds without showing it: a subset (`_summary`, `_elements`)
   * may drop the references that put a resource in a patient's compartment. The audit, which
   * otherwise finds the patients in the body, names these too (src/audit/http.ts).
   */
  disclosedPatients?: readonly string[];
  /**
   * The entries of a batch answered with an error inside its 200 response Bundle (a transaction
   * fails whole instead: decision 038). The request's own
   * audit event says 200; each of these is audited as the failure it is (src/audit/http.ts).
   */
  failedEntries?: readonly FailedEntry[];
}

/** One entry of a response Bundle that failed: what it asked, and the answer it got. */
export interface FailedEntry {
  index: number;
  method: string;
  url: string;
  status: number;
  diagnostics?: string;
}
