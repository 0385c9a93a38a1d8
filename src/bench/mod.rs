//! The performance harness behind `alignlab bench`: sampling with and without the KV cache,
//! log-prob scoring, a DPO step and a PPO iteration ([`figures`]), each the best of a few timed
//! calls after a warm-up call, with the GPU kernels each part compiled. Ratios between figures
//! of one run are printed with them; [`twin`] runs the same figures in PyTorch in the same
//! invocation and prints alignlab's ratio to each.

pub mod figures;
pub mod twin;

use std::time::Instant;

use crate::backend::AutodiffBackend;
use burn::module::AutodiffModule;
use serde::{Deserialize, Serialize};

use crate::compilation::{self, CompileCounts};
use crate::error::Result;
use crate::io::Tokenizer;
use crate::model::{Llama, RewardModel};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    pub name: String,
    pub tokens: usize,
    pub seconds: f64,
    pub tokens_per_second: f64,
    /// GPU kernels compiled and autotuned during the warm-up call, and during the timed calls
    /// after it (zero once shapes stay fixed; all zero on CPU backends).
    #[serde(default)]
    pub compiled_in_warmup: CompileCounts,
    #[serde(default)]
    pub compiled_after_warmup: CompileCounts,
    /// Model FLOPs per second: the weights' multiply-adds (2 FLOPs per parameter per token
    /// forward, 4 more backward; attention's own products not counted), where a figure's work
    /// is that simple to count. Over a GPU's peak, its MFU.
    #[serde(default)]
    pub model_flops_per_second: Option<f64>,
}

/// Best of `repeats` timings of a figure (after one warm-up call), with what each part compiled.
struct Timing {
    seconds: f64,
    compiled_in_warmup: CompileCounts,
    compiled_after_warmup: CompileCounts,
}

impl Timing {
    fn measurement(self, name: String, tokens: usize) -> Measurement {
        Measurement {
            name,
            tokens,
            seconds: self.seconds,
            tokens_per_second: tokens as f64 / self.seconds,
            compiled_in_warmup: self.compiled_in_warmup,
            compiled_after_warmup: self.compiled_after_warmup,
            model_flops_per_second: None,
        }
    }
}

impl Measurement {
    /// This figure's work as `flops_per_token` FLOPs for each of its tokens.
    fn with_flops_per_token(mut self, flops_per_token: f64) -> Self {
        self.model_flops_per_second = Some(flops_per_token * self.tokens_per_second);
        self
    }
}

fn time_best(repeats: usize, mut run: impl FnMut() -> Result<()>) -> Result<Timing> {
    time_steps(repeats, (), |()| run())
}

/// [`time_best`] for a step that carries state from one call to the next (a model being trained).
fn time_steps<S>(repeats: usize, state: S, mut step: impl FnMut(S) -> Result<S>) -> Result<Timing> {
    let before = compilation::counts();
    let mut state = step(state)?;
    let warm = compilation::counts();
    let mut best = f64::INFINITY;
    for _ in 0..repeats {
        let start = Instant::now();
        state = step(state)?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(Timing {
        seconds: best,
        compiled_in_warmup: warm - before,
        compiled_after_warmup: compilation::counts() - warm,
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub backend: String,
    /// CPU threads the backend may use (`--threads`; all cores when not set).
    pub threads: Option<usize>,
    pub measurements: Vec<Measurement>,
    /// Named ratios between measurements of this run.
    pub ratios: Vec<(String, f64)>,
    /// Each figure against PyTorch's, when `--vs-pytorch` ran the twin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vs_pytorch: Option<twin::Comparison>,
}

/// The kinds of figure `alignlab bench --only` picks (all when none is named).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    Generate,
    Score,
    Dpo,
    Ppo,
}

impl Figure {
    pub const ALL: [Figure; 4] = [Figure::Generate, Figure::Score, Figure::Dpo, Figure::Ppo];

    /// Its name on the command line, alignlab's and the twin's (`--only`).
    pub fn name(self) -> &'static str {
        match self {
            Figure::Generate => "generate",
            Figure::Score => "score",
            Figure::Dpo => "dpo",
            Figure::Ppo => "ppo",
        }
    }
}

impl std::str::FromStr for Figure {
    type Err = String;

    fn from_str(name: &str) -> std::result::Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|f| f.name()).collect();
                format!("no figure {name:?}; there are {}", names.join(", "))
            })
    }
}

/// Generation at batch 1 and 32 (64 and 256 new tokens with the cache, 64 without at batch 1),
/// scoring 32 × 256, a DPO step on 8 pairs × 256 tokens and a PPO iteration on 32 rollouts ×
/// 64 tokens with 2 epochs, printed as they finish.
pub fn run<B: AutodiffBackend>(
    policy: Llama<B>,
    tokenizer: &Tokenizer,
    repeats: usize,
    only: &[Figure],
) -> Result<Vec<Measurement>>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
    RewardModel<B>: AutodiffModule<B, InnerModule = RewardModel<B::InnerBackend>>,
{
    let inference = policy.valid();
    let model = &inference;
    let bos = tokenizer.bos_id().unwrap_or(0);
    let mut measurements = Vec::new();
    let mut record = |m: Measurement| {
        let (warmup, after) = (m.compiled_in_warmup, m.compiled_after_warmup);
        let flops = match m.model_flops_per_second {
            Some(f) => format!("  {:.3} TFLOP/s", f / 1e12),
            None => String::new(),
        };
        println!(
            "{:<44} {:>9.1} tokens/s  ({:.3} s)  compiled: warm-up {} kernels/{} autotunes, after {}/{}{flops}",
            m.name,
            m.tokens_per_second,
            m.seconds,
            warmup.kernels,
            warmup.autotunes,
            after.kernels,
            after.autotunes
        );
        measurements.push(m);
    };
    let wanted = |figure| only.is_empty() || only.contains(&figure);
    let generation_batches: &[usize] = if wanted(Figure::Generate) {
        &[1, 32]
    } else {
        &[]
    };
    for &batch in generation_batches {
        for new_tokens in [64, 256] {
            record(figures::generation(
                model, bos, batch, new_tokens, true, repeats,
            )?);
        }
        if batch == 1 {
            record(figures::generation(model, bos, batch, 64, false, repeats)?);
        }
    }
    if wanted(Figure::Score) {
        record(figures::scoring(model, 32, 256, repeats)?);
    }
    if wanted(Figure::Dpo) {
        record(figures::dpo_step(policy.clone(), 8, 256, repeats)?);
    }
    if wanted(Figure::Ppo) {
        record(figures::ppo_iteration(
            policy, tokenizer, 32, 64, 2, repeats,
        )?);
    }
    Ok(measurements)
}

/// Ratios between figures of one run: what the cache buys, whether cached generation is linear
/// in length, scoring against generation, training against scoring.
pub fn ratios(measurements: &[Measurement]) -> Vec<(String, f64)> {
    let find = |name: &str| measurements.iter().find(|m| m.name == name);
    let mut ratios = Vec::new();
    let mut push = |name: String,
                    a: Option<&Measurement>,
                    b: Option<&Measurement>,
                    f: fn(&Measurement, &Measurement) -> f64| {
        if let (Some(a), Some(b)) = (a, b) {
            ratios.push((name, f(a, b)));
        }
    };
    let speed = |a: &Measurement, b: &Measurement| a.tokens_per_second / b.tokens_per_second;
    let time = |a: &Measurement, b: &Measurement| a.seconds / b.seconds;
    push(
        "batch 1: KV-cache speed-up over recomputation (64 tokens)".into(),
        find("generate batch=1 new=64 kv-cache"),
        find("generate batch=1 new=64 no-cache"),
        speed,
    );
    for batch in [1, 32] {
        push(
            format!("batch {batch}: time(256 tokens) / time(64 tokens), cached (linear = 4)"),
            find(&format!("generate batch={batch} new=256 kv-cache")),
            find(&format!("generate batch={batch} new=64 kv-cache")),
            time,
        );
    }
    push(
        "scoring / cached batch-32 generation, tokens per second".into(),
        find("score 32x256"),
        find("generate batch=32 new=256 kv-cache"),
        speed,
    );
    push(
        "DPO step (policy forward + backward, reference forward) / scoring, tokens per second"
            .into(),
        find("dpo step 8 pairs x 256"),
        find("score 32x256"),
        speed,
    );
    ratios
}

/// What `alignlab bench` runs.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The backend's name, for the report.
    pub backend: String,
    /// Timed calls per figure (the best is kept), after one warm-up call.
    pub repeats: usize,
    /// CPU threads: the global rayon pool the CPU backends use is built with this many (all
    /// cores when `None`); the twin gets the same number.
    pub threads: Option<usize>,
    /// The kinds of figure to measure (all when empty).
    pub only: Vec<Figure>,
    /// Run the PyTorch twin on the same model after alignlab's figures.
    pub twin: Option<twin::TwinOptions>,
}

/// [`run`], the ratios between its figures, and, with a twin, each figure against PyTorch's.
pub fn benchmark<B: AutodiffBackend>(
    policy: Llama<B>,
    tokenizer: &Tokenizer,
    options: &BenchOptions,
) -> Result<Report>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
    RewardModel<B>: AutodiffModule<B, InnerModule = RewardModel<B::InnerBackend>>,
{
    if let Some(threads) = options.threads {
        set_threads(threads)?;
    }
    // The twin reads the model as it is before any figure trains a copy of it.
    let twin = match &options.twin {
        Some(twin) => Some((twin, export_for_twin(&policy, tokenizer)?)),
        None => None,
    };
    let measurements = run(policy, tokenizer, options.repeats, &options.only)?;
    let ratios = ratios(&measurements);
    for (name, ratio) in &ratios {
        println!("{name}: {ratio:.2}");
    }
    let vs_pytorch = match twin {
        Some((twin, folder)) => {
            let threads = options.threads.unwrap_or_else(available_cores);
            let bos = tokenizer.bos_id().unwrap_or(0);
            let only: Vec<&str> = options.only.iter().map(|f| f.name()).collect();
            let pytorch = twin::run(twin, folder.path(), threads, options.repeats, bos, &only)?;
            let comparison = twin::compare(&measurements, pytorch);
            println!(
                "\nalignlab ({}) against PyTorch, same run:\n{}",
                options.backend,
                comparison.table()
            );
            Some(comparison)
        }
        None => None,
    };
    Ok(Report {
        backend: options.backend.clone(),
        threads: options.threads,
        measurements,
        ratios,
        vs_pytorch,
    })
}

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The CPU backends run their kernels on rayon's global pool: it is built once, with `threads`.
fn set_threads(threads: usize) -> Result<()> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| crate::error::Error::Input(format!("--threads {threads}: {e}")))
}

/// A temporary folder removed when dropped.
struct TempFolder(std::path::PathBuf);

impl TempFolder {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The model as a Hugging Face folder the twin loads with `from_pretrained`.
fn export_for_twin<B: AutodiffBackend>(
    policy: &Llama<B>,
    tokenizer: &Tokenizer,
) -> Result<TempFolder>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
{
    let folder =
        TempFolder(std::env::temp_dir().join(format!("alignlab-bench-{}", std::process::id())));
    std::fs::create_dir_all(folder.path())
        .map_err(|e| crate::error::Error::io(folder.path(), e))?;
    pollster::block_on(crate::policy::save(
        &policy.valid(),
        tokenizer,
        folder.path(),
    ))?;
    Ok(folder)
}
