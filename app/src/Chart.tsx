import type { Point, Series } from './model';
import { formatTime } from './model';

// A hand-drawn SVG line chart: a year of readings is at most a few thousand points, which SVG
// draws in a few milliseconds; a chart library would be the app's largest dependency.
// The viewBox is about the drawn width, so 12 px labels stay about 12 px on a phone too.
const width = () => (globalThis.matchMedia?.('(max-width: 600px)').matches ? 360 : 640);
const H = 220;
const PAD = { left: 44, right: 12, top: 12, bottom: 28 };

function ticks(lo: number, hi: number, count: number): number[] {
  const step = niceStep((hi - lo) / count);
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(Number(v.toFixed(6)));
  return out;
}

function niceStep(raw: number): number {
  if (!(raw > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
}

const shortDate = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });

export function Chart({ series, from, to }: { series: Series; from: number; to: number }) {
  const W = width();
  const { points, limits } = series;
  const visible = points.filter((p) => p.time >= from && p.time <= to);
  const values = [
    ...visible.map((p) => p.value),
    limits.normal?.low, limits.normal?.high, limits.critical?.low, limits.critical?.high,
  ].filter((v): v is number => v !== undefined);
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (!Number.isFinite(lo)) [lo, hi] = [0, 1];
  const margin = (hi - lo) * 0.08 || Math.abs(hi) * 0.1 || 1;
  lo -= margin;
  hi += margin;
  const x = (t: number) => PAD.left + ((t - from) / Math.max(1, to - from)) * (W - PAD.left - PAD.right);
  const y = (v: number) => PAD.top + (1 - (v - lo) / (hi - lo)) * (H - PAD.top - PAD.bottom);
  const top = PAD.top;
  const bottom = H - PAD.bottom;
  const band = limits.normal;
  const bandTop = band?.high !== undefined ? y(band.high) : top;
  const bandBottom = band?.low !== undefined ? y(band.low) : bottom;
  const path = visible.map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p.time).toFixed(1)},${y(p.value).toFixed(1)}`).join('');
  const breaches = visible.filter((p) => p.breach);
  const latest = visible[visible.length - 1];
  const titleId = `chart-${series.code}-title`;
  const descId = `chart-${series.code}-desc`;
  const describe = () => {
    if (!latest) return `No ${series.display} readings in this period.`;
    const limitsText = band ? ` Limits ${band.low ?? '–'} to ${band.high ?? '–'} ${series.unit}.` : ' No limits set.';
    return `${visible.length} readings. Latest ${latest.value} ${series.unit} on ${formatTime(latest.time)}.${limitsText} ${breaches.length} outside the limits.`;
  };
  return (
    <figure class="chart" data-code={series.code}>
      <figcaption>
        <h3 id={titleId}>{series.display}</h3>
        <p id={descId} class="muted">{describe()}</p>
      </figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-labelledby={`${titleId} ${descId}`} focusable="false">
        {band && <rect class="band" x={PAD.left} width={W - PAD.left - PAD.right} y={bandTop} height={Math.max(0, bandBottom - bandTop)} />}
        {[limits.critical?.low, limits.critical?.high].map((v) =>
          v === undefined || v < lo || v > hi ? null : <line class="critical" x1={PAD.left} x2={W - PAD.right} y1={y(v)} y2={y(v)} />,
        )}
        {ticks(lo, hi, 4).map((v) => (
          <g class="tick">
            <line x1={PAD.left - 4} x2={PAD.left} y1={y(v)} y2={y(v)} />
            <text x={PAD.left - 6} y={y(v) + 4} text-anchor="end">{v}</text>
          </g>
        ))}
        {[from, (from + to) / 2, to].map((t, i) => (
          <text class="tick" x={x(t)} y={H - 8} text-anchor={i === 0 ? 'start' : i === 2 ? 'end' : 'middle'}>{shortDate.format(new Date(t))}</text>
        ))}
        <line class="axis" x1={PAD.left} x2={PAD.left} y1={top} y2={bottom} />
        <line class="axis" x1={PAD.left} x2={W - PAD.right} y1={bottom} y2={bottom} />
        <path class="line" d={path} />
        {visible.length <= 120 && visible.filter((p) => !p.breach).map((p) => <circle class="dot" cx={x(p.time)} cy={y(p.value)} r={2.5} />)}
        {breaches.map((p) => <Marker p={p} cx={x(p.time)} cy={y(p.value)} />)}
      </svg>
      <details>
        <summary>Latest readings of {series.display}</summary>
        <table>
          <caption class="visually-hidden">Latest readings of {series.display}</caption>
          <thead><tr><th scope="col">Time</th><th scope="col">Value ({series.unit})</th><th scope="col">Status</th></tr></thead>
          <tbody>
            {visible.slice(-10).reverse().map((p) => (
              <tr class={p.breach ? 'breach' : ''}><td>{formatTime(p.time)}</td><td>{p.value}</td><td>{statusText(p)}</td></tr>
            ))}
          </tbody>
        </table>
      </details>
    </figure>
  );
}

const statusText = (p: Point) => (p.breach ? `${p.critical ? 'Critical: ' : ''}${p.breach === 'high' ? 'above' : 'below'} limit` : 'within limits');

/** A breach: a triangle pointing the way the limit was broken, so shape and colour both tell. */
function Marker({ p, cx, cy }: { p: Point; cx: number; cy: number }) {
  const s = p.critical ? 8 : 6;
  const d = p.breach === 'high' ? `M${cx},${cy - s}L${cx + s},${cy + s * 0.7}L${cx - s},${cy + s * 0.7}Z` : `M${cx},${cy + s}L${cx + s},${cy - s * 0.7}L${cx - s},${cy - s * 0.7}Z`;
  return (
    <path class={p.critical ? 'breach critical-breach' : 'breach'} d={d}>
      <title>{`${p.value} on ${formatTime(p.time)}: ${statusText(p)}`}</title>
    </path>
  );
}
