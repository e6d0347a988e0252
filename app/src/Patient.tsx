import { useState } from 'preact/hooks';
import { Chart } from './Chart';
import type { PatientData } from './data';
import { ageOf, type FlagView, formatTime, nameOf } from './model';
import { kindLabel } from './Ward';

const DAY = 86_400_000;
const PERIODS = [
  { days: 7, label: '7 days' },
  { days: 30, label: '30 days' },
  { days: 365, label: '1 year' },
];

export function Banner({ patient, now }: { patient: fhir4.Patient; now: number }) {
  const age = ageOf(patient, now);
  const mrn = patient.identifier?.[0];
  return (
    <section class="banner" aria-label="Patient">
      <h2>{nameOf(patient)}</h2>
      <dl>
        {patient.gender && (<><dt>Sex</dt><dd>{patient.gender}</dd></>)}
        {patient.birthDate && (<><dt>Born</dt><dd>{patient.birthDate}{age !== undefined ? ` (${age} y)` : ''}</dd></>)}
        {mrn?.value && (<><dt>ID</dt><dd>{mrn.value}</dd></>)}
      </dl>
    </section>
  );
}

export function PatientView({ data, now, onAcknowledge, busy }: { data: PatientData; now: number; onAcknowledge: (f: FlagView) => void; busy: string | undefined }) {
  const [days, setDays] = useState(30);
  const from = now - days * DAY;
  return (
    <>
      <Banner patient={data.patient} now={now} />
      <section aria-labelledby="alerts-h">
        <h2 id="alerts-h">Active alerts ({data.flags.length})</h2>
        {data.flags.length === 0 ? (
          <p class="empty">No active alerts.</p>
        ) : (
          <ul class="flags">
            {data.flags.map((f) => (
              <li class={`flag${f.critical ? ' critical-flag' : ''}`} data-flag={f.flag.id}>
                <div>
                  <span class={`kind kind-${f.kind}`}>{kindLabel[f.kind]}</span>
                  {f.critical && <span class="badge critical-badge">Critical</span>}
                  <p>{f.text}</p>
                  <p class="muted">Since {formatTime(f.flag.period?.start)} · last {formatTime(f.latest)}</p>
                </div>
                <button type="button" onClick={() => onAcknowledge(f)} disabled={busy === f.flag.id} aria-label={`Acknowledge: ${f.text}`}>
                  {busy === f.flag.id ? 'Acknowledging…' : 'Acknowledge'}
                </button>
              </li>
            ))}
          </ul>
        )}
      </section>
      <section aria-labelledby="adherence-h">
        <h2 id="adherence-h">Adherence, last {data.adherence[0]?.days ?? 30} days</h2>
        {data.adherence.length === 0 ? (
          <p class="empty">No scheduled measurements in an active care plan.</p>
        ) : (
          <table class="adherence">
            <thead><tr><th scope="col">Measurement</th><th scope="col" class="num">Taken</th><th scope="col" class="num">Due</th><th scope="col" class="num">Missed</th></tr></thead>
            <tbody>
              {data.adherence.map((a) => {
                const missed = Math.max(0, a.expected - a.taken);
                return (
                  <tr class={missed > 0 ? 'missed-row' : ''}>
                    <th scope="row">{a.display}</th>
                    <td class="num">{a.taken}</td>
                    <td class="num">{a.expected}</td>
                    <td class="num">{missed}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        )}
      </section>
      <section aria-labelledby="vitals-h">
        <div class="section-head">
          <h2 id="vitals-h">Vitals</h2>
          <div role="group" aria-label="Period shown" class="periods">
            {PERIODS.map((p) => (
              <button type="button" aria-pressed={days === p.days} onClick={() => setDays(p.days)}>{p.label}</button>
            ))}
          </div>
        </div>
        {data.series.length === 0 ? <p class="empty">No readings in the last year.</p> : <div class="charts">{data.series.map((s) => <Chart series={s} from={from} to={now} />)}</div>}
      </section>
    </>
  );
}
