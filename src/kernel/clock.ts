/**
 * The current time as `Date.prototype.toISOString` writes it (`2026-12-06T15:26:29.123Z`), from a
 * prefix formatted once a second. Measured reason: `new Date().toISOString()` took 1.1 µs on the
 * bench machine, once per audited request and once per searchset, where `Date.now()` and the
 * milliseconds appended take about 0.15 µs.
 */
let second = Number.NaN;
let prefix = '';

export function isoNow(): string {
  const now = Date.now();
  const ms = now % 1000;
  if (now - ms !== second) {
    second = now - ms;
    prefix = new Date(second).toISOString().slice(0, 20);
  }
  return `${prefix}${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z`;
}
