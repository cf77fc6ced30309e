// Runs npm's node-vault client against a live keyward server, set up as for HashiCorp Vault
// with only the address changed. node-vault resolves only 200 and 204 (and any sys/health
// reply) and rejects every other status with the first entry of `errors` as the message, so
// each check below also pins the status codes and error texts that Vault returns.
//
// Environment:
//   VAULT_ADDR            server address, such as http://127.0.0.1:8200 (required)
//   VAULT_TOKEN           root token (required)
//   KEYWARD_DATA_DIR      dev data directory; its hsm-pin file is the unseal key
//   KEYWARD_TEST_PG_URL   postgresql://user:password@host:port/db for the database engine
//                         and lease checks; without it they are skipped, or fail under CI=true
//
// Prints one line per check and "N passed, N failed" last; exits 1 when a check failed.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const nodeVault = require('node-vault');

const address = process.env.VAULT_ADDR || '';
const rootToken = process.env.VAULT_TOKEN || '';
const dataDir = process.env.KEYWARD_DATA_DIR || '';
const pgUrl = process.env.KEYWARD_TEST_PG_URL || '';
const inCi = process.env.CI === 'true';

// A per-run prefix, so a rerun against the same server starts from empty paths.
const run = crypto.randomBytes(4).toString('hex');

const checks = [];
function check(name, body) {
  checks.push({ name, body });
}

class Skip extends Error {}

function rootClient(options = {}) {
  return nodeVault({ endpoint: address, token: rootToken, ...options });
}

// Awaits `promise`, which must reject with an ApiResponseError of `status`; returns the error.
async function rejectsWith(promise, status) {
  try {
    await promise;
  } catch (error) {
    assert.ok(error.response, `expected an HTTP error, got: ${error.message}`);
    assert.equal(error.response.statusCode, status, `status (message: ${error.message})`);
    return error;
  }
  assert.fail(`expected status ${status}, but the call succeeded`);
}

function requirePostgres() {
  if (pgUrl) return;
  if (inCi) assert.fail('KEYWARD_TEST_PG_URL is not set under CI=true');
  throw new Skip('KEYWARD_TEST_PG_URL is not set');
}

// --- KV v2 ---------------------------------------------------------------------------------

check('kv write and read', async () => {
  const vault = rootClient();
  const written = await vault.write(`secret/data/${run}/app`, { data: { user: 'a' } });
  assert.equal(written.data.version, 1);
  const read = await vault.read(`secret/data/${run}/app`);
  assert.deepEqual(read.data.data, { user: 'a' });
  assert.equal(read.data.metadata.version, 1);
  assert.equal(read.lease_id, '');
  assert.ok(read.request_id);
});

check('kv read by version', async () => {
  const vault = rootClient();
  await vault.write(`secret/data/${run}/versions`, { data: { n: '1' } });
  await vault.write(`secret/data/${run}/versions`, { data: { n: '2' } });
  const first = await vault.read(`secret/data/${run}/versions?version=1`);
  assert.deepEqual(first.data.data, { n: '1' });
  const latest = await vault.read(`secret/data/${run}/versions`);
  assert.deepEqual(latest.data.data, { n: '2' });
});

check('kv check-and-set conflict', async () => {
  const vault = rootClient();
  await vault.write(`secret/data/${run}/cas`, { options: { cas: 0 }, data: { a: '1' } });
  const error = await rejectsWith(
    vault.write(`secret/data/${run}/cas`, { options: { cas: 0 }, data: { a: '2' } }), 400);
  assert.match(error.message, /check-and-set/);
});

check('kv patch with merge-patch', async () => {
  const vault = rootClient();
  await vault.write(`secret/data/${run}/patch`, { data: { a: '1', b: '2' } });
  const patched = await vault.update(`secret/data/${run}/patch`, { data: { b: '3' } });
  assert.equal(patched.data.version, 2);
  const read = await vault.read(`secret/data/${run}/patch`);
  assert.deepEqual(read.data.data, { a: '1', b: '3' });
});

check('kv list with LIST', async () => {
  const vault = rootClient();
  await vault.write(`secret/data/${run}/list/one`, { data: { x: '1' } });
  await vault.write(`secret/data/${run}/list/dir/two`, { data: { x: '2' } });
  const listed = await vault.list(`secret/metadata/${run}/list`);
  assert.deepEqual(listed.data.keys.sort(), ['dir/', 'one']);
});

check('kv list with GET ?list=1', async () => {
  const vault = rootClient({ noCustomHTTPVerbs: true });
  const listed = await vault.list(`secret/metadata/${run}/list`);
  assert.deepEqual(listed.data.keys.sort(), ['dir/', 'one']);
});

check('kv missing secret is 404', async () => {
  const vault = rootClient();
  const error = await rejectsWith(vault.read(`secret/data/${run}/missing`), 404);
  assert.deepEqual(error.response.body, { errors: [] });
  await rejectsWith(vault.list(`secret/metadata/${run}/nothing-here`), 404);
});

check('kv soft delete and undelete', async () => {
  const vault = rootClient();
  await vault.write(`secret/data/${run}/deleted`, { data: { k: 'v' } });
  assert.equal(await vault.delete(`secret/data/${run}/deleted`), '');
  // Vault returns 404 for a read of a deleted version, with the metadata in the body.
  const error = await rejectsWith(vault.read(`secret/data/${run}/deleted`), 404);
  assert.notEqual(error.response.body.data.metadata.deletion_time, '');
  await vault.write(`secret/undelete/${run}/deleted`, { versions: [1] });
  const read = await vault.read(`secret/data/${run}/deleted`);
  assert.deepEqual(read.data.data, { k: 'v' });
});

check('kv delete versions', async () => {
  const vault = rootClient();
  await vault.write(`secret/data/${run}/delete-versions`, { data: { n: '1' } });
  await vault.write(`secret/data/${run}/delete-versions`, { data: { n: '2' } });
  await vault.write(`secret/delete/${run}/delete-versions`, { versions: [1] });
  const metadata = await vault.read(`secret/metadata/${run}/delete-versions`);
  assert.notEqual(metadata.data.versions['1'].deletion_time, '');
  assert.equal(metadata.data.versions['2'].deletion_time, '');
});

check('kv destroy', async () => {
  const vault = rootClient();
  await vault.write(`secret/data/${run}/destroyed`, { data: { k: 'v' } });
  await vault.destroySecretVersions({ path: `${run}/destroyed`, versions: [1] });
  const metadata = await vault.read(`secret/metadata/${run}/destroyed`);
  assert.equal(metadata.data.versions['1'].destroyed, true);
  await rejectsWith(vault.read(`secret/data/${run}/destroyed?version=1`), 404);
});

check('kv metadata read, update, delete', async () => {
  const vault = rootClient();
  await vault.write(`secret/data/${run}/metadata`, { data: { k: 'v' } });
  const metadata = await vault.read(`secret/metadata/${run}/metadata`);
  assert.equal(metadata.data.current_version, 1);
  await vault.write(`secret/metadata/${run}/metadata`, { max_versions: 3, cas_required: true });
  const updated = await vault.read(`secret/metadata/${run}/metadata`);
  assert.equal(updated.data.max_versions, 3);
  assert.equal(updated.data.cas_required, true);
  await vault.delete(`secret/metadata/${run}/metadata`);
  await rejectsWith(vault.read(`secret/metadata/${run}/metadata`), 404);
});

// --- tokens --------------------------------------------------------------------------------

check('token create and lookup-self', async () => {
  const vault = rootClient();
  const created = await vault.tokenCreate({ policies: ['default'], ttl: '1h' });
  assert.equal(created.auth.renewable, true);
  assert.equal(created.auth.lease_duration, 3600);
  const child = rootClient({ token: created.auth.client_token });
  const self = await child.tokenLookupSelf();
  assert.deepEqual(self.data.policies, ['default']);
  assert.ok(self.data.ttl > 0, `ttl ${self.data.ttl}`);
  assert.ok(self.data.ttl <= 3600, `ttl ${self.data.ttl}`);
});

check('token renew-self', async () => {
  const vault = rootClient();
  const created = await vault.tokenCreate({ policies: ['default'], ttl: '10m' });
  const child = rootClient({ token: created.auth.client_token });
  const renewed = await child.tokenRenewSelf({ increment: '30m' });
  assert.equal(renewed.auth.client_token, created.auth.client_token);
  assert.equal(renewed.auth.lease_duration, 1800);
});

check('token revoke-self', async () => {
  const vault = rootClient();
  const created = await vault.tokenCreate({ policies: ['default'], ttl: '10m' });
  const child = rootClient({ token: created.auth.client_token });
  assert.equal(await child.tokenRevokeSelf(), '');
  const error = await rejectsWith(child.tokenLookupSelf(), 403);
  assert.equal(error.message, 'permission denied');
});

check('token lookup and revoke by root', async () => {
  const creator = rootClient();
  const created = await creator.tokenCreate({ policies: ['default'], ttl: '10m' });
  const token = created.auth.client_token;
  // node-vault switches a client to the token that tokenCreate returns.
  assert.equal(creator.token, token);
  const vault = rootClient();
  const looked = await vault.tokenLookup({ token });
  assert.equal(looked.data.id, token);
  await vault.tokenRevoke({ token });
  await rejectsWith(rootClient({ token }).tokenLookupSelf(), 403);
});

check('bad token is 403 permission denied', async () => {
  const vault = rootClient({ token: 'not-a-token' });
  const error = await rejectsWith(vault.read(`secret/data/${run}/app`), 403);
  assert.equal(error.message, 'permission denied');
});

// --- AppRole -------------------------------------------------------------------------------

check('approle role setup and login', async () => {
  const vault = rootClient();
  await vault.addPolicy({
    name: `reader-${run}`,
    rules: `path "secret/data/${run}/*" { capabilities = ["read"] }`,
  });
  const role = `app-${run}`;
  await vault.addApproleRole({ role_name: role, policies: `reader-${run}`,
                               token_ttl: 1200 });
  const roleId = (await vault.getApproleRoleId({ role_name: role })).data.role_id;
  const secretId = (await vault.getApproleRoleSecret({ role_name: role })).data.secret_id;

  const app = nodeVault({ endpoint: address });
  const login = await app.approleLogin({ role_id: roleId, secret_id: secretId });
  assert.equal(login.auth.lease_duration, 1200);
  assert.ok(login.auth.policies.includes(`reader-${run}`));
  assert.equal(app.token, login.auth.client_token, 'login sets the client token');
  const read = await app.read(`secret/data/${run}/app`);
  assert.deepEqual(read.data.data, { user: 'a' });
  await rejectsWith(app.write(`secret/data/${run}/app`, { data: { user: 'b' } }), 403);
  const wrong = nodeVault({ endpoint: address });
  await rejectsWith(wrong.approleLogin({ role_id: roleId, secret_id: crypto.randomUUID() }), 400);
});

// --- sys -----------------------------------------------------------------------------------

check('sys health, seal-status, init', async () => {
  const vault = rootClient();
  const health = await vault.health();
  assert.equal(health.initialized, true);
  assert.equal(health.sealed, false);
  assert.equal(health.standby, false);
  // node-vault resolves any sys/health reply, so a status code chosen by query is a body here.
  const chosen = await vault.health({ activecode: 299 });
  assert.equal(chosen.sealed, false);
  const status = await vault.status();
  assert.equal(status.sealed, false);
  assert.equal(status.initialized, true);
  assert.deepEqual(await vault.initialized(), { initialized: true });
});

check('sys seal and unseal', async () => {
  assert.ok(dataDir, 'KEYWARD_DATA_DIR is not set, so the unseal key (the HSM PIN) is unknown');
  const pin = fs.readFileSync(path.join(dataDir, 'hsm-pin'), 'ascii').trim();
  const vault = rootClient();
  assert.equal(await vault.seal(), '');
  assert.equal((await vault.status()).sealed, true);
  const sealedError = await rejectsWith(vault.read(`secret/data/${run}/app`), 503);
  assert.equal(sealedError.message, 'Vault is sealed');
  const health = await vault.health();
  assert.equal(health.sealed, true);
  const unsealed = await vault.unseal({ key: pin });
  assert.equal(unsealed.sealed, false);
  const read = await vault.read(`secret/data/${run}/app`);
  assert.deepEqual(read.data.data, { user: 'a' });
});

check('policy add, get, list, remove', async () => {
  const vault = rootClient();
  const name = `policy-${run}`;
  const rules = 'path "secret/data/x" {\n  capabilities = ["read"]\n}\n';
  await vault.addPolicy({ name, rules });
  assert.ok((await vault.policies()).policies.includes(name));
  assert.equal((await vault.getPolicy({ name })).rules, rules);
  await vault.removePolicy({ name });
  assert.ok(!(await vault.policies()).policies.includes(name));
});

// --- database credentials and leases -------------------------------------------------------

let databaseConfigured = false;

async function databaseCredentials() {
  requirePostgres();
  const vault = rootClient();
  if (!databaseConfigured) {
    const match = /^postgresql:\/\/([^:]+):([^@]+)@([^:/]+):(\d+)\//.exec(pgUrl);
    assert.ok(match, 'KEYWARD_TEST_PG_URL is not postgresql://user:password@host:port/db');
    const [, user, password, host, port] = match;
    await vault.write('database/config/pg', {
      plugin_name: 'postgresql-database-plugin',
      connection_url: `postgresql://{{username}}:{{password}}@${host}:${port}/postgres`,
      username: user,
      password,
      allowed_roles: `node-${run}`,
    });
    await vault.write(`database/roles/node-${run}`, {
      db_name: 'pg',
      creation_statements: [
        "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
      ],
      default_ttl: '1h',
      max_ttl: '24h',
    });
    databaseConfigured = true;
  }
  return vault.generateDatabaseCredentials({ databasePath: 'database', name: `node-${run}` });
}

check('database creds', async () => {
  const credentials = await databaseCredentials();
  assert.ok(credentials.data.username);
  assert.ok(credentials.data.password.length >= 20);
  assert.ok(credentials.lease_id.startsWith(`database/creds/node-${run}/`), credentials.lease_id);
  assert.equal(credentials.lease_duration, 3600);
  assert.equal(credentials.renewable, true);
});

check('lease lookup, renew, revoke', async () => {
  const vault = rootClient();
  const leaseId = (await databaseCredentials()).lease_id;
  const looked = await vault.write('sys/leases/lookup', { lease_id: leaseId });
  assert.equal(looked.data.id, leaseId);
  const listed = await vault.list(`sys/leases/lookup/database/creds/node-${run}/`);
  assert.ok(listed.data.keys.includes(leaseId.split('/').pop()));
  const renewed = await vault.renew({ lease_id: leaseId, increment: 7200 });
  assert.equal(renewed.lease_id, leaseId);
  assert.equal(renewed.lease_duration, 7200);
  assert.equal(await vault.revoke({ lease_id: leaseId }), '');
  const error = await rejectsWith(vault.write('sys/leases/lookup', { lease_id: leaseId }), 400);
  assert.equal(error.message, 'invalid lease');
});

check('lease revoke-prefix', async () => {
  const vault = rootClient();
  const leaseIds = [(await databaseCredentials()).lease_id, (await databaseCredentials()).lease_id];
  await vault.revokePrefix({ path_prefix: `database/creds/node-${run}` });
  for (const leaseId of leaseIds) {
    await rejectsWith(vault.write('sys/leases/lookup', { lease_id: leaseId }), 400);
  }
});

// --- HTTP details node-vault depends on ----------------------------------------------------

check('X-Vault-Request header accepted', async () => {
  const vault = rootClient();
  const read = await vault.read(`secret/data/${run}/app`,
                                { headers: { 'X-Vault-Request': 'true' } });
  assert.deepEqual(read.data.data, { user: 'a' });
});

check('PUT equals POST', async () => {
  const vault = rootClient();
  const written = await vault.request({ path: `/secret/data/${run}/put`, method: 'PUT',
                                        json: { data: { via: 'put' } } });
  assert.equal(written.data.version, 1);
  const read = await vault.read(`secret/data/${run}/put`);
  assert.deepEqual(read.data.data, { via: 'put' });
});

async function main() {
  if (!address || !rootToken) {
    console.error('test.js: set VAULT_ADDR and VAULT_TOKEN');
    console.log('0 passed, 1 failed');
    return 1;
  }
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const { name, body } of checks) {
    const started = Date.now();
    try {
      await body();
    } catch (error) {
      if (error instanceof Skip) {
        skipped += 1;
        console.log(`SKIP ${name}: ${error.message}`);
        continue;
      }
      failed += 1;
      console.log(`FAIL ${name}: ${error.message}`);
      if (error.response) console.log(`     response: ${JSON.stringify(error.response)}`);
      continue;
    }
    passed += 1;
    console.log(`ok   ${name} (${((Date.now() - started) / 1000).toFixed(2)}s)`);
  }
  if (skipped) console.log(`${skipped} skipped`);
  console.log(`${passed} passed, ${failed} failed`);
  return failed ? 1 : 0;
}

main().then((code) => { process.exitCode = code; }, (error) => {
  console.log(`test.js: ${error.stack}`);
  console.log('0 passed, 1 failed');
  process.exitCode = 1;
});
