//! Batched generation: left-padded prompts of different lengths decoded together, with
//! temperature, top-k and top-p sampling from seeded per-row random streams (so a row's sample
//! does not depend on what else is in the batch, nor on the backend).

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::host::read_vec;
use crate::logprobs::PAD_ID;
use crate::model::{KvCache, Llama};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingConfig {
    pub max_new_tokens: usize,
    /// 0 means greedy (argmax); 1 samples from the model's distribution.
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches p; 1 keeps all.
    pub top_p: f32,
    pub seed: u64,
    /// Stop a row at the end-of-sequence token (which is not returned).
    pub stop_at_eos: bool,
    /// Decode incrementally with the KV cache; `false` recomputes the whole prefix every step
    /// (for benchmarks and for checking the cache).
    pub use_cache: bool,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
            stop_at_eos: true,
            use_cache: true,
        }
    }
}

impl SamplingConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(Error::Input(format!(
                "temperature must be finite and ≥ 0, got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::Input(format!(
                "top_p must be in (0, 1], got {}",
                self.top_p
            )));
        }
        Ok(())
    }
}

/// Draws one token from `logits` (one row of vocabulary scores).
pub fn sample_token(logits: &[f32], config: &SamplingConfig, rng: &mut ChaCha8Rng) -> u32 {
    if config.temperature == 0.0 {
        let mut best = 0;
        for (i, &l) in logits.iter().enumerate() {
            if l > logits[best] {
                best = i;
            }
        }
        return best as u32;
    }
    let mut candidates: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, l / config.temperature))
        .collect();
    let truncating = config.top_k > 0 || config.top_p < 1.0;
    if truncating {
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
        if config.top_k > 0 {
            candidates.truncate(config.top_k);
        }
    }
    let max = candidates
        .iter()
        .map(|c| c.1)
        .fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<f32> = candidates.iter().map(|c| (c.1 - max).exp()).collect();
    if config.top_p < 1.0 {
        let total: f32 = probs.iter().sum();
        let mut cumulative = 0.0;
        let mut keep = probs.len();
        for (i, p) in probs.iter().enumerate() {
            cumulative += p / total;
            if cumulative >= config.top_p {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep);
    }
    let total: f32 = probs.iter().sum();
    let mut target = rng.random::<f32>() * total;
    for (i, p) in probs.iter().enumerate() {
        target -= p;
        if target < 0.0 {
            return candidates[i].0;
        }
    }
    candidates[probs.len() - 1].0
}

/// The per-row random stream: row r of a call with seed s always draws the same numbers.
pub fn row_rng(seed: u64, row: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(row as u64);
    rng
}

/// Samples a completion for each prompt (token ids, BOS included if the model expects it).
/// Returns the new tokens of each row, without the end-of-sequence token.
pub async fn generate<B: Backend>(
    model: &Llama<B>,
    prompts: &[Vec<u32>],
    eos: Option<u32>,
    config: &SamplingConfig,
) -> Result<Vec<Vec<u32>>> {
    generate_rows(model, prompts, eos, config, 0).await
}

/// [`generate`] for the rows `first_row..` of a larger batch (a replica's share of it): row r
/// draws from the random stream of row `first_row + r`, so the samples are those the whole
/// batch would give.
pub async fn generate_rows<B: Backend>(
    model: &Llama<B>,
    prompts: &[Vec<u32>],
    eos: Option<u32>,
    config: &SamplingConfig,
    first_row: usize,
) -> Result<Vec<Vec<u32>>> {
    config.validate()?;
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    let context = model.config().max_seq_len;
    let prompt_len = prompts.iter().map(Vec::len).max().expect("non-empty");
    if prompts.iter().any(Vec::is_empty) {
        return Err(Error::Input("a prompt is empty: start it with BOS".into()));
    }
    if prompt_len + config.max_new_tokens > context {
        return Err(Error::Input(format!(
            "a prompt of {prompt_len} tokens plus {} new tokens exceeds the model's context of {context} tokens",
            config.max_new_tokens
        )));
    }
    let vocab = model.config().vocab_size;
    if let Some(bad) = prompts.iter().flatten().find(|&&t| t as usize >= vocab) {
        return Err(Error::Input(format!(
            "token id {bad} is outside the vocabulary of {vocab}"
        )));
    }
    let batch = prompts.len();
    let device = model.device();
    let pad: Vec<usize> = prompts.iter().map(|p| prompt_len - p.len()).collect();
    let mut sequences: Vec<Vec<u32>> = prompts
        .iter()
        .zip(&pad)
        .map(|(p, &pad)| {
            std::iter::repeat_n(PAD_ID, pad)
                .chain(p.iter().copied())
                .collect()
        })
        .collect();
    let mut rngs: Vec<ChaCha8Rng> = (0..batch)
        .map(|row| row_rng(config.seed, first_row + row))
        .collect();
    let mut completions = vec![Vec::new(); batch];
    let mut finished = vec![false; batch];
    let capacity = prompt_len + config.max_new_tokens;
    let mut cache = KvCache::new(model.config(), pad.clone(), capacity, &device);
    let mut pending = sequences.clone(); // tokens not yet run through the model

    for _ in 0..config.max_new_tokens {
        if !config.use_cache {
            cache = KvCache::new(model.config(), pad.clone(), capacity, &device);
            pending = sequences.clone();
        }
        let new = pending[0].len();
        let ids: Vec<i64> = pending.iter().flatten().map(|&t| t as i64).collect();
        let tokens: Tensor<B, 2, Int> =
            Tensor::from_data(TensorData::new(ids, [batch, new]), &device);
        let hidden = model.forward_cached(tokens, &mut cache); // [B, new, dim]
        let last = hidden.narrow(1, new - 1, 1); // [B, 1, dim]
        let logits = read_vec(model.logits(last)).await?; // [B · vocab]
        for row in 0..batch {
            let token = if finished[row] {
                PAD_ID
            } else {
                let token = sample_token(
                    &logits[row * vocab..(row + 1) * vocab],
                    config,
                    &mut rngs[row],
                );
                if config.stop_at_eos && Some(token) == eos {
                    finished[row] = true;
                } else {
                    completions[row].push(token);
                }
                token
            };
            sequences[row].push(token);
            pending[row] = vec![token];
        }
        if finished.iter().all(|&f| f) {
            break;
        }
    }
    Ok(completions)
}
