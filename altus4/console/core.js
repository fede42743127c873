// What every page of the console shares: the API client, the session's storage, and building the page as
// text. Every value from the API goes on the page as text (textContent, never innerHTML). The JWT lives in
// sessionStorage (this tab), never in a URL.

export const API = '/api/v1';

export const store = {
  get token() { return sessionStorage.getItem('altus4.jwt'); },
  set token(v) { v ? sessionStorage.setItem('altus4.jwt', v) : sessionStorage.removeItem('altus4.jwt'); },
  get apiKey() { return sessionStorage.getItem('altus4.apiKey') || ''; },
  set apiKey(v) { v ? sessionStorage.setItem('altus4.apiKey', v) : sessionStorage.removeItem('altus4.apiKey'); },
};

// ---------------------------------------------------------------- the session

let sessionEnded = () => {};
// what happens when the API says the session is over (the console's sign-in page)
export function whenSessionEnds(handler) { sessionEnded = handler; }
export function endSession(message) { sessionEnded(message); }

// ---------------------------------------------------------------- the API

export class ApiError extends Error {
  constructor(status, error) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || 'HTTP_' + status;
    this.details = error.details;
  }
}

// a request that a newer one replaced (search-as-you-type): callers ignore it
export const isCancelled = err => err && err.code === 'CANCELLED';

export async function api(method, path, { body, key, query, signal } = {}) {
  const headers = { Accept: 'application/json' };
  const credential = key || store.token;
  if (credential) headers.Authorization = 'Bearer ' + credential;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const url = API + path + (query ? '?' + new URLSearchParams(query) : '');
  let response;
  try {
    response = await fetch(url, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    if (signal && signal.aborted) throw new ApiError(0, { code: 'CANCELLED', message: 'Replaced by a newer request' });
    throw new ApiError(0, { code: 'NETWORK_ERROR', message: 'The service could not be reached' });
  }
  const envelope = await response.json().catch(() => ({ success: false, error: { message: response.statusText } }));
  if (!response.ok || envelope.success === false) {
    if (response.status === 401 && !key && store.token) endSession('Your session ended; sign in again.');
    throw new ApiError(response.status, envelope.error || {});
  }
  return envelope.data;
}

// ---------------------------------------------------------------- building the page (text only)

export function el(tag, attrs, ...children) {
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

export function show(...nodes) {
  document.getElementById('view').replaceChildren(...nodes);
}

export function notice(message, kind = 'error') {
  const box = document.getElementById('notice');
  box.className = kind === 'info' ? 'info' : '';
  box.textContent = message;
  box.hidden = !message;
}

export function errorText(err) {
  const parts = [err.code ? `${err.code}: ${err.message}` : err.message];
  if (Array.isArray(err.details)) {
    for (const d of err.details) if (d && d.field && !parts[0].includes(d.message)) parts.push(`${d.field}: ${d.message}`);
  }
  return parts.join(' — ');
}

// a submit or click handler that shows the API's error instead of throwing
export function guarded(action) {
  return async event => {
    if (event) event.preventDefault();
    const button = event && event.submitter;
    if (button) button.disabled = true;
    try {
      notice('');
      await action(event);
    } catch (err) {
      if (!isCancelled(err)) notice(errorText(err));
    } finally {
      if (button) button.disabled = false;
    }
  };
}

export function formValues(form) {
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

export function copyButton(text, label = 'Copy') {
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

export function secretBox(secret, warning) {
  return el('div', { class: 'secret', id: 'new-secret' },
    el('p', null, el('strong', null, 'Your API key (shown once): ')), el('code', { id: 'secret-value' }, secret),
    el('div', { class: 'row' }, copyButton(secret, 'Copy key'),
      el('button', { type: 'button', class: 'secondary', onclick: () => { store.apiKey = secret; notice('The playground will use this key.', 'info'); } },
        'Use in the search playground')),
    el('p', { class: 'muted' }, warning || 'Store it now: it is not shown again.'));
}

export const when = iso => (iso ? new Date(iso).toLocaleString() : '—');

// in a box of its own that scrolls sideways when the table is wider than the screen (a phone), not the page
export function table(headers, rows, empty = 'Nothing yet') {
  return el('div', { class: 'table-scroll' }, el('table', null, el('thead', null, el('tr', null, headers.map(h => el('th', { scope: 'col' }, h)))),
    el('tbody', null, rows.length ? rows : el('tr', null, el('td', { colspan: headers.length, class: 'muted' }, empty)))));
}
