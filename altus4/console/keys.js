// The API keys page: the keys with their usage, a new key, and tenant tokens minted in this page.
import { api, copyButton, el, formValues, guarded, notice, secretBox, show, store, table, when } from './core.js';
import { barChart, daysAgo, perDay } from './charts.js';

const prefixOf = key => key.keyPrefix.replace(/\.+$/, '');

export async function renderKeys() {
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
        if (store.apiKey.startsWith(prefixOf(k))) store.apiKey = null;
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
    el('section', { class: 'card' }, table(['name', 'env', 'permissions', 'tier', 'status', 'uses', 'last used', 'expires', 'actions'], rows)),
    usage, el('section', { class: 'card' }, el('h2', null, 'New key'), form),
    tenantTokenCard(data.apiKeys.filter(k => k.isActive && k.permissions.includes('search'))));
}

async function showUsage(key, box) {
  const { usage } = await api('GET', `/keys/${key.id}/usage`, { query: { days: 14 } });
  const status = usage.rateLimitStatus;
  box.hidden = false;
  box.replaceChildren(el('h2', null, `Usage of "${key.name}" — last 14 days`),
    barChart([{ name: 'requests', points: perDay(usage.daily, daysAgo(13), daysAgo(0), 'requests') }], { label: 'requests per day' }),
    el('p', { class: 'muted' }, `${usage.requestCount} requests in 14 days, ${usage.totalRequestCount} in all; `,
      `rate limit (${status.tier} tier): ${status.remaining} of ${status.limit} requests left this hour (it resets at ${when(status.resetTime)})`));
}

// ---------------------------------------------------------------- tenant tokens

const utf8 = text => new TextEncoder().encode(text);
const base64url = bytes => btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

// What an application does on its server (README, Tenant tokens): a JWT (HS256) signed with the API key's
// secret, claiming the key's id and the rule. Done here with WebCrypto: the secret is not sent anywhere.
export async function mintTenantToken(secret, apiKeyId, filter, hours) {
  if (!window.crypto || !crypto.subtle) throw new Error('Minting in the browser needs HTTPS (or localhost): WebCrypto is off on this page');
  const claims = { apiKeyId, searchRules: { '*': filter ? { filter } : {} } };
  if (hours) claims.exp = Math.floor(Date.now() / 1000) + Math.round(hours * 3600);
  const signed = `${base64url(utf8(JSON.stringify({ alg: 'HS256', typ: 'JWT' })))}.${base64url(utf8(JSON.stringify(claims)))}`;
  const key = await crypto.subtle.importKey('raw', utf8(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const signature = new Uint8Array(await crypto.subtle.sign('HMAC', key, utf8(signed)));
  return `${signed}.${base64url(signature)}`;
}

function tenantTokenCard(keys) {
  const card = el('section', { class: 'card', id: 'tenant-token' }, el('h2', null, 'Tenant token'),
    el('p', { class: 'muted' }, 'A search-only token for one tenant of your application: it searches as the key, only the rows the filter keeps. It is made in this page; the key\'s secret is not sent anywhere.'));
  if (!keys.length) {
    card.append(el('p', { class: 'muted' }, 'Make an active key with the search permission first.'));
    return card;
  }
  const secret = el('input', { type: 'password', name: 'secret', required: true, autocomplete: 'off', placeholder: 'altus4_sk_…' });
  const choose = el('select', { name: 'apiKeyId' }, keys.map(k => el('option', { value: k.id }, `${k.name} (${k.keyPrefix})`)));
  const prefill = () => { // the playground's key, when it is the chosen one
    const chosen = keys.find(k => k.id === choose.value);
    secret.value = store.apiKey && store.apiKey.startsWith(prefixOf(chosen)) ? store.apiKey : '';
  };
  choose.addEventListener('change', prefill);
  prefill();
  const out = el('div', { id: 'tenant-token-output' });
  const form = el('form', { class: 'grid' },
    el('label', { class: 'wide' }, 'API key', choose), // wide: a key's name and prefix are read whole
    el('label', null, 'Its secret (stays in this page)', secret),
    el('label', { class: 'wide' }, 'Filter', el('input', { type: 'text', name: 'filter', placeholder: 'tenant_id = 42' })),
    el('label', null, 'Expires after (hours)', el('input', { type: 'number', name: 'hours', min: 0.1, step: 'any', value: 24 })),
    el('button', { type: 'submit' }, 'Mint token'));
  form.addEventListener('submit', guarded(async () => {
    const v = formValues(form);
    const key = keys.find(k => k.id === v.apiKeyId);
    if (!v.secret.startsWith(prefixOf(key))) throw new Error(`That secret is not the key "${key.name}" (its secrets start with ${prefixOf(key)})`);
    const token = await mintTenantToken(v.secret, key.id, (v.filter || '').trim(), v.hours);
    out.replaceChildren(el('pre', { id: 'tenant-token-value' }, token), el('div', { class: 'row' }, copyButton(token, 'Copy token')),
      el('p', { class: 'muted' }, `Searches with it (Authorization: Bearer <token>) see ${v.filter ? `only rows where ${v.filter.trim()}` : 'every row the key sees'}`,
        v.hours ? `, for ${v.hours} hours.` : '.', ' Revoking the key revokes every token made with it.'));
  }));
  card.append(form, out);
  return card;
}
