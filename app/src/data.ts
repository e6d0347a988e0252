import { type Client, searchAll } from './smart';
import { type Adherence, adherenceOf, limitsOf, scheduleOf, seriesOf, type Series, storedGoalIds, type WardRow, wardOf, flagView, type FlagView } from './model';

const YEAR_MS = 365 * 86_400_000;

/** The ward: every active Flag with its Patient, in one search (the Patients come as includes). */
export async function loadWard(client: Client): Promise<WardRow[]> {
  const { matches, included } = await searchAll<fhir4.Flag>(client, 'Flag?status=active&_include=Flag:subject&_count=1000');
  return wardOf(matches, included.filter((r): r is fhir4.Patient => r.resourceType === 'Patient'));
}

export interface PatientData {
  patient: fhir4.Patient;
  series: Series[];
  flags: FlagView[];
  adherence: Adherence[];
  planStart?: number;
}

/** One patient's year: the reads run in parallel, each within the patient's compartment. */
export async function loadPatient(client: Client, id: string, now: number): Promise<PatientData> {
  const since = new Date(now - YEAR_MS).toISOString();
  const p = encodeURIComponent(id);
  const [patient, plans, observations, flags] = await Promise.all([
    client.request<fhir4.Patient>(`Patient/${p}`),
    searchAll<fhir4.CarePlan>(client, `CarePlan?patient=${p}&status=active`).then((r) => r.matches),
    searchAll<fhir4.Observation>(client, `Observation?patient=${p}&date=ge${since}&_count=1000`).then((r) => r.matches),
    loadFlags(client, id),
  ]);
  const goalIds = storedGoalIds(plans);
  const goals = goalIds.length ? (await searchAll<fhir4.Goal>(client, `Goal?_id=${goalIds.map(encodeURIComponent).join(',')}`)).matches : [];
  const limits = limitsOf(plans, new Map(goals.map((g) => [g.id!, g])));
  const starts = plans.map((pl) => Date.parse(pl.period?.start ?? '')).filter((t) => !Number.isNaN(t));
  const planStart = starts.length ? Math.min(...starts) : undefined;
  return {
    patient,
    series: seriesOf(observations, limits),
    flags,
    adherence: adherenceOf(scheduleOf(plans), observations, now, 30, planStart),
    ...(planStart !== undefined ? { planStart } : {}),
  };
}

export async function loadFlags(client: Client, patientId: string): Promise<FlagView[]> {
  const { matches } = await searchAll<fhir4.Flag>(client, `Flag?patient=${encodeURIComponent(patientId)}&status=active&_count=1000`);
  return matches.map(flagView).sort((a, b) => b.latest - a.latest);
}

/**
 * Acknowledges a Flag: it becomes inactive and its period ends now. If-Match makes a Flag that
 * changed since it was shown (a new breach added to it) fail with 412 instead of hiding that breach.
 */
export async function acknowledge(client: Client, flag: fhir4.Flag): Promise<void> {
  const updated: fhir4.Flag = { ...flag, status: 'inactive', period: { ...flag.period, end: new Date().toISOString() } };
  await client.update(updated as unknown as Parameters<Client['update']>[0], {
    headers: flag.meta?.versionId ? { 'If-Match': `W/"${flag.meta.versionId}"` } : {},
  });
}
