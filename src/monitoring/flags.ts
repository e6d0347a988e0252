import { newResourceId } from '../kernel/id';
import { oneOf } from '../kernel/sql-any';
import type { UnitOfWork, WriteOp } from '../pipeline';
import type { Queryable } from '../store/db';
import { readVersioned } from '../store/repository';
import { LOINC } from './plan';

/**
 * Flags raised by the monitoring rules, written through the one write pipeline as part of the
 * unit of work of the change that caused them (DESIGN "no alert is lost"): same transaction,
 * and the after-commit stage (notifications, audit) sees them with it. While a Flag is
 * active for a patient, plan, measure and direction, further events update it (another
 * flag-detail, a count) instead of adding Flags.
 */
export const FLAG_DETAIL_URL = 'http://hl7.org/fhir/StructureDefinition/flag-detail';
export const FLAG_PRIORITY_URL = 'http://hl7.org/fhir/StructureDefinition/flag-priority';
export const FLAG_CAREPLAN_URL = 'http://rpm.example.org/fhir/StructureDefinition/flag-careplan';
export const FLAG_COUNT_URL = 'http://rpm.example.org/fhir/StructureDefinition/flag-event-count';
export const FLAG_WINDOW_URL = 'http://rpm.example.org/fhir/StructureDefinition/flag-missed-window';
export const FLAG_REQUEST_URL = 'http://rpm.example.org/fhir/StructureDefinition/flag-medication-request';
export const MONITORING_FLAG_SYSTEM = 'http://rpm.example.org/fhir/CodeSystem/monitoring-flag';

export type FlagDirection = 'high' | 'low' | 'missed' | 'missed-dose';

const FLAG_CODE: Record<FlagDirection, { code: string; display: string }> = {
  high: { code: 'limit-high', display: 'Measurement above limit' },
  low: { code: 'limit-low', display: 'Measurement below limit' },
  missed: { code: 'missed-measurement', display: 'Scheduled measurement missed' },
  'missed-dose': { code: 'missed-dose', display: 'Scheduled medication dose missed' },
};

/** Something a Flag is raised for: a breach of a limit, or a missed due window. */
export interface FlagEvent {
  patient: string;
  /**
   * The id of what the Flag is raised under: a CarePlan (limits, missed measurements), or the
   * MedicationRequest when `basis` says so (missed doses, src/medication). One key space: a
   * medication Flag's direction (`missed-dose`) is never a CarePlan's.
   */
  careplanId: string;
  basis?: 'CarePlan' | 'MedicationRequest';
  /** A LOINC measure; for a MedicationRequest, what `coding` codes (the medication). */
  measure: string;
  display: string;
  /** The code of what was missed when it is not a LOINC measure. */
  coding?: fhir4.Coding;
  direction: FlagDirection;
  critical: boolean;
  /** The breaching Observation; none for a missed window. */
  observationId?: string;
  /** The Observation's first version: it cannot have been judged before, no need to look. */
  firstVersion?: boolean;
  /** Flag.period.start when the Flag is opened. */
  time: string;
  text: string;
  /** The missed window, as a Period. */
  window?: { start: string; end: string };
}

export interface RaisedFlag {
  id: string;
  created: boolean;
  /** How many of the events raised were added to it. */
  events: number;
}

/** What a Flag is kept under, as one string: basis id, measure, direction. */
export const keyOf = (e: { careplanId: string; measure: string; direction: string }) => `${e.careplanId}|${e.measure}|${e.direction}`;

function newFlag(e: FlagEvent): fhir4.Flag {
  return {
    resourceType: 'Flag',
    status: 'active',
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/flag-category', code: 'clinical', display: 'Clinical' }] }],
    code: {
      coding: [
        { system: MONITORING_FLAG_SYSTEM, ...FLAG_CODE[e.direction] },
        e.coding ?? { system: LOINC, code: e.measure, display: e.display },
      ],
      text: e.text,
    },
    subject: { reference: `Patient/${e.patient}` },
    period: { start: e.time },
    extension: [
      e.basis === 'MedicationRequest'
        ? { url: FLAG_REQUEST_URL, valueReference: { reference: `MedicationRequest/${e.careplanId}` } }
        : { url: FLAG_CAREPLAN_URL, valueReference: { reference: `CarePlan/${e.careplanId}` } },
      { url: FLAG_COUNT_URL, valueInteger: 0 },
    ],
  };
}

/**
 * The most breaching Observations a Flag names (flag-detail), the latest ones; the count
 * extension keeps the total. Measured reason: a Flag left active grew by one detail per breach,
 * and every breach wrote the whole Flag again as a new version, so its history grew with the
 * square of its breaches (2,082 details: a 300 kB Flag per breach, 13 → 27 ms per breaching
 * create). The older details stay in the Flag's earlier versions, and every judged breach in
 * monitoring_breach.
 */
export const MAX_FLAG_DETAILS = 20;

/** Adds one event to a Flag (new or stored): detail, count, latest text, priority. */
function addEvent(flag: fhir4.Flag, e: FlagEvent): void {
  let extension = flag.extension ?? [];
  if (e.observationId) {
    extension.push({ url: FLAG_DETAIL_URL, valueReference: { reference: `Observation/${e.observationId}` } });
    let surplus = extension.filter((x) => x.url === FLAG_DETAIL_URL).length - MAX_FLAG_DETAILS;
    if (surplus > 0) extension = extension.filter((x) => x.url !== FLAG_DETAIL_URL || surplus-- <= 0);
  }
  const count = extension.find((x) => x.url === FLAG_COUNT_URL);
  if (count) count.valueInteger = (count.valueInteger ?? 0) + 1;
  else extension.push({ url: FLAG_COUNT_URL, valueInteger: 1 });
  if (e.window) {
    const last = extension.find((x) => x.url === FLAG_WINDOW_URL);
    if (last) last.valuePeriod = e.window;
    else extension.push({ url: FLAG_WINDOW_URL, valuePeriod: e.window });
  }
  flag.extension = extension;
  summarize(flag, { latest: e.text, critical: e.critical || extension.some((x) => x.url === FLAG_PRIORITY_URL) });
}

/** What a Flag says of the events it holds in words, whichever of them it names. */
interface FlagSummary {
  /** The latest event's text, as the judge wrote it (FlagEvent.text). */
  latest: string;
  /** The first event's time (period.start), when it is to change. */
  since?: string;
  /** Whether a critical limit is among the breaches it holds (flag-priority PH). */
  critical: boolean;
}

/**
 * Writes a summary onto a Flag: code.text, period.start, the priority. The one place a raise
 * (the event added) and a retraction (the breaches still held) describe a Flag, so a Flag
 * reads the same whichever way it came to hold its breaches.
 */
function summarize(flag: fhir4.Flag, s: FlagSummary): void {
  const extension = (flag.extension ?? []).filter((x) => s.critical || x.url !== FLAG_PRIORITY_URL);
  if (s.critical && !extension.some((x) => x.url === FLAG_PRIORITY_URL)) {
    extension.push({
      url: FLAG_PRIORITY_URL,
      valueCodeableConcept: { coding: [{ system: 'http://hl7.org/fhir/flag-priority-code', code: 'PH', display: 'High priority' }], text: 'Critical limit' },
    });
  }
  flag.extension = extension;
  if (flag.code) flag.code.text = s.latest;
  if (s.since !== undefined) flag.period = { ...flag.period, start: s.since };
}

/**
 * Opens or updates the Flags `events` deserve, in `tx`. An Observation already judged for a
 * plan, measure and direction is skipped (re-writing or re-evaluating it raises nothing new).
 * Set-based: a few statements whatever the number of events.
 */
export async function raiseFlags(uow: UnitOfWork, events: readonly FlagEvent[]): Promise<RaisedFlag[]> {
  if (events.length === 0) return [];
  const { tx } = uow;
  let pending = [...events];
  const breachKey = (e: FlagEvent) => `${e.observationId}|${keyOf(e)}`;
  // Breaches judged before that are critical now and were not (a reading corrected from 150 to
  // 195 mm[Hg]): raised again, so that the Flag holding them escalates (priority, text), or one
  // opens if the clinician has closed it since. The Flag they were recorded under, by key.
  const escalated = new Map<string, string>();
  const observed = pending.filter((e) => e.observationId && !e.firstVersion);
  if (observed.length) {
    const observation = oneOf('observation_id', 1, [...new Set(observed.map((e) => e.observationId!))]);
    const { rows } = await tx.query<{ k: string; critical: boolean | null; flag_id: string }>(
      `SELECT observation_id || '|' || careplan_id || '|' || measure || '|' || direction AS k, critical, flag_id FROM monitoring_breach WHERE ${observation.sql}`,
      [observation.value],
    );
    const criticalNow = new Set(observed.filter((e) => e.critical).map(breachKey));
    for (const r of rows) if (criticalNow.has(r.k) && r.critical !== true) escalated.set(r.k, r.flag_id);
    const done = new Set(rows.map((r) => r.k).filter((k) => !escalated.has(k)));
    pending = pending.filter((e) => !e.observationId || !done.has(breachKey(e)));
  }
  if (pending.length === 0) return [];

  // Two transactions breaching the same plan and measure queue here, so only one opens a Flag.
  const { rows: open } = await lockedOpenFlags(tx, pending);
  const stored = await readVersioned<fhir4.Flag>(tx, 'Flag', open.map((r) => r.flag_id));
  const byKey = new Map<string, { id: string; version: number; flag: fhir4.Flag; created: boolean }>();
  for (const row of open) {
    const flag = stored.get(row.flag_id);
    if (flag?.resource.status === 'active') {
      byKey.set(keyOf({ careplanId: row.careplan_id, measure: row.measure, direction: row.direction }), { id: row.flag_id, version: flag.versionId, flag: flag.resource, created: false });
    }
  }
  const created: Array<{ id: string; event: FlagEvent }> = [];
  for (const e of pending) {
    const key = keyOf(e);
    let target = byKey.get(key);
    if (!target) {
      target = { id: newResourceId(), version: 0, flag: newFlag(e), created: true };
      byKey.set(key, target);
      created.push({ id: target.id, event: e });
    }
    // Counted once: an escalated breach leaves the place it had in the Flag it was recorded under.
    if (e.observationId && escalated.get(breachKey(e)) === target.id) dropEvents(target.flag, [`Observation/${e.observationId}`]);
    addEvent(target.flag, e);
  }
  const touched = [...byKey.values()].filter((t) => t.created || pending.some((e) => byKey.get(keyOf(e)) === t));
  const ops: WriteOp[] = touched.map((t) =>
    t.created
      ? { kind: 'create', type: 'Flag', id: t.id, resource: t.flag }
      : { kind: 'update', type: 'Flag', id: t.id, resource: t.flag, ifMatch: t.version },
  );
  for (const t of touched) ownFlags.add(t.flag);
  await uow.apply(ops);
  // What the server raised (monitoring_flag) and what it judged (monitoring_breach), in one statement.
  const judged = [...new Map(pending.filter((e) => e.observationId).map((e) => [breachKey(e), e])).values()];
  if (created.length || judged.length) {
    await tx.query(
      `WITH f AS (
         INSERT INTO monitoring_flag (flag_id, patient, careplan_id, measure, direction, active)
         SELECT *, true FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]))
       INSERT INTO monitoring_breach (observation_id, careplan_id, measure, direction, flag_id, event_time, text, critical)
       SELECT o, c, m, d, f, t, x, k
         FROM unnest($6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bool[]) WITH ORDINALITY AS u(o, c, m, d, f, t, x, k, n)
        ORDER BY n
       ON CONFLICT (observation_id, careplan_id, measure, direction) DO UPDATE
          SET flag_id = EXCLUDED.flag_id, event_time = EXCLUDED.event_time, text = EXCLUDED.text, critical = EXCLUDED.critical, seq = EXCLUDED.seq`,
      [
        created.map((c) => c.id), created.map((c) => c.event.patient), created.map((c) => c.event.careplanId), created.map((c) => c.event.measure), created.map((c) => c.event.direction),
        judged.map((e) => e.observationId!), judged.map((e) => e.careplanId), judged.map((e) => e.measure), judged.map((e) => e.direction), judged.map((e) => byKey.get(keyOf(e))!.id),
        // What the breach said, in the order the Flag gained it (seq): a retraction describes the Flag by the rest.
        judged.map((e) => e.time), judged.map((e) => e.text), judged.map((e) => e.critical),
      ],
    );
  }
  return touched.map((t) => ({ id: t.id, created: t.created, events: pending.filter((e) => byKey.get(keyOf(e)) === t).length }));
}

/** What a Flag is kept under (FlagEvent): basis id, measure, direction. */
export type FlagKey = Pick<FlagEvent, 'careplanId' | 'measure' | 'direction'>;

/**
 * Locks the keys (advisory, until commit, in sorted order: no deadlock between two writers),
 * THEN reads their active Flags, in a second statement. One statement cannot do both: under READ
 * COMMITTED its snapshot is taken before it runs, so a lock taken inside it (an InitPlan) waits
 * for the other writer's commit and then reads a snapshot without that writer's new Flag — two
 * concurrent breaches on separate connections opened several Flags (6 or 7 for 12 parallel breaches,
 * test/monitoring/concurrent-breaches.test.ts on PostgreSQL; issue 20).
 */
async function lockedOpenFlags(tx: Queryable, keys: readonly FlagKey[]) {
  await lockKeys(tx, keys);
  const careplan = oneOf('careplan_id', 1, [...new Set(keys.map((k) => k.careplanId))]);
  return tx.query<{ flag_id: string; careplan_id: string; measure: string; direction: string }>(
    `SELECT flag_id, careplan_id, measure, direction FROM monitoring_flag WHERE active AND ${careplan.sql}`,
    [careplan.value],
  );
}

/** The advisory locks raiseFlags, closeFlags and retractBreaches take on their keys, in sorted order. */
async function lockKeys(tx: Queryable, keys: readonly FlagKey[]): Promise<void> {
  await tx.query('SELECT count(pg_advisory_xact_lock(h)) FROM (SELECT hashtext(k) AS h FROM unnest($1::text[]) AS k ORDER BY 1) s', [
    [...new Set(keys.map(keyOf))].sort(),
  ]);
}

/** The measures of a plan's active limit Flags (index monitoring_flag_key_idx): $evaluate re-judges them even when no limit names them now. */
export async function raisedMeasures(db: Queryable, careplanId: string): Promise<string[]> {
  const { rows } = await db.query<{ measure: string }>(
    `SELECT DISTINCT measure FROM monitoring_flag WHERE active AND careplan_id = $1 AND direction IN ('high', 'low')`,
    [careplanId],
  );
  return rows.map((r) => r.measure);
}

/** A reading written again (updated or deleted): which of the breaches it raised it still supports. */
export interface RewrittenReading {
  observationId: string;
  supports(key: FlagKey): boolean;
}

/** What a retraction did: breaches taken back, and the Flags written for it. */
export interface Retraction {
  breaches: number;
  flags: string[];
}

/**
 * Takes back what readings no longer support from the Flags they raised: a reading marked
 * entered-in-error or cancelled, deleted, moved to another patient, or corrected into the limits
 * of a plan it was judged by again. Its breach is forgotten (a later breach counts anew), and an
 * active Flag drops it from its details and its count, and is described by the breaches it
 * still holds (summarize: the latest one's text, the first one's time, the priority while one is
 * critical); a Flag left with no breach at all was raised in error, so it becomes
 * `entered-in-error` (R4 flag-status), which its subscribers are told as of any Flag write. A
 * Flag the clinician already closed keeps its record as it is. Under the locks raiseFlags takes,
 * so a retraction and a raise of one key queue.
 */
export async function retractBreaches(uow: UnitOfWork, readings: readonly RewrittenReading[], now: string): Promise<Retraction> {
  if (readings.length === 0) return { breaches: 0, flags: [] };
  const byId = new Map(readings.map((r) => [r.observationId, r]));
  const observation = oneOf('observation_id', 1, [...byId.keys()]);
  const { rows } = await uow.tx.query<{ observation_id: string; careplan_id: string; measure: string; direction: FlagDirection; flag_id: string }>(
    `SELECT observation_id, careplan_id, measure, direction, flag_id FROM monitoring_breach WHERE ${observation.sql}`,
    [observation.value],
  );
  const taken = rows.filter((r) => !byId.get(r.observation_id)!.supports({ careplanId: r.careplan_id, measure: r.measure, direction: r.direction }));
  if (taken.length === 0) return { breaches: 0, flags: [] };
  await lockKeys(uow.tx, taken.map((r) => ({ careplanId: r.careplan_id, measure: r.measure, direction: r.direction })));
  // Forgets the breaches and reads, in the same statement, what their Flags still hold (the
  // statement's snapshot predates its DELETE, hence the NOT EXISTS).
  const { rows: held } = await uow.tx.query<{ flag_id: string; undescribed: number; latest: string | null; since: string | null; critical: boolean | null }>(
    `WITH gone AS (
       DELETE FROM monitoring_breach b USING unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS x(o, c, m, d)
        WHERE b.observation_id = x.o AND b.careplan_id = x.c AND b.measure = x.m AND b.direction = x.d
       RETURNING b.observation_id, b.careplan_id, b.measure, b.direction, b.flag_id)
     SELECT b.flag_id, (count(*) FILTER (WHERE b.text IS NULL))::int AS undescribed,
            (array_agg(b.text ORDER BY b.seq DESC))[1] AS latest, (array_agg(b.event_time ORDER BY b.seq))[1] AS since, bool_or(b.critical) AS critical
       FROM monitoring_breach b
      WHERE b.flag_id IN (SELECT flag_id FROM gone)
        AND NOT EXISTS (SELECT 1 FROM gone g WHERE g.observation_id = b.observation_id AND g.careplan_id = b.careplan_id AND g.measure = b.measure AND g.direction = b.direction)
      GROUP BY b.flag_id`,
    [taken.map((r) => r.observation_id), taken.map((r) => r.careplan_id), taken.map((r) => r.measure), taken.map((r) => r.direction)],
  );
  const holding = new Map(held.map((h) => [h.flag_id, h]));
  const stored = await readVersioned<fhir4.Flag>(uow.tx, 'Flag', taken.map((r) => r.flag_id));
  const ops: WriteOp[] = [];
  for (const [id, { resource, versionId }] of stored) {
    if (resource.status !== 'active') continue;
    removeEvents(resource, taken.filter((r) => r.flag_id === id).map((r) => `Observation/${r.observation_id}`), now);
    // A breach recorded before breaches kept their words (migration 018) could be the latest or
    // the first: then the summary stands as it is rather than naming the wrong one.
    const rest = holding.get(id);
    if (resource.status === 'active' && rest?.latest && Number(rest.undescribed) === 0) {
      summarize(resource, { latest: rest.latest, since: rest.since ?? undefined, critical: rest.critical === true });
    }
    ops.push({ kind: 'update', type: 'Flag', id, resource, ifMatch: versionId });
  }
  if (ops.length) await uow.apply(ops);
  return { breaches: taken.length, flags: ops.map((o) => (o as { id: string }).id) };
}

/** Drops the readings' details and counts from a Flag (a detail past MAX_FLAG_DETAILS is still counted); returns the count left. */
function dropEvents(flag: fhir4.Flag, readings: readonly string[]): number {
  const gone = new Set(readings);
  const extension = (flag.extension ?? []).filter((x) => x.url !== FLAG_DETAIL_URL || !gone.has(x.valueReference?.reference ?? ''));
  const count = extension.find((x) => x.url === FLAG_COUNT_URL);
  if (count) count.valueInteger = Math.max(0, (count.valueInteger ?? 0) - gone.size);
  flag.extension = extension;
  return count?.valueInteger ?? 0;
}

/** Drops the readings' details and counts from a Flag; with none left, the Flag was raised in error. */
function removeEvents(flag: fhir4.Flag, readings: readonly string[], now: string): void {
  if (!dropEvents(flag, readings)) {
    flag.status = 'entered-in-error';
    const start = flag.period?.start;
    flag.period = { ...flag.period, end: start !== undefined && Date.parse(start) > Date.parse(now) ? start : now };
  }
}

/**
 * Closes the active Flags of `keys` (the patient caught up): status inactive, period.end, in
 * `uow` like any rule-made write, under the same locks raiseFlags takes, so a close and a raise
 * of one key queue. monitoring_flag follows through trackFlagStatus. Returns the closed ids.
 */
export async function closeFlags(uow: UnitOfWork, keys: readonly FlagKey[], end: string): Promise<string[]> {
  if (keys.length === 0) return [];
  const wanted = new Set(keys.map(keyOf));
  const { rows } = await lockedOpenFlags(uow.tx, keys);
  const open = rows.filter((r) => wanted.has(keyOf({ careplanId: r.careplan_id, measure: r.measure, direction: r.direction })));
  if (open.length === 0) return [];
  const stored = await readVersioned<fhir4.Flag>(uow.tx, 'Flag', open.map((r) => r.flag_id));
  const ops: WriteOp[] = [];
  for (const [id, { resource, versionId }] of stored) {
    if (resource.status !== 'active') continue;
    resource.status = 'inactive';
    // A Flag is closed at `end` (the caught-up dose's time, say), never before it was raised:
    // a late dose recorded with its earlier time would otherwise end the period before its
    // start (R4 per-1) and fail the write that recorded it.
    const start = resource.period?.start;
    resource.period = { ...resource.period, end: start !== undefined && Date.parse(start) > Date.parse(end) ? start : end };
    ops.push({ kind: 'update', type: 'Flag', id, resource, ifMatch: versionId });
  }
  if (ops.length) await uow.apply(ops);
  return ops.map((o) => (o as { id: string }).id);
}

/** The Flags raiseFlags writes: active by construction, so trackFlagStatus has nothing to do for them. */
const ownFlags = new WeakSet<object>();

/** Keeps monitoring_flag.active in step with Flag.status, whoever else wrote the Flag (a clinician closing it). */
export async function trackFlagStatus(tx: Queryable, written: ReadonlyArray<{ id: string; resource?: fhir4.FhirResource }>): Promise<void> {
  const flags = written.filter((f) => !f.resource || !ownFlags.has(f.resource));
  if (flags.length === 0) return;
  await tx.query(
    `UPDATE monitoring_flag m SET active = s.active FROM unnest($1::text[], $2::bool[]) AS s(id, active)
      WHERE m.flag_id = s.id AND m.active IS DISTINCT FROM s.active`,
    [flags.map((f) => f.id), flags.map((f) => (f.resource as fhir4.Flag | undefined)?.status === 'active')],
  );
}
