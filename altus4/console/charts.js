// Bar charts as SVG built node by node (no library, nothing inline for the CSP): a y-axis with round ticks
// and grid lines, dates along the x-axis, one bar per series and day, and each bar's value in its tooltip.

const NS = 'http://www.w3.org/2000/svg';
const WIDTH = 1000, HEIGHT = 210, LEFT = 56, RIGHT = 10, TOP = 34, BOTTOM = 28;

function svgNode(tag, attrs, text) {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  if (text !== undefined) n.textContent = text;
  return n;
}

// the smallest 1, 2, 2.5 or 5 times a power of ten at or above `value`: ticks people can read
export function roundUp(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 2.5, 5, 10].map(m => m * power).find(v => v >= value);
}

const tickLabel = v => (Number.isInteger(v) ? String(v) : v.toFixed(1));

// series: [{ name, points: [{ label: 'YYYY-MM-DD', value }] }], every series over the same days
export function barChart(series, { label, unit }) {
  const svg = svgNode('svg', { class: 'chart', viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: 'img', 'aria-label': label });
  const days = series[0].points.map(p => p.label);
  const top = roundUp(Math.max(0, ...series.flatMap(s => s.points.map(p => p.value))));
  const plotWidth = WIDTH - LEFT - RIGHT, plotHeight = HEIGHT - TOP - BOTTOM;
  const y = v => TOP + plotHeight - (v / top) * plotHeight;
  for (let i = 0; i <= 4; i++) { // the y-axis: five round ticks with grid lines
    const v = (top * i) / 4;
    svg.append(svgNode('line', { class: 'grid', x1: LEFT, x2: WIDTH - RIGHT, y1: y(v), y2: y(v) }));
    svg.append(svgNode('text', { class: 'tick', x: LEFT - 8, y: y(v) + 5, 'text-anchor': 'end' }, tickLabel(v)));
  }
  if (unit) svg.append(svgNode('text', { class: 'tick', x: LEFT - 8, y: 14, 'text-anchor': 'end' }, unit));
  const slot = plotWidth / Math.max(days.length, 1);
  const bar = Math.max(1, (slot * 0.8) / series.length);
  const every = Math.ceil(days.length / 10); // at most ten date labels, counted back from the last day (today)
  days.forEach((day, i) => {
    series.forEach((s, j) => {
      const value = s.points[i].value;
      const rect = svgNode('rect', { class: `series-${j}`, x: LEFT + i * slot + slot * 0.1 + j * bar, y: y(value), width: bar, height: Math.max(y(0) - y(value), value ? 1 : 0) });
      rect.append(svgNode('title', {}, `${day}${series.length > 1 ? ' ' + s.name : ''}: ${tickLabel(value)}${unit ? ' ' + unit : ''}`));
      svg.append(rect);
    });
    if ((days.length - 1 - i) % every === 0) svg.append(svgNode('text', { class: 'tick', x: LEFT + i * slot + slot / 2, y: HEIGHT - 8, 'text-anchor': 'middle' }, day.slice(5)));
  });
  svg.append(svgNode('line', { class: 'axis', x1: LEFT, x2: WIDTH - RIGHT, y1: y(0), y2: y(0) }));
  if (series.length > 1) {
    series.forEach((s, j) => {
      const x = WIDTH - RIGHT - 80 * (series.length - j);
      svg.append(svgNode('rect', { class: `series-${j}`, x, y: 4, width: 12, height: 12 }));
      svg.append(svgNode('text', { class: 'tick', x: x + 18, y: 15 }, s.name));
    });
  }
  if (!series.some(s => s.points.some(p => p.value))) {
    svg.append(svgNode('text', { class: 'empty', x: LEFT + plotWidth / 2, y: TOP + plotHeight / 2, 'text-anchor': 'middle' }, 'No data in this range'));
  }
  return svg;
}

// every day from `first` to `last` (YYYY-MM-DD, UTC, inclusive) with its value from `daily` (0 where absent)
export function perDay(daily, first, last, field) {
  const byDate = Object.fromEntries(daily.map(d => [d.date, d[field]]));
  const out = [];
  for (let t = Date.parse(first + 'T00:00:00Z'); t <= Date.parse(last + 'T00:00:00Z'); t += 86400000) {
    const day = new Date(t).toISOString().slice(0, 10);
    out.push({ label: day, value: Number(byDate[day] || 0) });
  }
  return out;
}

export const daysAgo = n => new Date(Date.now() - n * 86400000).toISOString().slice(0, 10);
