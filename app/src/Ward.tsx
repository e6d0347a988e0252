import { formatTime, nameOf, type WardRow } from './model';

export function Ward({ rows, onOpen }: { rows: WardRow[]; onOpen: (id: string) => void }) {
  if (rows.length === 0) return <p class="empty">No patient has an active alert.</p>;
  return (
    <table class="ward">
      <caption>
        {rows.length} {rows.length === 1 ? 'patient' : 'patients'} with active alerts, newest breach first
      </caption>
      <thead>
        <tr>
          <th scope="col">Patient</th>
          <th scope="col">Newest alert</th>
          <th scope="col">When</th>
          <th scope="col" class="num">Alerts</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((row) => {
          const newest = row.flags[0]!;
          return (
            <tr class={row.critical ? 'critical-row' : ''} data-patient={row.patientId}>
              <th scope="row">
                <a
                  href={`#/patient/${encodeURIComponent(row.patientId)}`}
                  onClick={(e) => {
                    e.preventDefault();
                    onOpen(row.patientId);
                  }}
                >
                  {nameOf(row.patient)}
                </a>
                {row.critical && <span class="badge critical-badge">Critical</span>}
              </th>
              <td>
                <span class={`kind kind-${newest.kind}`}>{kindLabel[newest.kind]}</span> {newest.text}
              </td>
              <td>
                <time dateTime={new Date(row.latest).toISOString()}>{formatTime(row.latest)}</time>
              </td>
              <td class="num">{row.flags.length}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

export const kindLabel = { high: 'High', low: 'Low', missed: 'Missed', other: 'Alert' } as const;
