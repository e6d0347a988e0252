import { forbidden, hasNamedScope } from '../access/enforce';
import type { AccessPolicy } from '../access/policy';
import type { FhirContext, InteractionResult } from '../fhir/context';
import type { RestRequest } from '../fhir/rest-request';
import { type Issue, notFound, operationOutcome } from '../kernel/outcome';
import { eraseCompartment, withUnitOfWork } from '../pipeline';

/**
 * Who may erase (decision 014): a token whose scopes *name* Patient with delete rights in the
 * system context (`system/Patient.d`, or `.cud`, `.cruds`). A wildcard (`system/*.cruds`, what an
 * integration engine holds) does not erase, nor does any user/ or patient/ scope: erasure is
 * irreversible and crosses every type, so it needs a scope an administrator granted for it to a
 * backend client, the way reading the audit trail needs a scope that names AuditEvent.
 */
export function requireErasureRight(policy: AccessPolicy): void {
  if (!hasNamedScope(policy, 'Patient', { contexts: ['system'], action: 'd' })) throw forbidden('erasing a patient needs a system scope that names Patient with delete (system/Patient.d); wildcard, user and patient scopes do not erase');
}

/**
 * `POST Patient/{id}/$erase` (GDPR Art. 17): the Patient and its whole compartment, every
 * version and index row, and what each capability keeps about them, in one transaction
 * (src/pipeline/erase.ts). Answers an OperationOutcome with counts by type — no ids, no content —
 * and a warning for each resource kept because it is shared with another patient. A Patient
 * already erased or deleted whose compartment still holds data (written since: references may
 * dangle) is erased again the same way; 404 only when nothing is stored at all.
 */
export async function eraseOperation(ctx: FhirContext, req: RestRequest): Promise<InteractionResult> {
  const patientId = req.id!;
  const erasure = await withUnitOfWork(ctx, (uow) => eraseCompartment(uow, patientId, req.policy));
  if (!erasure) throw notFound(`nothing of Patient/${patientId} is stored: neither the Patient nor its compartment`);
  const counts = [...erasure.resources].map(([type, ids]) => `${type} ${ids.length}`).join(', ');
  const issues: Issue[] = [{
    severity: 'information', code: 'informational',
    diagnostics: `Patient/${patientId} erased with every version and index row: ${counts}${erasure.pastVersions ? `; ${erasure.pastVersions} earlier versions of resources now in another compartment` : ''}`,
  }];
  for (const ref of erasure.shared) {
    issues.push({ severity: 'warning', code: 'business-rule', diagnostics: `${ref} is also in another patient's compartment and was kept; remove this patient from it by an update` });
  }
  return { status: 200, body: operationOutcome(issues) };
}
