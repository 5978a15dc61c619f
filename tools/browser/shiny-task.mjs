// Drives tests/testthat/shiny-app in headless Chromium:
//   node shiny-task.mjs <app url>
// Clicks "run" twice (the second invocation is queued), checks "ping"
// updates while the task runs, cancels the running task, checks the queued
// one then delivers its result, and saves a screenshot to
// $MIRAI_ARTIFACTS/shiny-task.png (a temporary directory by default).
// Prints one "ok: ..." line per check passed; exits non-zero on the first
// failure, or when the whole run exceeds its time limit.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const url = process.argv[2];
if (!url) {
  console.error('usage: node shiny-task.mjs <app url>');
  process.exit(2);
}
const STEP_MS = 30000;
const TOTAL_MS = 150000;

const artifacts = process.env.MIRAI_ARTIFACTS ||
  fs.mkdtempSync(path.join(os.tmpdir(), 'mirai-artifacts-'));
fs.mkdirSync(artifacts, { recursive: true });
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'mirai-chromium-'));

let context;
const cleanup = async () => {
  if (context) await context.close().catch(() => {});
  fs.rmSync(profile, { recursive: true, force: true });
};

// never outlive the time limit, whatever hangs
const watchdog = setTimeout(async () => {
  console.log(`FAIL: gave up after ${TOTAL_MS / 1000} s`);
  await cleanup();
  process.exit(3);
}, TOTAL_MS);

const text = (page, id) => page.locator(`#${id}`).innerText({ timeout: STEP_MS });

// Wait until output `id` shows `expected` (a string or a RegExp).
async function waitText(page, id, expected, what) {
  const matches = (t) => (expected instanceof RegExp ? expected.test(t) : t === expected);
  const deadline = Date.now() + STEP_MS;
  let last = '';
  while (Date.now() < deadline) {
    last = (await text(page, id)).trim();
    if (matches(last)) {
      console.log(`ok: ${what} (#${id} = "${last}")`);
      return last;
    }
    await page.waitForTimeout(100);
  }
  throw new Error(`${what}: #${id} is "${last}", expected ${expected}`);
}

async function check(cond, what) {
  if (!cond) throw new Error(what);
  console.log(`ok: ${what}`);
}

try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu',
      '--disable-background-networking', '--no-first-run'],
    timeout: STEP_MS,
    viewport: { width: 900, height: 500 },
  });
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  await page.goto(url, { timeout: STEP_MS });
  await page.waitForFunction(
    () => window.Shiny && window.Shiny.shinyapp && window.Shiny.shinyapp.isConnected(),
    null, { timeout: STEP_MS });
  console.log('ok: the app connected');
  await waitText(page, 'status', 'initial', 'the task starts idle');

  await page.click('#run');
  await waitText(page, 'status', 'running', 'the first invocation runs');
  await waitText(page, 'started', '1', 'the first invocation started');
  await page.click('#run');

  await page.click('#ping');
  await waitText(page, 'pong', 'pong 1', 'ping answers while the task runs');
  await page.click('#ping');
  await waitText(page, 'pong', 'pong 2', 'ping answers again');
  await check((await text(page, 'status')).trim() === 'running' &&
    (await text(page, 'started')).trim() === '1',
  'the task is still running, the second invocation still queued');

  await page.click('#cancel');
  await waitText(page, 'rejections', '20 | Operation canceled', 'the cancelled task was rejected');
  await waitText(page, 'started', '2', 'the queued invocation started');
  await waitText(page, 'result', 'done 2', 'the queued invocation delivered its result');
  await waitText(page, 'status', 'success', 'the task ended in success');

  const shot = path.join(artifacts, 'shiny-task.png');
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);
  clearTimeout(watchdog);
  await cleanup();
  console.log('PASS');
} catch (e) {
  console.log(`FAIL: ${e.message.split('\n')[0]}`);
  clearTimeout(watchdog);
  await cleanup();
  process.exit(1);
}
