// The search playground: a search form over the connected databases with filter, facets, sort and paging,
// results as a person reads them, the same search as curl, and search-as-you-type with suggestions.
//
// Search-as-you-type sends at most one preview per pause in typing (TYPING_PAUSE_MS), never the same text
// twice, and cancels the one still in flight when a newer one starts; previews ask the API not to record them
// (`analytics: false`), so analytics count the searches a person commits to: Enter, the Search button, a
// suggestion or a facet value. Every preview still counts against the key's rate limit.
import { API, api, copyButton, el, errorText, formValues, guarded, isCancelled, notice, show, store } from './core.js';

const TYPING_PAUSE_MS = 300;
const MIN_PREVIEW_CHARS = 2;
const search = { offset: 0 };
const typing = { timer: 0, controller: null, sent: '' };

// the next person in this tab starts from an empty playground
export function resetPlayground() {
  cancelPreview();
  for (const name of Object.keys(search)) delete search[name];
  search.offset = 0;
  typing.sent = '';
}

export async function renderSearch() {
  cancelPreview();
  let connections = [];
  try {
    connections = await api('GET', '/databases');
  } catch (e) {
    notice(errorText(e));
  }
  const columns = await sortableColumns(connections);
  const query = el('input', { type: 'text', name: 'query', id: 'query', value: search.query || '', autocomplete: 'off', placeholder: 'empty: browse the rows the filter keeps' });
  const form = el('form', { id: 'search-form', class: 'grid' },
    el('div', { class: 'wide combo' }, el('label', { for: 'query' }, 'Query'), query),
    el('label', null, 'Mode', el('select', { name: 'searchMode' }, ['natural', 'boolean', 'semantic'].map(m =>
      el('option', { value: m, selected: m === search.mode }, m)))),
    el('label', null, 'Tables (optional)', el('input', { type: 'text', name: 'tables', value: search.tables || '', placeholder: 'products, articles' })),
    el('label', null, 'Per page', el('input', { type: 'number', name: 'limit', min: 1, max: 100, value: search.limit || 10 })),
    el('label', { class: 'wide' }, 'Filter (optional)', el('input', { type: 'text', name: 'filter', value: search.filter || '', placeholder: 'category = "Audio" AND price < 200' })),
    el('label', null, 'Facets (columns, optional)', el('input', { type: 'text', name: 'facets', value: search.facets || '', placeholder: 'category, price' })),
    el('label', null, 'Sort', el('select', { name: 'sort' }, el('option', { value: '' }, 'relevance'),
      columns.flatMap(c => ['asc', 'desc'].map(dir => el('option', { value: `${c}:${dir}`, selected: search.sort === `${c}:${dir}` }, `${c} ${dir === 'asc' ? '↑' : '↓'}`))))),
    el('label', null, 'API key', el('input', { type: 'password', name: 'apiKey', value: store.apiKey, required: true, autocomplete: 'off', placeholder: 'altus4_sk_…' })),
    el('fieldset', { class: 'row' }, el('legend', null, 'Databases'), connections.length
      ? connections.map(c => el('label', { class: 'inline' }, el('input', { type: 'checkbox', name: 'databases', value: c.id, checked: true, dataset: { list: '1' } }), c.name))
      : el('span', { class: 'muted', id: 'no-database' }, 'Nothing to search yet: ', el('a', { href: '#/databases' }, 'connect a database'), ' first.')),
    el('button', { type: 'submit', disabled: !connections.length }, 'Search'));
  const out = el('div', { id: 'search-output' });
  const suggestions = suggestionList(query, text => {
    query.value = text;
    form.requestSubmit();
  });
  query.after(suggestions.list);
  form.addEventListener('submit', guarded(async () => {
    cancelPreview();
    suggestions.close();
    typing.sent = query.value.trim();
    search.offset = 0;
    await runSearch(form, out);
  }));
  if (connections.length) query.addEventListener('input', () => previewSoon(form, out, suggestions));
  show(el('h1', null, 'Search playground'), el('section', { class: 'card' }, form,
    store.apiKey ? null : el('p', { class: 'muted', id: 'key-hint' }, 'Searches need an API key: paste one, or make one on the ',
      el('a', { href: '#/keys' }, 'API keys'), ' page. ', el('code', null, 'make run'), ' prints a console link that fills in the demo\'s.')), out);
}

// ---------------------------------------------------------------- search-as-you-type

function cancelPreview() {
  clearTimeout(typing.timer);
  if (typing.controller) typing.controller.abort();
  typing.controller = null;
}

function previewSoon(form, out, suggestions) {
  clearTimeout(typing.timer);
  typing.timer = setTimeout(() => preview(form, out, suggestions), TYPING_PAUSE_MS);
}

async function preview(form, out, suggestions) {
  const text = form.elements.namedItem('query').value.trim();
  const key = form.elements.namedItem('apiKey').value;
  if (text.length < MIN_PREVIEW_CHARS) suggestions.close();
  if (text.length < MIN_PREVIEW_CHARS || !key || text === typing.sent) return;
  typing.sent = text;
  if (typing.controller) typing.controller.abort();
  const controller = typing.controller = new AbortController();
  search.offset = 0;
  await Promise.all([
    runSearch(form, out, { preview: true, signal: controller.signal }),
    suggestions.fetch(text, key, formValues(form).databases, controller.signal).catch(() => suggestions.close()),
  ]);
}

// The suggestions endpoint's completions as an ARIA combobox's list: arrows move, Enter or a click picks one
// (a search), Escape closes it.
function suggestionList(input, pick) {
  const list = el('ul', { id: 'suggestions', role: 'listbox', class: 'suggestions', 'aria-label': 'Suggestions', hidden: true });
  Object.entries({ role: 'combobox', 'aria-autocomplete': 'list', 'aria-expanded': 'false', 'aria-controls': 'suggestions' })
    .forEach(([name, value]) => input.setAttribute(name, value));
  let items = [];
  let active = -1;
  const close = () => {
    list.hidden = true;
    active = -1;
    input.setAttribute('aria-expanded', 'false');
    input.removeAttribute('aria-activedescendant');
  };
  const highlight = index => {
    active = index;
    [...list.children].forEach((option, i) => option.setAttribute('aria-selected', String(i === index)));
    if (index >= 0) input.setAttribute('aria-activedescendant', `suggestion-${index}`);
  };
  input.addEventListener('keydown', event => {
    if (list.hidden) return;
    if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
      event.preventDefault();
      const step = event.key === 'ArrowDown' ? 1 : -1;
      highlight((active + step + items.length) % items.length);
    } else if (event.key === 'Enter' && active >= 0) {
      event.preventDefault();
      pick(items[active]);
    } else if (event.key === 'Escape') close();
  });
  input.addEventListener('blur', close);
  return {
    list,
    close,
    async fetch(text, key, databases, signal) {
      const query = { query: text, limit: 8 };
      if (databases && databases.length) query.databases = databases.join(',');
      const data = await api('GET', '/search/suggestions', { key, query, signal });
      if (signal.aborted || input.value.trim() !== text) return;
      items = data.suggestions.map(s => s.text).filter(t => t.toLowerCase() !== text.toLowerCase());
      list.replaceChildren(...items.map((t, i) => el('li', { id: `suggestion-${i}`, role: 'option', 'aria-selected': 'false',
        onmousedown: e => e.preventDefault(), onclick: () => pick(t) }, t)));
      if (!items.length || document.activeElement !== input) return close();
      list.hidden = false;
      active = -1;
      input.setAttribute('aria-expanded', 'true');
    },
  };
}

// ---------------------------------------------------------------- the search and its results

// Columns a search may sort on: every column of the connected databases' tables (the API checks each
// against the table it searches, and leaves out a table that lacks it, with a warning).
async function sortableColumns(connections) {
  const names = new Set();
  for (const c of connections.slice(0, 5)) {
    try {
      for (const t of await api('GET', `/databases/${c.id}/schema`)) for (const col of t.columns) names.add(col.name);
    } catch (e) { /* a database that does not answer offers no columns */ }
  }
  return [...names].sort();
}

const list = text => (text || '').split(',').map(t => t.trim()).filter(Boolean);

function searchBody(form) {
  const v = formValues(form);
  store.apiKey = v.apiKey;
  Object.assign(search, { query: v.query || '', mode: v.searchMode, tables: v.tables || '', limit: v.limit || 10,
    filter: v.filter || '', facets: v.facets || '', sort: v.sort || '' });
  const body = { query: search.query, searchMode: v.searchMode, limit: search.limit, offset: search.offset, databases: v.databases || [] };
  if (list(v.tables).length) body.tables = list(v.tables);
  if (search.filter.trim()) body.filter = search.filter.trim();
  if (list(search.facets).length) body.facets = list(search.facets);
  if (search.sort) body.sort = [search.sort];
  return body;
}

// A facet value's clause, and the filter with it added or (clicked again) taken out.
function facetClause(column, value, numeric) {
  return `${column} = ${numeric && /^-?\d+(\.\d+)?$/.test(value) ? value : JSON.stringify(value)}`;
}

function toggled(filter, clause) {
  const parts = filter.split(/\s+AND\s+/).map(p => p.trim()).filter(Boolean);
  const kept = parts.filter(p => p !== clause);
  return (kept.length === parts.length ? [...parts, clause] : kept).join(' AND ');
}

function facetPanels(data, form, out) {
  const distribution = data.facetDistribution || {};
  const stats = data.facetStats || {};
  const panels = Object.entries(distribution).map(([column, counts]) => el('section', { class: 'facet', dataset: { facet: column } },
    el('h3', null, column),
    stats[column] ? el('p', { class: 'muted' }, `from ${stats[column].min} to ${stats[column].max}`) : null,
    Object.entries(counts).map(([value, count]) => {
      const clause = facetClause(column, value, column in stats);
      const active = (search.filter || '').split(/\s+AND\s+/).map(p => p.trim()).includes(clause);
      return el('button', { type: 'button', class: 'facet-value' + (active ? ' active' : ''), 'aria-pressed': String(active), dataset: { value },
        onclick: guarded(async () => {
          form.querySelector('[name=filter]').value = toggled(search.filter || '', clause);
          search.offset = 0;
          await runSearch(form, out);
        }) }, el('span', null, value), el('span', { class: 'count' }, String(count)));
    })));
  return panels.length ? el('aside', { id: 'facets', 'aria-label': 'Facets' }, panels) : null;
}

function curlFor(body) {
  const json = JSON.stringify(body).replace(/'/g, "'\\''");
  return `curl -s ${location.origin}${API}/search \\\n  -H "Authorization: Bearer $ALTUS4_API_KEY" \\\n  -H 'Content-Type: application/json' \\\n  -d '${json}'`;
}

async function runSearch(form, out, { preview = false, signal } = {}) {
  const body = searchBody(form);
  const curl = el('section', { class: 'card' }, el('div', { class: 'spread' }, el('h2', null, 'The same search with curl'), copyButton(curlFor(body), 'Copy curl')),
    el('pre', { id: 'curl' }, curlFor(body)));
  let data;
  try {
    data = await api('POST', '/search', { body: preview ? { ...body, analytics: false } : body, key: store.apiKey, signal });
  } catch (err) {
    if (!isCancelled(err)) out.replaceChildren(queryError(err, body), curl);
    return;
  }
  if (signal && signal.aborted) return; // a newer preview or a search replaced this one
  const pages = Math.max(1, Math.ceil(data.totalCount / data.limit));
  const page = offset => guarded(async () => { search.offset = offset; await runSearch(form, out); });
  const pager = el('div', { class: 'row' },
    el('button', { type: 'button', class: 'secondary', disabled: data.offset === 0, onclick: page(Math.max(0, data.offset - data.limit)) }, '← Previous'),
    el('span', { id: 'page' }, `page ${data.page} of ${pages}`),
    el('button', { type: 'button', class: 'secondary', disabled: data.offset + data.limit >= data.totalCount, onclick: page(data.offset + data.limit) }, 'Next →'));
  const top = Math.max(...data.results.map(x => x.relevanceScore));
  out.replaceChildren(
    el('section', { class: 'card', 'aria-live': 'polite' },
      el('div', { class: 'spread' },
        el('div', { id: 'summary' }, el('strong', { id: 'total' }, `${data.totalCount} matches`), ` · ${data.executionTime} ms · mode ${data.modeUsed}`,
          data.cached ? el('span', { class: 'pill good', id: 'cached' }, 'cached') : el('span', { class: 'pill', id: 'cached' }, 'not cached'),
          preview && el('span', { class: 'pill', id: 'preview', title: 'Results while typing are not recorded in analytics; press Enter to search' }, 'preview'),
          body.searchMode === 'semantic' && el('span', { class: 'pill ' + (data.aiUsed ? 'good' : 'bad'), id: 'ai' },
            data.aiUsed ? 'AI re-ranked' : `AI not used: ${data.aiReason || 'unavailable'} (plain ${data.modeUsed} results)`)),
        pager),
      el('div', { class: 'row', id: 'db-status' }, data.databases.map(d => el('span', { class: 'pill ' + (d.status === 'ok' ? 'good' : 'bad') },
        `${d.name}: ${d.status}${d.status === 'ok' ? ` (${d.resultCount})` : ` — ${d.error}`}`))),
      (data.warnings || []).map(warningNode),
      el('div', { class: 'with-facets' }, facetPanels(data, form, out),
        el('div', { id: 'results' }, data.results.length ? data.results.map(r => resultNode(r, top)) : el('p', { class: 'muted' }, 'No results.')))),
    curl);
}

// "FILTER_COLUMN_MISSING: left out of the search, …" read as its message; the code stays on hand for a
// developer (hover, or the data attribute a script can read)
function warningNode(warning) {
  const [, code, message] = warning.match(/^([A-Z_]+): (.*)$/s) || [null, '', warning];
  return el('p', { class: 'warning', role: 'note', title: code, 'data-code': code },
    message.charAt(0).toUpperCase() + message.slice(1));
}

const TITLE_COLUMNS = ['name', 'title', 'subject', 'headline', 'label'];

// A result as a person reads it: a title from the row's best text column, a few short fields, the score as
// a bar beside its value (ties look alike), the matched snippet, and the whole row on demand.
function resultNode(r, topScore) {
  const data = r.data || {};
  const titleColumn = TITLE_COLUMNS.find(c => typeof data[c] === 'string' && data[c])
    || r.matchedColumns.find(c => typeof data[c] === 'string' && data[c]);
  const short = Object.entries(data).filter(([c, v]) => c !== titleColumn && c !== 'id' && v !== null
    && (typeof v === 'number' || (typeof v === 'string' && v.length <= 40))).slice(0, 3);
  const bar = el('span', { class: 'score-bar' }, el('span'));
  bar.firstChild.style.width = `${Math.round(100 * (topScore > 0 ? r.relevanceScore / topScore : 0))}%`; // CSSOM: allowed by the CSP
  return el('div', { class: 'result', dataset: { id: r.id } },
    el('div', { class: 'spread' }, el('div', { class: 'title' }, titleColumn ? data[titleColumn] : `row ${r.rowId}`),
      topScore > 0 && el('div', { class: 'meta score', title: `relevance ${r.relevanceScore}` }, bar, ` ${Number(r.relevanceScore).toFixed(3)}`)),
    short.length ? el('div', { class: 'fields' }, short.map(([c, v]) => el('span', null, el('span', { class: 'muted' }, `${c} `), String(v)))) : null,
    el('div', { class: 'snippet' }, snippetNodes(r.snippet)),
    el('div', { class: 'meta' }, `${r.databaseName} · table ${r.table} · row ${r.rowId} · matched: `, r.matchedColumns.join(', ') || '—'),
    el('details', null, el('summary', null, 'whole row'), el('pre', null, JSON.stringify(r.data, null, 2))));
}

// a snippet comes HTML-escaped (Python's html.escape) with <mark> around matches: split on the marks and
// undo the five escapes; nothing is parsed as HTML
const ENTITIES = { '&amp;': '&', '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#x27;': "'" };
const decode = text => text.replace(/&(?:amp|lt|gt|quot|#x27);/g, e => ENTITIES[e]);

function snippetNodes(snippet) {
  const out = [];
  for (const [i, part] of String(snippet || '').split(/<\/?mark>/).entries()) {
    if (part) out.push(i % 2 ? el('mark', null, decode(part)) : document.createTextNode(decode(part)));
  }
  return out;
}

function queryError(err, body) {
  const box = el('section', { class: 'card', id: 'search-error' }, el('p', { class: 'error' }, errorText(err)));
  const at = Array.isArray(err.details) && err.details.find(d => d.position);
  if (at) { // the API counts from 1; the caret goes under the text it points into
    const i = at.position - 1;
    const text = at.field === 'filter' ? body.filter : body.query;
    box.append(el('pre', { id: 'error-position' }, text, '\n', ' '.repeat(Math.max(0, i)), el('span', { class: 'caret' }, '^'),
      ` position ${at.position}: ${at.message}`));
  }
  return box;
}
