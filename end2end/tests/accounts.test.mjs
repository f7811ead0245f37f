// Accounts in a real browser: first admin through the setup link (not without its token), sign out, a failed sign-in, sign in, sign out.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConsole, launchBrowser, hydrated, newPage, setUpFirstAdmin } from './harness.mjs';

const PASSWORD = 'correct horse battery staple';
let server;
let browser;

before(async () => {
  // Plain http on 127.0.0.1: the session cookie must not be Secure here.
  server = await startConsole({ WALDEN_SECURE_COOKIES: 'false', FLY_API_TOKEN: undefined });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function open(page, path) {
  await page.goto(server.base + path);
  await hydrated(page);
}

test('set up, sign out, fail to sign in, sign in, see the shell, sign out', async () => {
  const { context, page, errors } = await newPage(browser);

  // Nobody yet: the login page points to setup.
  await open(page, '/login');
  assert.ok(await page.locator('[data-test=setup-hint]').isVisible(), 'setup hint');

  // Without the token of the setup link the server printed (security review H3), nobody becomes the first admin.
  await open(page, '/setup');
  await page.fill('input[name=token]', 'not the setup token');
  await page.fill('input[name=name]', 'intruder');
  await page.fill('input[name=password]', PASSWORD);
  await page.click('button[type=submit]');
  const refused = await page.waitForSelector('.form-error');
  assert.match(await refused.textContent(), /setup link is missing or not valid/);

  await setUpFirstAdmin(page, server.base, 'admin', PASSWORD);

  await open(page, '/');
  assert.equal(await page.locator('[data-test=current-user]').textContent(), 'admin');
  assert.ok(await page.getByRole('link', { name: 'Users', exact: true }).isVisible(), 'admins see Users');
  // Signed in, nothing tracked yet: the home page says where an admin tracks a cluster.
  const empty = page.locator('[data-test=no-tracked-clusters]');
  await empty.waitFor();
  assert.ok(await empty.locator('a[href="/settings/orgs"]').isVisible(), 'the hint links to Fly organizations');

  await open(page, '/account');
  await page.click('[data-test=logout]');
  await page.waitForSelector('text=You are not signed in');
  await open(page, '/');
  assert.ok(await page.getByRole('link', { name: 'Sign in', exact: true }).isVisible(), 'signed out');
  assert.ok(await page.locator('[data-test=sign-in-needed]').isVisible(), 'clusters need a sign-in');
  assert.equal(await page.locator('[data-test=cluster-row]').count(), 0);
  assert.equal(await page.locator('[data-test=current-user]').count(), 0);

  await open(page, '/login');
  await page.fill('input[name=name]', 'admin');
  await page.fill('input[name=password]', 'not the right password');
  await page.click('[data-test=login-submit]');
  const err = await page.waitForSelector('[data-test=login-error]');
  assert.match(await err.textContent(), /user name or password is not correct/);

  await page.fill('input[name=password]', PASSWORD);
  await page.click('[data-test=login-submit]');
  await page.waitForSelector('[data-test=login-ok]');
  await open(page, '/audit');
  assert.equal(await page.locator('[data-test=current-user]').textContent(), 'admin');
  await page.waitForSelector('[data-test=chain-status]');
  assert.match(await page.locator('[data-test=chain-status]').textContent(), /Chain verified through row \d+/);
  assert.ok(await page.locator('[data-test=audit-rows]').isVisible(), 'audit rows');

  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'walden_session');
  assert.ok(session, 'session cookie');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');

  assert.deepEqual(errors, []);
  await context.close();
});
