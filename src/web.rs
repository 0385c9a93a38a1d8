//! The page's bindings: a thin wasm-bindgen shell over [`crate::lab::Lab`], called from the
//! page's Web Worker (`web/worker.js`). One lab lives in the worker; each call takes it, runs,
//! and puts it back, so a second call made while one runs is refused rather than interleaved.
//! Results cross as plain JS objects (serde-wasm-bindgen); errors as `Error`s whose message is
//! the core's (naming the file, line or field).

use std::cell::RefCell;

use burn::backend::wgpu::WgpuDevice;
use burn::backend::{Autodiff, Flex, Wgpu};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::device_check;
use crate::io::Checkpoint;
use crate::lab::experiment::Experiment;
use crate::lab::{labels, memory_plan, Lab, LabConfig, Label, RewardSettings, RunSettings};
use crate::memory::DeviceMemory;

enum AnyLab {
    WebGpu(Box<Lab<Autodiff<Wgpu>>>),
    Cpu(Box<Lab<Autodiff<Flex>>>),
}

thread_local! {
    static LAB: RefCell<Option<AnyLab>> = const { RefCell::new(None) };
    static WEBGPU_READY: RefCell<bool> = const { RefCell::new(false) };
}

fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn to_js<T: Serialize>(value: crate::Result<T>) -> Result<JsValue, JsError> {
    let value = value.map_err(js_error)?;
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(js_error)
}

fn from_js<T: serde::de::DeserializeOwned>(value: JsValue, what: &str) -> Result<T, JsError> {
    serde_wasm_bindgen::from_value(value).map_err(|e| JsError::new(&format!("{what}: {e}")))
}

fn take() -> Result<AnyLab, JsError> {
    LAB.with(|lab| lab.borrow_mut().take())
        .ok_or_else(|| JsError::new("no model is loaded, or another computation is still running"))
}

fn put(lab: AnyLab) {
    LAB.with(|slot| *slot.borrow_mut() = Some(lab));
}

/// Runs `$body` (a future using `$lab: &mut Lab<_>`) on whichever backend the lab is on.
macro_rules! with_lab {
    (|$lab:ident| $body:expr) => {{
        let mut any = take()?;
        let result = match &mut any {
            AnyLab::WebGpu($lab) => to_js($body.await),
            AnyLab::Cpu($lab) => to_js($body.await),
        };
        put(any);
        result
    }};
}

/// The WebGPU device, set up on first use (a second setup of the same device panics).
async fn webgpu_device() -> WgpuDevice {
    let device = WgpuDevice::default();
    if !WEBGPU_READY.with(|r| *r.borrow()) {
        burn::backend::wgpu::init_setup_async::<burn::backend::wgpu::graphics::WebGpu>(
            &device,
            Default::default(),
        )
        .await;
        WEBGPU_READY.with(|r| *r.borrow_mut() = true);
    }
    device
}

#[derive(Serialize)]
struct Opened {
    backend: &'static str,
    info: crate::lab::LabInfo,
}

/// An error the page acts on: one that says the model does not fit the GPU is named
/// `OutOfMemoryError`, and the page offers the CPU.
fn open_error(e: crate::Error) -> JsValue {
    let error = js_sys::Error::new(&e.to_string());
    if matches!(e, crate::Error::OutOfMemory { .. }) {
        error.set_name("OutOfMemoryError");
    }
    error.into()
}

/// Loads a model (`model` holds a GGUF, llama2.c with its tokenizer, or an alignlab safetensors
/// file; the built-in model's bytes, fetched by the worker from beside the module, arrive under
/// the name `builtin`) on WebGPU (`backend = "webgpu"`) or the CPU, with the
/// lab's settings (`lab`: an experiment file's `[lab]` table; absent, the defaults). On WebGPU
/// a model the GPU cannot hold is refused before it is allocated: its largest tensor against
/// the adapter's buffer limit and, when `gpu_memory` (bytes) is given, the lab's working set
/// against it (WebGPU does not tell how much memory the GPU has).
#[wasm_bindgen(js_name = openLab)]
pub async fn open_lab(
    model: Vec<u8>,
    name: String,
    tokenizer: Option<Vec<u8>>,
    backend: String,
    lab: JsValue,
    gpu_memory: Option<f64>,
) -> Result<JsValue, JsValue> {
    console_error_panic_hook::set_once();
    let checkpoint = if name == crate::policy::BUILTIN {
        crate::policy::builtin_from_bytes(&model)
    } else {
        Checkpoint::from_bytes(
            &model,
            &name,
            tokenizer.as_deref().map(|t| (t, "tokenizer.bin")),
        )
    }
    .map_err(open_error)?;
    let config: LabConfig = if lab.is_undefined() || lab.is_null() {
        LabConfig::default()
    } else {
        from_js(lab, "lab settings")?
    };
    // The new lab is built before the old one is replaced: a model that fails to load leaves
    // the lab as it was.
    let lab = match backend.as_str() {
        "webgpu" => {
            let device = webgpu_device().await;
            let memory = DeviceMemory {
                total: gpu_memory.map(|bytes| bytes as u64),
                ..crate::memory::wgpu_device_memory(&device, "WebGPU")
            };
            memory_plan(&checkpoint.config, &config)
                .check(&memory)
                .map_err(open_error)?;
            AnyLab::WebGpu(Box::new(
                Lab::new(checkpoint, &device, config).map_err(open_error)?,
            ))
        }
        "cpu" => AnyLab::Cpu(Box::new(
            Lab::new(checkpoint, &Default::default(), config).map_err(open_error)?,
        )),
        other => return Err(JsError::new(&format!("unknown backend `{other}`")).into()),
    };
    let opened = Opened {
        backend: match lab {
            AnyLab::WebGpu(_) => "webgpu",
            AnyLab::Cpu(_) => "cpu",
        },
        info: match &lab {
            AnyLab::WebGpu(l) => l.info(),
            AnyLab::Cpu(l) => l.info(),
        },
    };
    put(lab);
    Ok(to_js(Ok(opened))?)
}

/// Checks WebGPU against the CPU backend ([`crate::device_check`]): the backend is burn's fused
/// one, the adapter's limits refuse what does not fit, and alignlab's kernels and the built-in
/// model (`builtin`, its bytes) compute what the CPU does. The open lab is left as it is.
#[wasm_bindgen(js_name = checkDevice)]
pub async fn check_device(builtin: Vec<u8>) -> Result<JsValue, JsError> {
    console_error_panic_hook::set_once();
    let checkpoint = crate::policy::builtin_from_bytes(&builtin).map_err(js_error)?;
    let device = webgpu_device().await;
    let memory = crate::memory::wgpu_device_memory(&device, "WebGPU");
    let mut checks = vec![
        device_check::fused_and_padded::<Autodiff<Wgpu>>(&device),
        device_check::refuses_what_does_not_fit(&memory, &checkpoint),
    ];
    let computed = device_check::all::<Autodiff<Wgpu>>(&device, &checkpoint).await;
    to_js(computed.map(|computed| {
        checks.extend(computed);
        checks
    }))
}

#[wasm_bindgen(js_name = labInfo)]
pub async fn lab_info() -> Result<JsValue, JsError> {
    with_lab!(|lab| async { Ok(lab.info()) })
}

#[wasm_bindgen(js_name = samplePair)]
pub async fn sample_pair(index: u32) -> Result<JsValue, JsError> {
    with_lab!(|lab| lab.pair(index as u64))
}

/// `k` completions of prompt number `index` to rank.
#[wasm_bindgen(js_name = sampleRanking)]
pub async fn sample_ranking(index: u32, k: u32) -> Result<JsValue, JsError> {
    with_lab!(|lab| lab.ranking(index as u64, k as usize))
}

#[wasm_bindgen(js_name = samples)]
pub async fn samples(prompt: Option<String>, count: u32, seed: u32) -> Result<JsValue, JsError> {
    with_lab!(|lab| lab.samples(prompt.as_deref(), count as usize, seed as u64))
}

#[wasm_bindgen(js_name = goldLabels)]
pub async fn gold_labels(start: u32, count: u32) -> Result<JsValue, JsError> {
    with_lab!(|lab| lab.gold_labels(start as u64, count as usize))
}

/// The labels to train on; returns how many pairs they state.
#[wasm_bindgen(js_name = setLabels)]
pub async fn set_labels(labels: JsValue) -> Result<JsValue, JsError> {
    let labels: Vec<Label> = from_js(labels, "labels")?;
    with_lab!(|lab| async { lab.set_labels(&labels) })
}

#[wasm_bindgen(js_name = rewardStart)]
pub async fn reward_start(settings: JsValue) -> Result<JsValue, JsError> {
    let settings: RewardSettings = from_js(settings, "reward-model settings")?;
    with_lab!(|lab| async { lab.reward_start(&settings) })
}

#[wasm_bindgen(js_name = rewardStep)]
pub async fn reward_step() -> Result<JsValue, JsError> {
    with_lab!(|lab| lab.reward_step())
}

#[wasm_bindgen(js_name = runStart)]
pub async fn run_start(settings: JsValue) -> Result<JsValue, JsError> {
    let settings: RunSettings = from_js(settings, "run settings")?;
    with_lab!(|lab| lab.run_start(&settings))
}

#[wasm_bindgen(js_name = runStep)]
pub async fn run_step() -> Result<JsValue, JsError> {
    with_lab!(|lab| lab.run_step())
}

#[wasm_bindgen(js_name = bestOfN)]
pub async fn best_of_n(ns: Vec<u32>, prompts: u32) -> Result<JsValue, JsError> {
    let ns: Vec<usize> = ns.into_iter().map(|n| n as usize).collect();
    with_lab!(|lab| lab.best_of_n(&ns, prompts as usize))
}

/// The base steered at decoding time by `method` at reward weight `weight`: a frontier point
/// with the tokens/s it cost.
#[wasm_bindgen]
pub async fn steer(method: String, weight: f64) -> Result<JsValue, JsError> {
    with_lab!(|lab| lab.steer(&method, weight))
}

/// Every pair the labels state, as the CLI's preference-pair JSON lines.
#[wasm_bindgen(js_name = exportLabels)]
pub fn export_labels(labels: JsValue) -> Result<String, JsError> {
    let labels: Vec<Label> = from_js(labels, "labels")?;
    Ok(labels::export_jsonl(&labels))
}

/// The rankings among the labels, as the CLI's ranking JSON lines.
#[wasm_bindgen(js_name = exportRankings)]
pub fn export_rankings(labels: JsValue) -> Result<String, JsError> {
    let labels: Vec<Label> = from_js(labels, "labels")?;
    Ok(labels::export_rankings_jsonl(&labels))
}

/// A preference file (pairs or rankings) as labels; a bad row is an error naming its line.
#[wasm_bindgen(js_name = importLabels)]
pub fn import_labels(bytes: Vec<u8>, name: String) -> Result<JsValue, JsError> {
    to_js(labels::import(&bytes, &name))
}

/// The experiment the page ran, as the TOML file `alignlab run` reads: `experiment` holds its
/// model, labels, reward-model settings, runs and best-of-n; the lab's settings are the open lab's.
#[wasm_bindgen(js_name = exportExperiment)]
pub async fn export_experiment(experiment: JsValue) -> Result<JsValue, JsError> {
    let mut experiment: Experiment = from_js(experiment, "experiment")?;
    with_lab!(|lab| async {
        experiment.lab = lab.config().clone();
        experiment.to_toml()
    })
}

/// An experiment file read for the page (an error names the key, line and column).
#[wasm_bindgen(js_name = readExperiment)]
pub fn read_experiment(bytes: Vec<u8>, name: String) -> Result<JsValue, JsError> {
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| JsError::new(&format!("{name}: not UTF-8: {e}")))?;
    to_js(Experiment::parse(text, &name))
}

/// The method registry for the page: every method with its kind, training defaults and
/// settings (name, default, help), and every metric name with its meaning.
#[wasm_bindgen(js_name = methods)]
pub fn methods() -> Result<JsValue, JsError> {
    to_js(Ok(crate::methods::catalogue()))
}
