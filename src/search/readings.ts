import type { Queryable } from '../store/db';
import { codeHash } from './hash';

/**
 * Queries the monitoring rules need of a patient's readings, kept here because they read the
 * search index tables this capability owns (the hot (patient, param, code_hash, date) index of
 * observation_token, whose rows are the driving ones: `drives`). Codes are LOINC codes.
 */

/** When each of the patient's Observations coded `code` (its own code) in [from, to) was taken (epoch ms). */
export async function readingTimes(db: Queryable, q: { patient: string; code: string; from: string; to: string }): Promise<number[]> {
  const { rows } = await db.query<{ t: string }>(
    `SELECT coalesce(date_low, date_high) AS t FROM observation_token
      WHERE patient = $1 AND drives AND param = 'code' AND code_hash = $2 AND date_high >= $3 AND date_low < $4`,
    [q.patient, codeHash(q.code), q.from, q.to],
  );
  return rows.map((r) => new Date(r.t).getTime());
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
