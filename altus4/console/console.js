// The Altus 4 console: one page over the public API (/api/v1), with the user's JWT for management calls and
// an API key they choose for searches. Every value from the API is put on the page as text (textContent,
// never innerHTML); the only markup taken from a response is the <mark> of search snippets, rebuilt here
// element by element. The JWT lives in sessionStorage (this tab), never in a URL.
'use strict';

const API = '/api/v1';
const store = {
  get token() { return sessionStorage.getItem('altus4.jwt'); },
  set token(v) { v ? sessionStorage.setItem('altus4.jwt', v) : sessionStorage.removeItem('altus4.jwt'); },
  get apiKey() { return sessionStorage.getItem('altus4.apiKey') || ''; },
  set apiKey(v) { v ? sessionStorage.setItem('altus4.apiKey', v) : sessionStorage.removeItem('altus4.apiKey'); },
};

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, error) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || 'HTTP_' + status;
    this.details = error.details;
  }
}

async function api(method, path, { body, key, query } = {}) {
  const headers = { Accept: 'application/json' };
  const credential = key || store.token;
  if (credential) headers.Authorization = 'Bearer ' + credential;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const url = API + path + (query ? '?' + new URLSearchParams(query) : '');
  let response;
  try {
    response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, { code: 'NETWORK_ERROR', message: 'The service could not be reached' });
  }
  const envelope = await response.json().catch(() => ({ success: false, error: { message: response.statusText } }));
  if (!response.ok || envelope.success === false) {
    if (response.status === 401 && !key && store.token) signedOut('Your session ended; sign in again.');
    throw new ApiError(response.status, envelope.error || {});
  }
  return envelope.data;
}

// ---------------------------------------------------------------- building the page (text only)

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(name, '');
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const view = () => document.getElementById('view');
function show(...nodes) { view().replaceChildren(...nodes); }

function notice(message, kind = 'error') {
  const box = document.getElementById('notice');
  box.className = kind === 'info' ? 'info' : '';
  box.textContent = message;
  box.hidden = !message;
}

function errorText(err) {
  const parts = [err.code ? `${err.code}: ${err.message}` : err.message];
  if (Array.isArray(err.details)) {
    for (const d of err.details) if (d && d.field && !parts[0].includes(d.message)) parts.push(`${d.field}: ${d.message}`);
  }
  return parts.join(' — ');
}

// a submit handler that shows the API's error instead of throwing
function guarded(action) {
  return async event => {
    if (event) event.preventDefault();
    const button = event && event.submitter;
    if (button) button.disabled = true;
    try {
      notice('');
      await action(event);
    } catch (err) {
      notice(errorText(err));
    } finally {
      if (button) button.disabled = false;
    }
  };
}

function formValues(form) {
  const out = {};
  for (const input of form.elements) {
    if (!input.name) continue;
    if (input.type === 'checkbox') {
      if (input.dataset.list) (out[input.name] = out[input.name] || []).push(...(input.checked ? [input.value] : []));
      else out[input.name] = input.checked;
    } else if (input.value !== '') out[input.name] = input.type === 'number' ? Number(input.value) : input.value;
  }
  return out;
}

function copyButton(text, label = 'Copy') {
  const button = el('button', { type: 'button', class: 'secondary', 'data-copy': '' }, label);
  button.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = 'Copied';
    } catch (e) {
      button.textContent = 'Select and copy';
    }
  });
  return button;
}

function secretBox(secret, warning) {
  return el('div', { class: 'secret', id: 'new-secret' },
    el('p', null, el('strong', null, 'Your API key (shown once): ')), el('code', { id: 'secret-value' }, secret),
    el('div', { class: 'row' }, copyButton(secret, 'Copy key'),
      el('button', { type: 'button', class: 'secondary', onclick: () => { store.apiKey = secret; notice('The playground will use this key.', 'info'); } },
        'Use in the search playground')),
    el('p', { class: 'muted' }, warning || 'Store it now: it is not shown again.'));
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

function barChart(points, label) {
  const ns = 'http://www.w3.org/2000/svg';
  const node = (tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = text;
    return n;
  };
  const svg = node('svg', { class: 'chart', viewBox: '0 0 1000 160', role: 'img', 'aria-label': label });
  const max = Math.max(1, ...points.map(p => p.value));
  const width = 1000 / Math.max(points.length, 1);
  const every = Math.ceil(points.length / 10); // at most ten date labels
  points.forEach((p, i) => {
    const h = Math.round((p.value / max) * 115);
    const bar = node('rect', { x: i * width + 3, y: 135 - h, width: Math.max(2, width - 6), height: Math.max(h, 1) });
    bar.append(node('title', {}, `${p.label}: ${p.value}`));
    svg.append(bar);
    if (p.value) svg.append(node('text', { x: i * width + 3, y: 130 - h }, String(p.value)));
    if (i % every === 0 || i === points.length - 1) svg.append(node('text', { x: i * width + 3, y: 152 }, p.label.slice(5)));
  });
  if (!points.some(p => p.value)) svg.append(node('text', { x: 10, y: 80 }, 'No data yet'));
  return svg;
}

function lastDays(daily, days, field = 'requests') {
  const byDate = Object.fromEntries(daily.map(d => [d.date, d[field]]));
  const out = [];
  for (let i = days - 1; i >= 0; i--) {
    const day = new Date(Date.now() - i * 86400000).toISOString().slice(0, 10);
    out.push({ label: day, value: Number(byDate[day] || 0) });
  }
  return out;
}

const when = iso => (iso ? new Date(iso).toLocaleString() : '—');

function table(headers, rows) {
  return el('table', null, el('thead', null, el('tr', null, headers.map(h => el('th', null, h)))),
    el('tbody', null, rows.length ? rows : el('tr', null, el('td', { colspan: headers.length, class: 'muted' }, 'Nothing yet'))));
}

// ---------------------------------------------------------------- signed out: sign in, register

function signedOut(message) {
  store.token = null;
  store.apiKey = null; // the next person in this tab starts from an empty playground
  for (const name of Object.keys(search)) delete search[name];
  search.offset = 0;
  for (const link of document.querySelectorAll('#nav a')) link.classList.remove('active');
  document.getElementById('nav').hidden = true;
  document.getElementById('sign-out').hidden = true;
  document.getElementById('who').textContent = '';
  if (message) notice(message);
  renderSignIn();
}

function renderSignIn() {
  const signIn = el('form', { id: 'sign-in', class: 'grid' },
    el('label', null, 'Email', el('input', { type: 'email', name: 'email', required: true, autocomplete: 'username' })),
    el('label', null, 'Password', el('input', { type: 'password', name: 'password', required: true, autocomplete: 'current-password' })),
    el('button', { type: 'submit' }, 'Sign in'));
  signIn.addEventListener('submit', guarded(async () => signedIn(await api('POST', '/auth/login', { body: formValues(signIn) }))));
  const register = el('form', { id: 'register', class: 'grid' },
    el('label', null, 'Name', el('input', { type: 'text', name: 'name', required: true })),
    el('label', null, 'Email', el('input', { type: 'email', name: 'email', required: true, autocomplete: 'username' })),
    el('label', null, 'Password (8+ characters)', el('input', { type: 'password', name: 'password', required: true, minlength: 8, autocomplete: 'new-password' })),
    el('button', { type: 'submit' }, 'Create account'));
  register.addEventListener('submit', guarded(async () => {
    signedIn(await api('POST', '/auth/register', { body: formValues(register) }));
    location.hash = '#/account';
  }));
  show(el('h1', null, 'Altus 4 console'),
    el('p', { class: 'muted' }, 'Search the MySQL databases you already have. Sign in, or create an account.'),
    el('div', { class: 'two' }, el('section', { class: 'card' }, el('h2', null, 'Sign in'), signIn),
      el('section', { class: 'card' }, el('h2', null, 'Create an account'), register)));
}

function signedIn(session) {
  store.token = session.token;
  route();
}

// ---------------------------------------------------------------- account

async function renderAccount() {
  const [user, keys] = await Promise.all([api('GET', '/auth/profile'), api('GET', '/keys')]);
  const profile = el('form', { id: 'profile', class: 'grid' },
    el('label', null, 'Name', el('input', { type: 'text', name: 'name', value: user.name, required: true })),
    el('label', { class: 'wide' }, 'Email', el('input', { type: 'email', name: 'email', value: user.email, required: true })),
    el('label', null, 'Current password (to change the e-mail)', el('input', { type: 'password', name: 'currentPassword', autocomplete: 'current-password' })),
    el('button', { type: 'submit' }, 'Save profile'));
  const password = el('form', { id: 'change-password', class: 'grid' },
    el('label', null, 'Current password', el('input', { type: 'password', name: 'currentPassword', required: true, autocomplete: 'current-password' })),
    el('label', null, 'New password (8+ characters)', el('input', { type: 'password', name: 'newPassword', required: true, minlength: 8, autocomplete: 'new-password' })),
    el('button', { type: 'submit' }, 'Change password'));
  password.addEventListener('submit', guarded(async () => {
    const changed = await api('POST', '/auth/change-password', { body: formValues(password) });
    store.token = changed.token; // this tab stays signed in; every other session is signed out
    password.reset();
    notice('Password changed. Other sessions are signed out.', 'info');
  }));
  const closing = el('form', { id: 'delete-account', class: 'grid' },
    el('label', null, 'Current password', el('input', { type: 'password', name: 'currentPassword', required: true, autocomplete: 'current-password' })),
    el('button', { type: 'submit', class: 'danger' }, 'Delete my account'));
  closing.addEventListener('submit', guarded(async () => {
    if (!confirm('Delete your account? Its keys, connections and analytics are deleted with it; this cannot be undone.')) return;
    await api('DELETE', '/auth/account', { body: formValues(closing) });
    signedOut();
    notice('Your account was deleted.', 'info');
  }));
  profile.addEventListener('submit', guarded(async () => {
    await api('PUT', '/auth/profile', { body: formValues(profile) });
    notice('Profile saved.', 'info');
  }));
  const first = el('section', { class: 'card', id: 'first-key' });
  if (keys.total === 0) {
    const setup = el('button', { type: 'button', id: 'setup-key' }, 'Set up my first API key');
    setup.addEventListener('click', guarded(async () => {
      const made = await api('POST', '/management/setup');
      store.apiKey = made.secretKey;
      first.replaceChildren(el('h2', null, 'Your first API key'), secretBox(made.secretKey, made.warning),
        el('p', null, 'Next: ', el('a', { href: '#/databases' }, 'connect a database'), ', then ', el('a', { href: '#/search' }, 'search it'), '.'));
    }));
    first.append(el('h2', null, 'Get started'), el('p', null, 'Searches use an API key. Make your first one (search and analytics permissions):'), setup);
  } else {
    first.append(el('h2', null, 'API keys'), el('p', null, `You have ${keys.total} key(s). `, el('a', { href: '#/keys' }, 'Manage them')));
  }
  show(el('h1', null, 'Account'), el('section', { class: 'card' }, el('h2', null, 'Profile'),
    el('p', { class: 'muted' }, `Member since ${when(user.createdAt)} · role ${user.role}`), profile), first,
    el('section', { class: 'card' }, el('h2', null, 'Password'), password),
    el('section', { class: 'card' }, el('h2', null, 'Delete the account'),
      el('p', { class: 'muted' }, 'Deletes the account with its API keys, connections and analytics. Your databases are not touched.'), closing));
}

// ---------------------------------------------------------------- keys

async function renderKeys() {
  const data = await api('GET', '/keys');
  const created = el('div', { id: 'created-key' });
  const usage = el('section', { class: 'card', id: 'key-usage', hidden: true });
  const rows = data.apiKeys.map(k => el('tr', { dataset: { key: k.id } },
    el('td', null, k.name, el('div', { class: 'muted mono' }, k.keyPrefix)),
    el('td', null, k.environment), el('td', null, k.permissions.join(', ')), el('td', null, k.rateLimitTier),
    el('td', null, el('span', { class: 'pill ' + (k.isActive ? 'good' : 'bad') }, k.isActive ? 'active' : 'revoked')),
    el('td', null, String(k.usageCount)), el('td', null, when(k.lastUsed)), el('td', null, k.expiresAt ? when(k.expiresAt) : 'never'),
    el('td', null, el('div', { class: 'row actions' },
      el('button', { type: 'button', class: 'secondary', onclick: guarded(() => showUsage(k, usage)) }, 'Usage'),
      k.isActive && el('button', { type: 'button', class: 'secondary', onclick: guarded(async () => {
        const made = await api('POST', `/keys/${k.id}/regenerate`);
        await renderKeys();
        document.getElementById('created-key').replaceChildren(secretBox(made.secretKey, made.warning));
      }) }, 'Regenerate'),
      k.isActive && el('button', { type: 'button', class: 'danger', 'data-revoke': k.id, onclick: guarded(async () => {
        if (!confirm(`Revoke "${k.name}"? Requests with it stop at once.`)) return;
        await api('DELETE', `/keys/${k.id}`);
        if (store.apiKey.startsWith(k.keyPrefix.replace(/\.+$/, ''))) store.apiKey = null;
        await renderKeys();
        notice(`Key "${k.name}" revoked.`, 'info');
      }) }, 'Revoke')))));
  const form = el('form', { id: 'create-key', class: 'grid' },
    el('label', null, 'Name', el('input', { type: 'text', name: 'name', required: true, minlength: 3 })),
    el('label', null, 'Environment', el('select', { name: 'environment' }, el('option', { value: 'test' }, 'test'), el('option', { value: 'live' }, 'live'))),
    el('label', null, 'Tier', el('select', { name: 'rateLimitTier' }, ['free', 'pro', 'enterprise'].map(t => el('option', { value: t }, t)))),
    el('label', null, 'Expires (optional)', el('input', { type: 'date', name: 'expiresAt' })),
    el('fieldset', { class: 'row' }, el('legend', null, 'Permissions'), ['search', 'analytics', 'admin'].map(p =>
      el('label', { class: 'inline' }, el('input', { type: 'checkbox', name: 'permissions', value: p, checked: p !== 'admin', dataset: { list: '1' } }), p))),
    el('button', { type: 'submit' }, 'Create key'));
  form.addEventListener('submit', guarded(async () => {
    const body = formValues(form);
    if (body.expiresAt) body.expiresAt = body.expiresAt + 'T23:59:59Z';
    const made = await api('POST', '/keys', { body });
    await renderKeys();
    document.getElementById('created-key').replaceChildren(secretBox(made.secretKey, made.warning));
  }));
  show(el('h1', null, 'API keys'), created,
    el('section', { class: 'card' }, table(['name', 'env', 'permissions', 'tier', 'status', 'uses', 'last used', 'expires', ''], rows)),
    usage, el('section', { class: 'card' }, el('h2', null, 'New key'), form));
}

async function showUsage(key, box) {
  const { usage } = await api('GET', `/keys/${key.id}/usage`, { query: { days: 14 } });
  box.hidden = false;
  box.replaceChildren(el('h2', null, `Usage of "${key.name}" — last 14 days`),
    barChart(lastDays(usage.daily, 14), 'requests per day'),
    el('p', { class: 'muted' }, `${usage.requestCount} requests in 14 days, ${usage.totalRequestCount} in all; `,
      `rate limit (${usage.rateLimitStatus.tier} tier): ${usage.rateLimitStatus.remaining} of ${usage.rateLimitStatus.limit} requests left this hour (it resets at ${when(usage.rateLimitStatus.resetTime)})`));
}

// ---------------------------------------------------------------- databases

async function renderDatabases() {
  const connections = await api('GET', '/databases');
  const schemaBox = el('section', { class: 'card', id: 'schema', hidden: true });
  const rows = connections.map(c => el('tr', { dataset: { connection: c.id } },
    el('td', null, c.name), el('td', { class: 'mono' }, `${c.username}@${c.host}:${c.port}/${c.database}`),
    el('td', null, el('span', { class: 'pill ' + (c.connectionStatus === 'connected' ? 'good' : 'bad'), 'data-status': '' }, c.connectionStatus),
      c.lastError ? el('div', { class: 'error' }, c.lastError) : null),
    el('td', null, when(c.lastTested)),
    el('td', null, el('div', { class: 'row actions' },
      el('button', { type: 'button', class: 'secondary', onclick: guarded(() => showSchema(c, schemaBox)) }, 'Schema'),
      el('button', { type: 'button', class: 'secondary', onclick: guarded(async () => {
        const result = await api('POST', `/databases/${c.id}/test`);
        notice(result.connected ? `${c.name}: connected (${result.responseTime} ms)` : `${c.name}: ${result.message}`, result.connected ? 'info' : 'error');
        await renderDatabases();
      }) }, 'Test'),
      el('button', { type: 'button', class: 'danger', onclick: guarded(async () => {
        if (!confirm(`Remove "${c.name}"? Its stored credentials are deleted.`)) return;
        await api('DELETE', `/databases/${c.id}`);
        await renderDatabases();
      }) }, 'Remove')))));
  const form = el('form', { id: 'add-database', class: 'grid' },
    el('label', null, 'Name', el('input', { type: 'text', name: 'name', required: true })),
    el('label', null, 'Host', el('input', { type: 'text', name: 'host', required: true })),
    el('label', null, 'Port', el('input', { type: 'number', name: 'port', value: 3306 })),
    el('label', null, 'Database', el('input', { type: 'text', name: 'database', required: true })),
    el('label', null, 'Username', el('input', { type: 'text', name: 'username', required: true })),
    el('label', null, 'Password', el('input', { type: 'password', name: 'password', autocomplete: 'off' })),
    el('label', { class: 'inline' }, el('input', { type: 'checkbox', name: 'ssl' }), 'TLS (verified)'),
    el('button', { type: 'submit' }, 'Connect'));
  form.addEventListener('submit', guarded(async () => {
    const made = await api('POST', '/databases', { body: formValues(form) });
    await renderDatabases();
    notice(made.connectionStatus === 'connected' ? `${made.name} connected.` : `${made.name} saved, but: ${made.lastError}`,
      made.connectionStatus === 'connected' ? 'info' : 'error');
  }));
  show(el('div', { class: 'spread' }, el('h1', null, 'Databases'),
    el('button', { type: 'button', class: 'secondary', onclick: guarded(async () => {
      const statuses = await api('GET', '/databases/status');
      const up = Object.values(statuses).filter(Boolean).length;
      await renderDatabases();
      notice(`${up} of ${Object.keys(statuses).length} reachable now.`, up === Object.keys(statuses).length ? 'info' : 'error');
    }) }, 'Check all')),
  el('section', { class: 'card' }, table(['name', 'where', 'status', 'last tested', ''], rows)), schemaBox,
  el('section', { class: 'card' }, el('h2', null, 'Connect a database'),
    el('p', { class: 'muted' }, 'Use a read-only MySQL account. The password is encrypted at rest and never shown again.'), form));
}

async function showSchema(connection, box) {
  const tables = await api('GET', `/databases/${connection.id}/schema`);
  box.hidden = false;
  box.replaceChildren(el('h2', null, `Schema of ${connection.name}`), table(['table', 'rows', 'FULLTEXT indexes', 'text columns'],
    tables.map(t => el('tr', { dataset: { table: t.table } }, el('td', { class: 'mono' }, t.table), el('td', null, String(t.estimatedRows)),
      el('td', null, t.fullTextIndexes.length
        ? t.fullTextIndexes.map(ix => el('div', { class: 'mono' }, `${ix.name} (${ix.columns.join(', ')})`))
        : [el('span', { class: 'pill bad' }, 'none'), t.suggestedIndex ? el('pre', { class: 'suggested' }, t.suggestedIndex) : null]),
      el('td', null, t.columns.filter(c => c.isSearchable).map(c => c.name).join(', '))))));
}

// ---------------------------------------------------------------- search playground

const search = { offset: 0 };

async function renderSearch() {
  let connections = [];
  try {
    connections = await api('GET', '/databases');
  } catch (e) {
    notice(errorText(e));
  }
  const columns = await sortableColumns(connections);
  const form = el('form', { id: 'search-form', class: 'grid' },
    el('label', { class: 'wide' }, 'Query', el('input', { type: 'text', name: 'query', value: search.query || '', placeholder: 'empty: browse the rows the filter keeps' })),
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
  form.addEventListener('submit', guarded(async () => {
    search.offset = 0;
    await runSearch(form, out);
  }));
  show(el('h1', null, 'Search playground'), el('section', { class: 'card' }, form), out);
}

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
  return panels.length ? el('aside', { id: 'facets' }, panels) : null;
}

function curlFor(body) {
  const json = JSON.stringify(body).replace(/'/g, "'\\''");
  return `curl -s ${location.origin}${API}/search \\\n  -H "Authorization: Bearer $ALTUS4_API_KEY" \\\n  -H 'Content-Type: application/json' \\\n  -d '${json}'`;
}

async function runSearch(form, out) {
  const body = searchBody(form);
  const curl = el('section', { class: 'card' }, el('div', { class: 'spread' }, el('h2', null, 'The same search with curl'), copyButton(curlFor(body), 'Copy curl')),
    el('pre', { id: 'curl' }, curlFor(body)));
  let data;
  try {
    data = await api('POST', '/search', { body, key: store.apiKey });
  } catch (err) {
    out.replaceChildren(queryError(err, body), curl);
    return;
  }
  const pages = Math.max(1, Math.ceil(data.totalCount / data.limit));
  const pager = el('div', { class: 'row' },
    el('button', { type: 'button', class: 'secondary', disabled: data.offset === 0, onclick: guarded(async () => { search.offset = Math.max(0, data.offset - data.limit); await runSearch(form, out); }) }, '← Previous'),
    el('span', { id: 'page' }, `page ${data.page} of ${pages}`),
    el('button', { type: 'button', class: 'secondary', disabled: data.offset + data.limit >= data.totalCount, onclick: guarded(async () => { search.offset = data.offset + data.limit; await runSearch(form, out); }) }, 'Next →'));
  out.replaceChildren(
    el('section', { class: 'card' },
      el('div', { class: 'spread' },
        el('div', { id: 'summary' }, el('strong', { id: 'total' }, `${data.totalCount} matches`), ` · ${data.executionTime} ms · mode ${data.modeUsed}`,
          data.cached ? el('span', { class: 'pill good', id: 'cached' }, 'cached') : el('span', { class: 'pill', id: 'cached' }, 'not cached'),
          body.searchMode === 'semantic' && el('span', { class: 'pill ' + (data.aiUsed ? 'good' : 'bad'), id: 'ai' },
            data.aiUsed ? 'AI re-ranked' : `AI not used: ${data.aiReason || 'unavailable'} (plain ${data.modeUsed} results)`)),
        pager),
      el('div', { class: 'row', id: 'db-status' }, data.databases.map(d => el('span', { class: 'pill ' + (d.status === 'ok' ? 'good' : 'bad') },
        `${d.name}: ${d.status}${d.status === 'ok' ? ` (${d.resultCount})` : ` — ${d.error}`}`))),
      (data.warnings || []).map(w => el('p', { class: 'muted' }, w)),
      el('div', { class: 'with-facets' }, facetPanels(data, form, out),
        el('div', { id: 'results' }, data.results.length
          ? data.results.map(r => resultNode(r, Math.max(...data.results.map(x => x.relevanceScore))))
          : el('p', { class: 'muted' }, 'No results.')))),
    curl);
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

// ---------------------------------------------------------------- analytics

const queryLabel = text => text || '(browse: no query)'; // an empty query listed as a blank row reads as a bug

async function renderAnalytics() {
  const [trends, performance, popular, history] = await Promise.all([
    api('GET', '/analytics/search-trends', { query: { period: 'month' } }),
    api('GET', '/analytics/performance', { query: { period: 'month' } }),
    api('GET', '/analytics/popular-queries', { query: { period: 'month', limit: 50 } }),
    api('GET', '/analytics/search-history', { query: { limit: 10 } }),
  ]);
  const s = performance.summary;
  const slow = [...popular].sort((a, b) => b.avg_time - a.avg_time).slice(0, 5);
  show(el('h1', null, 'Analytics'),
    el('section', { class: 'card' }, el('div', { class: 'row', id: 'totals' },
      el('span', { class: 'pill' }, `${s.totalQueries} searches this month`),
      el('span', { class: 'pill' }, `average ${s.averageResponseTime} ms`),
      el('span', { class: 'pill', id: 'cache-ratio' }, `cache hits ${(s.cacheHitRate * 100).toFixed(1)}%`),
      el('span', { class: 'pill' }, `${s.slowQueries} slow`))),
    el('section', { class: 'card' }, el('h2', null, 'Searches per day'),
      barChart(lastDays(trends.map(t => ({ date: t.date, requests: t.queryVolume })), 30), 'searches per day')),
    el('div', { class: 'two' },
      el('section', { class: 'card', id: 'popular' }, el('h2', null, 'Popular queries'), table(['query', 'times', 'avg ms'],
        popular.slice(0, 10).map(q => el('tr', null, el('td', null, queryLabel(q.query_text)), el('td', null, String(q.frequency)), el('td', null, String(q.avg_time)))))),
      el('section', { class: 'card', id: 'slow' }, el('h2', null, 'Slowest queries'), table(['query', 'avg ms', 'times'],
        slow.map(q => el('tr', null, el('td', null, queryLabel(q.query_text)), el('td', null, String(q.avg_time)), el('td', null, String(q.frequency))))))),
    el('section', { class: 'card', id: 'recent' }, el('h2', null, 'Recent searches'), table(['when', 'query', 'mode', 'results', 'ms', 'cache'],
      history.items.map(h => el('tr', null, el('td', null, when(h.timestamp)), el('td', null, queryLabel(h.query)), el('td', null, h.searchMode),
        el('td', null, String(h.resultCount)), el('td', null, String(h.executionTime)), el('td', null, h.cacheHit ? 'hit' : 'miss'))))));
}

// ---------------------------------------------------------------- routing

const VIEWS = { account: renderAccount, keys: renderKeys, databases: renderDatabases, search: renderSearch, analytics: renderAnalytics };

async function route() {
  if (!store.token) return signedOut();
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1] || 'search';
  const render = VIEWS[name] || renderSearch;
  document.getElementById('nav').hidden = false;
  document.getElementById('sign-out').hidden = false;
  for (const link of document.querySelectorAll('#nav a')) link.classList.toggle('active', link.dataset.view === name);
  try {
    const user = await api('GET', '/auth/profile');
    document.getElementById('who').textContent = user.email;
    await render();
  } catch (err) {
    if (store.token) notice(errorText(err));
  }
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('sign-out').addEventListener('click', guarded(async () => {
    try {
      await api('POST', '/auth/logout');
    } finally {
      store.apiKey = null;
      signedOut();
      notice('Signed out.', 'info');
    }
  }));
  window.addEventListener('hashchange', () => { notice(''); route(); });
  route();
});
