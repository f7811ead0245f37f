// Start the built console as a process on a free port with a temporary data dir, and open headless Chromium.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const root = resolve(import.meta.dirname, '..', '..');
export const walden = process.env.WALDEN_BIN ?? join(root, 'target', 'release', 'walden');
const siteRoot = process.env.WALDEN_SITE_ROOT ?? join(root, 'target', 'site');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** The setup token every console started here is given (web setup of the first admin needs it). */
export const SETUP_TOKEN = 'the end-to-end setup token';

/** Start `walden serve` on 127.0.0.1:0 and resolve once it logs its address. */
export async function startConsole(extraEnv = {}) {
  if (!existsSync(walden)) throw new Error(`${walden} not found: build with 'cargo leptos build --release --split' first`);
  const dataDir = mkdtempSync(join(tmpdir(), 'walden-e2e-'));
  const env = { ...process.env, WALDEN_SITE_ROOT: siteRoot, WALDEN_SETUP_TOKEN: SETUP_TOKEN, ...extraEnv };
  delete env.FLY_API_TOKEN; // demo mode: the built-in emulator
  const child = spawn(walden, ['serve', '--bind', '127.0.0.1:0', '--data-dir', dataDir], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  const base = await new Promise((resolveBase, reject) => {
    const timer = setTimeout(() => reject(new Error(`console did not start in 30 s:\n${log}`)), 30_000);
    child.stderr.on('data', (chunk) => {
      log += chunk;
      const m = log.match(/Walden is listening on (http:\/\/[0-9.:]+)/);
      if (m) { clearTimeout(timer); resolveBase(m[1]); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`console exited (${code}):\n${log}`)); });
  });
  return {
    base,
    log: () => log,
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/** Wait until the page has hydrated (the layout marks <main> once its first effect has run in the browser). */
export async function hydrated(page) {
  await page.waitForSelector('[data-hydrated="true"]', { state: 'attached', timeout: 20_000 });
}

/** A fresh browser context and page, with the page's uncaught errors collected (a test asserts there are none). */
export async function newPage(browser) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  return { context, page, errors };
}

/** Create the first admin through the setup link (only works while the console has no users); signs them in. */
export async function setUpFirstAdmin(page, base, name, password) {
  await page.goto(`${base}/setup?token=${encodeURIComponent(SETUP_TOKEN)}`);
  await hydrated(page);
  await page.fill('input[name=name]', name);
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]');
  await page.waitForSelector(`text=Welcome, ${name}`);
}
