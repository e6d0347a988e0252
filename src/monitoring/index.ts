import type { Server } from '@hapi/hapi';
import type { GrantStandings } from '../access/grant';
import type { FhirContext, InteractionResult } from '../fhir/context';
import type { RestRequest } from '../fhir/rest-request';
import { findVisibleIds, mayRead, readLimits } from '../access/enforce';
import type { AccessPolicy } from '../access/policy';
import { flagsShownTo } from './flag-answer';
import { dateParameter, judgementClock, parametersResult } from '../fhir/operation-params';
import { badRequest, notFound, unprocessable } from '../kernel/outcome';
import { type CommittedWrite, eachWrite, type PendingWrite, type UnitOfWork, withUnitOfWork } from '../pipeline';
import { readingsOf, withinLimits } from '../search';
import { notificationsArrive } from '../store/listen-check';
import { readResource, ReplayUnitError } from '../store/repository';
import { checkAdherence } from './adherence';
import { PeriodicJob } from './periodic';
import { turnOffEndedSubscriptions } from './subscription-end';
import { tagSubscriptionsStoredUntagged } from './subscriber-backfill';
import { type FlagEvent, keyOf, raisedMeasures, raiseFlags, retractBreaches, type RewrittenReading, trackFlagStatus } from './flags';
import { type Breach, carryJudgement, judgedPatient, judgeObservation, type PlanLimits, subjectPatient } from './judge';
import { assertValidGoal, type CompiledPlan, compilePlan, storedGoalIds } from './plan';
import { activePlansOf, goalsInActivePlans, loadGoals, planById, plansChanged, plansUnchanged, recompilePlansOfGoals, storePlans } from './plans';
import { PlanCache } from './plan-cache';
import { DeliveryWorker } from './delivery';
import { enqueueNotifications, forgetSubscriptions, noteSubscriber, recordSubscribers, SUBSCRIPTIONS_CHANGED_CHANNEL } from './notify';
import { acceptSubscription, endpointPolicy } from './subscription-accept';
import { enforceSubscriptionCap } from './subscription-cap';
import { enforceSubscriberHolds } from './subscription-holder';
import { bindingTokenOperation, WebsocketChannel } from './websocket';
import { forgetMonitoring, turnOffSubscriptionsOf } from './erasure';
import { HeaderSecrets, storeHeaderSecrets } from './header-secrets';
import checkAdherenceDefinition from './operations/CarePlan-check-adherence.json';
import evaluateDefinition from './operations/CarePlan-evaluate.json';

/**
 * Monitoring rules as stages of the one write pipeline (DESIGN "Data flow"):
 * - validate: Goal limits and CarePlans are checked and compiled; Subscriptions accepted, their
 *   headers' values replaced by masks (write-only secrets, decision 033);
 * - judge: every Observation is judged against its patient's active plans (one query per apply);
 * - rules: compiled plans and Subscription header secrets stored, Flags raised in the same unit
 *   of work, notifications queued;
 * - after-commit: the delivery worker is woken.
 * Decision record: docs/decisions/005-monitoring-rules.md.
 */
export interface Monitoring {
  /** Stops the adherence scheduler and the delivery worker (App.stop()). */
  stop(): Promise<void>;
}

/** What an earlier stage learnt about a resource, for the rules stage of the same write. */
const compiledPlans = new WeakMap<object, CompiledPlan>();
const breachesOf = new WeakMap<object, Breach[]>();
/** The plans (ids) an Observation version was judged by: a breach of another plan says nothing of it. */
const judgedBy = new WeakMap<object, ReadonlySet<string>>();

/** `grants` says whether the grant a Subscription was set under still stands (the authorization server's, decision 032). */
export function registerMonitoring(ctx: FhirContext, server: Server, grants: GrantStandings): Monitoring {
  const worker = new DeliveryWorker(ctx, endpointPolicy(ctx), grants);
  const listeningPort = () => (server.info.started ? Number(server.info.port) : undefined);

  ctx.stages.use('validate', 'monitoring.plans', (uow, writes) => validatePlans(uow, writes));
  const headerSecrets = new HeaderSecrets();
  // Who may change a Subscription first: its content is judged only for its subscriber's (or an
  // administrator's) writes; every version is stamped with the subscriber reads go by.
  ctx.stages.use('validate', 'monitoring.subscription-holder', (uow, writes) => enforceSubscriberHolds(uow.tx, writes));
  ctx.stages.use('validate', 'monitoring.subscriptions', (uow, writes) => acceptSubscriptions(ctx, uow, writes, listeningPort(), headerSecrets));
  const planCache = new PlanCache();
  ctx.stages.use('judge', 'monitoring.limits', (uow, writes) => judgeObservations(uow, writes, planCache));
  ctx.stages.use('erase', 'monitoring', async (uow, erased) => {
    // No copy of an erased patient's plans stays in memory.
    planCache.clear();
    await forgetMonitoring(uow, erased);
    await turnOffSubscriptionsOf(uow, erased);
  });
  // The worker is woken only when a rule queued a notification: most commits queue none, and a
  // drain costs a query. A wake-up lost to a concurrent unit is picked up by the worker's poll.
  let queued = false;
  ctx.stages.use('rules', 'monitoring', async (uow, committed) => {
    // A plan written here: this node's copies are dropped at once rather than found stale by the
    // next write's check (which other nodes rely on).
    if (committed.some((w) => w.type === 'CarePlan' || w.type === 'Goal')) planCache.clear();
    if (await applyRules(uow, committed, grants)) queued = true;
  });
  ctx.stages.use('after-commit', 'monitoring.delivery', async () => {
    if (!queued) return;
    queued = false;
    worker.kick();
  });

  ctx.operations.register({
    name: 'get-ws-binding-token', types: ['Subscription'], type: false, instance: true, affectsState: false,
    handler: (c, req) => bindingTokenOperation(c, req.id!, req.policy, grants),
    // R4's home of the operation is the Subscriptions Backport IG (R5's own canonical is no R4 definition).
    definition: 'http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-get-ws-binding-token',
  });
  ctx.operations.register({
    name: 'evaluate', types: ['CarePlan'], type: false, instance: true, affectsState: true,
    handler: (c, req) => evaluateOperation(c, req), resource: evaluateDefinition as fhir4.OperationDefinition,
  });
  ctx.operations.register({
    name: 'check-adherence', types: ['CarePlan'], type: true, instance: true, affectsState: true,
    resource: checkAdherenceDefinition as fhir4.OperationDefinition,
    handler: async (c, req) => {
      const now = judgementClock(c, req);
      if (req.id && !(await readResource(c.db, 'CarePlan', req.id))) throw notFound(`CarePlan/${req.id} is not known`);
      // At type level, the plans the caller may search, not the server's.
      const visible = req.id ? [req.id] : await findVisibleIds(c.db, req.policy, 'CarePlan', new URLSearchParams());
      const result = await checkAdherence(c, now, visible);
      const shown = await flagsShownTo(c.db, req.policy, result.flags);
      return parametersResult([
        { name: 'now', valueDateTime: now.toISOString() },
        { name: 'plans', valueInteger: result.plans },
        { name: 'missed', valueInteger: shown.missed },
        ...shown.flags.map((f) => ({ name: 'flag', valueReference: { reference: `Flag/${f.id}` } })),
      ]);
    },
  });

  const scheduler = new PeriodicJob(ctx.log, 'adherence check', ctx.config.adherenceCheckIntervalMs, () => checkAdherence(ctx, new Date()));
  scheduler.start();
  const subscriptionEnds = new PeriodicJob(ctx.log, 'Subscription upkeep (subscriber tags, ended Subscriptions)', ctx.config.subscriptionEndCheckIntervalMs, async () => {
    await tagSubscriptionsStoredUntagged(ctx);
    return turnOffEndedSubscriptions(ctx, grants);
  });
  subscriptionEnds.start();
  worker.start();
  const websocket = new WebsocketChannel(ctx, server);
  const stopping = new AbortController();
  const listening = listenForOtherNodes(ctx, websocket, stopping.signal);
  return {
    async stop() {
      stopping.abort();
      await scheduler.stop();
      await subscriptionEnds.stop();
      await worker.stop();
      const unlisten = await listening;
      await unlisten?.();
      await websocket.stop();
    },
  };
}

/** How long the start-up check waits for its own notification before it says LISTEN is deaf. */
const HEARING_CHECK_MS = 5000;

/**
 * What other nodes' commits announce through NOTIFY: websocket pings (./websocket.ts) and
 * Subscriptions written elsewhere (the cache of ./notify.ts). Then checks that a notification
 * is heard at all: behind PgBouncer in transaction mode without DATABASE_LISTEN_URL none is, and
 * the dashboard's live alerts would be silently dead. Answers how to stop listening.
 */
async function listenForOtherNodes(ctx: FhirContext, websocket: WebsocketChannel, stopping: AbortSignal): Promise<(() => Promise<void>) | undefined> {
  try {
    await websocket.start();
    const unlisten = await ctx.db.listen(SUBSCRIPTIONS_CHANGED_CHANNEL, () => forgetSubscriptions());
    const heard = await notificationsArrive(ctx.db, HEARING_CHECK_MS, stopping);
    if (!heard && !stopping.aborted) {
      ctx.log.error(
        `no notification sent through the database came back within ${HEARING_CHECK_MS} ms: websocket pings and other nodes' new Subscriptions will not reach this node. Behind PgBouncer in transaction mode, set DATABASE_LISTEN_URL to a direct connection to PostgreSQL`,
      );
    }
    return unlisten;
  } catch (err) {
    ctx.log.error({ err }, 'the server could not listen for notifications of other nodes');
    return undefined;
  }
}

const live = (writes: readonly PendingWrite[], type: string) => writes.filter((w) => w.type === type && w.resource);

/** Which of these stored Goals `policy` may read, under the limits of a read (compartment, granular scopes, Consent). */
async function readableGoals(uow: UnitOfWork, policy: AccessPolicy, ids: readonly string[]): Promise<Set<string>> {
  if (ids.length === 0 || !policy.allows('Goal', 'r')) return new Set();
  const limits = readLimits(policy, 'Goal', 'r');
  const readable = new Set<string>();
  for (const id of new Set(ids)) if (await mayRead(uow.tx, 'Goal', id, limits)) readable.add(id);
  return readable;
}

/** Goals read by plans the server acts on must hold valid limits; CarePlans are compiled (and checked) here. */
async function validatePlans(uow: UnitOfWork, writes: readonly PendingWrite[]): Promise<void> {
  const goalWrites = live(writes, 'Goal');
  if (goalWrites.length) {
    const enforced = await goalsInActivePlans(uow.tx, goalWrites.map((w) => w.id));
    await eachWrite(goalWrites, (w) => {
      if (enforced.has(w.id)) assertValidGoal(w.resource as fhir4.Goal);
    });
  }
  const plans = live(writes, 'CarePlan');
  if (plans.length) {
    // Goals written in the same apply are read as written; others from the store.
    const pendingGoals = new Map(goalWrites.map((w) => [w.id, w.resource as fhir4.Goal]));
    const stored = await loadGoals(uow.tx, plans.flatMap((w) => storedGoalIds(w.resource as fhir4.CarePlan)).filter((id) => !pendingGoals.has(id)));
    await eachWrite(plans, async (w) => {
      const plan = w.resource as fhir4.CarePlan;
      // A stored Goal its writer may not read is, to this plan, one that does not exist: its
      // limits would otherwise come back in the 422s, the readings' referenceRange and the Flags.
      const readable = await readableGoals(uow, w.policy, storedGoalIds(plan).filter((id) => stored.has(id)));
      const goals = new Map([...[...stored].filter(([id]) => readable.has(id)), ...pendingGoals]);
      compiledPlans.set(w.resource!, compilePlan(plan, goals));
    });
  }
}

async function acceptSubscriptions(ctx: FhirContext, uow: UnitOfWork, writes: readonly PendingWrite[], port: number | undefined, headerSecrets: HeaderSecrets): Promise<void> {
  const subscriptions = live(writes, 'Subscription');
  const accepted: PendingWrite[] = [];
  await eachWrite(subscriptions, async (w) => {
    const sub = w.resource as fhir4.Subscription;
    // One written as `off` delivers nothing and is judged when it is turned on again: an erasure
    // or an end turns watching Subscriptions off whatever the channel settings are now (an
    // e-mail domain no longer allowed must not keep a patient from being erased).
    if (sub.status !== 'off' && (await acceptSubscription(ctx, uow.tx, sub, w.previous as fhir4.Subscription | undefined, port, w.policy))) w.changed = true;
    // Before the unchanged check (decision 029), so that it compares masks: a secret sent back
    // masked is no change, a new secret is.
    if (await headerSecrets.hide(uow.tx, w)) w.changed = true;
    accepted.push(w);
  });
  // After acceptance (a `requested` one is `active` by now; a refused one holds no slot), with
  // the deletes of this apply, which free theirs.
  const deleted = writes.filter((w) => w.type === 'Subscription' && !w.resource);
  await enforceSubscriptionCap(uow.tx, [...deleted, ...accepted], ctx.config.maxSubscriptionsPerClient);
  noteSubscriber(subscriptions);
}

/**
 * Interpretation against the limits of the patient's active plans; the breaches wait for the
 * rules stage. The plans come from this node's cache when it holds every patient's, checked by
 * a statement queued with the unit's writes (no round trip of its own): plans changed since
 * roll the unit back and it is replayed, the cache refilled by a fresh read.
 */
async function judgeObservations(uow: UnitOfWork, writes: readonly PendingWrite[], cache: PlanCache): Promise<void> {
  const observations: PendingWrite[] = [];
  for (const w of live(writes, 'Observation')) {
    if (w.resend && w.previous) carryJudgement(w.previous as fhir4.Observation, w.resource as fhir4.Observation);
    else observations.push(w);
  }
  if (observations.length === 0) return;
  const found = new Set<string>();
  for (const w of observations) {
    const patient = judgedPatient(w.resource as fhir4.Observation);
    if (patient) found.add(patient);
  }
  const patients = [...found];
  if (patients.length === 0) return;
  let active: PlanLimits[];
  const cached = cache.lookup(patients);
  if (cached) {
    active = cached.plans;
    const check = plansUnchanged(patients, cached.fingerprint);
    uow.tx.later(check.sql, check.params, (err) => {
      if (!plansChanged(err)) return err;
      cache.forget(patients);
      return new PlansChangedError((err as Error).message);
    });
  } else {
    const read = await activePlansOf(uow.tx, patients);
    cache.remember(read);
    active = read.plans;
  }
  for (const w of observations) {
    const obs = w.resource as fhir4.Observation;
    const patient = judgedPatient(obs);
    judgedBy.set(obs, new Set(active.filter((p) => p.patient === patient).map((p) => p.careplanId)));
    // Without plans only an annotation of ours (an earlier judgement's, sent back in an update)
    // has anything to undo.
    if (active.length === 0 && !mayBeAnnotated(obs)) continue;
    const { breaches, changed } = judgeObservation(obs, w.id, active, true);
    if (changed) w.changed = true;
    if (breaches.length) breachesOf.set(w.resource!, breaches);
  }
}

function mayBeAnnotated(obs: fhir4.Observation): boolean {
  return obs.interpretation !== undefined || obs.referenceRange !== undefined || (obs.component ?? []).some((c) => c.interpretation !== undefined || c.referenceRange !== undefined);
}

/**
 * The Observations a unit updated or deleted, and which of their breaches each still supports:
 * none once deleted, retracted (entered-in-error, cancelled) or moved to another patient; of a
 * plan it was judged by again, only those it breaches now; of a plan not judged (no longer
 * active), all, as nothing says otherwise.
 */
function rewrittenReadings(committed: readonly CommittedWrite[]): RewrittenReading[] {
  const readings: RewrittenReading[] = [];
  for (const w of committed) {
    if (w.type !== 'Observation' || !w.previous) continue;
    const obs = w.resource as fhir4.Observation | undefined;
    const patient = obs && judgedPatient(obs);
    // Whose the earlier version was, judged or not: a reading judged for the first time by this
    // version (a preliminary one confirmed final, or one marked in error and restored) keeps the
    // breaches it raised in this unit.
    const samePatient = patient !== undefined && patient === subjectPatient(w.previous as fhir4.Observation);
    const plans = samePatient ? judgedBy.get(obs!) : undefined;
    const breaches = new Set(((obs && breachesOf.get(obs)) ?? []).map(keyOf));
    readings.push({ observationId: w.id, supports: (key) => samePatient && (!plans?.has(key.careplanId) || breaches.has(keyOf(key))) });
  }
  return readings;
}

/** The plans a unit judged by changed before it committed: it is replayed with the plans read anew. */
class PlansChangedError extends ReplayUnitError {}

/** Returns whether notifications were queued. */
async function applyRules(uow: UnitOfWork, committed: readonly CommittedWrite[], grants: GrantStandings): Promise<boolean> {
  const { tx } = uow;
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
  if (events.length) await raiseFlags(uow, events);
  const rewritten = rewrittenReadings(committed);
  if (rewritten.length) await retractBreaches(uow, rewritten, new Date().toISOString());
  await recordSubscribers(tx, committed);
  storeHeaderSecrets(tx, committed);
  return (await enqueueNotifications(uow, committed, grants)) > 0;
}

/**
 * CarePlan/{id}/$evaluate?start&end: re-judges the stored Observations of the plan's patient in
 * [start, end] against the plan's current limits, raises the Flags they deserve, and takes back
 * (retractBreaches, as a rewritten reading does) the breaches recorded for this plan of readings
 * that no longer break its limits (limits changed, reading corrected); breaches of readings
 * outside the period, or of other plans, are left alone. Idempotent: monitoring_breach
 * remembers what was judged.
 */
async function evaluateOperation(ctx: FhirContext, req: RestRequest): Promise<InteractionResult> {
  if (!(await readResource(ctx.db, 'CarePlan', req.id!))) throw notFound(`CarePlan/${req.id} is not known`);
  const plan = await planById(ctx.db, req.id!);
  // The measures its limits name, and those of its active limit Flags: a limit the physician
  // removed leaves breaches to take back.
  const measures = plan ? [...new Set([...plan.limits.map((l) => l.measure), ...(await raisedMeasures(ctx.db, plan.careplanId))])] : [];
  if (!plan || measures.length === 0) throw unprocessable(`CarePlan/${req.id} has no limits for a Patient to evaluate`);
  const start = dateParameter(req, 'start') ?? new Date(plan.periodStart ?? 0);
  const end = dateParameter(req, 'end') ?? new Date(Math.min(plan.periodEnd ?? Date.now(), Date.now()));
  if (start > end) throw badRequest('start is after end', ['start']);
  const result = await withUnitOfWork(ctx, async (uow) => {
    // Both the own code and the component codes: a panel's systolic limit reads the panel.
    // Only the readings the caller may read are judged, and only their breaches taken back: the
    // answer's counts and Flags say what they were (a plan readable through its activity's
    // performer is not a right to the subject's readings).
    const limits = readLimits(req.policy, 'Observation', 's');
    const readings = (await readingsOf(uow.tx, { patient: plan.patient, codes: measures, from: start.toISOString(), to: end.toISOString() }))
      .filter((r) => withinLimits('Observation', r.resource, limits));
    const events: Breach[] = [];
    const rejudged: RewrittenReading[] = [];
    for (const r of readings) {
      const { breaches } = judgeObservation(r.resource, r.id, [plan], false);
      events.push(...breaches);
      const now = new Set(breaches.map(keyOf));
      rejudged.push({ observationId: r.id, supports: (key) => key.careplanId !== plan.careplanId || now.has(keyOf(key)) });
    }
    const flags = await raiseFlags(uow, events);
    const retracted = await retractBreaches(uow, rejudged, new Date().toISOString());
    return { judged: readings.length, breaches: events.length, flags, retracted };
  });
  return parametersResult([
    { name: 'judged', valueInteger: result.judged },
    { name: 'breaches', valueInteger: result.breaches },
    ...result.flags.map((f) => ({ name: 'flag', valueReference: { reference: `Flag/${f.id}` } })),
    { name: 'retracted', valueInteger: result.retracted.breaches },
    ...result.retracted.flags.map((id) => ({ name: 'retracted-flag', valueReference: { reference: `Flag/${id}` } })),
  ]);
}
