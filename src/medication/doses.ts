import type { Queryable } from '../store/db';
import { readResources } from '../store/repository';
import type { Schedule } from './schedules';
import { dosesBetween, type PatientClock } from './timing';

/**
 * What became of each due dose, from the MedicationAdministrations recorded against the request
 * (MedicationAdministration.request). A dose's window opens `grace` before it is due; an
 * administration belongs to the latest dose whose window had opened, once:
 * - on-time: taken within grace of the due time;
 * - late: taken after that, before the next dose's window opened;
 * - missed: not taken, and the grace after the due time has passed;
 * - due: not taken, inside its window now; upcoming: its window has not opened.
 */
export type DoseStatus = 'on-time' | 'late' | 'missed' | 'due' | 'upcoming';

export interface JudgedDose {
  requestId: string;
  instruction: number;
  at: number;
  status: DoseStatus;
  administration?: { id: string; at: number };
}

/** Administrations that count as a dose taken (R4 medication-admin-status). */
const TAKEN = new Set(['completed', 'in-progress']);

export interface Administration {
  id: string;
  requestId: string;
  /** Its subject's Patient id: it counts only for a request of that patient. */
  patient?: string;
  at: number;
}

/** When an administration happened: effectiveDateTime, or the start of effectivePeriod. */
function administeredAt(a: fhir4.MedicationAdministration): number | undefined {
  const text = a.effectiveDateTime ?? a.effectivePeriod?.start;
  const t = text ? Date.parse(text) : Number.NaN;
  return Number.isNaN(t) ? undefined : t;
}

/** The taken administrations among the stored MedicationAdministrations `ids`. */
export async function administrations(db: Queryable, ids: readonly string[]): Promise<Administration[]> {
  const stored = await readResources<fhir4.MedicationAdministration>(db, 'MedicationAdministration', ids);
  const out: Administration[] = [];
  for (const [id, a] of stored) {
    const requestId = /^MedicationRequest\/([A-Za-z0-9\-.]{1,64})$/.exec(a.request?.reference ?? '')?.[1];
    const at = administeredAt(a);
    const patient = /^Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(a.subject?.reference ?? '')?.[1];
    if (requestId && at !== undefined && TAKEN.has(a.status)) out.push({ id, requestId, ...(patient ? { patient } : {}), at });
  }
  return out;
}

/**
 * The doses of `schedule` due in [from, to) with their status at `now`. Doses up to a day either
 * side are computed too, so that an administration is matched against its true neighbours.
 */
export function judgeDoses(schedule: Schedule, clock: PatientClock, grace: number, from: number, to: number, now: number, taken: readonly Administration[]): JudgedDose[] {
  const margin = 86_400_000;
  const doses = dosesBetween(schedule.compiled, clock, from - margin, to + margin);
  // Another patient's administration naming this request is no dose of it: a writer that may not
  // read the request could link it (index.ts, linkAdministrations judges only readable requests).
  const mine = taken.filter((a) => a.requestId === schedule.requestId && a.patient === schedule.patient).sort((a, b) => a.at - b.at);
  const matched = new Map<number, Administration>();
  for (const a of mine) {
    // The latest dose whose window (due − grace) had opened when it was taken.
    let k = -1;
    for (let i = 0; i < doses.length && doses[i]!.at - grace <= a.at; i++) k = i;
    if (k >= 0 && !matched.has(k)) matched.set(k, a);
  }
  const judged: JudgedDose[] = [];
  doses.forEach((d, i) => {
    if (d.at < from || d.at >= to) return;
    const a = matched.get(i);
    const status: DoseStatus = a
      ? a.at <= d.at + grace ? 'on-time' : 'late'
      : now >= d.at + grace ? 'missed' : now >= d.at - grace ? 'due' : 'upcoming';
    judged.push({ requestId: schedule.requestId, instruction: d.instruction, at: d.at, status, ...(a ? { administration: { id: a.id, at: a.at } } : {}) });
  });
  return judged;
}
