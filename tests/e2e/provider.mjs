// A real OpenID provider (oidc-provider) for devicepass's end-to-end test.
// Test-only: fixed accounts, the library's development login pages, a
// fresh signing key each start, and a control endpoint that makes the
// token endpoint hand devicepass damaged ID tokens.
//
// Environment:
//   OP_PORT             port on 127.0.0.1 (0 or unset: any free port)
//   DP_URL              devicepass's public URL (required)
//   DP_CLIENT_SECRET    client secret of `devicepass`
//   DP_API_AUDIENCE     audience of the `automation` client's access tokens
//
// Test-only endpoints beside the provider's own:
//   POST /__test/tamper       {"mode": "none"|"bad-signature"|"wrong-audience"|"expired"}
//   GET  /__test/backchannel  back-channel logouts delivered and failed
//   GET  /__test/callback     redirect URI of the `automation` client
//
// Prints `ready <issuer>` once it listens.

import http from 'node:http';

import { SignJWT, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair } from 'jose';
import Provider, { errors } from 'oidc-provider';

const HOST = '127.0.0.1';
const port = Number(process.env.OP_PORT || 0);
const dpUrl = (process.env.DP_URL || '').replace(/\/+$/, '');
const clientSecret = process.env.DP_CLIENT_SECRET || 'devicepass-test-secret';
const apiAudience = process.env.DP_API_AUDIENCE || 'http://127.0.0.1/devicepass-api';
const API_SCOPE = 'devicepass:tokens';
const TAMPER_MODES = new Set(['none', 'bad-signature', 'wrong-audience', 'expired']);

if (!dpUrl) {
  console.error('provider: DP_URL must be set to devicepass\'s public URL');
  process.exit(2);
}

const ACCOUNTS = {
  alice: {
    email: 'alice@example.org',
    name: 'Alice Example',
    groups: ['devicepass-users', 'devicepass-admins'],
  },
  bob: { email: 'bob@example.org', name: 'Bob Example', groups: ['devicepass-users'] },
  eve: { email: 'eve@example.org', name: 'Eve Example', groups: [] },
};

function claimsOf(id) {
  const a = ACCOUNTS[id];
  return {
    sub: id,
    email: a.email,
    email_verified: true,
    preferred_username: id,
    name: a.name,
    groups: a.groups,
  };
}

async function signingKey() {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid: 'e2e-rs256', alg: 'RS256', use: 'sig' };
  return { privateKey, jwk };
}

// Damage an ID token the way the current tamper mode says.
async function tamper(idToken, mode, privateKey) {
  if (mode === 'bad-signature') {
    const [head, body, sig] = idToken.split('.');
    const bytes = Buffer.from(sig, 'base64url');
    for (let i = 0; i < 8; i += 1) bytes[i] ^= 0xff;
    return `${head}.${body}.${bytes.toString('base64url')}`;
  }
  const header = decodeProtectedHeader(idToken);
  const claims = decodeJwt(idToken);
  const now = Math.floor(Date.now() / 1000);
  if (mode === 'wrong-audience') claims.aud = 'someone-else';
  if (mode === 'expired') Object.assign(claims, { iat: now - 7200, exp: now - 3600 });
  return new SignJWT(claims).setProtectedHeader(header).sign(privateKey);
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
}

function configuration(issuer, jwk) {
  return {
    jwks: { keys: [jwk] },
    cookies: { keys: ['e2e-cookie-key-not-secret'] },
    findAccount: (_ctx, id) => ACCOUNTS[id] && {
      accountId: id,
      claims: async () => claimsOf(id),
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups', API_SCOPE],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['preferred_username', 'name'],
      groups: ['groups'],
    },
    // Scope claims go into the ID token too, as many providers do.
    conformIdTokenClaims: false,
    clients: [
      {
        client_id: 'devicepass',
        client_secret: clientSecret,
        redirect_uris: [`${dpUrl}/login`],
        post_logout_redirect_uris: [`${dpUrl}/`],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        backchannel_logout_uri: `${dpUrl}/api/logout-backchannel`,
        backchannel_logout_session_required: true,
      },
      {
        client_id: 'automation',
        token_endpoint_auth_method: 'none',
        redirect_uris: [`${issuer}/__test/callback`],
        grant_types: ['authorization_code'],
        response_types: ['code'],
      },
    ],
    issueRefreshToken: async (_ctx, client) => client.clientId === 'devicepass',
    extraTokenClaims: async (_ctx, token) => {
      if (token.kind !== 'AccessToken' || !token.resourceServer) return undefined;
      const { preferred_username, email, groups } = claimsOf(token.accountId);
      return { preferred_username, email, groups };
    },
    features: {
      devInteractions: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource) => {
          if (resource !== apiAudience) throw new errors.InvalidTarget();
          return {
            scope: API_SCOPE,
            audience: apiAudience,
            accessTokenFormat: 'jwt',
            accessTokenTTL: 600,
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    // The library refuses to call special-use addresses (SSRF protection);
    // devicepass's back-channel logout endpoint is on loopback here.
    fetch: (url, { dispatcher, ...options }) => globalThis.fetch(url, options),
  };
}

async function main() {
  const { privateKey, jwk } = await signingKey();
  const server = http.createServer();
  await new Promise((resolve) => server.listen(port, HOST, resolve));
  const issuer = `http://${HOST}:${server.address().port}`;
  const provider = new Provider(issuer, configuration(issuer, jwk));
  let tamperMode = 'none';
  const backchannel = { delivered: 0, failed: [] };

  provider.use(async (ctx, next) => {
    if (ctx.path === '/__test/tamper' && ctx.method === 'POST') {
      const { mode } = await readJson(ctx.req).catch(() => ({}));
      if (!TAMPER_MODES.has(mode)) {
        ctx.throw(400, `mode must be one of ${[...TAMPER_MODES].join(', ')}`);
      }
      tamperMode = mode;
      console.error(`provider: tamper mode ${mode}`);
      ctx.body = { mode };
      return;
    }
    if (ctx.path === '/__test/backchannel') {
      ctx.body = backchannel;
      return;
    }
    if (ctx.path === '/__test/callback') {
      ctx.type = 'text/plain';
      ctx.body = 'authorization response received';
      return;
    }
    await next();
    const body = ctx.body;
    if (ctx.path === '/token' && tamperMode !== 'none' && body?.id_token
        && ctx.oidc?.client?.clientId === 'devicepass') {
      ctx.body = { ...body, id_token: await tamper(body.id_token, tamperMode, privateKey) };
    }
  });

  provider.on('backchannel.success', () => { backchannel.delivered += 1; });
  provider.on('backchannel.error', (_ctx, err, client) => {
    const failure = `back-channel logout to ${client.clientId} failed: ${err.message}`;
    backchannel.failed.push(failure);
    console.error(`provider: ${failure}`);
  });
  provider.on('server_error', (_ctx, err) => console.error('provider: server error', err));

  server.on('request', provider.callback());
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  console.log(`ready ${issuer}`);
}

main().catch((err) => {
  console.error('provider: failed to start:', err);
  process.exit(1);
});
