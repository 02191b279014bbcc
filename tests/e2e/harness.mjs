// What the self-service tests share: the addresses under test, headless
// Chromium with a throw-away profile, the provider's login pages, the
// `automation` client's token flow, and small HTTP helpers.

import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { chromium } from 'playwright-core';

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} must be set (see tests/integration/selfservice.rs)`);
  return value.replace(/\/+$/, '');
}

export const DP_URL = required('DP_URL');
export const OP_URL = required('OP_URL');
export const API_AUDIENCE = process.env.DP_API_AUDIENCE || 'http://127.0.0.1/devicepass-api';
export const SCREENSHOT = process.env.SCREENSHOT || path.resolve('../../target/e2e/page.png');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const API_SCOPE = 'devicepass:tokens';
const CALLBACK = `${OP_URL}/__test/callback`;

// Without the background-networking flags Chromium keeps calling home,
// which on a closed network means a flood of failing connections.
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** A page in a fresh Chromium profile; anything off loopback is refused. */
export async function withBrowser(label, fn) {
  const profile = await mkdtemp(path.join(tmpdir(), 'devicepass-e2e-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
  });
  context.setDefaultTimeout(15_000);
  await context.route(
    (url) => url.hostname !== '127.0.0.1',
    (route) => route.abort('blockedbyclient'),
  );
  const page = context.pages()[0] ?? await context.newPage();
  try {
    return await fn(page, context);
  } catch (err) {
    throw await explain(err, page, label);
  } finally {
    await context.close().catch(() => {});
    await rm(profile, { recursive: true, force: true });
  }
}

// Add where the browser was and what it showed to a failure.
async function explain(err, page, label) {
  const shot = path.join(path.dirname(SCREENSHOT), `failure-${label}.png`);
  let seen = '';
  try {
    await mkdir(path.dirname(shot), { recursive: true });
    await page.screenshot({ path: shot, fullPage: true });
    const text = (await page.locator('body').innerText({ timeout: 2_000 })).slice(0, 600);
    seen = `\n  at ${page.url()}\n  screenshot ${shot}\n  page text: ${text.replace(/\s+/g, ' ')}`;
  } catch {
    seen = `\n  at ${page.url()} (no screenshot)`;
  }
  err.message = `${err.message}${seen}`;
  return err;
}

/** Run `action` (a click) and wait for the navigation it starts. */
export async function navigate(page, action) {
  const [response] = await Promise.all([page.waitForNavigation(), action()]);
  return response;
}

/**
 * Get through the provider's pages (login, then consent) as `account`;
 * returns the response of the page the provider finally sends back to.
 */
export async function providerLogin(page, account, response = null) {
  const interacting = () => page.url().startsWith(`${OP_URL}/interaction/`);
  for (let step = 0; step < 4 && interacting(); step += 1) {
    const login = page.locator('input[name="login"]');
    const consent = page.locator('form:has(input[name="prompt"][value="consent"]) button');
    if (await login.count()) {
      await login.fill(account);
      await page.locator('input[name="password"]').fill('any password');
      response = await navigate(page, () => page.getByRole('button', { name: 'Sign-in' }).click());
    } else if (await consent.count()) {
      response = await navigate(page, () => consent.click());
    } else {
      throw new Error(`unexpected provider page ${page.url()}`);
    }
  }
  if (interacting()) throw new Error('still at the provider\'s pages after 4 steps');
  return response;
}

/** Sign in on devicepass through its "Sign in" link; the final response. */
export async function signIn(page, account) {
  await page.goto(`${DP_URL}/`);
  const response = await navigate(page, () => page.locator('a#sign-in').click());
  return providerLogin(page, account, response);
}

/** Confirm the provider's sign-out question, when it asks one. */
export async function confirmProviderLogout(page) {
  const yes = page.getByRole('button', { name: 'Yes, sign me out' });
  if (page.url().startsWith(OP_URL) && await yes.count()) {
    return navigate(page, () => yes.click());
  }
  return null;
}

/** Whether devicepass's `/` shows the signed-out page. */
export async function signedOut(page) {
  await page.goto(`${DP_URL}/`);
  return (await page.locator('a#sign-in').count()) === 1;
}

/** An access token for the API, for `account`, via the `automation` client. */
export async function bearerToken(account) {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const state = randomBytes(8).toString('hex');
  const authorize = new URL(`${OP_URL}/auth`);
  for (const [k, v] of Object.entries({
    client_id: 'automation', response_type: 'code', redirect_uri: CALLBACK,
    scope: `openid ${API_SCOPE}`, resource: API_AUDIENCE, state,
    code_challenge: challenge, code_challenge_method: 'S256',
  })) authorize.searchParams.set(k, v);

  const code = await withBrowser(`bearer-${account}`, async (page) => {
    await page.goto(authorize.href);
    await providerLogin(page, account);
    const back = new URL(page.url());
    if (`${back.origin}${back.pathname}` !== CALLBACK) throw new Error('no authorization response');
    if (back.searchParams.get('state') !== state) throw new Error('state differs');
    return back.searchParams.get('code');
  });

  const reply = await fetch(`${OP_URL}/token`, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'authorization_code', code, redirect_uri: CALLBACK,
      client_id: 'automation', code_verifier: verifier, resource: API_AUDIENCE,
    }),
  });
  const body = await reply.json();
  if (!reply.ok) throw new Error(`token endpoint: ${reply.status} ${JSON.stringify(body)}`);
  return body.access_token;
}

/** Make the provider damage devicepass's next ID tokens (`none`: stop). */
export async function setTamper(mode) {
  const reply = await fetch(`${OP_URL}/__test/tamper`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ mode }),
  });
  if (!reply.ok) throw new Error(`tamper ${mode}: ${reply.status}`);
}

/** Back-channel logouts the provider has sent: { delivered, failed }. */
export async function backchannelLog() {
  return (await fetch(`${OP_URL}/__test/backchannel`)).json();
}

/** Status of `GET /auth` with HTTP Basic credentials. */
export async function authStatus(login, password) {
  const basic = Buffer.from(`${login}:${password}`).toString('base64');
  const reply = await fetch(`${DP_URL}/auth`, { headers: { authorization: `Basic ${basic}` } });
  return reply.status;
}

/** A devicepass API call with a bearer token: { status, body }. */
export async function api(token, method, route, json) {
  const headers = { authorization: `Bearer ${token}` };
  if (json !== undefined) headers['content-type'] = 'application/json';
  const reply = await fetch(`${DP_URL}${route}`, {
    method, headers, body: json === undefined ? undefined : JSON.stringify(json),
  });
  const text = await reply.text();
  let body = text;
  try { body = text ? JSON.parse(text) : null; } catch { /* not JSON: keep the text */ }
  return { status: reply.status, body };
}

/** A date `days` from today, as an `<input type=date>` value. */
export function dateIn(days) {
  return new Date(Date.now() + days * 86_400_000).toISOString().slice(0, 10);
}

/** A JWT with its signature's first bytes flipped. */
export function breakSignature(jwt) {
  const [head, body, sig] = jwt.split('.');
  const bytes = Buffer.from(sig, 'base64url');
  for (let i = 0; i < 8; i += 1) bytes[i] ^= 0xff;
  return `${head}.${body}.${bytes.toString('base64url')}`;
}
