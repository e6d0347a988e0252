import { requireAction, requireReadable } from '../access/enforce';
import type { FhirContext, InteractionResult } from './context';
import { notFound, notSupported } from '../kernel/outcome';
import type { RestRequest } from './rest-request';
import { validateOperation } from './interactions/validate';
import { everything } from './interactions/everything';

export type OperationHandler = (ctx: FhirContext, req: RestRequest) => Promise<InteractionResult>;

export interface OperationDefinition {
  /** Without the `$`: `validate`, `evaluate`, `check-adherence`. */
  name: string;
  /** The types it is defined on; `*` for every supported type. */
  types: readonly string[] | '*';
  /** Where it can be invoked: on the type (`/CarePlan/$x`), an instance (`/CarePlan/1/$x`), or both. */
  type: boolean;
  instance: boolean;
  /** GET is allowed only for operations that change nothing (R4 operations.html#request). */
  affectsState: boolean;
  handler: OperationHandler;
  /** Canonical URL of its OperationDefinition, for the CapabilityStatement. */
  definition?: string;
}

/**
 * The FHIR operations a server instance offers. Capabilities register theirs (monitoring adds
 * CarePlan/$evaluate) instead of editing the routes; the routes and bundles dispatch here.
 */
export class OperationRegistry {
  private readonly byName = new Map<string, OperationDefinition>();

  constructor() {
    this.register({
      name: 'validate', types: '*', type: true, instance: true, affectsState: false, handler: validateOperation,
      definition: 'http://hl7.org/fhir/OperationDefinition/Resource-validate',
    });
    this.register({
      name: 'everything', types: ['Patient'], type: false, instance: true, affectsState: false, handler: everything,
      definition: 'http://hl7.org/fhir/OperationDefinition/Patient-everything',
    });
  }

  register(definition: OperationDefinition): void {
    this.byName.set(definition.name, definition);
  }

  /** The operations defined on a type, for the CapabilityStatement. */
  forType(type: string): OperationDefinition[] {
    return [...this.byName.values()].filter((d) => d.types === '*' || d.types.includes(type));
  }

  /** Runs `$name` on `req.type` (and `req.id` when instance level); unknown or misplaced is 404, a GET of a state-changing operation 405. */
  async invoke(ctx: FhirContext, req: RestRequest, method: 'GET' | 'POST'): Promise<InteractionResult> {
    const name = (req.operation ?? '').replace(/^\$/, '');
    const definition = this.byName.get(name);
    const level = req.id === undefined ? 'type' : 'instance';
    if (!definition || !(definition.types === '*' || definition.types.includes(req.type)) || !definition[level]) {
      throw notFound(`operation $${name} is not defined at ${level} level for ${req.type}`);
    }
    if (method === 'GET' && definition.affectsState) {
      throw notSupported(`$${name} changes data and must be invoked with POST`);
    }
    // An operation that changes data needs update rights on its type; one that reads, read rights
    // (and, at instance level, that instance must be visible to the token).
    requireAction(req.policy, req.type, definition.affectsState ? 'u' : 'r');
    if (req.id !== undefined) await requireReadable(ctx.db, req.policy, req.type, req.id);
    return definition.handler(ctx, req);
  }
}
