// Two-factor sign-in in a real browser: enrol an authenticator app on /account, then sign in with and
// without a code. The codes are computed here from the secret the page shows (RFC 6238: SHA-1, 6 digits,
// 30-second steps), as an authenticator app would.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { startConsole, launchBrowser, hydrated, newPage, setUpFirstAdmin } from './harness.mjs';

const PASSWORD = 'correct horse battery staple';
let server;
let browser;

before(async () => {
  server = await startConsole({
    WALDEN_SECURE_COOKIES: 'false',
    // TOTP secrets are sealed at rest with the master key; without it two-factor sign-in is unavailable.
    WALDEN_MASTER_KEY: 'c0ffee'.repeat(10) + 'c0ff',
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

function base32Decode(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const ch of s.replace(/=+$/, '').toUpperCase()) {
    const v = alphabet.indexOf(ch);
    if (v < 0) throw new Error(`not base32: ${ch}`);
    bits += v.toString(2).padStart(5, '0');
  }
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

/** The code for the 30-second step that holds Unix time `seconds`. */
function totp(secret, seconds) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(seconds / 30)));
  const mac = createHmac('sha1', secret).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const n = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(n).padStart(6, '0');
}

async function open(page, path) {
  await page.goto(server.base + path);
  await hydrated(page);
}

async function signIn(page, code) {
  await open(page, '/login');
  await page.fill('input[name=name]', 'root');
  await page.fill('input[name=password]', PASSWORD);
  if (code !== undefined) await page.fill('input[name=code]', code);
  await page.click('[data-test=login-submit]');
  return Promise.race([
    page.waitForSelector('[data-test=login-ok]').then(() => 'ok'),
    page.waitForSelector('[data-test=login-error]').then((e) => e.textContent()),
  ]);
}

test('enrol an authenticator app, then sign-in needs its code; require it for admins', async () => {
  const { context, page, errors } = await newPage(browser);

  await setUpFirstAdmin(page, server.base, 'root', PASSWORD);

  await open(page, '/account');
  // Setting up (or replacing) an authenticator asks for the current password first.
  await page.fill('[data-test=totp-begin] input[name=current_password]', PASSWORD);
  await page.getByRole('button', { name: 'Set up an authenticator app' }).click();
  const shown = (await (await page.waitForSelector('[data-test=totp-secret]')).textContent()).trim();
  const secret = base32Decode(shown);
  assert.equal(secret.length, 20, '160-bit secret');

  // A wrong code does not turn it on.
  const totpPanel = page.locator('[data-test=totp]');
  const now = Date.now() / 1000;
  const valid = [now - 30, now, now + 30].map((t) => totp(secret, t));
  const wrong = ['000000', '111111', '222222', '333333'].find((c) => !valid.includes(c));
  await totpPanel.locator('input[name=code]').fill(wrong);
  await totpPanel.getByRole('button', { name: 'Confirm' }).click();
  await totpPanel.getByText('the code is not correct').waitFor();

  const confirmAt = Date.now() / 1000;
  const confirmCode = totp(secret, confirmAt);
  await totpPanel.locator('input[name=code]').fill(confirmCode);
  await totpPanel.getByRole('button', { name: 'Confirm' }).click();
  await page.waitForSelector('text=Two-factor sign-in is on.');

  await page.click('[data-test=logout]');
  await page.waitForSelector('text=You are not signed in');

  // Password alone is no longer enough; nor is a wrong code.
  assert.match(await signIn(page), /enter the code from your authenticator app/);
  assert.match(await signIn(page, '12345x'), /code is not correct/);
  // The code used to confirm cannot be replayed (while its step is still accepted).
  if (Date.now() / 1000 - confirmAt < 25) assert.match(await signIn(page, confirmCode), /code is not correct/);
  // The next step's code is accepted: one step of clock skew either way.
  assert.equal(await signIn(page, totp(secret, confirmAt + 30)), 'ok');
  await open(page, '/account');
  assert.match(await page.locator('[data-test=whoami]').textContent(), /Signed in as root/);

  // The secret is shown once, at enrolment: never again on the account page.
  assert.equal(await page.locator('[data-test=totp-secret]').count(), 0);
  assert.ok(!(await page.content()).includes(shown));

  // With an authenticator of their own, the admin can require one for every admin (Settings).
  await open(page, '/settings');
  const state = page.locator('[data-test=require-totp-state]');
  assert.equal(await state.textContent(), 'Not required.');
  await page.getByRole('button', { name: 'Require it for admins' }).click();
  await page.getByText('Required for admins.').waitFor();
  await open(page, '/settings');
  assert.equal(await state.textContent(), 'Required for admins.');

  assert.deepEqual(errors, []);
  await context.close();
});
