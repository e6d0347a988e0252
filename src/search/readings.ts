import type { Queryable } from '../store/db';
import { codeHash } from './hash';

/**
 * Queries the monitoring rules need of a patient's readings, kept here because they read the
 * search index tables this capability owns (the hot (patient, param, code_hash, date) index of
 * observation_token, whose rows are the driving ones: `drives`). Codes are LOINC codes.
 */

/** A reading found by readingTimes: when it was taken (epoch ms), its status and meta tags. */
export interface ReadingTime {
  at: number;
  status: fhir4.Observation['status'];
  meta?: Pick<fhir4.Meta, 'tag'>;
}

/**
 * When each of the patient's Observations coded `code` (its own code) in [from, to) was taken,
 * with what decides whether the rules count it (status, tags): the caller's to judge.
 */
export async function readingTimes(db: Queryable, q: { patient: string; code: string; from: string; to: string }): Promise<ReadingTime[]> {
  const { rows } = await db.query<{ t: string; status: fhir4.Observation['status']; tag: fhir4.Coding[] | null }>(
    `SELECT coalesce(t.date_low, t.date_high) AS t, o.content->>'status' AS status, o.content->'meta'->'tag' AS tag
       FROM observation_token t JOIN observation o ON o.id = t.id
      WHERE t.patient = $1 AND t.drives AND t.param = 'code' AND t.code_hash = $2 AND t.date_high >= $3 AND t.date_low < $4`,
    [q.patient, codeHash(q.code), q.from, q.to],
  );
  return rows.map((r) => ({ at: new Date(r.t).getTime(), status: r.status, ...(r.tag ? { meta: { tag: r.tag } } : {}) }));
}

/** The patient's live Observations with one of `codes` as own or component code, taken in [from, to]. */
export async function readingsOf(db: Queryable, q: { patient: string; codes: readonly string[]; from: string; to: string }): Promise<Array<{ id: string; resource: fhir4.Observation }>> {
  const { rows } = await db.query<{ id: string; content: fhir4.Observation }>(
    `SELECT o.id, o.content FROM observation o WHERE NOT o.deleted AND o.id IN (
       SELECT t.id FROM observation_token t WHERE t.patient = $1 AND t.drives AND t.param IN ('code', 'component-code')
          AND t.code_hash = ANY($2::int8[]) AND t.date_high >= $3 AND t.date_low <= $4)`,
    [q.patient, [...new Set(q.codes)].map(codeHash), q.from, q.to],
  );
  return rows.map((r) => ({ id: r.id, resource: r.content }));
}
