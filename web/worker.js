// The lab's worker: every computation runs here, so the page never freezes. It picks the
// backend (WebGPU when the browser offers an adapter, else the wasm CPU backend), then answers
// {id, cmd, args} messages with {id, ok, result} or {id, ok: false, error, fatal}.
import init, * as lab from './alignlab.js';

const ready = init();

// A lost GPU device (a GPU process crash, a driver reset, memory taken back) is reported only
// through `device.lost`: wgpu does not surface it, and a computation waiting on that device
// may never finish. So every device the lab opens is watched, and the page told at once.
if (self.GPUAdapter) {
  const requestDevice = self.GPUAdapter.prototype.requestDevice;
  self.GPUAdapter.prototype.requestDevice = async function watchedRequestDevice(...args) {
    const device = await requestDevice.apply(this, args);
    device.lost.then((info) => self.postMessage({ event: 'device-lost', message: info.message || info.reason || 'no reason given' }));
    return device;
  };
}

// The built-in model lives beside the module (not inside it: the module stays ~0.8 MB smaller
// gzipped), fetched once and then served from the browser's cache.
let builtin = null;
async function builtinModel() {
  if (!builtin) {
    builtin = (async () => {
      const url = new URL('builtin.safetensors', import.meta.url);
      const response = await fetch(url);
      if (!response.ok) throw new Error(`${url}: HTTP ${response.status} (the built-in model ships beside the page's module)`);
      return new Uint8Array(await response.arrayBuffer());
    })();
    builtin.catch(() => { builtin = null; });
  }
  return builtin;
}

async function chooseBackend(requested) {
  if (requested === 'cpu') return { backend: 'cpu', reason: 'the CPU backend was requested' };
  if (!self.navigator.gpu) return { backend: 'cpu', reason: 'this browser has no WebGPU' };
  try {
    const adapter = await self.navigator.gpu.requestAdapter();
    if (!adapter) return { backend: 'cpu', reason: 'WebGPU offered no adapter' };
    const info = adapter.info || {};
    const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ');
    // A software adapter (SwiftShader) runs the lab ~15x slower than the wasm CPU backend
    // (lesson 1: >600 s against 41 s here), so it is used only when asked for.
    if (requested !== 'webgpu' && (info.isFallbackAdapter || /swiftshader/i.test(name))) {
      return { backend: 'cpu', reason: `the only WebGPU adapter is ${name}, a software renderer slower than the CPU (add ?backend=webgpu to use it)` };
    }
    return { backend: 'webgpu', adapter: name };
  } catch (e) {
    return { backend: 'cpu', reason: `WebGPU failed: ${e.message || e}` };
  }
}

// One call at a time, in the order sent: the lab is a single mutable object, and a call that
// arrives while another awaits the GPU waits its turn instead of finding the lab taken.
let queue = Promise.resolve();
self.onmessage = (event) => {
  queue = queue.then(() => handle(event.data));
};

async function handle({ id, cmd, args }) {
  try {
    await ready;
    let result;
    if (cmd === 'open') {
      const { model, name, tokenizer, backend, labConfig, gpuMemory } = args;
      const choice = await chooseBackend(backend);
      const bytes = model ?? await builtinModel();
      const opened = await lab.openLab(bytes, name, tokenizer ?? undefined, choice.backend, labConfig ?? undefined, gpuMemory ?? undefined);
      result = { ...opened, ...choice };
    } else if (cmd === 'checkDevice') {
      // The checks run the built-in model on WebGPU and on the CPU.
      result = await lab.checkDevice(await builtinModel());
    } else if (typeof lab[cmd] === 'function') {
      result = await lab[cmd](...(args || []));
    } else {
      throw new Error(`unknown command ${cmd}`);
    }
    self.postMessage({ id, ok: true, result });
  } catch (e) {
    // A wasm trap (a panic, a lost GPU device, memory exhausted) leaves the module unusable.
    const fatal = e instanceof WebAssembly.RuntimeError;
    // A model too big for the GPU (`OutOfMemoryError`) was refused before anything was
    // allocated: the module is fine, and the page offers the CPU.
    self.postMessage({ id, ok: false, error: e && e.message ? e.message : String(e), fatal, outOfMemory: e && e.name === 'OutOfMemoryError' });
  }
}
