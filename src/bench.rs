//! The performance harness behind `alignlab bench`: generation throughput with and without the
//! KV cache, log-prob scoring throughput, and how generation time grows with length. Each figure
//! is reported with its ratio to a baseline measured in the same run.

use std::time::Instant;

use burn::tensor::backend::Backend;
use serde::Serialize;

use crate::error::Result;
use crate::logprobs::{completion_logprobs, SequenceBatch};
use crate::model::Llama;
use crate::sample::{generate, SamplingConfig};

#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub name: String,
    pub tokens: usize,
    pub seconds: f64,
    pub tokens_per_second: f64,
}

fn measurement(name: String, tokens: usize, seconds: f64) -> Measurement {
    Measurement {
        name,
        tokens,
        seconds,
        tokens_per_second: tokens as f64 / seconds,
    }
}

/// Best of `repeats` timings of `run` (after one warm-up call).
fn time_best(repeats: usize, mut run: impl FnMut() -> Result<()>) -> Result<f64> {
    run()?;
    let mut best = f64::INFINITY;
    for _ in 0..repeats {
        let start = Instant::now();
        run()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best)
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
    let seconds = time_best(repeats, || {
        pollster::block_on(generate(model, &prompts, None, &config)).map(|_| ())
    })?;
    let label = if use_cache { "kv-cache" } else { "no-cache" };
    Ok(measurement(
        format!("generate batch={batch} new={new_tokens} {label}"),
        batch * new_tokens,
        seconds,
    ))
}

pub fn scoring<B: Backend>(
    model: &Llama<B>,
    batch: usize,
    seq: usize,
    repeats: usize,
) -> Result<Measurement> {
    let vocab = model.config().vocab_size as u32;
    // Deterministic pseudo-text: scoring cost does not depend on which tokens they are.
    let pairs: Vec<(Vec<u32>, Vec<u32>)> = (0..batch)
        .map(|row| {
            let tokens: Vec<u32> = (0..seq)
                .map(|t| ((row * 7919 + t * 104_729) as u32) % vocab)
                .collect();
            (tokens[..1].to_vec(), tokens[1..].to_vec())
        })
        .collect();
    let device = model.device();
    let seconds = time_best(repeats, || {
        let sequences = SequenceBatch::<B>::new(&pairs, model.config().max_seq_len, &device)?;
        let logps = completion_logprobs(model, &sequences).sum();
        crate::host::read_scalar_blocking(logps)?;
        Ok(())
    })?;
    Ok(measurement(
        format!("score {batch}x{seq}"),
        batch * seq,
        seconds,
    ))
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub measurements: Vec<Measurement>,
    /// Named ratios between measurements of this run.
    pub ratios: Vec<(String, f64)>,
}

/// The benchmark of the core issue: generation at batch 1 and 32 with and without the cache
/// (64 new tokens), scoring 32 × 256, and 64- vs 256-token cached generation.
pub fn run<B: Backend>(model: &Llama<B>, bos: u32, repeats: usize) -> Result<Report> {
    let mut measurements = Vec::new();
    let mut ratios = Vec::new();
    let mut record = |m: Measurement| {
        println!(
            "{:<40} {:>9.1} tokens/s  ({:.3} s)",
            m.name, m.tokens_per_second, m.seconds
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
    let batch32 = measurements
        .iter()
        .find(|m| m.name == "generate batch=32 new=64 kv-cache")
        .expect("measured above")
        .clone();
    ratios.push((
        "scoring / cached batch-32 generation, tokens per second".into(),
        score.tokens_per_second / batch32.tokens_per_second,
    ));
    for (name, ratio) in &ratios {
        println!("{name}: {ratio:.2}");
    }
    Ok(Report {
        measurements,
        ratios,
    })
}
