import type { Server } from '@hapi/hapi';
import type { FhirContext, InteractionResult } from '../fhir/context';
import { badRequest, notFound, unprocessable } from '../fhir/outcome';
import type { RestRequest } from '../fhir/rest-request';
import type { CommittedWrite, PendingWrite } from '../fhir/write-hooks';
import { parseDateRange } from '../search/date-range';
import { codeHash } from '../search/hash';
import type { Queryable } from '../store/db';
import { readCurrent } from '../store/repository';
import { AdherenceScheduler, checkAdherence } from './adherence';
import { type FlagEvent, raiseFlags, trackFlagStatus } from './flags';
import { type Breach, judgedPatient, judgeObservation } from './judge';
import { assertValidGoal, type CompiledPlan, compilePlan, storedGoalIds } from './plan';
import { activePlansOf, goalsInActivePlans, loadGoals, planById, recompilePlansOfGoals, storePlans } from './plans';
import { acceptSubscription, DeliveryWorker, enqueueNotifications } from './subscriptions';

/**
 * Monitoring rules on the one write pipeline (DESIGN "Data flow"): CarePlan limits are
 * validated and compiled when written; every Observation write is judged against its patient's
 * active plans in the enrich hook (one query per transaction); the Flags it deserves are
 * written in the same transaction; Subscription notifications are queued there too and
 * delivered after commit. Decision record: docs/decisions/005-monitoring-rules.md.
 */
export interface Monitoring {
  /** Stops the adherence scheduler and the delivery worker (App.stop()). */
  stop(): Promise<void>;
}

/** What the enrich hook learnt about a resource, for the in-transaction hook of the same write. */
const compiledPlans = new WeakMap<object, CompiledPlan>();
const breachesOf = new WeakMap<object, Breach[]>();

export function registerMonitoring(ctx: FhirContext, server: Server): Monitoring {
  const worker = new DeliveryWorker(ctx);
  let queued = false;
  const wake = () => worker.kick();

  ctx.writeHooks.enrich.push(async (c, tx, writes) => {
    await enrich(c, tx, writes, server.info.started ? Number(server.info.port) : undefined);
  });
  ctx.writeHooks.inTransaction.push(async (c, tx, committed) => {
    if (await inTransaction(c, tx, committed)) queued = true;
  });
  ctx.writeHooks.afterCommit.push(async () => {
    if (!queued) return;
    queued = false;
    wake();
  });

  ctx.operations.register({
    name: 'evaluate', types: ['CarePlan'], type: false, instance: true, affectsState: true,
    handler: (c, req) => evaluateOperation(c, req, wake),
  });
  ctx.operations.register({
    name: 'check-adherence', types: ['CarePlan'], type: true, instance: true, affectsState: true,
    handler: async (c, req) => {
      const now = dateParameter(req, 'now') ?? new Date();
      if (req.id && !(await readCurrent(c.db, 'CarePlan', req.id))) throw notFound(`CarePlan/${req.id} is not known`);
      const result = await checkAdherence(c, now, req.id, wake);
      return parameters([
        { name: 'now', valueDateTime: now.toISOString() },
        { name: 'plans', valueInteger: result.plans },
        { name: 'missed', valueInteger: result.missed },
        ...result.flags.map((f) => ({ name: 'flag', valueReference: { reference: `Flag/${f.id}` } })),
      ]);
    },
  });

  const scheduler = new AdherenceScheduler(ctx, ctx.config.adherenceCheckIntervalMs, wake);
  scheduler.start();
  worker.start();
  return {
    async stop() {
      await scheduler.stop();
      await worker.stop();
    },
  };
}

async function enrich(ctx: FhirContext, tx: Queryable, writes: PendingWrite[], listeningPort: number | undefined): Promise<void> {
  const live = (type: string) => writes.filter((w) => w.type === type && w.resource);

  const goalWrites = live('Goal');
  if (goalWrites.length) {
    const enforced = await goalsInActivePlans(tx, goalWrites.map((w) => w.id));
    for (const w of goalWrites) if (enforced.has(w.id)) assertValidGoal(w.resource as fhir4.Goal);
  }

  const plans = live('CarePlan');
  if (plans.length) {
    // Goals written in the same transaction are read as written; others from the store.
    const pendingGoals = new Map(live('Goal').map((w) => [w.id, w.resource as fhir4.Goal]));
    const stored = await loadGoals(tx, plans.flatMap((w) => storedGoalIds(w.resource as fhir4.CarePlan)).filter((id) => !pendingGoals.has(id)));
    const goals = new Map([...stored, ...pendingGoals]);
    for (const w of plans) compiledPlans.set(w.resource!, compilePlan(w.resource as fhir4.CarePlan, goals));
  }

  for (const w of live('Subscription')) {
    if (await acceptSubscription(ctx, tx, w.resource as fhir4.Subscription, listeningPort)) w.changed = true;
  }

  const observations = live('Observation');
  if (observations.length === 0) return;
  const patients = new Set<string>();
  for (const w of observations) {
    const patient = judgedPatient(w.resource as fhir4.Observation);
    if (patient) patients.add(patient);
  }
  const active = await activePlansOf(tx, [...patients]);
  if (active.length === 0) return;
  for (const w of observations) {
    const { breaches, changed } = judgeObservation(w.resource as fhir4.Observation, w.id, active, true);
    if (changed) w.changed = true;
    if (breaches.length) breachesOf.set(w.resource!, breaches);
  }
}

/** Returns whether notifications were queued. */
async function inTransaction(ctx: FhirContext, tx: Queryable, committed: readonly CommittedWrite[]): Promise<boolean> {
  const plans = committed.filter((w) => w.type === 'CarePlan');
  if (plans.length) {
    await storePlans(tx, plans.map((w) => ({ id: w.id, compiled: w.resource && compiledPlans.get(w.resource) })));
  }
  const goals = committed.filter((w) => w.type === 'Goal');
  if (goals.length) await recompilePlansOfGoals(tx, goals.map((w) => w.id));
  const flags = committed.filter((w) => w.type === 'Flag');
  if (flags.length) await trackFlagStatus(tx, flags);

  const events: FlagEvent[] = [];
  for (const w of committed) {
    if (w.type === 'Observation' && w.resource) {
      for (const b of breachesOf.get(w.resource) ?? []) events.push({ ...b, firstVersion: w.versionId === 1 });
    }
  }
  if (events.length) await raiseFlags(ctx, tx, events);
  return (await enqueueNotifications(tx, committed)) > 0;
}

function parameters(parameter: fhir4.ParametersParameter[]): InteractionResult {
  return { status: 200, body: { resourceType: 'Parameters', parameter } };
}

/** A dateTime parameter from the query (GET/POST) or a Parameters body. */
function dateParameter(req: RestRequest, name: string): Date | undefined {
  let text = req.query.get(name) ?? undefined;
  const body = req.body as fhir4.Parameters | undefined;
  if (!text && body?.resourceType === 'Parameters') {
    const p = body.parameter?.find((x) => x.name === name);
    text = p?.valueDateTime ?? p?.valueInstant ?? p?.valueDate ?? p?.valueString;
  }
  if (!text) return undefined;
  const range = parseDateRange(text);
  if (!range) throw badRequest(`parameter ${name}: '${text}' is not a FHIR dateTime`, [name]);
  return new Date(range.low);
}

/**
 * CarePlan/{id}/$evaluate?start&end: re-judges the stored Observations of the plan's patient in
 * [start, end] against the plan's current limits and raises the Flags they deserve. Idempotent:
 * monitoring_breach remembers what was judged.
 */
async function evaluateOperation(ctx: FhirContext, req: RestRequest, wake: () => void): Promise<InteractionResult> {
  const stored = await readCurrent(ctx.db, 'CarePlan', req.id!);
  if (!stored || stored.deleted) throw notFound(`CarePlan/${req.id} is not known`);
  const plan = await planById(ctx.db, req.id!);
  if (!plan || plan.limits.length === 0) throw unprocessable(`CarePlan/${req.id} has no limits for a Patient to evaluate`);
  const start = dateParameter(req, 'start') ?? new Date(plan.periodStart ?? 0);
  const end = dateParameter(req, 'end') ?? new Date(Math.min(plan.periodEnd ?? Date.now(), Date.now()));
  if (start > end) throw badRequest('start is after end', ['start']);
  const measures = [...new Set(plan.limits.map((l) => l.measure))].map(codeHash);
  const result = await ctx.db.transaction(async (tx) => {
    // Both the own code and the component codes: a panel's systolic limit reads the panel.
    const { rows } = await tx.query<{ id: string; content: fhir4.Observation }>(
      `SELECT o.id, o.content FROM observation o WHERE NOT o.deleted AND o.id IN (
         SELECT t.id FROM observation_token t WHERE t.patient = $1 AND t.param IN ('code', 'component-code')
            AND t.code_hash = ANY($2::int8[]) AND t.date_high >= $3 AND t.date_low <= $4)`,
      [plan.patient, measures, start.toISOString(), end.toISOString()],
    );
    const events: Breach[] = [];
    for (const row of rows) events.push(...judgeObservation(row.content, row.id, [plan], false).breaches);
    const flags = await raiseFlags(ctx, tx, events);
    return { judged: rows.length, breaches: events.length, flags };
  });
  wake();
  return parameters([
    { name: 'judged', valueInteger: result.judged },
    { name: 'breaches', valueInteger: result.breaches },
    ...result.flags.map((f) => ({ name: 'flag', valueReference: { reference: `Flag/${f.id}` } })),
  ]);
}
