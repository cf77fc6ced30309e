// Verifies a JWT-SVID with the jose library, an ES256 implementation independent of keyward.
// Usage: node verify.mjs JWKS TOKEN AUDIENCE
// JWKS is a file path or an http:// URL on 127.0.0.1, localhost or [::1].
// Prints one JSON line {ok, sub, aud, exp, error}. Exits 0 when the token is valid for
// AUDIENCE, 1 when jose rejects it, and 2 on a usage error or when the JWKS cannot be read.
import { readFile } from 'node:fs/promises';
import { createLocalJWKSet, jwtVerify } from 'jose';

const loopbackHosts = new Set(['127.0.0.1', 'localhost', '[::1]']);

function print(result) {
  process.stdout.write(JSON.stringify(result) + '\n');
}

async function readJwks(source) {
  if (!/^https?:\/\//.test(source)) {
    return JSON.parse(await readFile(source, 'utf8'));
  }
  const url = new URL(source);
  if (!loopbackHosts.has(url.hostname)) {
    throw new Error(
      `JWKS URL host ${url.hostname} is not allowed: use 127.0.0.1, localhost or [::1]`);
  }
  const response = await fetch(url, { signal: AbortSignal.timeout(10000) });
  if (!response.ok) throw new Error(`GET ${source} returned HTTP ${response.status}`);
  return await response.json();
}

async function main() {
  const [source, token, audience] = process.argv.slice(2);
  if (source === undefined || token === undefined || audience === undefined) {
    print({ ok: false, error: 'usage: node verify.mjs JWKS TOKEN AUDIENCE' });
    return 2;
  }

  let jwks;
  try {
    jwks = createLocalJWKSet(await readJwks(source));
  } catch (error) {
    print({ ok: false, error: `cannot load the JWKS: ${error.message}` });
    return 2;
  }

  try {
    // jose applies no clock tolerance unless one is given, so exp is checked to the second.
    const { payload } = await jwtVerify(token, jwks, { algorithms: ['ES256'], audience });
    print({ ok: true, sub: payload.sub, aud: payload.aud, exp: payload.exp, error: null });
    return 0;
  } catch (error) {
    print({ ok: false, sub: null, aud: null, exp: null, error: `${error.code}: ${error.message}` });
    return 1;
  }
}

process.exitCode = await main();
