import nodemailer, { type Transporter } from 'nodemailer';
import type { AlertConfig } from '../config';

/**
 * The `email` channel (R4 subscription.html: endpoint `mailto:`). An e-mail crosses servers the
 * operator does not control and sits in mailboxes for years, so it says as little as it can: by
 * default (ALERT_EMAIL_PHI=none) that there is an alert and a link back to it, which needs a
 * sign-in; with `minimal`, and only when the Subscription asked for a payload and its subscriber
 * may read the resource, also what kind of alert it is and when — never a name, an identifier or
 * a measured value. Decision record: docs/decisions/020-alert-channels-and-backups.md.
 */

export interface AlertEmail {
  subject: string;
  text: string;
}

export interface EmailNotification {
  subscriptionId: string;
  resourceType: string;
  resourceId: string;
  /** The stored resource, present only when the summary may use it (payload asked, grant allows, minimal configured). */
  resource?: fhir4.Resource;
  /** The public origin of this server (BASE_URL without /fhir) and its FHIR base. */
  origin: string;
  fhirBase: string;
}

/** Where the recipient opens the alert: the dashboard for a Flag, the FHIR URL otherwise; both need a sign-in. */
export function recordLink(n: EmailNotification): string {
  if (n.resourceType === 'Flag') return `${n.origin}/app#/flag/${encodeURIComponent(n.resourceId)}`;
  return `${n.fhirBase}/${n.resourceType}/${encodeURIComponent(n.resourceId)}`;
}

/** Kind of alert and measure from the Flag's codings (their displays, fixed by the server), not its text, which carries the value. */
function flagSummary(flag: fhir4.Flag): { what: string; since?: string } | undefined {
  const displays = (flag.code.coding ?? []).map((c) => c.display).filter((d): d is string => Boolean(d));
  if (displays.length === 0) return undefined;
  return { what: displays.join(': '), ...(flag.period?.start ? { since: flag.period.start } : {}) };
}

export function composeAlertEmail(n: EmailNotification, phi: AlertConfig['emailPhi']): AlertEmail {
  const link = recordLink(n);
  const summary = phi === 'minimal' && n.resource?.resourceType === 'Flag' ? flagSummary(n.resource as fhir4.Flag) : undefined;
  const lines = [
    n.resourceType === 'Flag' ? 'A monitoring alert needs your attention.' : `A ${n.resourceType} you subscribed to has changed.`,
    '',
    ...(summary ? [`Alert: ${summary.what}`, ...(summary.since ? [`Since: ${summary.since}`] : []), ''] : []),
    `Open it (sign-in required): ${link}`,
    '',
    'This message carries no patient details by design; they are behind the link.',
    `Subscription/${n.subscriptionId}`,
  ];
  return { subject: summary ? `Monitoring alert: ${summary.what}` : 'Monitoring alert', text: `${lines.join('\n')}\n` };
}

/** One SMTP transport per process, made on the first alert and reused (SMTP_URL may add ?pool=true). */
export class Mailer {
  private transport: Transporter | undefined;

  constructor(private readonly config: AlertConfig) {}

  async send(to: string, mail: AlertEmail, timeoutMs: number): Promise<void> {
    if (!this.config.smtpUrl) throw new Error('SMTP_URL is not set: e-mail alerts cannot be sent');
    // The URL's own query may set pool, requireTLS and the like (nodemailer's connection URL).
    this.transport ??= nodemailer.createTransport({ url: this.config.smtpUrl, connectionTimeout: timeoutMs, greetingTimeout: timeoutMs, socketTimeout: timeoutMs } as never);
    await this.transport.sendMail({ from: this.config.emailFrom, to, subject: mail.subject, text: mail.text });
  }

  close(): void {
    this.transport?.close();
    this.transport = undefined;
  }
}
