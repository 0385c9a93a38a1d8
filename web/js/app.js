// The page: collects labels (IndexedDB), drives the worker one short call at a time (so
// training can pause and resume), and draws what comes back.
import { openStore } from './store.js';
import { createCharts } from './charts.js';
import { LESSONS } from './lessons.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

// ---------- the worker ----------
let worker;
let nextId = 1;
const pending = new Map();

function startWorker() {
  const started = new Worker('worker.js', { type: 'module' });
  worker = started;
  // A replaced worker can still deliver what it queued before it was stopped: ignored, so it
  // cannot fail the calls of the worker that replaced it.
  started.onmessage = ({ data }) => {
    if (started !== worker) return;
    if (data.event === 'device-lost') {
      restartOnCpu(`The GPU device was lost (${data.message}).`, 'the GPU device was lost');
      return;
    }
    const p = pending.get(data.id);
    if (!p) return;
    pending.delete(data.id);
    if (data.ok) p.resolve(data.result);
    else {
      const error = new Error(data.error);
      error.fatal = data.fatal;
      error.outOfMemory = data.outOfMemory;
      p.reject(error);
    }
  };
  // An error nothing in the worker caught (a panic in a GPU callback, a module that failed to
  // load): its calls fail, as fatal ones (the worker restarts on the CPU) unless it already runs
  // there, where a restart would only fail again.
  started.onerror = (e) => {
    e.preventDefault();
    if (started !== worker) return;
    const error = new Error(`the worker failed: ${e.message || 'unknown error'}`);
    error.fatal = state.backend !== 'cpu';
    for (const p of pending.values()) p.reject(error);
    pending.clear();
  };
}

function call(cmd, args = [], transfer = []) {
  return new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject, cmd, since: performance.now() });
    worker.postMessage({ id, cmd, args }, transfer);
  }).finally(() => {
    if (state.backend) ranOn.add(`${state.backend}:${cmd}`);
  });
}

// ---------- what the worker is doing ----------
// A call that takes more than a second shows a line pinned to the bottom of the window, with
// its seconds counting: the first step of each kind on WebGPU compiles its GPU kernels (15–22 s
// on a software adapter), and a frozen panel would look like a hang.
const ACTIVITY = {
  open: 'loading the model', samplePair: 'sampling a pair to label', sampleRanking: 'sampling completions to rank',
  goldLabels: 'labelling pairs with the gold reward', setLabels: 'reading the labels', rewardStart: 'preparing the reward model',
  rewardStep: 'training the reward model', runStart: 'measuring the starting policy', runStep: 'optimising the policy',
  bestOfN: 'sampling best-of-n', samples: 'sampling from the policy',
  checkDevice: 'checking WebGPU against the CPU',
};
const ranOn = new Set();

function showActivity() {
  const line = $('activity');
  const oldest = pending.values().next().value;
  const seconds = oldest ? (performance.now() - oldest.since) / 1000 : 0;
  if (!oldest || seconds < 1) {
    line.hidden = true;
    return;
  }
  const what = ACTIVITY[oldest.cmd] || oldest.cmd;
  const first = state.backend === 'webgpu' && !ranOn.has(`webgpu:${oldest.cmd}`)
    ? ' (first time on WebGPU: compiling its GPU kernels)' : '';
  line.textContent = `Working: ${what}${first}… ${Math.floor(seconds)} s`;
  line.hidden = false;
}

// ---------- state ----------
const state = {
  store: null,
  labels: [],
  // Pairs and rankings share one counter: item n is the same prompt either way.
  pairIndex: 0,
  mode: 'pair',
  pair: null,
  // Rank mode: the completions on show, and the picks so far (best first).
  toRank: null,
  picks: [],
  busy: false,
  modelReady: false,
  backend: null,
  rm: { running: false, paused: false },
  run: { running: false, paused: false, name: null },
  lastModel: { model: null, name: 'builtin', tokenizer: null, labConfig: null },
  experiment: newExperiment(),
};
let charts;

// ---------- messages ----------
// A message appears beside the control that caused it (under the control's row), where the eye
// is, and is announced (an error as an alert, a confirmation as a status). What no control
// caused (the lab could not start, a lost GPU device) goes in the box at the top.
function messageSlot(anchor) {
  const row = anchor instanceof Element && anchor !== document.body
    ? (anchor.closest('.row, fieldset, #lesson') || anchor) : null;
  if (!row) return $('error');
  let slot = row.nextElementSibling;
  if (!slot || !slot.classList.contains('message')) {
    slot = document.createElement('p');
    slot.className = 'message';
    slot.hidden = true;
    row.after(slot);
  }
  return slot;
}

function showMessage(kind, message, anchor) {
  const slot = messageSlot(anchor);
  if (slot !== $('error')) {
    slot.className = `message ${kind}`;
    slot.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  }
  slot.textContent = message;
  slot.hidden = false;
  // Scrolled to only when out of sight, centred so that its control (just above) shows too.
  const box = slot.getBoundingClientRect();
  if (box.top < 0 || box.bottom > innerHeight) slot.scrollIntoView({ block: 'center' });
}

const showError = (message, anchor) => showMessage('error', message, anchor);
const showNote = (message, anchor) => showMessage('note', message, anchor);

function clearMessages(anchor) {
  for (const slot of new Set([$('error'), messageSlot(anchor)])) {
    slot.hidden = true;
    slot.textContent = '';
  }
}

// Every visible error message (the end-to-end test reads them).
function errors() {
  return [...document.querySelectorAll('#error:not([hidden]), .message.error:not([hidden])')].map((e) => e.textContent);
}

// Runs a task for the control `anchor` (by default the focused one): its failure is shown beside
// that control.
async function guarded(task, anchor = document.activeElement) {
  clearMessages(anchor);
  try {
    return await task();
  } catch (e) {
    if (e.superseded) return undefined;
    if (e.fatal) {
      await restartOnCpu(`The computation stopped: ${e.message}. The GPU device may have been lost or run out of memory.`,
        'the last computation failed');
    } else {
      showError(`${e.message} — Your ${state.labels.length} saved labels are untouched.`, anchor);
    }
    return undefined;
  }
}

// After a trap or a lost device the worker's module cannot be trusted: a fresh worker loads the
// same model on the CPU backend. Calls still waiting are dropped quietly; the labels live in
// IndexedDB and are not touched.
async function restartOnCpu(what, reason) {
  if (state.restarting) return;
  state.restarting = true;
  worker.terminate();
  const stopped = new Error('the worker was restarted');
  stopped.superseded = true;
  for (const p of pending.values()) p.reject(stopped);
  pending.clear();
  startWorker();
  state.rm.running = state.run.running = false;
  state.busy = false;
  try {
    await openModel({ ...state.lastModel, backend: 'cpu' });
  } finally {
    state.restarting = false;
  }
  $('backend-note').textContent = `Running on the CPU (wasm): ${reason}.`;
  showError(`${what} Your ${state.labels.length} saved labels are untouched. The lab restarted on the CPU backend.`);
}

// ---------- labels ----------
const RANK_K = 4;

// How many preference pairs a label states, as the core counts them (a ranking of k: every
// pair it orders; scored rankings skip ties).
function statedPairs(label) {
  if (label.ranked) {
    const s = label.scores;
    let n = 0;
    for (let i = 0; i < label.ranked.length; i += 1) {
      for (let j = i + 1; j < label.ranked.length; j += 1) if (!s || s[i] > s[j]) n += 1;
    }
    return n;
  }
  return label.choice === 'left' || label.choice === 'right' ? 1 : 0;
}

function updateCounts() {
  const counts = { left: 0, right: 0, tie: 0, 'both-bad': 0, ranking: 0 };
  let usable = 0;
  for (const l of state.labels) {
    counts[l.ranked ? 'ranking' : l.choice] += 1;
    usable += statedPairs(l);
  }
  const n = state.labels.length;
  $('label-count').textContent =
    `${n} label${n === 1 ? '' : 's'}: ${counts.left} left, ${counts.right} right, ${counts.tie} ties, ` +
    `${counts['both-bad']} both bad, ${counts.ranking} rankings (${usable} usable pairs)`;
}

async function showItem() {
  if (!state.modelReady) return;
  if (state.mode === 'rank') await showRanking();
  else await showPair();
}

async function showPair() {
  state.pair = null;
  for (const id of ['prompt-text', 'left-text', 'right-text']) $(id).textContent = '…';
  const pair = await guarded(() => call('samplePair', [state.pairIndex]), $('label-count'));
  if (!pair) return;
  state.pair = pair;
  $('prompt-text').textContent = pair.prompt;
  $('left-text').textContent = pair.left;
  $('right-text').textContent = pair.right;
}

async function showRanking() {
  state.toRank = null;
  state.picks = [];
  $('prompt-text').textContent = '…';
  $('rank-list').replaceChildren();
  $('rank-status').textContent = '';
  const toRank = await guarded(() => call('sampleRanking', [state.pairIndex, RANK_K]), $('label-count'));
  if (!toRank) return;
  state.toRank = toRank;
  $('prompt-text').textContent = toRank.prompt;
  drawRanking();
}

function drawRanking() {
  const { completions } = state.toRank;
  $('rank-list').replaceChildren(...completions.map((text, i) => {
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.id = `rank-${i + 1}`;
    const rank = state.picks.indexOf(i);
    const key = document.createElement('span');
    key.className = 'key';
    key.textContent = rank < 0 ? `${i + 1}` : `${i + 1} — ranked ${rank + 1}`;
    if (rank >= 0) b.dataset.rank = String(rank + 1);
    const story = document.createElement('span');
    story.className = 'story';
    story.textContent = text;
    b.append(key, story);
    b.onclick = () => pick(i);
    li.append(b);
    return li;
  }));
  $('rank-status').textContent = completions.length < 2
    ? 'The model wrote the same text every time for this prompt: press s to skip it.'
    : `Picked ${state.picks.length} of ${completions.length}.`;
}

// Writes a label to IndexedDB (committed before anything else happens), then shows the next item.
async function commit(entry) {
  await guarded(async () => {
    entry.key = await state.store.add(entry);
    state.labels.push(entry);
    state.pairIndex += 1;
    await state.store.setMeta('pairIndex', state.pairIndex);
    updateCounts();
  }, $('label-count'));
  await showItem();
}

async function label(choice) {
  if (state.mode !== 'pair' || !state.pair || state.busy) return;
  state.busy = true;
  try {
    await commit({ prompt: state.pair.prompt, left: state.pair.left, right: state.pair.right, choice, labeller: 'human' });
  } finally {
    state.busy = false;
  }
}

async function pick(i) {
  const r = state.toRank;
  if (state.mode !== 'rank' || !r || state.busy || i >= r.completions.length || state.picks.includes(i)) return;
  state.picks.push(i);
  if (state.picks.length === r.completions.length - 1) {
    state.picks.push(r.completions.findIndex((_, j) => !state.picks.includes(j)));
  }
  drawRanking();
  if (state.picks.length < r.completions.length) return;
  state.busy = true;
  try {
    await commit({ prompt: r.prompt, ranked: state.picks.map((j) => r.completions[j]), labeller: 'human' });
  } finally {
    state.busy = false;
  }
}

async function skip() {
  if (!(state.pair || state.toRank) || state.busy) return;
  state.busy = true;
  state.pairIndex += 1;
  await guarded(() => state.store.setMeta('pairIndex', state.pairIndex), $('label-count'));
  await showItem();
  state.busy = false;
}

async function setMode(mode, { save = true } = {}) {
  state.mode = mode;
  $('pair-view').hidden = mode !== 'pair';
  $('rank-view').hidden = mode !== 'rank';
  for (const r of document.querySelectorAll('input[name="label-mode"]')) r.checked = r.value === mode;
  if (save) await guarded(() => state.store.setMeta('mode', mode), $('label-mode'));
}

async function undo() {
  if (state.busy) return;
  if (state.mode === 'rank' && state.picks.length > 0) {
    state.picks.pop();
    drawRanking();
    return;
  }
  state.busy = true;
  await guarded(async () => {
    const removed = await state.store.removeLast();
    if (removed) {
      state.labels.pop();
      updateCounts();
      $('prompt-text').textContent = removed.prompt;
      // The label comes back as it was given, to be given again.
      if (removed.ranked) {
        await setMode('rank');
        state.toRank = { prompt: removed.prompt, completions: removed.ranked };
        state.picks = [];
        drawRanking();
      } else {
        await setMode('pair');
        state.pair = { prompt: removed.prompt, left: removed.left, right: removed.right };
        $('left-text').textContent = removed.left;
        $('right-text').textContent = removed.right;
      }
    }
  }, $('label-count'));
  state.busy = false;
}

function download(text, fileName, type) {
  const blob = new Blob([text], { type });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = fileName;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

async function exportLabels(command, fileName) {
  const button = $(command === 'exportRankings' ? 'export-rankings' : 'export');
  await guarded(async () => {
    const text = await call(command, [plainLabels()]);
    if (!text) throw new Error(command === 'exportRankings' ? 'there are no rankings to export' : 'no label states a preference yet');
    download(text, fileName, 'application/jsonl');
    showNote(`Saved ${fileName}: ${text.trim().split('\n').length} lines.`, button);
  }, button);
}

async function importLabels(file) {
  await guarded(async () => {
    const bytes = new Uint8Array(await file.arrayBuffer());
    // The core parses (and names a bad line); nothing is stored unless the whole file reads.
    const imported = await call('importLabels', [bytes, file.name]);
    await state.store.addAll(imported);
    state.labels = await state.store.all();
    updateCounts();
    showNote(`Imported ${imported.length} labels from ${file.name}.`, $('import-file'));
  }, $('import-file'));
}

async function goldLabel(count = 20) {
  await guarded(async () => {
    const given = await call('goldLabels', [state.pairIndex, count]);
    await state.store.addAll(given);
    state.pairIndex += count;
    await state.store.setMeta('pairIndex', state.pairIndex);
    state.labels = await state.store.all();
    updateCounts();
    await showItem();
  }, $('gold-label'));
}

// The labels as the core reads them (without the store's key and time).
function plainLabels() {
  return state.labels.map(({ prompt, left, right, choice, ranked, scores, labeller }) => (ranked
    ? { prompt, ranked, ...(scores ? { scores } : {}), labeller }
    : { prompt, left, right, choice, labeller }));
}

// ---------- model ----------
async function sha256(bytes) {
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

async function openModel({ model, name, tokenizer, backend, labConfig }, anchor = $('load-builtin')) {
  const previous = $('model-status').textContent;
  $('model-status').textContent = `Loading ${name}…`;
  const requested = backend || params.get('backend') || 'auto';
  // ?gpu-memory=BYTES: the GPU memory the lab may take (WebGPU does not say how much there is).
  const gpuMemory = params.has('gpu-memory') ? Number(params.get('gpu-memory')) : null;
  let outOfMemory = false;
  const opened = await guarded(() => call('open', { model, name, tokenizer, backend: requested, labConfig, gpuMemory })
    .catch((e) => { outOfMemory = !!e.outOfMemory; throw e; }), anchor);
  if (!opened) {
    // The worker keeps the model it had.
    $('model-status').textContent = state.modelReady ? `${previous} (kept: the new model did not load)` : 'No model loaded.';
    if (outOfMemory) offerCpu({ model, name, tokenizer, labConfig }, anchor);
    return false;
  }
  state.lastModel = { model, name, tokenizer, labConfig };
  state.experiment = newExperiment();
  state.backend = opened.backend;
  const i = opened.info;
  $('backend-note').textContent = opened.backend === 'webgpu'
    ? `Running on WebGPU${opened.adapter ? ` (${opened.adapter})` : ''}.`
    : `Running on the CPU (wasm): ${opened.reason}.`;
  $('backend-note').dataset.backend = opened.backend;
  $('device-check-row').hidden = opened.backend !== 'webgpu';
  $('model-status').textContent = `${name}: ${i.parameters.toLocaleString()} parameters, ${i.layers} layers, ` +
    `width ${i.dim}, vocabulary ${i.vocab_size}, context ${i.context}.`;
  state.modelReady = true;
  document.body.dataset.ready = 'true';
  await showItem();
  return true;
}

// WebGPU against the CPU backend, in this browser: alignlab's kernels against the unfused path,
// and the built-in model's log-probs, DPO steps and greedy text against the CPU's. A GPU can
// compute wrong numbers without failing; this says whether the one in use does.
async function checkDevice() {
  const button = $('check-device');
  button.disabled = true;
  const checks = await guarded(() => call('checkDevice'), button);
  button.disabled = false;
  if (!checks) return;
  const list = $('device-checks');
  list.replaceChildren(...checks.map((check) => {
    const item = document.createElement('li');
    item.dataset.passed = check.passed;
    item.textContent = `${check.passed ? '✓' : '✗'} ${check.name}: ${check.detail}`;
    return item;
  }));
  list.hidden = false;
  state.deviceChecks = checks;
  const failed = checks.filter((check) => !check.passed).length;
  if (failed) showError(`${failed} of ${checks.length} checks failed: WebGPU does not compute what the CPU does here. Add ?backend=cpu to the address to use the CPU.`, button);
  else showNote(`WebGPU passed all ${checks.length} checks against the CPU.`, button);
}

// A model the GPU cannot hold was refused before it was allocated: beside the error, a button
// opens the same model on the CPU.
function offerCpu(model, anchor) {
  const button = document.createElement('button');
  button.type = 'button';
  button.id = 'open-on-cpu';
  button.textContent = 'Open it on the CPU instead';
  button.addEventListener('click', async () => {
    button.disabled = true;
    await openModel({ ...model, backend: 'cpu' }, anchor);
  });
  messageSlot(anchor).append(' ', button);
}

async function loadBytes(bytes, name, anchor) {
  $('model-sha').textContent = `sha256 ${await sha256(bytes)} (${bytes.length.toLocaleString()} bytes)`;
  const tokenizerFile = $('tokenizer-file').files[0];
  const tokenizer = tokenizerFile ? new Uint8Array(await tokenizerFile.arrayBuffer()) : null;
  await openModel({ model: bytes, name, tokenizer }, anchor);
}

async function loadUrl(url) {
  await guarded(async () => {
    let response;
    try {
      response = await fetch(url);
    } catch (e) {
      throw new Error(`could not fetch ${url}: ${e.message}`);
    }
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    const expected = Number(response.headers.get('content-length')) || 0;
    const progress = $('model-progress');
    progress.hidden = false;
    const reader = response.body.getReader();
    const chunks = [];
    let received = 0;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        received += value.length;
        progress.value = expected ? received / expected : 0;
        $('model-status').textContent = `Downloading ${url}: ${received.toLocaleString()}${expected ? ` of ${expected.toLocaleString()}` : ''} bytes`;
      }
    } catch (e) {
      throw new Error(`${url}: the download was cut short after ${received.toLocaleString()} bytes (${e.message})`);
    } finally {
      progress.hidden = true;
    }
    if (expected && received !== expected) {
      throw new Error(`${url}: the download was cut short (${received} of ${expected} bytes)`);
    }
    const bytes = new Uint8Array(received);
    let at = 0;
    for (const c of chunks) {
      bytes.set(c, at);
      at += c.length;
    }
    await loadBytes(bytes, url.split('/').pop() || url, $('load-url'));
  }, $('load-url'));
}

// ---------- experiments ----------
// What the page ran since the model opened or the reward model last trained, as an experiment
// file's tables: the labels trained on, the reward model, the runs in order, best-of-n.
function newExperiment(labels = null) {
  return { labels, reward_model: null, run: [], best_of_n: null };
}

async function exportExperiment() {
  await guarded(async () => {
    const e = state.experiment;
    if (!e.labels && !e.best_of_n) throw new Error('nothing has run yet: train a reward model or start a run first');
    const text = await call('exportExperiment', [{
      model: state.lastModel.name,
      labels: { label: e.labels || [] },
      ...(e.reward_model ? { reward_model: e.reward_model } : {}),
      run: e.run,
      ...(e.best_of_n ? { best_of_n: e.best_of_n } : {}),
    }]);
    download(text, 'experiment.toml', 'application/toml');
    $('experiment-status').textContent = 'Exported experiment.toml: run it with `alignlab run experiment.toml`.';
  }, $('export-experiment'));
}

// Runs an experiment file as `alignlab run` does, through the same lab calls in the same order,
// on the model reopened with the file's lab settings: its labels (gold-labelled pairs 0.. of the
// base, then those written out), the reward model, each run from the base, best-of-n. Its labels
// are added to yours; yours are not used by it.
async function runExperimentFile(file) {
  await guarded(async () => {
    const bytes = new Uint8Array(await file.arrayBuffer());
    const e = await call('readExperiment', [bytes, file.name]);
    if (e.model !== state.lastModel.name) {
      throw new Error(`${file.name} runs on model \`${e.model}\`; load it first (the page has \`${state.lastModel.name}\`)`);
    }
    if (e.labels.file) {
      throw new Error(`${file.name}: the page cannot read labels.file \`${e.labels.file}\`; import that file, or write the labels into the experiment`);
    }
    // A fresh lab with the experiment's settings: its gold labels are the base policy's pairs,
    // and no reward model or run of yours carries over.
    if (!await openModel({ ...state.lastModel, labConfig: e.lab }, $('experiment-file'))) return;
    const gold = e.labels.gold ? await call('goldLabels', [0, e.labels.gold]) : [];
    const labels = [...gold, ...(e.labels.label || [])];
    await state.store.addAll(labels);
    state.labels = await state.store.all();
    updateCounts();
    $('experiment-status').textContent = `Running ${file.name}: ${labels.length} labels, ${e.run.length} runs…`;
    if (e.reward_model) await trainRewardModel(e.reward_model, labels);
    for (const run of e.run) {
      if (!await startRun(run, labels)) return;
      await waitForRun();
    }
    if (e.best_of_n) await startRun({ method: 'best-of-n', ...e.best_of_n });
    $('experiment-status').textContent = `Ran ${file.name}.`;
  }, $('experiment-file'));
}

// ---------- reward model ----------
async function trainRewardModel(settings, labels = plainLabels()) {
  if (state.rm.running) return;
  const started = await guarded(async () => {
    const pairs = await call('setLabels', [labels]);
    await call('rewardStart', [settings]);
    return pairs;
  }, $('train-rm'));
  if (started === undefined) return;
  state.experiment = newExperiment(labels);
  state.experiment.reward_model = settings;
  charts.clearRewardModel();
  state.rm = { running: true, paused: false };
  $('pause-rm').disabled = false;
  $('pause-rm').textContent = 'Pause';
  $('rm-status').textContent = `Training on ${started} pairs…`;
  await rewardLoop();
}

async function rewardLoop() {
  state.rm.looping = true;
  while (state.rm.running && !state.rm.paused) {
    const p = await guarded(() => call('rewardStep'), $('train-rm'));
    if (!p) {
      state.rm.running = false;
      break;
    }
    charts.rewardStep(p);
    showSpeed('reward model', p.speed);
    $('rm-status').textContent = `Step ${p.step} of ${p.total_steps}: loss ${p.loss.toFixed(3)}, batch accuracy ${p.accuracy.toFixed(2)}`;
    if (p.done) {
      state.rm.running = false;
      const [low, high] = p.held_out_interval || [0, 1];
      $('rm-status').textContent += p.held_out_accuracy == null
        ? ` — done (${p.training_pairs} pairs: label at least 30 to hold some out and measure accuracy).`
        : ` — done: accuracy ${p.held_out_accuracy.toFixed(2)} on ${p.held_out_pairs} held-out pairs ` +
          `(95% interval ${low.toFixed(2)}–${high.toFixed(2)}${low <= 0.5 ? ': not yet distinguishable from chance' : ''}).`;
    }
  }
  state.rm.looping = false;
  $('pause-rm').disabled = !state.rm.running;
}

// Pause stops the loop after the step in flight; Resume starts it again unless that step is
// still in flight (its loop then carries on): never two loops, so a finished run gets no step
// it cannot take.
function togglePause(kind, button, loop) {
  const s = state[kind];
  if (!s.running) return;
  s.paused = !s.paused;
  button.textContent = s.paused ? 'Resume' : 'Pause';
  if (!s.paused && !s.looping) loop();
}

// What the last training step cost on the backend in use: its time, and the token positions the
// model computed forward in it (rollouts, reference and reward models included) per second.
function showSpeed(what, speed) {
  if (!speed) return;
  const on = state.backend === 'webgpu' ? 'WebGPU' : 'the CPU (wasm)';
  const seconds = speed.seconds < 10 ? speed.seconds.toFixed(2) : speed.seconds.toFixed(0);
  $('speed').textContent = `${what}: ${seconds} s per step, ` +
    `${Math.round(speed.tokens_per_second).toLocaleString('en')} tokens/s on ${on}.`;
}

// ---------- runs ----------
function klCoef() {
  return Number((10 ** Number($('kl-coef').value)).toPrecision(2));
}

// The page samples smaller rollouts than the library's defaults (16 prompts × 8) so that a step
// takes seconds in a browser: overrides of the registry's settings, sent only to methods that
// have them.
const PAGE_ROLLOUT = { prompts_per_step: 8, group_size: 4 };

function pageSettings(method) {
  const spec = (state.methods || []).find((m) => m.name === method);
  const settings = {};
  for (const [name, value] of Object.entries(PAGE_ROLLOUT)) {
    if (spec && spec.settings.some((s) => s.name === name)) settings[name] = value;
  }
  return settings;
}

// A decoding-time method (args, cd, deal) steers the base at reward weight w = 1/β: one point on
// the frontier, with what it costs per request in tokens/s.
async function steer(method, weight) {
  const name = `${method} w=${weight}`;
  $('run-status').textContent = `${name}: steering the base as it decodes…`;
  const point = await guarded(() => call('steer', [method, weight]), $('start-run'));
  if (point) {
    charts.runPoint(name, point);
    $('run-status').textContent = `${name}: KL ${point.kl.mean.toFixed(2)}, gold ${point.gold.mean.toFixed(2)}, ` +
      `${Math.round(point.tokens_per_second)} tokens/s — paid on every request, no weights changed.`;
  }
  return point;
}

async function startRun({ method, kl_coef, steps, name: runName, settings, eval_every, lr, ns = [1, 2, 4, 8, 16, 32], prompts = 8 }, labels = plainLabels()) {
  if (state.run.running) return false;
  if ((state.decoding || []).some((m) => m.name === method)) return !!await steer(method, Number((1 / kl_coef).toPrecision(2)));
  if (method === 'best-of-n') {
    $('run-status').textContent = `Best-of-n for n = ${ns.join(', ')}…`;
    const points = await guarded(() => call('bestOfN', [ns, prompts]), $('start-run'));
    if (points) {
      state.experiment.best_of_n = { ns, prompts };
      charts.bestOfN(points);
      const last = points[points.length - 1];
      const speeds = points.filter((p) => p.tokens_per_second != null)
        .map((p) => `n=${p.n}: ${Math.round(p.tokens_per_second)}`).join(', ');
      $('run-status').textContent = `Best-of-${last.n}: KL ${last.kl.mean.toFixed(2)} ± ${last.kl.ci95.toFixed(2)} ` +
        `measured (analytic bound ${last.analytic_kl.toFixed(2)}). Tokens/s delivered, each request paying n samples: ${speeds}.`;
    }
    return !!points;
  }
  const run = { method, kl_coef, steps, eval_every: eval_every ?? 2, settings: settings ?? pageSettings(method), ...(lr == null ? {} : { lr }) };
  const base = await guarded(async () => {
    await call('setLabels', [labels]);
    return call('runStart', [run]);
  }, $('start-run'));
  if (!base) return false;
  if (!state.experiment.labels) state.experiment.labels = labels;
  state.experiment.run.push(run);
  const name = runName || `${method} β=${kl_coef}`;
  state.run = { running: true, paused: false, name };
  charts.runPoint(name, base);
  $('pause-run').disabled = false;
  $('pause-run').textContent = 'Pause';
  $('run-status').textContent = `${name}: started.`;
  await runLoop();
  return true;
}

async function runLoop() {
  state.run.looping = true;
  while (state.run.running && !state.run.paused) {
    const p = await guarded(() => call('runStep'), $('start-run'));
    if (!p) {
      state.run.running = false;
      break;
    }
    // Online methods: what they maximise, the reward model's score − β·KL on the step's own
    // samples (their policy-gradient loss is ~0 by construction: normalised advantages). The
    // DPO family: its loss on the labels.
    const objective = p.metrics['objective/rlhf_reward'];
    showSpeed(state.run.name, p.speed);
    if (objective !== undefined) charts.runLoss(state.run.name, 'score − β·KL', p.step, objective);
    else charts.runLoss(state.run.name, 'loss', p.step, p.metrics['train/loss']);
    if (p.point) {
      charts.runPoint(state.run.name, p.point);
      const proxy = p.point.proxies.rm ? `, reward model ${p.point.proxies.rm.mean.toFixed(2)}` : '';
      $('run-status').textContent = `${state.run.name}: step ${p.step} of ${p.total_steps}, KL ${p.point.kl.mean.toFixed(2)}` +
        `${proxy}, gold ${p.point.gold.mean.toFixed(2)}`;
    }
    if (p.done) state.run.running = false;
  }
  state.run.looping = false;
  $('pause-run').disabled = !state.run.running;
}

async function waitForRun() {
  while (state.run.running && !state.run.paused) await new Promise((r) => setTimeout(r, 200));
}

// ---------- samples ----------
async function sample() {
  const prompt = $('sample-prompt').value.trim() || null;
  const samples = await guarded(() => call('samples', [prompt, 4, Date.now() % 100000]), $('sample'));
  if (!samples) return;
  const list = $('samples');
  list.replaceChildren(...samples.map((s) => {
    const li = document.createElement('li');
    const score = s.proxy == null ? '' : `, reward model ${s.proxy.toFixed(2)}`;
    li.textContent = `${s.prompt} ▸ ${s.completion}  (gold ${s.gold.toFixed(2)}${score})`;
    return li;
  }));
}

// ---------- lessons ----------
function showLesson(index) {
  const lesson = LESSONS[index];
  $('lesson').hidden = false;
  $('lesson-heading').textContent = `${index + 1}. ${lesson.title}`;
  $('lesson-text').innerHTML = lesson.text;
  const action = $('lesson-action');
  action.textContent = lesson.action;
  action.onclick = async () => {
    action.disabled = true;
    try {
      await lesson.run(lab);
    } finally {
      action.disabled = false;
    }
  };
  $('lesson-heading').focus?.();
}

// What lessons may do: the same operations as the controls.
const lab = {
  get labels() { return state.labels; },
  statedPairs,
  goldLabel,
  trainRewardModel,
  startRun,
  waitForRun,
  setMethod(method) { $('method').value = method; },
  steer,
};

// ---------- wiring ----------
async function main() {
  startWorker();
  charts = createCharts();
  window.alignlab = { charts, state, errors };
  setInterval(showActivity, 250);
  state.store = await openStore();
  state.labels = await state.store.all();
  state.pairIndex = await state.store.getMeta('pairIndex', 0);
  await setMode(await state.store.getMeta('mode', 'pair'), { save: false });
  updateCounts();

  // The method registry, from the core: names, what each trains on, settings and defaults.
  const catalogue = await call('methods');
  state.methods = catalogue.methods;
  state.metricNames = Object.fromEntries(catalogue.metrics);
  const select = $('method');
  const group = (title, specs) => {
    const g = document.createElement('optgroup');
    g.label = title;
    for (const spec of specs) {
      const option = new Option(spec.name, spec.name);
      option.title = spec.summary;
      g.append(option);
    }
    select.append(g);
  };
  group('against the reward model', state.methods.filter((m) => m.kind.kind === 'online'));
  group('on your labels', state.methods.filter((m) => m.kind.kind === 'preference'));
  // Decoding-time methods that need no model of their own; w = 1/β from the β slider.
  state.decoding = catalogue.decoding.filter((m) => m.models === 'none');
  group('inference time (w = 1/β)', [{ name: 'best-of-n', summary: 'best of n samples by the reward model' }, ...state.decoding]);
  select.value = 'ppo';

  LESSONS.forEach((lesson, i) => {
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = lesson.title;
    b.onclick = () => showLesson(i);
    li.append(b);
    $('lesson-list').append(li);
  });
  $('lesson-close').onclick = () => { $('lesson').hidden = true; };

  for (const b of document.querySelectorAll('[data-choice]')) b.onclick = () => label(b.dataset.choice);
  $('skip').onclick = skip;
  $('undo').onclick = undo;
  $('export').onclick = () => exportLabels('exportLabels', 'alignlab-pairs.jsonl');
  $('export-rankings').onclick = () => exportLabels('exportRankings', 'alignlab-rankings.jsonl');
  for (const r of document.querySelectorAll('input[name="label-mode"]')) {
    r.onchange = async () => {
      if (!r.checked) return;
      // A label being written finishes in the mode it was given in.
      if (state.busy) {
        await setMode(state.mode, { save: false });
        return;
      }
      await setMode(r.value);
      await showItem();
    };
  }
  $('import-file').onchange = (e) => e.target.files[0] && importLabels(e.target.files[0]).then(() => { e.target.value = ''; });
  $('gold-label').onclick = () => goldLabel(20);
  $('load-builtin').onclick = () => openModel({ model: null, name: 'builtin' });
  $('check-device').onclick = checkDevice;
  $('model-file').onchange = async (e) => {
    const file = e.target.files[0];
    if (file) await loadBytes(new Uint8Array(await file.arrayBuffer()), file.name, $('model-file'));
  };
  $('load-url').onclick = () => $('model-url').value && loadUrl($('model-url').value);
  const drop = $('drop-zone');
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add('over'); };
  drop.ondragleave = () => drop.classList.remove('over');
  drop.ondrop = async (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const file = e.dataTransfer.files[0];
    if (file) await loadBytes(new Uint8Array(await file.arrayBuffer()), file.name, drop);
  };
  // An empty Steps box leaves the step count to the core (REWARD_EPOCHS passes over the labels).
  $('train-rm').onclick = () => trainRewardModel({
    ...($('rm-steps').value ? { steps: Number($('rm-steps').value) } : {}),
    members: Number($('rm-members').value), batch_size: Number($('rm-batch').value),
  });
  $('pause-rm').onclick = () => togglePause('rm', $('pause-rm'), rewardLoop);
  $('kl-coef').oninput = () => { $('kl-value').textContent = String(klCoef()); };
  $('kl-value').textContent = String(klCoef());
  $('start-run').onclick = () => startRun({ method: $('method').value, kl_coef: klCoef(), steps: Number($('run-steps').value) });
  $('pause-run').onclick = () => togglePause('run', $('pause-run'), runLoop);
  $('sample').onclick = sample;
  $('export-experiment').onclick = exportExperiment;
  $('experiment-file').onchange = (e) => e.target.files[0] && runExperimentFile(e.target.files[0]).then(() => { e.target.value = ''; });

  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const { tagName, type } = e.target;
    const typing = tagName === 'TEXTAREA' || tagName === 'SELECT' ||
      (tagName === 'INPUT' && !['radio', 'checkbox', 'button', 'range'].includes(type));
    if (typing) return;
    const keys = state.mode === 'rank'
      ? Object.fromEntries(Array.from({ length: RANK_K }, (_, i) => [String(i + 1), () => pick(i)]))
      : { 1: () => label('left'), 2: () => label('right'), t: () => label('tie'), b: () => label('both-bad') };
    const action = { ...keys, s: skip, u: undo }[e.key];
    if (action) {
      e.preventDefault();
      action();
    }
  });

  await openModel({ model: null, name: 'builtin' });
}

main().catch((e) => showError(`The lab could not start: ${e.message}`));
