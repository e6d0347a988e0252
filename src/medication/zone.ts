/**
 * Wall-clock times in an IANA time zone, with daylight-saving changes, from the platform's
 * Intl data (Node ships full ICU, updated with each release): no time zone library needed.
 *
 * A local time that does not exist (the hour skipped in spring) moves forward by the gap, and
 * one that exists twice (the hour repeated in autumn) is the earlier instant: the
 * "compatible" disambiguation of RFC 5545 and Temporal, so a dose scheduled at 02:30 is
 * neither dropped nor given twice.
 */

const formatters = new Map<string, Intl.DateTimeFormat>();

/** Whether the platform knows `zone` as an IANA time zone. */
export function isTimeZone(zone: string): boolean {
  try {
    formatter(zone);
    return true;
  } catch {
    return false;
  }
}

function formatter(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' });
    formatters.set(zone, f);
  }
  return f;
}

export interface LocalDate {
  year: number;
  /** 1–12 */
  month: number;
  day: number;
}

/** The wall clock in `zone` at instant `t`, as the milliseconds of that wall time read as UTC. */
function wallClock(zone: string, t: number): number {
  const p: Record<string, number> = {};
  for (const part of formatter(zone).formatToParts(t)) if (part.type !== 'literal') p[part.type] = Number(part.value);
  return Date.UTC(p.year!, p.month! - 1, p.day!, p.hour!, p.minute!, p.second!);
}

/** UTC offset of `zone` at instant `t`, in ms (Berlin in summer: +7,200,000). */
export function offsetAt(zone: string, t: number): number {
  const whole = Math.floor(t / 1000) * 1000;
  return wallClock(zone, whole) - whole;
}

/** The calendar date in `zone` at instant `t`. */
export function localDateOf(zone: string, t: number): LocalDate {
  // A job asks this for the same window start of every schedule in a zone: memoised like instantOf.
  const key = `${zone}|${t}`;
  let date = dates.get(key);
  if (!date) {
    if (dates.size >= 200_000) dates.clear();
    const d = new Date(t + offsetAt(zone, t));
    date = { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate() };
    dates.set(key, date);
  }
  return date;
}

const dates = new Map<string, LocalDate>();

/** The day after `n` days from `date` (calendar arithmetic, no time zone involved). */
export function addDays(date: LocalDate, n: number): LocalDate {
  const d = new Date(Date.UTC(date.year, date.month - 1, date.day + n));
  return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate() };
}

/**
 * `date` plus `n` calendar months, the day kept where the month has it and else the month's last
 * day (Temporal's default "constrain" overflow): a monthly dose from 31 January is on 28 February.
 */
export function addMonths(date: LocalDate, n: number): LocalDate {
  const months = date.year * 12 + date.month - 1 + n;
  const year = Math.floor(months / 12);
  const month = (months % 12) + 1;
  const lastDay = new Date(Date.UTC(year, month, 0)).getUTCDate();
  return { year, month, day: Math.min(date.day, lastDay) };
}

/** ISO day of week, 1 = Monday … 7 = Sunday. */
export function dayOfWeek(date: LocalDate): number {
  return ((new Date(Date.UTC(date.year, date.month - 1, date.day)).getUTCDay() + 6) % 7) + 1;
}

/** Days from `a` to `b`. */
export function daysBetween(a: LocalDate, b: LocalDate): number {
  return Math.round((Date.UTC(b.year, b.month - 1, b.day) - Date.UTC(a.year, a.month - 1, a.day)) / 86_400_000);
}

/**
 * The instant of wall time `minuteOfDay` on `date` in `zone`. The offsets a day before and
 * after bracket any transition near it (zones change offset at most a few times a year).
 */
export function instantOf(zone: string, date: LocalDate, minuteOfDay: number): number {
  const local = Date.UTC(date.year, date.month - 1, date.day, 0, minuteOfDay);
  // Patients share a few zones and dose times: most answers come from here (bench: medication).
  const key = `${zone}|${local}`;
  let t = instants.get(key);
  if (t === undefined) {
    if (instants.size >= 200_000) instants.clear();
    t = resolveWallTime(zone, local);
    instants.set(key, t);
  }
  return t;
}

const instants = new Map<string, number>();

function resolveWallTime(zone: string, local: number): number {
  const before = offsetAt(zone, local - 86_400_000);
  const after = offsetAt(zone, local + 86_400_000);
  if (before === after) return local - before;
  const early = local - before;
  const late = local - after;
  const earlyValid = offsetAt(zone, early) === before;
  const lateValid = offsetAt(zone, late) === after;
  if (earlyValid && lateValid) return Math.min(early, late);
  if (earlyValid) return early;
  if (lateValid) return late;
  // In the gap: the wall time read with the offset before the change, i.e. moved forward by it.
  return early;
}

/** `t` as a dateTime with the offset `zone` has at that instant: 2026-03-29T08:00:00+02:00. */
export function localDateTime(zone: string, t: number): string {
  const offset = offsetAt(zone, t);
  const wall = new Date(t + offset).toISOString().slice(0, 19);
  const sign = offset < 0 ? '-' : '+';
  const abs = Math.abs(offset) / 60_000;
  return `${wall}${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
}
