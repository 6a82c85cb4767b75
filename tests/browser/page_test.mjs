// Drives the daemon's web page in a real headless Chromium, as a person
// would: opens the page with its token, pastes a share link and a folder
// into the form, submits, and waits until the content's row shows 100% and
// "seeding". Then it takes a full-page screenshot, checks that the page
// logged no error, prints one JSON line of what it saw and exits 0; any
// failure exits 1 with a message naming what was wrong. The browser is
// closed on every way out.
//
// Environment:
//   PAGE_URL  the page, with its token: http://127.0.0.1:PORT/#token=TOKEN
//   LINK      the share link to download
//   OUT_DIR   the folder to download into (absolute)
//   SHOT      where to write the screenshot (PNG)
//   CHROMIUM  the browser (default /usr/bin/chromium)
//   TIMEOUT_MS  how long the download may take once submitted (default
//               90000)
//
// tests/it_browser.c runs it with NODE_PATH pointing at the node_modules
// that `make browser-deps` installs; ES module imports ignore NODE_PATH,
// so puppeteer-core is loaded through require().

import { createRequire } from 'node:module';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);

const LAUNCH_TIMEOUT_MS = 30000;
const STEP_TIMEOUT_MS = 15000;

class TestFailure extends Error {}

function need(name) {
  const v = process.env[name];
  if (!v) {
    throw new TestFailure(`the environment variable ${name} is not set`);
  }
  return v;
}

function sel(testid) {
  return `[data-testid="${testid}"]`;
}

// What the page shows in the row of id (null when there is no such row).
function readRow(page, id) {
  return page.evaluate((rowId) => {
    const tr = Array.from(document.querySelectorAll('tr[data-id]')).find(
        (r) => r.getAttribute('data-id') === rowId);
    if (!tr) {
      return null;
    }
    const out = {};
    for (const td of tr.querySelectorAll('td[data-field]')) {
      out[td.getAttribute('data-field')] = td.textContent.trim();
    }
    delete out.actions;
    out.name = tr.querySelector('td[data-field="name"] > div').textContent.trim();
    out.state = tr.querySelector('td[data-field="state"]').dataset.value;
    out.percent = tr.querySelector('td[data-field="progress"] .percent')
                      .textContent.trim();
    return out;
  }, id);
}

// What the page says about itself: its connection, the token box, and
// every error line it shows. Attached to every failure.
function pageState(page) {
  return page.evaluate(() => {
    const text = (id) => {
      const e = document.querySelector(`[data-testid="${id}"]`);
      return e ? e.textContent.trim() : null;
    };
    return {
      conn: text('conn'),
      token_box: !document.querySelector('[data-testid="token-box"]').hidden,
      token_error: text('token-error'),
      add_error: text('add-error'),
      library_error: text('library-error'),
    };
  }).catch((e) => ({ unreadable: e.message }));
}

// Runs a wait; a timeout becomes a failure saying what was awaited and
// what the page showed instead.
async function step(page, what, promise) {
  try {
    return await promise;
  } catch (e) {
    if (e instanceof TestFailure) {
      throw e;
    }
    throw new TestFailure(`${what}: ${e.message}; the page shows ${
        JSON.stringify(await pageState(page))}`);
  }
}

async function run(browserRef) {
  const pageUrl = need('PAGE_URL');
  const link = need('LINK');
  const outDir = need('OUT_DIR');
  const shot = need('SHOT');
  const chromium = process.env.CHROMIUM || '/usr/bin/chromium';
  const timeoutMs = Number(process.env.TIMEOUT_MS || 90000);
  const started = Date.now();

  let puppeteer;
  try {
    puppeteer = require('puppeteer-core');
  } catch (e) {
    throw new TestFailure(`puppeteer-core cannot be loaded (run 'make ` +
                          `browser-deps'; NODE_PATH=${
                              process.env.NODE_PATH || ''}): ${e.message}`);
  }

  browserRef.profile = await mkdtemp(join(tmpdir(), 'shoal-chromium-'));
  browserRef.browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    // Over a pipe rather than a port: if this script dies, the browser
    // sees the pipe close and exits too.
    pipe: true,
    timeout: LAUNCH_TIMEOUT_MS,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
      '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync',
      `--user-data-dir=${browserRef.profile}`
    ],
  });
  const page = await browserRef.browser.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  await page.setViewport({ width: 1280, height: 800 });

  const consoleErrors = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') {
      const where = msg.location() && msg.location().url ?
          ` (${msg.location().url})` : '';
      consoleErrors.push(msg.text() + where);
    }
  });
  page.on('pageerror', (err) => consoleErrors.push('uncaught: ' + err.message));

  const response = await page.goto(pageUrl, { waitUntil: 'load' });
  if (!response || !response.ok()) {
    throw new TestFailure(`GET ${pageUrl.replace(/#.*/, '')}: ${
        response ? response.status() : 'no response'}`);
  }
  const csp = response.headers()['content-security-policy'] || null;

  // The page keeps the token for the tab and takes it out of the address.
  const tokenState = await page.evaluate(() => ({
    hash: location.hash,
    stored: sessionStorage.getItem('shoal.token') !== null,
  }));
  if (tokenState.hash !== '' || !tokenState.stored) {
    throw new TestFailure(`the page did not take the token from the address: ${
        JSON.stringify(tokenState)}`);
  }

  // The stream's hello fills the totals.
  await step(page, 'waiting for the event stream\'s hello (the totals)',
             page.waitForFunction(
                 () => document.querySelector(
                     '[data-testid="totals"] [data-field="contents"]')
                           .textContent.trim() !== '–'));

  await page.type(sel('add-link'), link);
  await page.type(sel('add-dir'), outDir);
  const added = page.waitForResponse(
      (r) => r.request().method() === 'POST' &&
             new URL(r.url()).pathname === '/v1/contents');
  await page.click(sel('add-submit'));
  const addReply = await step(page, 'waiting for the reply to POST /v1/contents', added);
  let content;
  try {
    content = await addReply.json();
  } catch (e) {
    throw new TestFailure(`POST /v1/contents answered ${
        addReply.status()} with a body that is not JSON`);
  }
  if (addReply.status() !== 201 || typeof content.id !== 'string') {
    const shown = await page.$eval(sel('add-error'), (e) => e.textContent);
    throw new TestFailure(`POST /v1/contents answered ${addReply.status()} ${
        JSON.stringify(content)}; the page shows: '${shown}'`);
  }
  const id = content.id;

  // The download has TIMEOUT_MS from its submission.
  try {
    await page.waitForFunction(
        (rowId) => {
          const tr = Array.from(document.querySelectorAll('tr[data-id]')).find(
              (r) => r.getAttribute('data-id') === rowId);
          if (!tr) {
            return false;
          }
          const pct = tr.querySelector('td[data-field="progress"]').textContent.trim();
          const state = tr.querySelector('td[data-field="state"]').dataset.value;
          return pct === '100%' && state === 'seeding';
        },
        { timeout: timeoutMs, polling: 250 }, id);
  } catch (e) {
    const row = await readRow(page, id);
    throw new TestFailure(`the row of ${id} did not reach 100% and seeding in ${
        timeoutMs} ms; it shows ${JSON.stringify(row)}, and the page ${
        JSON.stringify(await pageState(page))}`);
  }
  const row = await readRow(page, id);
  const totals = await page.$eval(
      sel('totals'), (e) => e.textContent.replace(/\s+/g, ' ').trim());
  const conn = await page.$eval(sel('conn'), (e) => e.textContent.trim());

  await page.screenshot({ path: shot, fullPage: true });

  if (consoleErrors.length > 0) {
    throw new TestFailure(`the page logged errors: ${JSON.stringify(consoleErrors)}`);
  }
  return {
    ok: true,
    id,
    row,
    totals,
    conn,
    csp,
    token_taken: true,
    console_errors: 0,
    screenshot: shot,
    ms: Date.now() - started,
  };
}

async function closeBrowser(ref) {
  if (ref.browser) {
    const b = ref.browser;
    ref.browser = null;
    await b.close().catch(() => {
      const proc = b.process();
      if (proc) {
        proc.kill('SIGKILL');
      }
    });
  }
  if (ref.profile) {
    await rm(ref.profile, { recursive: true, force: true }).catch(() => {});
    ref.profile = null;
  }
}

async function main() {
  const ref = { browser: null, profile: null };
  // Stopped by the test (SIGTERM) or by hand: the browser goes too.
  let stoppedBy = null;
  for (const sig of ['SIGTERM', 'SIGINT']) {
    process.on(sig, () => {
      stoppedBy = sig;
      process.stderr.write(`page_test: stopped by ${sig}\n`);
      closeBrowser(ref).finally(() => process.exit(1));
    });
  }
  let code = 0;
  try {
    const seen = await run(ref);
    process.stdout.write(JSON.stringify(seen) + '\n');
  } catch (e) {
    if (stoppedBy !== null) {
      return; /* the signal handler closes the browser and exits */
    }
    const msg = e instanceof TestFailure ? e.message : (e && e.stack) || String(e);
    process.stderr.write(`page_test: FAILED: ${msg}\n`);
    process.stdout.write(JSON.stringify({ ok: false, error: msg }) + '\n');
    code = 1;
  } finally {
    await closeBrowser(ref);
  }
  process.exit(code);
}

main();
