import type { Client } from './smart';

/**
 * Live alerts without reload: a websocket Subscription (R4 channel type `websocket`) on active
 * Flags, one per browser session (kept in sessionStorage, so a reload binds to it again rather
 * than adding another), ending with the shift so a closed tab leaves nothing that is matched
 * forever. The server pings on every matching change under this user's grant; the page then
 * reloads its view through the ordinary searches. The socket is bound with a one-time token
 * from $get-ws-binding-token, asked with the SMART token (a browser cannot send headers on a
 * websocket). A binding ends when that SMART token expires (the server says `unbound`), and the
 * page binds again at once; a lost socket is reopened; the 30 s refresh covers the gap.
 */
const STORAGE_KEY = 'rpm-live-alerts';
const SESSION_MS = 12 * 3600_000;
const RETRY_MS = 5000;

export type LiveState = 'connecting' | 'live' | 'offline';

interface Stored {
  id: string;
  end: number;
}

async function subscriptionId(client: Client, fresh: boolean): Promise<string> {
  const stored = JSON.parse(sessionStorage.getItem(STORAGE_KEY) ?? 'null') as Stored | null;
  // An hour of margin: a Subscription past its end is silent.
  if (!fresh && stored && stored.end - Date.now() > 3600_000) return stored.id;
  const end = Date.now() + SESSION_MS;
  const created = await client.create({
    resourceType: 'Subscription', status: 'requested', reason: 'Clinician dashboard: live alerts', criteria: 'Flag?status=active',
    channel: { type: 'websocket' }, end: new Date(end).toISOString(),
  } as never) as fhir4.Subscription;
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ id: created.id!, end }));
  return created.id!;
}

async function bindingFor(client: Client): Promise<{ token: string; url: string }> {
  let parameters: fhir4.Parameters;
  try {
    parameters = await client.request<fhir4.Parameters>(`Subscription/${await subscriptionId(client, false)}/$get-ws-binding-token`);
  } catch {
    // The stored Subscription is gone (deleted, another server): make a new one.
    parameters = await client.request<fhir4.Parameters>(`Subscription/${await subscriptionId(client, true)}/$get-ws-binding-token`);
  }
  const value = (name: string) => parameters.parameter?.find((p) => p.name === name);
  return { token: value('token')!.valueString!, url: value('websocket-url')!.valueUrl! };
}

/** Starts listening; answers the function that stops. */
export function watchAlerts(client: Client, onAlert: () => void, onState: (state: LiveState) => void): () => void {
  let stopped = false;
  let socket: WebSocket | undefined;
  let retry: ReturnType<typeof setTimeout> | undefined;
  const again = () => {
    onState('offline');
    if (!stopped) retry = setTimeout(() => void open(), RETRY_MS);
  };
  const open = async () => {
    onState('connecting');
    try {
      const { token, url } = await bindingFor(client);
      if (stopped) return;
      socket = new WebSocket(url);
      socket.onopen = () => socket!.send(`bind-with-token ${token}`);
      socket.onmessage = (e) => {
        const message = String(e.data);
        if (message.startsWith('bound ')) onState('live');
        else if (message.startsWith('ping ')) onAlert();
        else if (message.startsWith('unbound ')) {
          // The binding ended with the access token that made it (tokens live minutes): bind
          // again at once, with a fresh token, rather than show the page offline for a retry.
          socket!.onclose = null;
          socket!.close();
          void open();
        }
      };
      socket.onclose = again;
    } catch {
      again();
    }
  };
  void open();
  return () => {
    stopped = true;
    clearTimeout(retry);
    socket?.close();
  };
}
