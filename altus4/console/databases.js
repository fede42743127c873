// The databases page: the user's connections with their status, the schema and its FULLTEXT advice, a new
// connection.
import { api, el, formValues, guarded, notice, show, table, when } from './core.js';

export async function renderDatabases() {
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
  el('section', { class: 'card' }, table(['name', 'where', 'status', 'last tested', 'actions'], rows)), schemaBox,
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

