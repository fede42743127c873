// Every method of the official Altus 4 SDK (@altus4/sdk 0.2.0, built from its source) against a running
// Altus 4, plus search with an API key through the SDK's own HTTP client. Prints one JSON line per call and
// exits 1 if any call that should succeed did not (or one that should fail did not fail as expected).
//
// usage: node check_sdk.js <built SDK dir> <service base URL> <connection JSON>
'use strict';

// The SDK shares its login token between its services only through `window` (a browser page's global);
// in Node each service would keep its own. Give Node the page global a browser has (a defect of the SDK
// against the original service too; see the README).
globalThis.window = globalThis;

const [sdkDir, base, connectionJson] = process.argv.slice(2);
const { Altus4SDK, BaseClient } = require(sdkDir);

const failures = [];
const report = (name, ok, detail) => {
  process.stdout.write(JSON.stringify({ name, ok, detail }) + '\n');
  if (!ok) failures.push(name);
};

async function expectOk(name, call, check = () => true) {
  try {
    const result = await call();
    const ok = result && result.success !== false && check(result);
    report(name, Boolean(ok), ok ? undefined : result);
    return result;
  } catch (error) {
    report(name, false, String(error && error.stack ? error.stack : error));
    return undefined;
  }
}

async function expectError(name, call, code) {
  const result = await call();
  report(name, result.success === false && result.error.code === code, result.error);
}

// Search is not one of the SDK's services: an application uses its exported BaseClient with an API key,
// which replaces the signed-in user's token for these calls.
class SearchClient extends BaseClient {
  constructor(config, apiKey) {
    super(config);
    this.apiKey = apiKey;
  }
  getToken() {
    return this.apiKey;
  }
  search(body) {
    return this.request('/search', { method: 'POST', data: body });
  }
  suggestions(params) {
    return this.request('/search/suggestions', { params });
  }
  analyze(body) {
    return this.request('/search/analyze', { method: 'POST', data: body });
  }
  history(params) {
    return this.request('/search/history', { params });
  }
  trends() {
    return this.request('/search/trends');
  }
}

async function main() {
  const config = { baseURL: `${base}/api/v1`, timeout: 20000 };
  const sdk = new Altus4SDK(config);
  const email = `sdk-${Date.now()}-${Math.random().toString(16).slice(2, 8)}@example.com`;
  const password = 'an sdk password 42';

  await expectOk('management.testConnection', () => sdk.management.testConnection());
  await expectOk('auth.handleRegister', () => sdk.auth.handleRegister({ email, password, name: 'SDK User' }));
  report('sdk.isAuthenticated', sdk.isAuthenticated());
  await expectOk('auth.getCurrentUser', () => sdk.auth.getCurrentUser(), r => r.user.email === email);
  await expectOk('auth.updateProfile', () => sdk.auth.updateProfile({ name: 'SDK User 2' }));
  report('auth.isAdmin', (await sdk.auth.isAdmin()) === false);
  await expectOk('management.getSystemStatus', () => sdk.management.getSystemStatus(),
    r => ['healthy', 'degraded'].includes(r.data.status) && r.data.services.length === 3);
  await expectOk('management.getSystemHealth', () => sdk.management.getSystemHealth());
  await expectOk('management.getMetrics', () => sdk.management.getMetrics(), r => r.data.requests > 0);
  await expectOk('management.getMigrationStatus', () => sdk.management.getMigrationStatus(),
    r => r.data.hasMigrated === false);
  const initial = await expectOk('management.setupInitialApiKey', () => sdk.management.setupInitialApiKey(),
    r => r.data.secretKey.startsWith('altus4_sk_'));
  await expectError('management.setup (a key exists)', () => sdk.management.setup({}), 'API_KEY_EXISTS');

  const created = await expectOk('apiKeys.createApiKey', () => sdk.apiKeys.createApiKey({
    name: 'sdk key', environment: 'test', permissions: ['search', 'analytics'], rateLimitTier: 'free',
  }));
  const keyId = created.data.apiKey.id;
  await expectOk('apiKeys.listApiKeys', () => sdk.apiKeys.listApiKeys());
  // the SDK types this (and updateApiKey) as a bare ApiKey; the original's PUT answers {apiKey}, and GET, which
  // the original lacks, answers the same way here
  await expectOk('apiKeys.getApiKey', () => sdk.apiKeys.getApiKey(keyId), r => r.data.apiKey.id === keyId);
  await expectOk('apiKeys.updateApiKey', () => sdk.apiKeys.updateApiKey(keyId, { name: 'sdk key renamed' }));
  await expectOk('apiKeys.getApiKeyUsage', () => sdk.apiKeys.getApiKeyUsage(keyId));
  const regenerated = await expectOk('apiKeys.regenerateApiKey', () => sdk.apiKeys.regenerateApiKey(keyId),
    r => r.data.secretKey.startsWith('altus4_sk_test_'));
  await expectOk('apiKeys.revokeApiKey', () => sdk.apiKeys.revokeApiKey(initial.data.apiKey.id));

  const connection = JSON.parse(connectionJson);
  const added = await expectOk('database.addDatabaseConnection', () => sdk.database.addDatabaseConnection(connection));
  const connId = added.data.id;
  await expectOk('database.listDatabaseConnections', () => sdk.database.listDatabaseConnections());
  await expectOk('database.getDatabaseConnection', () => sdk.database.getDatabaseConnection(connId));
  await expectOk('database.updateDatabaseConnection',
    () => sdk.database.updateDatabaseConnection(connId, { name: 'sdk shop' }));
  await expectOk('database.testDatabaseConnection', () => sdk.database.testDatabaseConnection(connId),
    r => r.data.connected === true);
  await expectOk('database.getDatabaseSchema', () => sdk.database.getDatabaseSchema(connId),
    r => r.data.some(t => t.table === 'kb'));

  const search = new SearchClient(config, regenerated.data.secretKey);
  await expectOk('search (natural)', () => search.search({ query: 'gevent workers', databases: [connId] }),
    r => r.data.totalCount > 0 && new Set(r.data.results.map(x => x.id)).size === r.data.results.length);
  await expectOk('search (boolean, tables)', () => search.search({
    query: '+mysql -redis', searchMode: 'boolean', databases: [connId], tables: ['kb'], includeAnalytics: true,
  }), r => r.data.results.every(x => x.table === 'kb'));
  // axios sends arrays in the bracket form (tables[]=kb); a filter must apply, not be dropped
  await expectOk('search.suggestions (tables[])', () => search.suggestions({ query: 'gev', tables: ['nope'] }),
    r => r.data.suggestions.every(s => s.source !== 'completion'));
  await expectOk('search.analyze', () => search.analyze({ query: 'gevent workers', databases: [connId] }));
  await expectOk('search.history', () => search.history({ limit: 10 }), r => r.data.length >= 2);
  await expectOk('search.trends', () => search.trends());

  await expectOk('analytics.getDashboardAnalytics', () => sdk.analytics.getDashboardAnalytics({ period: 'week' }));
  await expectOk('analytics.getTrends', () => sdk.analytics.getTrends({ period: 'week' }));
  await expectOk('analytics.getInsights', () => sdk.analytics.getInsights({ period: 'week' }));
  await expectOk('analytics.getPerformanceMetrics', () => sdk.analytics.getPerformanceMetrics({ period: 'week' }));
  await expectOk('analytics.getSearchHistory', () => sdk.analytics.getSearchHistory({ limit: 10 }),
    r => r.data.total >= 2);
  await expectOk('analytics.getUsageStats', () => sdk.analytics.getUsageStats('week'),
    r => r.data.totalRequests >= 5);

  // tokens: refresh, then a request still carrying the old token (another tab) succeeds within the grace
  const before = sdk.auth.getToken();
  report('auth.forceRefreshToken', await sdk.auth.forceRefreshToken());
  report('auth.restoreSession', await sdk.auth.restoreSession());
  report('auth.refreshTokenIfNeeded', (await sdk.auth.refreshTokenIfNeeded()) === false); // not expiring soon
  const otherTab = new SearchClient(config, before);
  await expectOk('old token within the refresh grace', () => otherTab.request('/auth/profile'));
  report('auth.initializeAuthState', await sdk.auth.initializeAuthState());
  report('auth.getAuthStatus', sdk.auth.getAuthStatus().isAuthenticated === true);

  await expectOk('database.removeDatabaseConnection', () => sdk.database.removeDatabaseConnection(connId));
  await expectOk('apiKeys.revokeApiKey (regenerated)', () => sdk.apiKeys.revokeApiKey(regenerated.data.apiKey.id));
  await expectOk('auth.handleLogout', () => sdk.auth.handleLogout());
  report('signed out', !sdk.isAuthenticated());
  await expectOk('auth.handleLogin', () => sdk.auth.handleLogin({ email, password }));
  await expectOk('auth.handleLogout (again)', () => sdk.auth.handleLogout());

  process.stdout.write(JSON.stringify({ failures }) + '\n');
  process.exit(failures.length ? 1 : 0);
}

main().catch(error => {
  process.stdout.write(JSON.stringify({ failures: ['crashed'], error: String(error.stack || error) }) + '\n');
  process.exit(1);
});
