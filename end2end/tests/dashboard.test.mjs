// The dashboard in a real browser, in demo mode (issue #12): an admin tracks the demo cluster; the home page
// shows its row with the demo history's gap (red, with the alert above the table); the cluster page draws the
// timeline with its backups and the gap, details on hover, zoom, and a click inside a restorable window opens
// the restore link with that time. Screenshots go to end2end/test-results/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startConsole, launchBrowser, hydrated, newPage, setUpFirstAdmin } from './harness.mjs';

const PASSWORD = 'correct horse battery staple';
const shots = resolve(import.meta.dirname, '..', 'test-results');
let server;
let browser;

before(async () => {
  mkdirSync(shots, { recursive: true });
  server = await startConsole({ WALDEN_SECURE_COOKIES: 'false' });
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

test('track the demo cluster, see its health and its timeline, hover, zoom, click into a restore', async () => {
  const { page, errors } = await newPage(browser);
  await page.setViewportSize({ width: 1280, height: 900 });
  await setUpFirstAdmin(page, server.base, 'admin', PASSWORD);

  await open(page, '/settings/orgs');
  const demoRow = page.locator('[data-test=org][data-org=demo] [data-test=pg-apps] tr', { hasText: 'demo-db' });
  await demoRow.getByRole('button', { name: 'Track' }).click();
  await demoRow.getByRole('link', { name: 'Credentials' }).waitFor();

  // The cluster page: its first visit reads the bucket (capturing the credentials first, as the worker would).
  await open(page, '/clusters/demo/demo-db');
  await page.locator('[data-test=timeline-chart]').waitFor({ timeout: 60_000 });
  assert.ok((await page.locator('[data-test=backup-row]').count()) >= 5, 'the demo history\'s backups');
  assert.equal(await page.locator('[data-test=timeline-chart] [data-test=gap]').count(), 1, 'one hole');
  assert.match(await page.locator('[data-test=restorable]').textContent(), /restor/i);
  await page.screenshot({ path: join(shots, 'cluster-all.png'), fullPage: true });

  // Hover: the details line says what is under the pointer.
  await page.locator('[data-test=timeline-chart] [data-test=gap]').first().dispatchEvent('mouseenter');
  assert.match(await page.locator('[data-test=timeline-details]').textContent(), /hole on timeline/);

  // Zoom to the last 24 hours: the gap (10 days ago) leaves the chart, the windows stay.
  await page.click('[data-test=zoom-24h]');
  await page.waitForFunction(() => document.querySelectorAll('[data-test=timeline-chart] [data-test=gap]').length === 0);
  assert.ok((await page.locator('[data-test=timeline-chart] [data-test=window]').count()) >= 1);
  await page.screenshot({ path: join(shots, 'cluster-24h.png'), fullPage: true });

  // A click inside a restorable window opens the restore wizard with that time (RFC 3339, UTC); the whole
  // restore from there is restore.test.mjs's.
  const band = page.locator('[data-test=timeline-chart] [data-test=window] .tl-window-band').last();
  const box = await band.boundingBox();
  await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  await page.waitForURL(/\/clusters\/demo\/demo-db\/restore\?kind=time&target=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

  // The home page: the row, red for the gap, with its alert above the table.
  await open(page, '/');
  const row = page.locator('[data-test=cluster-row]');
  await row.first().waitFor();
  assert.equal(await row.getAttribute('data-health'), 'red');
  assert.ok(await page.locator('[data-test=alerts] [data-kind=backups_failing]').isVisible(), 'the alert');
  await page.screenshot({ path: join(shots, 'home.png'), fullPage: true });

  assert.deepEqual(errors, [], 'no uncaught errors in the page');
});
