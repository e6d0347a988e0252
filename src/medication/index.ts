import { findVisibleAmong, findVisibleIds } from '../access/enforce';
import type { AccessPolicy } from '../access/policy';
import { flagsShownTo } from '../monitoring/flag-answer';
import type { FhirContext, InteractionResult } from '../fhir/context';
import { dateParameter, judgementClock, parametersResult, stringParameter } from '../fhir/operation-params';
import type { RestRequest } from '../fhir/rest-request';
import { badRequest, type Issue, OperationOutcomeError } from '../kernel/outcome';
import { PeriodicJob } from '../monitoring/periodic';
import { eachWrite, type PendingWrite, type UnitOfWork } from '../pipeline';
import { readResources } from '../store/repository';
import { administrationQuery, catchUp, checkDoses, closeMissedDoseFlags } from './adherence';
import { administrations, type JudgedDose, judgeDoses } from './doses';
import { sendReminders } from './reminders';
import { activeSchedules, activeStarts, clocksOf, gracesOf, routineEntries, type Schedule, storeSchedules, TIMEZONE_URL } from './schedules';
import { type CompiledRequest, compileRequest, gracePeriodOf, routineEvents, timeSourceOf } from './timing';
import { isTimeZone, localDateTime } from './zone';
import { forgetMedication } from './erasure';
import checkAdherenceDefinition from './operations/MedicationRequest-check-adherence.json';
import dueDefinition from './operations/MedicationRequest-due.json';

/**
 * Medication schedules as stages of the one write pipeline, beside monitoring and built on it
 * (its Flags, its Subscription outbox, its periodic jobs):
 * - validate: MedicationRequest timings are compiled (422 for invalid values in an active order); grace periods, patient time zones and the request an administration names are checked;
 * - rules: compiled schedules stored; an administration closes a missed-dose Flag it catches up;
 * - operations: MedicationRequest/$due (doses of a window, with their status) and
 *   MedicationRequest/$check-adherence (judge missed doses now);
 * - jobs: reminders before due doses, missed-dose judgement.
 * Decision record: docs/decisions/011-medication-schedules.md.
 */
export interface Medication {
  stop(): Promise<void>;
}

const compiledOf = new WeakMap<object, CompiledRequest>();
/** A window of $due at most: a month of a few doses a day per request stays a small answer. */
const MAX_WINDOW_MS = 31 * 86_400_000;
/** Requests one $due answers for at most; more: narrow by patient. */
const MAX_REQUESTS = 200;

export function registerMedication(ctx: FhirContext): Medication {
  ctx.stages.use('validate', 'medication', (uow, writes) => validate(uow, writes));
  ctx.stages.use('erase', 'medication', forgetMedication);
  ctx.stages.use('rules', 'medication', async (uow, committed) => {
    const requests = committed.filter((w) => w.type === 'MedicationRequest');
    if (requests.length) {
      const compiled = requests.map((w) => ({ id: w.id, compiled: w.resource && compiledOf.get(w.resource) }));
      await storeSchedules(uow.tx, compiled);
      // Stopped, completed, cancelled or deleted: nothing more is due, so nothing stays missed.
      await closeMissedDoseFlags(uow, compiled.filter((c) => !c.compiled?.active).map((c) => c.id), new Date().toISOString());
    }
    await catchUp(ctx, uow, committed);
  });

  ctx.operations.register({
    name: 'due', types: ['MedicationRequest'], type: true, instance: true, affectsState: false,
    handler: (c, req) => dueOperation(c, req), resource: dueDefinition as fhir4.OperationDefinition,
  });
  ctx.operations.register({
    name: 'check-adherence', types: ['MedicationRequest'], type: true, instance: true, affectsState: true,
    resource: checkAdherenceDefinition as fhir4.OperationDefinition,
    handler: async (c, req) => {
      const now = judgementClock(c, req);
      // At type level, the requests the caller may search, not the server's.
      const visible = req.id ? [req.id] : await findVisibleIds(c.db, req.policy, 'MedicationRequest', new URLSearchParams());
      const result = await checkDoses(c, now, visible);
      const shown = await flagsShownTo(c.db, req.policy, result.flags);
      return parametersResult([
        { name: 'now', valueDateTime: now.toISOString() },
        { name: 'requests', valueInteger: result.requests },
        { name: 'missed', valueInteger: shown.missed },
        ...shown.flags.map((f) => ({ name: 'flag', valueReference: { reference: `Flag/${f.id}` } })),
      ]);
    },
  });

  const jobs = [
    new PeriodicJob(ctx.log, 'medication reminders', ctx.config.medicationReminderIntervalMs, () => sendReminders(ctx, new Date())),
    new PeriodicJob(ctx.log, 'missed-dose check', ctx.config.adherenceCheckIntervalMs, () => checkDoses(ctx, new Date())),
  ];
  for (const job of jobs) job.start();
  return {
    async stop() {
      for (const job of jobs) await job.stop();
    },
  };
}

const live = (writes: readonly PendingWrite[], type: string) => writes.filter((w) => w.type === type && w.resource);

async function validate(uow: UnitOfWork, writes: readonly PendingWrite[]): Promise<void> {
  const now = Date.now();
  const requests = live(writes, 'MedicationRequest');
  // An active order edited without authoredOn keeps the start it was compiled with: its count and
  // its every-8-h anchor are not restarted by an added note.
  const starts = await activeStarts(uow.tx, requests.filter((w) => w.previous && !(w.resource as fhir4.MedicationRequest).authoredOn).map((w) => w.id));
  await eachWrite(requests, (w) => {
    compiledOf.set(w.resource!, compileRequest(w.resource as fhir4.MedicationRequest, starts.get(w.id) ?? now));
  });
  await eachWrite(live(writes, 'CarePlan'), (w) => {
    const issues: Issue[] = [];
    gracePeriodOf(w.resource as fhir4.CarePlan, 'CarePlan.extension', issues);
    if (issues.length) throw new OperationOutcomeError(422, issues);
  });
  await eachWrite(live(writes, 'Patient'), (w) => {
    const zone = (w.resource as fhir4.Patient).extension?.find((e) => e.url === TIMEZONE_URL);
    if (zone && !(zone.valueCode && isTimeZone(zone.valueCode))) {
      throw new OperationOutcomeError(422, { code: 'code-invalid', diagnostics: `Patient.extension: the timezone must be a valueCode naming an IANA time zone such as Europe/Berlin`, expression: ['Patient.extension'] });
    }
    checkRoutine(w.resource as fhir4.Patient);
  });
  await linkAdministrations(uow, live(writes, 'MedicationAdministration'), live(writes, 'MedicationRequest'));
}

/** A patient's own event times: each names a known event once, at a local time of day. */
function checkRoutine(patient: fhir4.Patient): void {
  const known = new Set(routineEvents());
  const seen = new Set<string>();
  const issues: Issue[] = [];
  for (const { at, event, time } of routineEntries(patient)) {
    if (!event || !known.has(event)) issues.push({ code: 'code-invalid', diagnostics: `${at}: event must be a valueCode, one of ${[...known].join(', ')}`, expression: [at] });
    else if (seen.has(event)) issues.push({ code: 'business-rule', diagnostics: `${at}: the time of ${event} is given twice`, expression: [at] });
    if (!time) issues.push({ code: 'required', diagnostics: `${at}: time (valueTime, local) is required`, expression: [at] });
    if (event) seen.add(event);
  }
  if (issues.length) throw new OperationOutcomeError(422, issues);
}

/** An administration's stored request must be the same patient's: a dose taken counts against it. */
async function linkAdministrations(uow: UnitOfWork, writes: readonly PendingWrite[], pendingRequests: readonly PendingWrite[]): Promise<void> {
  if (writes.length === 0) return;
  const refOf = (w: PendingWrite) => (w.resource as fhir4.MedicationAdministration).request?.reference;
  const ids = writes.map((w) => /^MedicationRequest\/([A-Za-z0-9\-.]{1,64})$/.exec(refOf(w) ?? '')?.[1]).filter((id): id is string => id !== undefined);
  // Only the requests the writer may read are judged here: the 422 below names the request's
  // subject, so a patient token linking another patient's request learnt that it exists and
  // whose it is (security probe). One it may not read is, to it, one not stored here; the dose
  // judgement counts an administration only for its request's own patient (doses.ts), so the
  // link counts nothing. A request written in the same apply (a transaction Bundle creating
  // both) is read as written.
  const policy = writes[0]!.policy;
  const visible = policy.allows('MedicationRequest', 's') ? await findVisibleAmong(uow.tx, policy, 'MedicationRequest', ids) : new Set<string>();
  const requests = await readResources<fhir4.MedicationRequest>(uow.tx, 'MedicationRequest', [...visible]);
  for (const w of pendingRequests) requests.set(w.id, w.resource as fhir4.MedicationRequest);
  await eachWrite(writes, (w) => {
    const ref = refOf(w);
    if (!ref) return;
    const id = /^MedicationRequest\/([A-Za-z0-9\-.]{1,64})$/.exec(ref)?.[1];
    // A request not (yet) stored here counts nothing; data from other systems is kept as sent.
    const request = id ? requests.get(id) : undefined;
    if (!request) return;
    const subject = (w.resource as fhir4.MedicationAdministration).subject?.reference;
    if (request.subject?.reference !== subject) {
      throw new OperationOutcomeError(422, { code: 'business-rule', diagnostics: `MedicationAdministration.subject (${subject}) is not the subject of ${ref} (${request.subject?.reference})`, expression: ['MedicationAdministration.subject'] });
    }
  });
}

/**
 * MedicationRequest/$due?start&end[&patient][&now] (or MedicationRequest/{id}/$due): the doses due in
 * [start, end), each at its local time in the patient's zone (in UTC to a caller that may not read
 * the Patient), with what became of it (doses.ts), and a summary. Reads only what the caller may
 * search: the requests and the administrations are found under its policy.
 */
async function dueOperation(ctx: FhirContext, req: RestRequest): Promise<InteractionResult> {
  // Statuses as of `now`: a later one only where $check-adherence allows it.
  const now = judgementClock(ctx, req).getTime();
  const start = dateParameter(req, 'start')?.getTime() ?? now;
  const end = dateParameter(req, 'end')?.getTime() ?? start + 86_400_000;
  if (end <= start) throw badRequest('end must be after start', ['end']);
  if (end - start > MAX_WINDOW_MS) throw badRequest('the window from start to end may be at most 31 days', ['end']);
  const query = new URLSearchParams();
  if (req.id) query.set('_id', req.id);
  const patient = stringParameter(req, 'patient');
  if (patient !== undefined) {
    if (!/^(Patient\/)?[A-Za-z0-9\-.]{1,64}$/.test(patient)) throw badRequest(`patient: '${patient}' is not a Patient reference`, ['patient']);
    query.set('subject', patient.startsWith('Patient/') ? patient : `Patient/${patient}`);
  }
  const ids = await findVisibleIds(ctx.db, req.policy, 'MedicationRequest', query, MAX_REQUESTS + 1);
  if (ids.length > MAX_REQUESTS) throw badRequest(`more than ${MAX_REQUESTS} MedicationRequests match; name a patient`, ['patient']);
  const schedules = await activeSchedules(ctx.db, ids);
  const clocks = await clocksOf(ctx.db, schedules.map((s) => s.patient), ctx.config.defaultTimeZone);
  const graces = await gracesOf(ctx.db, schedules, ctx.config.medicationGraceMs);
  const margin = 2 * 86_400_000;
  const adminIds = schedules.length
    ? await findVisibleIds(ctx.db, req.policy, 'MedicationAdministration', administrationQuery(schedules.map((s) => s.requestId), start - margin, end + margin))
    : [];
  const taken = await administrations(ctx.db, adminIds);
  const clockShown = await patientsReadable(ctx, req.policy, schedules.map((s) => s.patient));
  const doses: Array<JudgedDose & { zone?: string; patient: string; medication: string; timeSource?: string; duration?: { value: number; unit: string } }> = [];
  for (const s of schedules) {
    const clock = clocks.get(s.patient)!;
    // The doses are placed with the patient's clock whoever asks (their instants are the order's);
    // the clock itself, zone and routine, is shown only to whom may read the Patient (decision 011).
    const shown = clockShown.has(s.patient);
    const zone = shown ? clock.zone : undefined;
    // A time of day the order did not give is said to be the routine's or the server's.
    const sources = new Map(shown ? s.compiled.instructions.map((i) => [i.index, timeSourceOf(i.rule, clock)]) : []);
    const durations = new Map(s.compiled.instructions.map((i) => [i.index, i.duration]));
    for (const d of judgeDoses(s, clock, graces.get(s.requestId)!, start, end, now, taken)) {
      const timeSource = sources.get(d.instruction);
      const duration = durations.get(d.instruction);
      doses.push({ ...d, zone, patient: s.patient, medication: s.compiled.medication, ...(timeSource ? { timeSource } : {}), ...(duration ? { duration } : {}) });
    }
  }
  doses.sort((a, b) => a.at - b.at || a.requestId.localeCompare(b.requestId));
  const count = (status: string) => doses.filter((d) => d.status === status).length;
  const onTime = count('on-time');
  const late = count('late');
  const missed = count('missed');
  const judged = onTime + late + missed;
  return parametersResult([
    { name: 'start', valueInstant: new Date(start).toISOString() },
    { name: 'end', valueInstant: new Date(end).toISOString() },
    ...doses.map((d) => ({
      name: 'dose',
      part: [
        { name: 'request', valueReference: { reference: `MedicationRequest/${d.requestId}` } },
        { name: 'patient', valueReference: { reference: `Patient/${d.patient}` } },
        { name: 'medication', valueString: d.medication },
        { name: 'due', valueDateTime: timeIn(d.zone, d.at) },
        ...(d.zone ? [{ name: 'timeZone', valueCode: d.zone }] : []),
        { name: 'instruction', valueInteger: d.instruction },
        ...(d.timeSource ? [{ name: 'timeSource', valueCode: d.timeSource }] : []),
        // Timing.repeat.duration: how long the dose lasts once begun (an infusion, a patch).
        ...(d.duration ? [{ name: 'duration', valueDuration: { value: d.duration.value, unit: d.duration.unit, system: 'http://unitsofmeasure.org', code: d.duration.unit } }] : []),
        { name: 'status', valueCode: d.status },
        ...(d.administration
          ? [
              { name: 'administration', valueReference: { reference: `MedicationAdministration/${d.administration.id}` } },
              { name: 'taken', valueDateTime: timeIn(d.zone, d.administration.at) },
            ]
          : []),
      ],
    })),
    // An order the server holds but cannot place is no dose: said, so no one takes silence for "nothing due".
    ...schedules.flatMap((s) => (s.compiled.unplaced ?? []).map((u) => ({
      name: 'unscheduled',
      part: [...instructionParts(s, u.index), { name: 'reason', valueString: u.reason }],
    }))),
    // A range read by its required end ("1-2 times"): said, so no one takes the schedule for the order's whole range.
    ...schedules.flatMap((s) => (s.compiled.assumed ?? []).map((a) => ({
      name: 'assumption',
      part: [...instructionParts(s, a.index), { name: 'element', valueString: a.element }, { name: 'text', valueString: a.text }],
    }))),
    {
      name: 'summary',
      part: [
        { name: 'on-time', valueInteger: onTime },
        { name: 'late', valueInteger: late },
        { name: 'missed', valueInteger: missed },
        { name: 'due', valueInteger: count('due') },
        { name: 'upcoming', valueInteger: count('upcoming') },
        // Taken doses (on time or late) of those judged; none before any dose is judged.
        ...(judged ? [{ name: 'adherence', valueDecimal: Math.round(((onTime + late) / judged) * 1000) / 1000 }] : []),
      ],
    },
  ]);
}

/** An instant as local time in `zone`, or in UTC when the caller may not learn the zone. */
const timeIn = (zone: string | undefined, at: number): string => (zone ? localDateTime(zone, at) : new Date(at).toISOString());

/**
 * The patients among `ids` whose clock a $due caller may see: the time zone and the daily routine
 * are extensions of the Patient, so it is whom the access policy lets read that Patient. A caller
 * with MedicationRequest rights only learnt where a patient lives (roughly) and when they eat and
 * sleep (security probe).
 */
async function patientsReadable(ctx: FhirContext, policy: AccessPolicy, ids: readonly string[]): Promise<Set<string>> {
  if (ids.length === 0 || !policy.allows('Patient', 'r')) return new Set();
  try {
    return await findVisibleAmong(ctx.db, policy, 'Patient', [...new Set(ids)], 'r');
  } catch (err) {
    // Granular Patient scopes this server cannot combine refuse a read of Patient, not the doses.
    if (err instanceof OperationOutcomeError && err.status === 403) return new Set();
    throw err;
  }
}

/** The parts naming which order, patient and dosage instruction an `unscheduled` or `assumption` parameter is about. */
function instructionParts(schedule: Schedule, index: number): fhir4.ParametersParameter[] {
  return [
    { name: 'request', valueReference: { reference: `MedicationRequest/${schedule.requestId}` } },
    { name: 'patient', valueReference: { reference: `Patient/${schedule.patient}` } },
    { name: 'instruction', valueInteger: index },
  ];
}
