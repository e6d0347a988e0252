import { requireAction, requireReadable } from '../access/enforce';
import type { AccessPolicy } from '../access/policy';
import type { FhirContext, InteractionResult } from './context';
import { badRequest, notFound, notSupported } from '../kernel/outcome';
import type { RestRequest } from './rest-request';
import { validateOperation } from './interactions/validate';
import { everything } from './interactions/everything';
import { lastn } from './interactions/lastn';

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
  /**
   * False when this instance is not set up to perform it (it answers why not, 501): left out of
   * the CapabilityStatement, which lists what a client can use.
   */
  offered?: boolean;
  /**
   * Canonical URL of the official OperationDefinition it implements (HL7 core, Bulk Data, the
   * Subscriptions Backport IG), for the CapabilityStatement. Set this or `resource`, not both.
   */
  definition?: string;
  /**
   * The server's own OperationDefinition of an operation no HL7 specification defines: a JSON
   * file in the folder of the capability that owns it. Served read-only at
   * `OperationDefinition/{id}` (./operation-definitions.ts), which is its canonical.
   */
  resource?: fhir4.OperationDefinition;
  /**
   * The operation's own rights check, in place of the default (update or read rights on the type
   * and, at instance level, a visible instance): for an operation that needs more than any
   * resource scope implies ($erase). Runs before the handler and before any content is read.
   */
  authorize?: (policy: AccessPolicy) => void;
}

/**
 * The FHIR operations a server instance offers. Capabilities register theirs (monitoring adds
 * CarePlan/$evaluate) instead of editing the routes; the routes and bundles dispatch here.
 */
export class OperationRegistry {
  /** Several definitions may share a name on different types (CarePlan/$check-adherence, MedicationRequest/$check-adherence). */
  private readonly byName = new Map<string, OperationDefinition[]>();

  constructor() {
    this.register({
      name: 'validate', types: '*', type: true, instance: true, affectsState: false, handler: validateOperation,
      definition: 'http://hl7.org/fhir/OperationDefinition/Resource-validate',
    });
    this.register({
      name: 'everything', types: ['Patient'], type: false, instance: true, affectsState: false, handler: everything,
      definition: 'http://hl7.org/fhir/OperationDefinition/Patient-everything',
    });
    this.register({
      name: 'lastn', types: ['Observation'], type: true, instance: false, affectsState: false, handler: lastn,
      definition: 'http://hl7.org/fhir/OperationDefinition/Observation-lastn',
    });
  }

  register(definition: OperationDefinition): void {
    const same = this.byName.get(definition.name) ?? [];
    const overlaps = (a: OperationDefinition, b: OperationDefinition) => a.types === '*' || b.types === '*' || a.types.some((t) => b.types.includes(t));
    if (same.some((d) => overlaps(d, definition))) throw new Error(`operation $${definition.name} is already defined on one of its types`);
    checkDefinition(definition);
    this.byName.set(definition.name, [...same, definition]);
  }

  /** The operations defined on a type, for the CapabilityStatement. */
  forType(type: string): OperationDefinition[] {
    return [...this.byName.values()].flat().filter((d) => d.types === '*' || d.types.includes(type));
  }

  /** The server's own OperationDefinitions (one each for the operations no HL7 specification defines). */
  ownDefinitions(): fhir4.OperationDefinition[] {
    return [...this.byName.values()].flat().flatMap((d) => (d.resource ? [d.resource] : []));
  }

  /** Runs `$name` on `req.type` (and `req.id` when instance level); unknown or misplaced is 404, a GET of a state-changing operation 405. */
  async invoke(ctx: FhirContext, req: RestRequest, method: 'GET' | 'POST'): Promise<InteractionResult> {
    const name = (req.operation ?? '').replace(/^\$/, '');
    const definition = this.byName.get(name)?.find((d) => d.types === '*' || d.types.includes(req.type));
    const level = req.id === undefined ? 'type' : 'instance';
    if (!definition || !(definition.types === '*' || definition.types.includes(req.type)) || !definition[level]) {
      throw notFound(`operation $${name} is not defined at ${level} level for ${req.type}`);
    }
    if (method === 'GET' && definition.affectsState) {
      throw notSupported(`$${name} changes data and must be invoked with POST`);
    }
    // An operation that changes data needs update rights on its type; one that reads, read rights
    // (and, at instance level, that instance must be visible to the token).
    if (definition.authorize) definition.authorize(req.policy);
    else {
      requireAction(req.policy, req.type, definition.affectsState ? 'u' : 'r');
      if (req.id !== undefined) await requireReadable(ctx.db, req.policy, req.type, req.id);
    }
    checkParameters(req.body);
    if (definition.resource) checkAgainstDefinition(definition.resource, req);
    return definition.handler(ctx, req);
  }
}

/**
 * Every operation the CapabilityStatement lists names a definition a client can resolve: an
 * official canonical, or the server's own OperationDefinition, whose code, resource, levels and
 * affectsState must be what the registration (and so the routes) really does. Checked when a
 * capability registers, so the two cannot drift apart unseen.
 */
function checkDefinition(d: OperationDefinition): void {
  if ((d.definition === undefined) === (d.resource === undefined)) {
    throw new Error(`operation $${d.name}: give either the official definition's canonical or the server's own OperationDefinition`);
  }
  const r = d.resource;
  if (!r) return;
  const types = d.types === '*' ? ['Resource'] : [...d.types];
  const mismatch = r.resourceType !== 'OperationDefinition' || r.kind !== 'operation' || r.code !== d.name || !r.id
    || JSON.stringify([...(r.resource ?? [])].sort()) !== JSON.stringify(types.sort())
    || r.system !== false || r.type !== d.type || r.instance !== d.instance || (r.affectsState ?? false) !== d.affectsState;
  if (mismatch) throw new Error(`operation $${d.name}: OperationDefinition/${r.id} does not describe how it is registered (code, resource, system/type/instance, affectsState)`);
}

/** What every GET or POST may carry beside an operation's own parameters: the response's format (R4 http.html#parameters). */
const RESPONSE_PARAMETERS = new Set(['_format', '_pretty']);

/**
 * A call of one of the server's own operations holds to its OperationDefinition's input
 * parameters: a name it does not define (a typo the handler would silently ignore), or a
 * parameter given more often than its `max` or less than its `min`, is a 400 before anything
 * runs. Under `Prefer: handling=lenient` unknown names are ignored, as in a search.
 */
function checkAgainstDefinition(od: fhir4.OperationDefinition, req: RestRequest): void {
  const inputs = new Map((od.parameter ?? []).filter((p) => p.use === 'in').map((p) => [p.name, p]));
  const given = new Map<string, number>();
  for (const name of req.query.keys()) if (!RESPONSE_PARAMETERS.has(name)) given.set(name, (given.get(name) ?? 0) + 1);
  const body = req.body as { resourceType?: unknown; parameter?: Array<{ name: string }> } | undefined;
  if (body?.resourceType === 'Parameters') for (const p of body.parameter ?? []) given.set(p.name, (given.get(p.name) ?? 0) + 1);
  for (const [name, count] of given) {
    const p = inputs.get(name);
    if (!p) {
      if (req.lenient) continue;
      const known = [...inputs.keys()];
      throw badRequest(`$${od.code} has no parameter '${name.slice(0, 64)}' (${known.length ? `it takes ${known.join(', ')}` : 'it takes none'}; see ${od.id ? `OperationDefinition/${od.id}` : 'its OperationDefinition'})`, [name.slice(0, 64)]);
    }
    if (p.max !== '*' && count > Number(p.max)) throw badRequest(`$${od.code} takes ${name} at most ${p.max} time(s)`, [name]);
  }
  for (const p of inputs.values()) {
    if ((given.get(p.name) ?? 0) < p.min) throw badRequest(`$${od.code} needs the parameter ${p.name}`, [p.name]);
  }
}

/**
 * The shape every operation relies on when it reads a Parameters body (R4 parameters.html):
 * `parameter` is an array of objects, each with a string `name`. Checked once here, before any
 * handler looks, so `"parameter": {}` or `[null]` is a 400 and not a crash in each handler.
 */
export function checkParameters(body: unknown): void {
  if ((body as { resourceType?: unknown } | null)?.resourceType !== 'Parameters') return;
  const parameter = (body as { parameter?: unknown }).parameter;
  if (parameter === undefined) return;
  if (!Array.isArray(parameter)) throw badRequest('Parameters.parameter must be an array', ['Parameters.parameter']);
  parameter.forEach((p: unknown, i) => {
    const where = `Parameters.parameter[${i}]`;
    if (p === null || typeof p !== 'object' || Array.isArray(p)) throw badRequest(`${where} must be an object`, [where]);
    if (typeof (p as { name?: unknown }).name !== 'string') throw badRequest(`${where}.name must be a string`, [`${where}.name`]);
    const part = (p as { part?: unknown }).part;
    if (part !== undefined) checkParameters({ resourceType: 'Parameters', parameter: part });
  });
}
