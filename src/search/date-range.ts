/**
 * FHIR dates as ranges. A partial date stands for its whole extent (`2026-01` is all of
 * January), so values and search terms are both [low, high] in epoch milliseconds, inclusive,
 * and the prefixes compare ranges as the R4 search page defines. Dates without a time zone are
 * taken as UTC: the server has no better "local" time for a patient's home device.
 */
export interface DateRange {
  low: number;
  high: number;
}

/**
 * A time zone as R4 writes it in dateTime and instant (datatypes.html#dateTime: `Z|(\+|-)((0[0-9]|
 * 1[0-3]):[0-5][0-9]|14:00)`): -14:00 to +14:00. Every door that reads a date with a zone
 * (search terms, `_since`, device readings, `$export`) reads it with this; `+25:00` was a
 * search term.
 */
export const TIME_ZONE = 'Z|[+-](?:(?:0\\d|1[0-3]):[0-5]\\d|14:00)';

/**
 * A date and time to the minute at least, with its zone: what a client sends where an instant is
 * asked for (`_since`, a device reading's time). Seconds may be left out, as clients do.
 */
export const DATE_TIME_WITH_ZONE = new RegExp(`^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?(${TIME_ZONE})$`);

const DATE = new RegExp(`^(\\d{4})(?:-(\\d{2})(?:-(\\d{2})(?:T(\\d{2}):(\\d{2})(?::(\\d{2})(?:\\.(\\d{1,9}))?)?(${TIME_ZONE})?)?)?)?$`);

export function parseDateRange(text: string): DateRange | undefined {
  const m = DATE.exec(text);
  if (!m) return undefined;
  const year = Number(m[1]);
  const month = m[2] === undefined ? undefined : Number(m[2]);
  const day = m[3] === undefined ? undefined : Number(m[3]);
  if (month !== undefined && (month < 1 || month > 12)) return undefined;
  if (day !== undefined && (day < 1 || day > new Date(Date.UTC(year, month as number, 0)).getUTCDate())) return undefined;
  if (month === undefined) return { low: Date.UTC(year, 0, 1), high: Date.UTC(year + 1, 0, 1) - 1 };
  if (day === undefined) return { low: Date.UTC(year, month - 1, 1), high: Date.UTC(year, month, 1) - 1 };
  if (m[4] === undefined) return { low: Date.UTC(year, month - 1, day), high: Date.UTC(year, month - 1, day + 1) - 1 };
  const hour = Number(m[4]);
  const minute = Number(m[5]);
  if (hour > 23 || minute > 59) return undefined;
  const zone = m[8];
  let offset = 0;
  if (zone && zone !== 'Z') {
    const sign = zone[0] === '-' ? -1 : 1;
    offset = sign * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6))) * 60_000;
  }
  if (m[6] === undefined) {
    const low = Date.UTC(year, month - 1, day, hour, minute) - offset;
    return { low, high: low + 60_000 - 1 };
  }
  const second = Number(m[6]);
  if (second > 60) return undefined;
  const base = Date.UTC(year, month - 1, day, hour, minute, second) - offset;
  if (m[7] === undefined) return { low: base, high: base + 999 };
  // Sub-millisecond digits cannot be kept in epoch ms: the range covers the millisecond.
  const ms = Number(m[7].slice(0, 3).padEnd(3, '0'));
  return { low: base + ms, high: base + ms };
}

/**
 * A date as a query string carries it. A `+` sent unencoded (`date=ge2026-12-01T08:00:00+01:00`,
 * as curl and many clients send it) arrives as a space after form decoding, and a space can
 * appear nowhere else in a date: read it as the `+` it was (HAPI FHIR does the same) rather
 * than refuse a time zone the client did write.
 */
export function dateFromQuery(text: string): string {
  return text.replace(/(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:\d{2})$/, '$1+$2');
}

/** PostgreSQL text of a range bound; open ends are the infinities timestamptz knows. */
export function timestampText(ms: number): string {
  if (ms === Number.NEGATIVE_INFINITY) return '-infinity';
  if (ms === Number.POSITIVE_INFINITY) return 'infinity';
  return new Date(ms).toISOString();
}
