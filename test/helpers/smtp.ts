import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

export interface ReceivedMail {
  to: string[];
  /** The message as sent (headers and body), quoted-printable soft breaks and escapes undone. */
  text: string;
  at: number;
}

/**
 * A local SMTP server (smtp-server, nodemailer's authors) that keeps what it receives: the real
 * protocol, on 127.0.0.1, without TLS or login (the server under test sends with SMTP_URL=smtp://…).
 * `refuse(address)` makes it answer 451 (try later) to that recipient until `refuse(undefined)`.
 */
export async function smtpSink(): Promise<{ url: string; mails: ReceivedMail[]; refused: string[]; refuse: (to: string | undefined) => void; close(): Promise<void> }> {
  const mails: ReceivedMail[] = [];
  const refused: string[] = [];
  // A recipient to answer "451 try again later", as a mail server under load or greylisting does.
  let refusing: string | undefined;
  const server = new SMTPServer({
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onRcptTo(address, _session, callback) {
      if (address.address !== refusing) return callback();
      refused.push(address.address);
      return callback(Object.assign(new Error('try again later'), { responseCode: 451 }));
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        const text = raw.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
        mails.push({ to: session.envelope.rcptTo.map((r) => r.address), text, at: Date.now() });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.server.address() as AddressInfo;
  return { url: `smtp://127.0.0.1:${port}`, mails, refused, refuse: (to) => void (refusing = to), close: () => new Promise((resolve) => server.close(() => resolve())) };
}
