import { countElements } from '../kernel/input-limits';
import { OperationOutcomeError } from '../kernel/outcome';
import { MAX_RESOURCE_ELEMENTS } from '../validation/resource';

/**
 * Bounds on the work one PATCH (JSON Patch or FHIRPath Patch) may make the server do, checked
 * while the operations run, not after: a JSON Patch `copy` of `/name` into `/name/-` doubles the
 * resource, so 22 such operations (a 900-byte body) took 5 s of CPU and 1.2 GB of memory before
 * the result's size (MAX_RESOURCE_ELEMENTS, checked by validation) was ever looked at, and 26
 * would exhaust the heap.
 */

/**
 * Most operations in one patch. A patch edits a resource of at most MAX_RESOURCE_ELEMENTS
 * values; 1,000 operations is far more than any client's edit needs, and bounds the work of the
 * operations that do not grow the resource (moves, tests, deletes).
 */
export const MAX_PATCH_OPERATIONS = 1_000;

/** Refuses a patch of more than MAX_PATCH_OPERATIONS operations, before any is applied. */
export function checkOperationCount(count: number, format: string): void {
  if (count > MAX_PATCH_OPERATIONS) {
    throw new OperationOutcomeError(400, { code: 'too-costly', diagnostics: `a ${format} may hold at most ${MAX_PATCH_OPERATIONS} operations; this one holds ${count}` });
  }
}

/**
 * The size of a document being patched, kept as an upper bound that is cheap to update: each
 * operation adds the size of what it placed (a removal is not subtracted); only when the bound
 * passes MAX_RESOURCE_ELEMENTS is the document counted again, and refused if it really holds
 * more. So no operation starts on a document above the bound, and no operation can make one
 * more than twice its size: the work of every operation is bounded, the common small patch
 * counts only its own values.
 */
export class ElementBudget {
  private bound: number;

  constructor(private readonly document: () => unknown) {
    this.bound = countElements(document(), MAX_RESOURCE_ELEMENTS);
  }

  /** After an operation placed `value` (its own copy) into the document; `where` names the operation. */
  placed(value: unknown, where: string): void {
    this.bound += value === null || typeof value !== 'object' ? 1 : countElements(value, MAX_RESOURCE_ELEMENTS);
    if (this.bound <= MAX_RESOURCE_ELEMENTS) return;
    const document = this.document();
    this.bound = countElements(document, MAX_RESOURCE_ELEMENTS);
    if (this.bound > MAX_RESOURCE_ELEMENTS) {
      const type = (document as { resourceType?: unknown } | null)?.resourceType;
      // The wording of validation's own refusal (src/validation/resource.ts), with the operation.
      throw new OperationOutcomeError(400, { code: 'too-costly', diagnostics: `${where}: ${typeof type === 'string' ? type : 'the resource'} holds more than ${MAX_RESOURCE_ELEMENTS} values; split it` });
    }
  }
}
