// The Altus 4 console: one page over the public API (/api/v1), with the user's JWT for management calls and
// an API key they choose for searches. This module signs people in and out and routes #/view to its page.
import { api, el, errorText, formValues, guarded, notice, show, store, whenSessionEnds } from './core.js';
import { renderAccount } from './account.js';
import { renderAnalytics, resetAnalytics } from './analytics.js';
import { renderDatabases } from './databases.js';
import { renderKeys } from './keys.js';
import { renderSearch, resetPlayground } from './playground.js';

const VIEWS = { account: renderAccount, keys: renderKeys, databases: renderDatabases, search: renderSearch, analytics: renderAnalytics };

// An API key handed over in the link (`make run` prints #/search?key=… for the demo): kept in memory until
// someone signs in, and taken out of the address bar at once. A fragment never reaches a server or a log.
let handedKey = null;

function takeHandedKey() {
  const key = new URLSearchParams(location.hash.split('?')[1] || '').get('key');
  if (!key) return;
  handedKey = key;
  history.replaceState(null, '', location.pathname + location.hash.split('?')[0]);
}

function signedOut(message) {
  store.token = null;
  store.apiKey = null; // the next person in this tab starts from an empty playground
  resetPlayground();
  resetAnalytics();
  for (const link of document.querySelectorAll('#nav a')) {
    link.classList.remove('active');
    link.removeAttribute('aria-current');
  }
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

async function route() {
  if (!store.token) return signedOut();
  if (handedKey) {
    store.apiKey = handedKey;
    handedKey = null;
    notice('The playground uses the API key from the link.', 'info');
  }
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1] || 'search';
  const render = VIEWS[name] || renderSearch;
  document.getElementById('nav').hidden = false;
  document.getElementById('sign-out').hidden = false;
  for (const link of document.querySelectorAll('#nav a')) {
    link.classList.toggle('active', link.dataset.view === name);
    if (link.dataset.view === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  try {
    const user = await api('GET', '/auth/profile');
    document.getElementById('who').textContent = user.email;
    await render();
  } catch (err) {
    if (store.token) notice(errorText(err));
  }
}

whenSessionEnds(signedOut);
takeHandedKey();
document.getElementById('sign-out').addEventListener('click', guarded(async () => {
  try {
    await api('POST', '/auth/logout');
  } finally {
    signedOut();
    notice('Signed out.', 'info');
  }
}));
window.addEventListener('hashchange', () => { notice(''); takeHandedKey(); route(); });
route();
