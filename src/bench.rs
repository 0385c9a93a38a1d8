//! The performance harness behind `alignlab bench`: generation throughput with and without the
//! KV cache, log-prob scoring throughput, and how generation time grows with length. Each figure
//! is reported with its ratio to a baseline measured in the same run.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::Serialize;

use crate::algo::preference::{reference_logps, PreferenceConfig, PreferenceData, PreferenceLoss};
use crate::compilation::{self, CompileCounts};
use crate::dataset::RankedSequences;
use crate::error::Result;
use crate::logprobs::{completion_logprobs, SequenceBatch};
use crate::model::Llama;
use crate::run::preference::PreferenceRun;
use crate::sample::{generate, SamplingConfig};
use crate::train::OptimConfig;

#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub name: String,
    pub tokens: usize,
    pub seconds: f64,
    pub tokens_per_second: f64,
    /// GPU kernels compiled and autotuned during the warm-up call, and during the timed calls
    /// after it (zero once shapes stay fixed; all zero on CPU backends).
    pub compiled_in_warmup: CompileCounts,
    pub compiled_after_warmup: CompileCounts,
}

/// Best of `repeats` timings of `run` (after one warm-up call), with what each part compiled.
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
        }
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

/// Deterministic pseudo-text of `len` tokens (row `row`): speed does not depend on which tokens.
fn pseudo_text(row: usize, len: usize, vocab: usize) -> Vec<u32> {
    (0..len)
        .map(|t| ((row * 7919 + t * 104_729) % vocab) as u32)
        .collect()
}

pub fn generation<B: Backend>(
    model: &Llama<B>,
    bos: u32,
    batch: usize,
    new_tokens: usize,
    use_cache: bool,
    repeats: usize,
) -> Result<Measurement> {
    let prompts = vec![vec![bos]; batch];
    let config = SamplingConfig {
        max_new_tokens: new_tokens,
        temperature: 1.0,
        stop_at_eos: false,
        use_cache,
        ..Default::default()
    };
    let timing = time_best(repeats, || {
        pollster::block_on(generate(model, &prompts, None, &config)).map(|_| ())
    })?;
    let label = if use_cache { "kv-cache" } else { "no-cache" };
    Ok(timing.measurement(
        format!("generate batch={batch} new={new_tokens} {label}"),
        batch * new_tokens,
    ))
}

pub fn scoring<B: Backend>(
    model: &Llama<B>,
    batch: usize,
    seq: usize,
    repeats: usize,
) -> Result<Measurement> {
    let vocab = model.config().vocab_size;
    let pairs: Vec<(Vec<u32>, Vec<u32>)> = (0..batch)
        .map(|row| {
            let tokens = pseudo_text(row, seq, vocab);
            (tokens[..1].to_vec(), tokens[1..].to_vec())
        })
        .collect();
    let device = model.device();
    let timing = time_best(repeats, || {
        let sequences = SequenceBatch::<B>::new(&pairs, model.config().max_seq_len, &device)?;
        let logps = completion_logprobs(model, &sequences).sum();
        crate::host::read_scalar_blocking(logps)?;
        Ok(())
    })?;
    Ok(timing.measurement(format!("score {batch}x{seq}"), batch * seq))
}

/// One DPO update as TRL takes it by default: the reference model's forward pass on the batch,
/// then the policy's forward and backward passes and an AdamW step, on `pairs` pairs of
/// sequences of `seq` tokens (a one-token prompt, then the completion).
pub fn dpo_step<B: AutodiffBackend>(
    policy: Llama<B>,
    pairs: usize,
    seq: usize,
    repeats: usize,
) -> Result<Measurement>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
{
    let vocab = policy.config().vocab_size;
    let rows: Vec<RankedSequences> = (0..pairs)
        .map(|index| {
            let (chosen, rejected) = (
                pseudo_text(2 * index, seq, vocab),
                pseudo_text(2 * index + 1, seq, vocab),
            );
            RankedSequences {
                index,
                prompt: chosen[..1].to_vec(),
                completions: vec![chosen[1..].to_vec(), rejected[1..].to_vec()],
                scores: None,
            }
        })
        .collect();
    let data = PreferenceData::Ranked(rows);
    let config = PreferenceConfig {
        loss: PreferenceLoss::named("dpo").expect("DPO is in the registry"),
        beta: 0.1,
        optim: OptimConfig {
            lr: 1e-6,
            warmup_steps: 1,
            total_steps: repeats + 1,
            ..Default::default()
        },
        batch_size: pairs,
        seed: 0,
    };
    let reference = policy.valid();
    let mut run = pollster::block_on(PreferenceRun::new(&reference, data.clone(), config))?;
    let timing = time_steps(repeats, policy, |policy| {
        pollster::block_on(async {
            // TRL's default scores the batch under the reference at every step; the run has
            // those log-probs already, so this pass is timed and its result not used.
            reference_logps(&reference, &data, pairs * 2).await?;
            Ok(run.step(policy).await?.0)
        })
    })?;
    Ok(timing.measurement(format!("dpo step {pairs} pairs x {seq}"), 2 * pairs * seq))
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub measurements: Vec<Measurement>,
    /// Named ratios between measurements of this run.
    pub ratios: Vec<(String, f64)>,
}

/// Generation at batch 1 and 32 with and without the cache (64 new tokens), 64- vs 256-token
/// cached generation, scoring 32 × 256, and a DPO step on 8 pairs × 256 tokens.
pub fn run<B: AutodiffBackend>(policy: Llama<B>, bos: u32, repeats: usize) -> Result<Report>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
{
    let inference = policy.valid();
    let model = &inference;
    let mut measurements = Vec::new();
    let mut ratios = Vec::new();
    let mut record = |m: Measurement| {
        let (warmup, after) = (m.compiled_in_warmup, m.compiled_after_warmup);
        println!(
            "{:<40} {:>9.1} tokens/s  ({:.3} s)  compiled: warm-up {} kernels/{} autotunes, after {}/{}",
            m.name,
            m.tokens_per_second,
            m.seconds,
            warmup.kernels,
            warmup.autotunes,
            after.kernels,
            after.autotunes
        );
        measurements.push(m.clone());
        m
    };
    for batch in [1, 32] {
        let cached = record(generation(model, bos, batch, 64, true, repeats)?);
        let uncached = record(generation(model, bos, batch, 64, false, repeats)?);
        ratios.push((
            format!("batch {batch}: KV-cache speed-up over recomputation (64 tokens)"),
            cached.tokens_per_second / uncached.tokens_per_second,
        ));
        let long = record(generation(model, bos, batch, 256, true, repeats)?);
        ratios.push((
            format!("batch {batch}: time(256 tokens) / time(64 tokens), cached (linear = 4)"),
            long.seconds / cached.seconds,
        ));
    }
    let score = record(scoring(model, 32, 256, repeats)?);
    let dpo = record(dpo_step(policy, 8, 256, repeats)?);
    let batch32 = measurements
        .iter()
        .find(|m| m.name == "generate batch=32 new=64 kv-cache")
        .expect("measured above")
        .clone();
    ratios.push((
        "scoring / cached batch-32 generation, tokens per second".into(),
        score.tokens_per_second / batch32.tokens_per_second,
    ));
    ratios.push((
        "DPO step (policy forward + backward, reference forward) / scoring, tokens per second"
            .into(),
        dpo.tokens_per_second / score.tokens_per_second,
    ));
    for (name, ratio) in &ratios {
        println!("{name}: {ratio:.2}");
    }
    Ok(Report {
        measurements,
        ratios,
    })
}
