import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConsole, launchBrowser, hydrated } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startConsole();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function openPage(path = '/', viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  const response = await page.goto(server.base + path);
  return { page, response, errors, context };
}

test('the home page renders the shell with the demo badge', async () => {
  const { page, response, context } = await openPage('/');
  assert.equal(response.status(), 200);
  // The server-rendered document, before any script runs.
  assert.match(await response.text(), /<title>Clusters · Walden<\/title>/);
  // Then the live page, once hydrated: while the lazy page hydrates, the title is briefly empty.
  await hydrated(page);
  assert.equal(await page.title(), 'Clusters · Walden');
  assert.equal(await page.locator('h1').first().textContent(), 'Clusters');
  for (const label of ['Clusters', 'Restores', 'Audit', 'Settings']) {
    assert.ok(await page.getByRole('link', { name: label, exact: true }).isVisible(), `${label} link`);
  }
  assert.ok(await page.locator('[data-test=demo-badge]').isVisible(), 'demo badge');
  // Signed out: an invitation to sign in, no cluster data.
  assert.ok(await page.locator('[data-test=sign-in-needed]').isVisible(), 'sign-in prompt');
  await context.close();
});

test('the page hydrates and a server function round-trips from the browser', async () => {
  // The console's status is the settings page's System section (it left the home page).
  const { page, errors, context } = await openPage('/settings');
  await hydrated(page);
  const before = await page.locator('[data-test=checked-at]').textContent();
  const call = page.waitForResponse((r) => r.url().includes('/api/get_console_status'));
  await page.getByRole('button', { name: 'Check again' }).click();
  const response = await call;
  assert.equal(response.status(), 200);
  const body = await response.json();
  assert.equal(body.database_ok, true);
  await page.waitForFunction(
    (old) => document.querySelector('[data-test=checked-at]')?.textContent !== old,
    before,
  );
  assert.equal(await page.locator('[data-test=check-count]').textContent(), 'Checks from this page: 1');
  assert.equal(await page.locator('[data-test=database]').textContent(), 'reachable');
  assert.deepEqual(errors, [], 'no errors in the browser console');
  await context.close();
});

test('navigation happens in the browser without a full reload', async () => {
  const { page, context } = await openPage('/');
  await hydrated(page);
  await page.evaluate(() => { window.__sameDocument = true; });
  await page.getByRole('link', { name: 'Audit', exact: true }).click();
  await page.waitForURL('**/audit');
  assert.equal(await page.locator('h1').first().textContent(), 'Audit log');
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'client-side routing');
  assert.equal(await page.getByRole('link', { name: 'Audit', exact: true }).getAttribute('aria-current'), 'page');
  await context.close();
});

test('an unknown address shows the 404 page', async () => {
  const { page, response, context } = await openPage('/no/such/page');
  assert.equal(response.status(), 404);
  assert.ok(await page.locator('[data-test=not-found]').isVisible());
  assert.equal(await page.locator('h1').first().textContent(), 'Page not found');
  await context.close();
});

test('on a phone the navigation folds behind the Menu button', async () => {
  const { page, context } = await openPage('/', { width: 390, height: 844 });
  await hydrated(page);
  const nav = page.locator('#primary-nav');
  assert.equal(await nav.isVisible(), false, 'folded at first');
  const toggle = page.getByRole('button', { name: 'Menu' });
  assert.equal(await toggle.getAttribute('aria-expanded'), 'false');
  await toggle.click();
  assert.equal(await nav.isVisible(), true, 'open after a tap');
  assert.equal(await toggle.getAttribute('aria-expanded'), 'true');
  await context.close();
});
