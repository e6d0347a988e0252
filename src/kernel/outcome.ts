/**
 * One error type for the whole server: an HTTP status with the OperationOutcome issues that
 * explain it. Thrown anywhere below the routes; `src/fhir/errors-plugin.ts` renders it.
 */
export type IssueSeverity = fhir4.OperationOutcomeIssue['severity'];
export type IssueCode = fhir4.OperationOutcomeIssue['code'];

export interface Issue {
  severity?: IssueSeverity;
  code: IssueCode;
  diagnostics: string;
  /** FHIRPath-style locations, e.g. `Observation.code.coding[0].system`. */
  expression?: string[];
}

export class OperationOutcomeError extends Error {
  readonly status: number;
  readonly issues: Issue[];
  readonly headers: Record<string, string>;

  constructor(status: number, issues: Issue[] | Issue, headers: Record<string, string> = {}) {
    const list = Array.isArray(issues) ? issues : [issues];
    super(list.map((i) => i.diagnostics).join('; '));
    this.name = 'OperationOutcomeError';
    this.status = status;
    this.issues = list;
    this.headers = headers;
  }
}

export function operationOutcome(issues: Issue[]): fhir4.OperationOutcome {
  return {
    resourceType: 'OperationOutcome',
    issue: issues.map((i) => ({
      severity: i.severity ?? 'error',
      code: i.code,
      diagnostics: i.diagnostics,
      ...(i.expression ? { expression: i.expression } : {}),
    })),
  };
}

/** An outcome that reports success (for `Prefer: return=OperationOutcome` and `$validate`). */
export function informationOutcome(diagnostics: string): fhir4.OperationOutcome {
  return operationOutcome([{ severity: 'information', code: 'informational', diagnostics }]);
}

// Shorthands for the statuses the REST surface uses, so call sites read as the spec does.
export const badRequest = (diagnostics: string, expression?: string[]) =>
  new OperationOutcomeError(400, { code: 'invalid', diagnostics, expression });
export const notFound = (diagnostics: string) => new OperationOutcomeError(404, { code: 'not-found', diagnostics });
/** 410 for a deleted resource; the deletion's version goes in the ETag so clients can see it. */
export const gone = (diagnostics: string, deletion?: { versionId: number; lastUpdated: string }) =>
  new OperationOutcomeError(
    410,
    { code: 'deleted', diagnostics },
    deletion ? { etag: `W/"${deletion.versionId}"`, 'last-modified': new Date(deletion.lastUpdated).toUTCString() } : {},
  );
export const conflict = (diagnostics: string) => new OperationOutcomeError(409, { code: 'conflict', diagnostics });
export const preconditionFailed = (diagnostics: string) =>
  new OperationOutcomeError(412, { code: 'conflict', diagnostics });
export const unprocessable = (diagnostics: string, expression?: string[]) =>
  new OperationOutcomeError(422, { code: 'business-rule', diagnostics, expression });
export const notSupported = (diagnostics: string) =>
  new OperationOutcomeError(405, { code: 'not-supported', diagnostics });
