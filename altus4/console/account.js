// The account page: profile, password, the first API key, and deleting the account.
import { api, el, endSession, formValues, guarded, notice, secretBox, show, store, when } from './core.js';

export async function renderAccount() {
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
    endSession();
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

