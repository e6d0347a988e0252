import { render } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { acknowledge, loadPatient, loadWard, type PatientData } from './data';
import { type LiveState, watchAlerts } from './live';
import type { FlagView, WardRow } from './model';
import { PatientView } from './Patient';
import { type Client, connect } from './smart';
import { Ward } from './Ward';

const REFRESH_MS = 30_000;

type Route = { view: 'ward' } | { view: 'patient'; id: string } | { view: 'flag'; id: string };

function routeOf(hash: string, contextPatient: string | null): Route {
  const m = /^#\/patient\/([^/]+)$/.exec(hash);
  if (m) return { view: 'patient', id: decodeURIComponent(m[1]!) };
  // The link of an alert e-mail: the Flag's patient.
  const flag = /^#\/flag\/([^/]+)$/.exec(hash);
  if (flag) return { view: 'flag', id: decodeURIComponent(flag[1]!) };
  if (hash === '#/ward' || !contextPatient) return { view: 'ward' };
  return { view: 'patient', id: contextPatient };
}

function App({ client }: { client: Client }) {
  const [route, setRoute] = useState<Route>(() => routeOf(location.hash, client.patient.id));
  const [ward, setWard] = useState<WardRow[]>();
  const [patient, setPatient] = useState<PatientData>();
  const [now, setNow] = useState(Date.now());
  const [error, setError] = useState<string>();
  const [announcement, setAnnouncement] = useState('');
  const [busy, setBusy] = useState<string>();
  const [loading, setLoading] = useState(false);

  useEffect(() => {
    const onHash = () => setRoute(routeOf(location.hash, client.patient.id));
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, [client]);

  const refresh = useCallback(async () => {
    const t = Date.now();
    setLoading(true);
    setError(undefined);
    try {
      if (route.view === 'flag') {
        const flag = await client.request<fhir4.Flag>(`Flag/${encodeURIComponent(route.id)}`);
        location.replace(`#/patient/${encodeURIComponent((flag.subject.reference ?? '').replace(/^Patient\//, ''))}`);
        return;
      }
      if (route.view === 'ward') setWard(await loadWard(client));
      else setPatient(await loadPatient(client, route.id, t));
      setNow(t);
    } catch (err) {
      setError(`Could not load: ${(err as Error).message}`);
    } finally {
      setLoading(false);
    }
  }, [client, route]);

  useEffect(() => {
    setPatient(undefined);
    void refresh();
    // New readings and alerts arrive all the time: refresh while the page is in view.
    const timer = setInterval(() => document.visibilityState === 'visible' && void refresh(), REFRESH_MS);
    return () => clearInterval(timer);
  }, [refresh]);

  // A breach anywhere in this user's grant pings the socket: the view reloads, without a page reload.
  const [live, setLive] = useState<LiveState>('connecting');
  const latestRefresh = useRef(refresh);
  latestRefresh.current = refresh;
  useEffect(
    () =>
      watchAlerts(
        client,
        () => {
          setAnnouncement('New alert');
          void latestRefresh.current();
        },
        setLive,
      ),
    [client],
  );

  // Marks for tests and the bench: the view is on screen with its data.
  useEffect(() => {
    const ready = route.view === 'ward' ? ward !== undefined : patient?.patient.id === route.id;
    document.body.dataset.ready = ready && !loading ? route.view : '';
    if (ready && !loading && !performance.getEntriesByName(`${route.view}-ready`).length) performance.mark(`${route.view}-ready`);
  });

  const onAcknowledge = async (f: FlagView) => {
    setBusy(f.flag.id);
    try {
      await acknowledge(client, f.flag);
      setAnnouncement(`Acknowledged: ${f.text}`);
    } catch (err) {
      const status = (err as { status?: number }).status;
      setAnnouncement(status === 412 ? 'The alert changed since it was shown (a new reading): reloaded, please review it again.' : `Could not acknowledge: ${(err as Error).message}`);
    } finally {
      setBusy(undefined);
      await refresh();
    }
  };

  const go = (r: Route) => {
    location.hash = r.view === 'ward' ? '#/ward' : `#/patient/${encodeURIComponent(r.id)}`;
  };

  return (
    <>
      <header class="top">
        <h1>Clinician dashboard</h1>
        <nav aria-label="Views">
          <a href="#/ward" aria-current={route.view === 'ward' ? 'page' : undefined}>Ward</a>
          {client.patient.id && (
            <a href={`#/patient/${encodeURIComponent(client.patient.id)}`} aria-current={route.view === 'patient' && route.id === client.patient.id ? 'page' : undefined}>
              Launch patient
            </a>
          )}
        </nav>
        <span class="live" data-live={live} title={live === 'live' ? 'New alerts appear as they are raised' : 'Not connected: alerts appear on refresh'}>
          {live === 'live' ? 'Live' : live === 'connecting' ? 'Connecting…' : 'Offline'}
        </span>
        <button type="button" onClick={() => void refresh()} disabled={loading}>
          {loading ? 'Refreshing…' : 'Refresh'}
        </button>
      </header>
      <p class="visually-hidden" role="status" aria-live="polite">{announcement}</p>
      <main id="main" tabIndex={-1}>
        {error && <p class="error" role="alert">{error}</p>}
        {route.view === 'ward' ? (
          <section aria-labelledby="ward-h">
            <h2 id="ward-h">Ward: patients with active alerts</h2>
            {ward ? <Ward rows={ward} onOpen={(id) => go({ view: 'patient', id })} /> : <p role="status">Loading…</p>}
          </section>
        ) : patient?.patient.id === route.id ? (
          <PatientView data={patient} now={now} onAcknowledge={(f) => void onAcknowledge(f)} busy={busy} />
        ) : (
          <p role="status">Loading…</p>
        )}
      </main>
    </>
  );
}

async function start(): Promise<void> {
  const root = document.getElementById('root')!;
  try {
    const client = await connect();
    if (client) render(<App client={client} />, root);
  } catch (err) {
    root.innerHTML = '';
    const p = document.createElement('p');
    p.className = 'error';
    p.setAttribute('role', 'alert');
    p.textContent = `Sign-in failed: ${(err as Error).message}. Open the dashboard again from the EHR, or reload to sign in.`;
    root.append(p);
  }
}

void start();
