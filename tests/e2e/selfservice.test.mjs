// devicepass's self-service page and API end to end: headless Chromium
// signs in at a real OpenID provider (provider.mjs) and uses the page as
// a person would. Run by tests/integration/selfservice.rs, which starts
// both servers and sets DP_URL, OP_URL, DP_API_AUDIENCE and SCREENSHOT.

import assert from 'node:assert/strict';
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { before, test } from 'node:test';

import {
  DP_URL, OP_URL, SCREENSHOT, api, authStatus, backchannelLog, bearerToken,
  breakSignature, confirmProviderLogout, dateIn, navigate, providerLogin, setTamper, signIn,
  signedOut, withBrowser,
} from './harness.mjs';

const TIMEOUT = { timeout: 120_000 };

before(async () => {
  for (const url of [`${DP_URL}/healthz`, `${OP_URL}/.well-known/openid-configuration`]) {
    const reply = await fetch(url).catch((err) => ({ ok: false, status: err.cause?.code }));
    assert.ok(reply.ok, `${url} answers ${reply.status}: is the server running?`);
  }
  await setTamper('none');
  // Failure screenshots of an earlier run would mislead.
  const shots = path.dirname(SCREENSHOT);
  await mkdir(shots, { recursive: true });
  for (const name of await readdir(shots)) {
    if (name.startsWith('failure-')) await rm(path.join(shots, name));
  }
});

async function text(locator) {
  return locator.evaluate((el) => (el.value ?? el.textContent).trim());
}

async function assertErrorPage(page, response, title) {
  assert.equal(await page.locator('h1').innerText(), title);
  assert.equal(await page.locator('p.reason').count(), 1, 'p.reason on the error page');
  assert.ok((await text(page.locator('code.request-id'))).length > 0, 'a request id');
  return response.status();
}

test('the signed-out page links to sign-in', TIMEOUT, async () => {
  await withBrowser('signed-out', async (page) => {
    const response = await page.goto(`${DP_URL}/`);
    assert.equal(response.status(), 200);
    const link = page.locator('a#sign-in');
    assert.equal(await link.evaluate((a) => a.href), `${DP_URL}/login`);
  });
  const login = await fetch(`${DP_URL}/login`, { redirect: 'manual' });
  assert.ok([302, 303].includes(login.status), `GET /login answers ${login.status}`);
  assert.ok(login.headers.get('location').startsWith(`${OP_URL}/auth?`), 'to the provider');
});

test('a: sign in, create, use and delete a device password, sign out', TIMEOUT, async () => {
  await withBrowser('a', async (page, context) => {
    const signedIn = await signIn(page, 'alice');
    assert.equal(signedIn.status(), 200);
    assert.equal(page.url(), `${DP_URL}/`);
    assert.equal(await page.locator('h1').innerText(), 'Device passwords');

    await page.locator('#create #name').fill('Phone');
    await page.locator('#create #expires').fill(dateIn(30));
    const created = await navigate(
      page,
      () => page.getByRole('button', { name: 'Create password' }).click(),
    );
    assert.equal(created.status(), 200);
    assert.equal(await page.locator('section#created').count(), 1);
    const password = await text(page.locator('#new-password'));
    const login = await text(page.locator('#new-login'));
    assert.ok(password.length >= 12, 'a password is shown');
    assert.ok(login.length > 0, 'a login is shown');
    assert.equal(await page.locator('#copy-password').count(), 1);
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    // Reloading shows the list again; it does not post the form twice.
    await page.reload();
    assert.equal(page.url(), `${DP_URL}/`);
    assert.equal(await page.locator('section#created').count(), 0);
    assert.equal(await page.locator('tr[data-id]', { hasText: 'Phone' }).count(), 1);

    assert.equal(await authStatus(login, password), 200);
    assert.equal(await authStatus(login, `${password}x`), 401);

    const row = page.locator('table#tokens tr[data-id]', { hasText: 'Phone' });
    assert.equal(await row.count(), 1);
    await row.locator('summary', { hasText: 'Delete' }).click();
    await navigate(page, () => row.getByRole('button', { name: 'Confirm delete' }).click());
    assert.equal(await page.locator('tr[data-id]', { hasText: 'Phone' }).count(), 0);
    assert.equal(await authStatus(login, password), 401);

    const cookies = (await context.cookies(DP_URL))
      .map((c) => `${c.name}=${c.value}`).join('; ');
    assert.ok(cookies, 'devicepass set a session cookie');
    const signOut = page.locator('form#logout').getByRole('button', { name: 'Sign out' });
    await navigate(page, () => signOut.click());
    assert.ok(page.url().startsWith(`${OP_URL}/session/end`), 'to the provider\'s sign-out');
    await confirmProviderLogout(page);
    assert.ok(page.url().startsWith(DP_URL), `back at devicepass, not ${page.url()}`);
    assert.ok(await signedOut(page), '/ shows the sign-in link after signing out');

    const old = await fetch(`${DP_URL}/`, { headers: { cookie: cookies }, redirect: 'manual' });
    const oldPage = await old.text();
    assert.match(oldPage, /id="sign-in"/, 'the old session cookie no longer signs in');
    assert.doesNotMatch(oldPage, /csrf-token/);
    const oldApi = await fetch(`${DP_URL}/api/v1/tokens`, { headers: { cookie: cookies } });
    assert.equal(oldApi.status, 401);
  });
});

test('b: signing out at the provider ends the devicepass session', TIMEOUT, async () => {
  await withBrowser('b', async (page) => {
    await signIn(page, 'alice');
    assert.equal(await page.locator('form#logout').count(), 1, 'signed in');

    const before = await backchannelLog();
    await page.goto(`${OP_URL}/session/end`);
    const confirmed = await confirmProviderLogout(page);
    assert.ok(confirmed, 'the provider asked to confirm the sign-out');
    const after = await backchannelLog();
    assert.deepEqual(after.failed, before.failed, 'devicepass took the logout token');
    assert.equal(after.delivered, before.delivered + 1, 'one logout token sent');
    assert.ok(await signedOut(page), 'back-channel logout ended the session');
  });
});

test('c: a user outside the required group is refused', TIMEOUT, async (t) => {
  await withBrowser('c', async (page) => {
    const response = await signIn(page, 'eve');
    assert.equal(await assertErrorPage(page, response, 'Access refused'), 403);
    t.diagnostic(`reason: ${await page.locator('p.reason').innerText()}`);
    assert.ok(await signedOut(page), 'no session for a refused user');
  });
});

test('g: two tabs signing in at once do not undo each other', TIMEOUT, async () => {
  await withBrowser('g', async (page, context) => {
    const other = await context.newPage();
    await page.goto(`${DP_URL}/login`);
    await other.goto(`${DP_URL}/login`);
    assert.ok(page.url().startsWith(OP_URL) && other.url().startsWith(OP_URL), 'both at the provider');
    const first = await providerLogin(page, 'bob');
    assert.equal(first.status(), 200);
    assert.equal(page.url(), `${DP_URL}/`);
    assert.equal(await page.locator('form#logout').count(), 1, 'the first tab signed in');
    const second = await providerLogin(other, 'bob');
    assert.equal(second.status(), 200);
    assert.equal(await other.locator('form#logout').count(), 1, 'the second tab signed in');
  });
});

test('d: writes from the page need the CSRF token', TIMEOUT, async () => {
  await withBrowser('d', async (page) => {
    await signIn(page, 'bob');
    const post = (csrf) => page.evaluate(async (token) => {
      const headers = { 'content-type': 'application/json' };
      if (token) headers['x-csrf-token'] = token;
      const reply = await fetch('api/v1/tokens', {
        method: 'POST', headers, body: JSON.stringify({ name: 'x' }),
      });
      return reply.status;
    }, csrf);
    assert.equal(await post(null), 403, 'no X-CSRF-Token header');
    const csrf = await page.locator('meta[name="csrf-token"]').getAttribute('content');
    assert.ok(csrf, 'the page carries a CSRF token');
    assert.equal(await post(csrf), 201, 'with the X-CSRF-Token header');

    await page.reload();
    const removed = await page.evaluate(() => {
      const field = document.querySelector('form#create input[name="state"]');
      field?.remove();
      return Boolean(field);
    });
    assert.ok(removed, 'form#create has a hidden state field');
    await page.locator('#create #name').fill('no-state');
    const reply = await navigate(
      page,
      () => page.getByRole('button', { name: 'Create password' }).click(),
    );
    assert.equal(reply.status(), 403, 'the form without its state field');
  });
});

test('e: the bearer API', TIMEOUT, async () => {
  const alice = await bearerToken('alice');
  const bob = await bearerToken('bob');

  assert.equal((await api(alice, 'GET', '/api/v1/tokens')).status, 200);
  const noAuth = await fetch(`${DP_URL}/api/v1/tokens`);
  assert.equal(noAuth.status, 401, 'no credentials');
  const forged = await api(breakSignature(alice), 'GET', '/api/v1/tokens');
  assert.equal(forged.status, 401, 'altered signature');

  const created = await api(alice, 'POST', '/api/v1/tokens', { name: 'ci' });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const { id, login, password } = created.body;
  assert.ok(id && login && password, 'id, login and password in the answer');
  assert.equal(await authStatus(login, password), 200);

  const mine = await api(alice, 'GET', '/api/v1/tokens');
  assert.ok(mine.body.tokens.some((t) => t.id === id), 'listed for alice');

  const bobs = await api(bob, 'POST', '/api/v1/tokens', { name: 'bob-ci' });
  assert.equal(bobs.status, 201);
  const bobList = await api(bob, 'GET', '/api/v1/tokens');
  assert.ok(!bobList.body.tokens.some((t) => t.id === id), 'bob does not see alice\'s');
  const all = await api(alice, 'GET', '/api/v1/tokens?all=true');
  assert.equal(all.status, 200);
  const ids = all.body.tokens.map((t) => t.id);
  assert.ok(ids.includes(bobs.body.id) && ids.includes(id), 'an admin sees everyone\'s');

  assert.equal((await api(bob, 'DELETE', `/api/v1/tokens/${id}`)).status, 404);
  assert.equal(await authStatus(login, password), 200, 'bob could not delete it');
  assert.equal((await api(alice, 'DELETE', `/api/v1/tokens/${id}`)).status, 204);
  assert.equal(await authStatus(login, password), 401);
});

test('f: damaged ID tokens are refused', TIMEOUT, async (t) => {
  try {
    for (const mode of ['bad-signature', 'wrong-audience', 'expired']) {
      await t.test(mode, async (sub) => {
        await setTamper(mode);
        await withBrowser(`f-${mode}`, async (page) => {
          const response = await signIn(page, 'alice');
          const status = await assertErrorPage(page, response, 'Sign-in failed');
          sub.diagnostic(`status ${status}: ${await page.locator('p.reason').innerText()}`);
          assert.ok(
            (status >= 400 && status < 500) || status === 502,
            `status ${status} is a 4xx or 502`,
          );
          assert.ok(await signedOut(page), 'no session after a refused token');
        });
      });
    }
  } finally {
    await setTamper('none');
  }
});
