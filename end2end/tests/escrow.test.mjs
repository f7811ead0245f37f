// Credential escrow in a real browser, in demo mode (issue #11): an admin adds a Fly organization with a pasted
// token and tracks the demo cluster; the credentials are captured and proven on its leader; a value is revealed
// with a reason (masked until Show, gone on Hide now); with two-person reveals on, an operator requests, the
// admin approves and the operator reveals once; the audit log shows each step.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConsole, launchBrowser, hydrated, newPage, setUpFirstAdmin } from './harness.mjs';

const PASSWORD = 'correct horse battery staple';
// The built-in emulator's organization token and the demo cluster's passwords (crates/flysim/src/demo.rs).
const DEMO_TOKEN = 'fm2_flysim_demo_org_token';
const SU_PASSWORD = 'demo-su-Zq81xKp2';
const REPL_PASSWORD = 'demo-repl-Lw73Hs0';
const CREDENTIALS = '/credentials/demo/demo-db';

let server;
let browser;

before(async () => {
  // Demo mode (no FLY_API_TOKEN, no master key): the console seals with its demo key. Plain http: no Secure cookie.
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

/** Open the reveal panel (its code is loaded when it is opened) and wait for its form. */
async function openRevealPanel(page) {
  await page.click('[data-test=open-reveal]');
  await page.waitForSelector('[data-test=reveal] form');
}

/** The revealed value: masked first, then shown; hidden again with "Hide now". */
async function readRevealedValue(page) {
  const revealed = page.locator('[data-test=revealed]');
  await revealed.waitFor();
  assert.equal(await revealed.locator('.secret-value').textContent(), '••••••••••••', 'masked until Show');
  await revealed.getByRole('button', { name: 'Show' }).click();
  const value = await revealed.locator('.secret-value').textContent();
  await revealed.getByRole('button', { name: 'Hide now' }).click();
  await revealed.waitFor({ state: 'detached' });
  return value;
}

test('add an org, track, capture, prove, reveal with a reason and with approval, and see it all audited', async () => {
  const admin = await newPage(browser);
  const page = admin.page;
  await setUpFirstAdmin(page, server.base, 'admin', PASSWORD);

  // Settings → Fly organizations: the demo org comes from the environment; a wrong token is refused, the
  // emulator's org token adds `personal`.
  await open(page, '/settings/orgs');
  await page.waitForSelector('[data-test=org][data-org=demo]');
  await page.click('[data-test=open-add-org]');
  const add = page.locator('[data-test=add-org]');
  await add.waitFor();
  await add.locator('input[name=slug]').fill('personal');
  await add.locator('input[name=token]').fill('fm2_not_a_token_fly_knows');
  await add.locator('button[type=submit]').click();
  assert.match(await add.locator('.form-error').textContent(), /token/i);
  await add.locator('input[name=slug]').fill('personal');
  await add.locator('input[name=token]').fill(DEMO_TOKEN);
  await add.locator('button[type=submit]').click();
  await add.locator('.form-ok').waitFor();
  await page.waitForSelector('[data-test=org][data-org=personal]');
  const html = await page.content();
  assert.ok(!html.includes(DEMO_TOKEN), 'the pasted token is not kept in the page');

  // Track the demo cluster.
  const demoRow = page.locator('[data-test=org][data-org=demo] [data-test=pg-apps] tr', { hasText: 'demo-db' });
  await demoRow.getByRole('button', { name: 'Track' }).click();
  await demoRow.getByRole('link', { name: 'Credentials' }).waitFor();

  // An operator, invited by the admin.
  await open(page, '/users');
  await page.selectOption('select[name=role] >> nth=-1', 'operator');
  await page.click('text=Make invitation link');
  const link = await page.locator('[data-test=invite-link] code').textContent();
  const operator = await newPage(browser);
  await operator.page.goto(server.base + link);
  await hydrated(operator.page);
  await operator.page.fill('input[name=name]', 'olive');
  await operator.page.fill('input[name=password]', PASSWORD);
  await operator.page.click('button[type=submit]');
  await operator.page.waitForSelector('text=Welcome, olive');

  // Capture and prove on the leader.
  await open(page, CREDENTIALS);
  await page.click('[data-test=capture]');
  assert.match(await page.locator('[data-test=escrow-actions] .form-ok').textContent(), /Captured version 1/);
  await page.locator('[data-test=versions] td', { hasText: 'read on the leader' }).waitFor();
  await page.click('[data-test=prove]');
  await page.waitForSelector('text=Every role opens with the kept passwords.');
  await page.locator('[data-test=proofs] .badge-ok').first().waitFor();
  assert.equal(await page.locator('[data-test=proofs] .badge-ok').count(), 3, 'flypgadmin, repluser and postgres proven');
  assert.ok(!(await page.content()).includes(SU_PASSWORD), 'no value in the page before a reveal');

  // Reveal with a reason: refused without one (the form requires it), shown masked, then gone.
  await openRevealPanel(page);
  await page.selectOption('[data-test=reveal] select[name=field]', 'SU_PASSWORD');
  await page.fill('[data-test=reveal] textarea[name=reason]', 'End-to-end test: restore rehearsal');
  await page.click('[data-test=reveal] button[type=submit]');
  assert.equal(await readRevealedValue(page), SU_PASSWORD);
  assert.ok(!(await page.content()).includes(SU_PASSWORD), 'the value leaves the page on Hide now');

  // Two-person reveals.
  await open(page, '/settings');
  await page.click('text=Require approval for reveals');
  await page.locator('[data-test=require-reveal-approval-state]', { hasText: 'Approval required.' }).waitFor();

  const op = operator.page;
  await op.goto(server.base + CREDENTIALS);
  await hydrated(op);
  await openRevealPanel(op);
  await op.selectOption('[data-test=reveal] select[name=field]', 'REPL_PASSWORD');
  await op.fill('[data-test=reveal] textarea[name=reason]', 'End-to-end test: rebuild the standby');
  await op.click('[data-test=reveal] button[type=submit]');
  await op.waitForSelector('text=another operator or admin must approve it');
  assert.equal(await op.locator('[data-test=requests] button', { hasText: 'Approve' }).count(), 0, 'nobody approves their own request');

  await open(page, CREDENTIALS);
  await openRevealPanel(page);
  await page.locator('[data-test=requests] button', { hasText: 'Approve' }).click();
  await page.locator('[data-test=requests] td', { hasText: 'approved by admin' }).waitFor();

  await op.goto(server.base + CREDENTIALS);
  await hydrated(op);
  await openRevealPanel(op);
  await op.locator('[data-test=requests] button', { hasText: 'Reveal now' }).click();
  assert.equal(await readRevealedValue(op), REPL_PASSWORD);

  // The audit log: every step, with the reasons, and the chain verified.
  await open(page, '/audit');
  await page.waitForSelector('[data-test=audit-rows]');
  const rows = await page.locator('[data-test=audit-rows] tbody').textContent();
  for (const action of ['org.add', 'cluster.track', 'escrow.capture', 'escrow.proof', 'escrow.reveal',
    'escrow.reveal_request', 'escrow.reveal_approve']) {
    assert.ok(rows.includes(action), `audit row ${action}`);
  }
  assert.ok(rows.includes('End-to-end test: restore rehearsal'), 'the reveal reason is audited');
  assert.ok(rows.includes('End-to-end test: rebuild the standby'), 'the request reason is audited');
  assert.match(await page.locator('[data-test=chain-status]').textContent(), /Chain verified/);

  assert.deepEqual(admin.errors, [], 'no uncaught errors in the admin page');
  assert.deepEqual(operator.errors, [], 'no uncaught errors in the operator page');
});
