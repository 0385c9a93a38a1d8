// How fast the page runs on its CPU backend with each of several builds of its module: the built
// dist/ is served with its alignlab.js and alignlab_bg.wasm swapped for those in each folder
// named (wasm-bindgen's output, optimised as wanted), in headless Chromium,
// and each run times the first pair, 20 gold labels, and reward-model steps; each figure is also
// given as a ratio to the first module's, measured in the same invocation (rounds interleaved).
// Usage: node tools/module_speed.mjs BASE_DIR OTHER_DIR [...]  (after trunk build --release)
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const root = resolve(new URL('..', import.meta.url).pathname);
const dist = join(root, 'dist');
const modules = process.argv.slice(2);
if (modules.length < 2) throw new Error('usage: node tools/module_speed.mjs BASE_DIR OTHER_DIR [...]');
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm' };
const ROUNDS = Number(process.env.ROUNDS || 2);
const RM_STEPS = 10;

let current = null;
const server = createServer(async (req, res) => {
  const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  const file = ['/alignlab_bg.wasm', '/alignlab.js'].includes(path) ? join(current, path) : join(dist, path === '/' ? 'index.html' : path);
  try {
    const bytes = await readFile(file);
    res.writeHead(200, { 'content-type': TYPES[extname(file)] || 'application/octet-stream' });
    res.end(bytes);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${server.address().port}/?backend=cpu`;
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });

async function measure(module) {
  current = module;
  const context = await browser.newContext();
  const page = await context.newPage();
  const opened = performance.now();
  await page.goto(url);
  await page.waitForFunction(() => window.alignlab?.state.pair, null, { timeout: 300_000 });
  const firstPair = performance.now() - opened;
  let started = performance.now();
  await page.click('#gold-label');
  await page.waitForFunction(() => window.alignlab.state.labels.length >= 20, null, { timeout: 300_000 });
  const goldLabels = performance.now() - started;
  await page.fill('#rm-steps', String(RM_STEPS));
  started = performance.now();
  await page.click('#train-rm');
  await page.waitForFunction(() => /done/.test(document.getElementById('rm-status').textContent), null, { timeout: 300_000 });
  const rmStep = (performance.now() - started) / RM_STEPS;
  await context.close();
  return { firstPair, goldLabels, rmStep };
}

const best = new Map(modules.map((m) => [m, null]));
for (let round = 0; round < ROUNDS; round += 1) {
  for (const module of modules) {
    const m = await measure(module);
    const b = best.get(module);
    best.set(module, b ? Object.fromEntries(Object.entries(m).map(([k, v]) => [k, Math.min(v, b[k])])) : m);
  }
}
const base = best.get(modules[0]);
for (const [module, m] of best) {
  const bytes = (await readFile(join(module, 'alignlab_bg.wasm'))).length;
  console.log(`${module} (${bytes.toLocaleString()} bytes): ${Object.entries(m).map(([k, v]) =>
    `${k} ${v.toFixed(0)} ms (×${(v / base[k]).toFixed(2)})`).join(', ')}`);
}
await browser.close();
server.close();
