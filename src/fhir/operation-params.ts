import { badRequest, OperationOutcomeError } from '../kernel/outcome';
import { parseDateRange } from '../search/date-range';
import type { FhirContext, InteractionResult } from './context';
import type { RestRequest } from './rest-request';

/**
 * Reading the parameters of an operation (from the query of a GET or POST, or a Parameters
 * body) and answering with Parameters: shared by the operations capabilities register.
 */

/** A string parameter from the query or a Parameters body. */
export function stringParameter(req: RestRequest, name: string): string | undefined {
  const text = req.query.get(name) ?? undefined;
  if (text !== undefined) return text;
  const body = req.body as fhir4.Parameters | undefined;
  if (body?.resourceType !== 'Parameters') return undefined;
  const p = body.parameter?.find((x) => x.name === name);
  return p?.valueDateTime ?? p?.valueInstant ?? p?.valueDate ?? p?.valueString ?? p?.valueCode ?? p?.valueUri ?? p?.valueCanonical ?? p?.valueReference?.reference;
}

/**
 * Every parameter of an operation as one query: the URL's (less `_format` and `_pretty`), then a
 * Parameters body's primitive values, for operations that take search parameters ($everything,
 * $lastn) and read them as a search would.
 */
export function operationQuery(req: RestRequest): URLSearchParams {
  const params = new URLSearchParams([...req.query].filter(([k]) => k !== '_format' && k !== '_pretty'));
  const body = req.body as fhir4.Parameters | undefined;
  if (body?.resourceType === 'Parameters') {
    for (const p of body.parameter ?? []) {
      const number = p.valueInteger ?? p.valuePositiveInt ?? p.valueUnsignedInt;
      const value = p.valueDate ?? p.valueDateTime ?? p.valueInstant ?? p.valueString ?? p.valueCode ?? p.valueUri ?? (number !== undefined ? String(number) : undefined);
      if (value !== undefined) params.append(p.name, value);
    }
  }
  return params;
}

/** A dateTime parameter, as the start of the instant range it names. */
export function dateParameter(req: RestRequest, name: string): Date | undefined {
  const text = stringParameter(req, name);
  if (!text) return undefined;
  const range = parseDateRange(text);
  if (!range) throw badRequest(`parameter ${name}: '${text}' is not a FHIR dateTime`, [name]);
  return new Date(range.low);
}

export function parametersResult(parameter: fhir4.ParametersParameter[]): InteractionResult {
  return { status: 200, body: { resourceType: 'Parameters', parameter } };
}

/**
 * The instant a judging operation (`$check-adherence`) judges up to: now, or an earlier `now`
 * (re-judging the past is harmless: what was judged is remembered). A later one would mark what
 * has not happened yet as judged, so it is for system tokens on a server started with
 * ALLOW_CLOCK_OVERRIDE (tests) only.
 */
export function judgementClock(ctx: FhirContext, req: RestRequest): Date {
  const real = new Date();
  const asked = dateParameter(req, 'now');
  if (!asked || asked <= real) return asked ?? real;
  const system = req.policy.subject === undefined && req.policy.patient === undefined;
  if (!ctx.config.allowClockOverride || !system) {
    throw new OperationOutcomeError(403, { code: 'forbidden', diagnostics: 'now may not be in the future (a clock override is for system tokens on servers started with ALLOW_CLOCK_OVERRIDE=true)', expression: ['now'] });
  }
  return asked;
}
