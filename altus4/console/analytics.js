// The analytics page: a date range and optionally one API key or one database; searches and latency (p50,
// p95) per day, popular, zero-result and slowest queries, and the recent searches, all over that selection.
import { api, el, guarded, show, table, when } from './core.js';
import { barChart, daysAgo, perDay } from './charts.js';

const MAX_DAYS = 731; // the API's longest range
const chosen = {};
// the last 30 days, every key and database: where the page starts, and where the next person in this tab does
export function resetAnalytics() {
  Object.assign(chosen, { startDate: daysAgo(29), endDate: daysAgo(0), apiKeyId: '', databaseId: '' });
}
resetAnalytics();
const queryLabel = text => text || '(browse: no query)'; // an empty query listed as a blank row reads as a bug

export async function renderAnalytics() {
  const filters = Object.fromEntries(Object.entries(chosen).filter(([, v]) => v));
  const [keys, connections, performance, popular, zero, history] = await Promise.all([
    api('GET', '/keys'),
    api('GET', '/databases'),
    api('GET', '/analytics/performance', { query: filters }),
    api('GET', '/analytics/popular-queries', { query: { ...filters, limit: 50 } }),
    api('GET', '/analytics/zero-result-queries', { query: { ...filters, limit: 10 } }),
    api('GET', '/analytics/search-history', { query: { ...filters, limit: 10 } }),
  ]);
  const s = performance.summary;
  const daily = performance.timeSeriesData;
  const days = field => perDay(daily, chosen.startDate, chosen.endDate, field);
  const slow = [...popular].sort((a, b) => b.avg_time - a.avg_time).slice(0, 5);
  const queryRow = (...cells) => el('tr', null, cells.map((c, i) => el('td', null, i === 0 ? queryLabel(c) : String(c))));
  show(el('h1', null, 'Analytics'),
    el('section', { class: 'card' }, rangeForm(keys.apiKeys, connections),
      el('div', { class: 'row', id: 'totals' },
        el('span', { class: 'pill' }, `${s.totalQueries} searches`),
        el('span', { class: 'pill' }, `average ${s.averageResponseTime} ms`),
        el('span', { class: 'pill', id: 'cache-ratio' }, `cache hits ${(s.cacheHitRate * 100).toFixed(1)}%`),
        el('span', { class: 'pill' }, `${s.slowQueries} slow (over 1 s)`))),
    el('section', { class: 'card', id: 'volume' }, el('h2', null, 'Searches per day'),
      barChart([{ name: 'searches', points: days('total_queries') }], { label: 'searches per day' })),
    el('section', { class: 'card', id: 'latency' }, el('h2', null, 'Latency per day (p50 and p95)'),
      barChart([{ name: 'p50', points: days('p50_response_time') }, { name: 'p95', points: days('p95_response_time') }],
        { label: 'p50 and p95 search latency per day, in milliseconds', unit: 'ms' })),
    el('div', { class: 'two' },
      el('section', { class: 'card', id: 'popular' }, el('h2', null, 'Popular queries'),
        table(['query', 'times', 'avg ms'], popular.slice(0, 10).map(q => queryRow(q.query_text, q.frequency, q.avg_time)), 'No searches in this range')),
      el('section', { class: 'card', id: 'zero-results' }, el('h2', null, 'Queries with no results'),
        table(['query', 'times', 'last'], zero.map(q => queryRow(q.query_text, q.frequency, when(q.last_used))), 'Every search found something'))),
    el('section', { class: 'card', id: 'slow' }, el('h2', null, 'Slowest queries'),
      table(['query', 'avg ms', 'times'], slow.map(q => queryRow(q.query_text, q.avg_time, q.frequency)), 'No searches in this range')),
    el('section', { class: 'card', id: 'recent' }, el('h2', null, 'Recent searches'),
      table(['when', 'query', 'mode', 'results', 'ms', 'cache'], history.items.map(h => el('tr', null, el('td', null, when(h.timestamp)),
        el('td', null, queryLabel(h.query)), el('td', null, h.searchMode), el('td', null, String(h.resultCount)),
        el('td', null, String(h.executionTime)), el('td', null, h.cacheHit ? 'hit' : 'miss'))), 'No searches in this range')));
}

function rangeForm(keys, connections) {
  const form = el('form', { id: 'analytics-range', class: 'grid' },
    el('label', null, 'From', el('input', { type: 'date', name: 'startDate', value: chosen.startDate, required: true })),
    el('label', null, 'To', el('input', { type: 'date', name: 'endDate', value: chosen.endDate, required: true })),
    el('label', null, 'API key', el('select', { name: 'apiKeyId' }, el('option', { value: '' }, 'every key'),
      keys.map(k => el('option', { value: k.id, selected: k.id === chosen.apiKeyId }, k.isActive ? k.name : `${k.name} (revoked)`)))),
    el('label', null, 'Database', el('select', { name: 'databaseId' }, el('option', { value: '' }, 'every database'),
      connections.map(c => el('option', { value: c.id, selected: c.id === chosen.databaseId }, c.name)))),
    el('button', { type: 'submit' }, 'Show'),
    el('div', { class: 'row presets' }, [7, 30, 90].map(n => el('button', { type: 'button', class: 'secondary', dataset: { days: n },
      onclick: guarded(async () => { Object.assign(chosen, { startDate: daysAgo(n - 1), endDate: daysAgo(0) }); await renderAnalytics(); }) },
    `last ${n} days`))));
  form.addEventListener('submit', guarded(async () => {
    const f = form.elements;
    const [start, end] = [f.namedItem('startDate').value, f.namedItem('endDate').value];
    if (start > end) throw new Error('"From" must not be after "To"');
    if ((Date.parse(end) - Date.parse(start)) / 86400000 >= MAX_DAYS) throw new Error(`A range may span at most ${MAX_DAYS} days`);
    Object.assign(chosen, { startDate: start, endDate: end, apiKeyId: f.namedItem('apiKeyId').value, databaseId: f.namedItem('databaseId').value });
    await renderAnalytics();
  }));
  return form;
}
