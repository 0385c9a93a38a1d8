//! Batched generation: left-padded prompts of different lengths decoded together, with
//! temperature, top-k and top-p sampling from seeded per-row random streams (so a row's sample
//! does not depend on what else is in the batch, nor on the backend).

use crate::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::host::read_vec;
use crate::logprobs::PAD_ID;
use crate::model::{KvCache, Llama};
use crate::shapes::{round_up, LengthBlocks};

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
    let mut decoding = Decoding::start(model, prompts, eos, config)?;
    let mut rngs: Vec<ChaCha8Rng> = (0..prompts.len())
        .map(|row| row_rng(config.seed, first_row + row))
        .collect();
    let vocab = model.config().vocab_size;
    while let Some(logits) = decoding.next_logits().await? {
        let tokens = (0..prompts.len())
            .map(|row| {
                (!decoding.is_finished(row)).then(|| {
                    sample_token(
                        &logits[row * vocab..(row + 1) * vocab],
                        config,
                        &mut rngs[row],
                    )
                })
            })
            .collect();
        decoding.push(tokens);
    }
    Ok(decoding.into_completions())
}

/// A batch being decoded a token at a time: the left-padded prompts, the KV cache, which rows
/// have ended. Whoever drives it picks each next token ([`generate_rows`] samples it; a
/// decoding-time alignment method rescores the candidates first).
pub struct Decoding<'m, B: Backend> {
    model: &'m Llama<B>,
    eos: Option<u32>,
    config: SamplingConfig,
    pad: Vec<usize>,
    capacity: usize,
    cache: KvCache<B>,
    /// Each row: padding, prompt and the tokens chosen so far.
    sequences: Vec<Vec<u32>>,
    /// Tokens not yet run through the model.
    pending: Vec<Vec<u32>>,
    completions: Vec<Vec<u32>>,
    finished: Vec<bool>,
    steps: usize,
}

impl<'m, B: Backend> Decoding<'m, B> {
    /// Checks the prompts against the model (non-empty, in the vocabulary, room in the context
    /// for `config.max_new_tokens`) and pads them on the left.
    pub fn start(
        model: &'m Llama<B>,
        prompts: &[Vec<u32>],
        eos: Option<u32>,
        config: &SamplingConfig,
    ) -> Result<Self> {
        config.validate()?;
        let context = model.config().max_seq_len;
        let prompt_len = prompts.iter().map(Vec::len).max().unwrap_or(0);
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
        // On a GPU the prompts are padded to a block too, so the first step's shape recurs.
        let block = LengthBlocks::of::<B>(&model.device()).sequence;
        let prompt_len = round_up(prompt_len, block);
        let pad: Vec<usize> = prompts.iter().map(|p| prompt_len - p.len()).collect();
        let sequences: Vec<Vec<u32>> = prompts
            .iter()
            .zip(&pad)
            .map(|(p, &pad)| {
                std::iter::repeat_n(PAD_ID, pad)
                    .chain(p.iter().copied())
                    .collect()
            })
            .collect();
        let capacity = prompt_len + config.max_new_tokens;
        Ok(Self {
            model,
            eos,
            config: config.clone(),
            cache: KvCache::new(model.config(), pad.clone(), capacity, &model.device()),
            pad,
            capacity,
            pending: sequences.clone(),
            sequences,
            completions: vec![Vec::new(); prompts.len()],
            finished: vec![false; prompts.len()],
            steps: 0,
        })
    }

    /// The next-token logits of every row ([rows · vocab], read to the host), or `None` when
    /// every row has ended or `max_new_tokens` are chosen.
    pub async fn next_logits(&mut self) -> Result<Option<Vec<f32>>> {
        if self.steps == self.config.max_new_tokens || self.finished.iter().all(|&f| f) {
            return Ok(None);
        }
        let device = self.model.device();
        if !self.config.use_cache {
            self.cache = KvCache::new(
                self.model.config(),
                self.pad.clone(),
                self.capacity,
                &device,
            );
            self.pending = self.sequences.clone();
        }
        let (rows, new) = (self.pending.len(), self.pending[0].len());
        let ids: Vec<i64> = self.pending.iter().flatten().map(|&t| t as i64).collect();
        let tokens: Tensor<B, 2, Int> =
            Tensor::from_data(TensorData::new(ids, [rows, new]), &device);
        let hidden = self.model.forward_cached(tokens, &mut self.cache); // [B, new, dim]
        let last = hidden.narrow(1, new - 1, 1); // [B, 1, dim]
        Ok(Some(read_vec(self.model.logits(last)).await?))
    }

    /// How many rows the batch has (ended ones included).
    pub fn rows(&self) -> usize {
        self.finished.len()
    }

    pub fn is_finished(&self, row: usize) -> bool {
        self.finished[row]
    }

    /// Row `row`'s prompt (without padding) and the tokens chosen so far (without EOS).
    pub fn row(&self, row: usize) -> (&[u32], &[u32]) {
        let prompt_end = self.capacity - self.config.max_new_tokens;
        (
            &self.sequences[row][self.pad[row]..prompt_end],
            &self.completions[row],
        )
    }

    /// Appends each row's next token (`None` for a row that has ended). A row that draws the
    /// end-of-sequence token ends there (the token is not part of its completion).
    pub fn push(&mut self, tokens: Vec<Option<u32>>) {
        for (row, token) in tokens.into_iter().enumerate() {
            let token = match token {
                Some(token) if !self.finished[row] => {
                    if self.config.stop_at_eos && Some(token) == self.eos {
                        self.finished[row] = true;
                    } else {
                        self.completions[row].push(token);
                    }
                    token
                }
                _ => PAD_ID,
            };
            self.sequences[row].push(token);
            self.pending[row] = vec![token];
        }
        self.steps += 1;
    }

    /// Each row's new tokens, without the end-of-sequence token.
    pub fn into_completions(self) -> Vec<Vec<u32>> {
        self.completions
    }
}
