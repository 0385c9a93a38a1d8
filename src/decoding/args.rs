//! ARGS, alignment as reward-guided search (Khanov, Burapacheep and Li, ICLR 2024,
//! arXiv:2402.01694). At each step the reference's k most likely next tokens v are rescored
//! (their eq. 2)
//!
//!     s(v) = log π_ref(v | x, y<t) + w · r(x, [y<t, v])
//!
//! with the reward of the prefix the token would make, and the next token is the best one
//! (ARGS-greedy: temperature 0) or drawn from softmax(s / τ) over the k (ARGS-stochastic). With
//! w = 0 this is the reference's top-k sampler, token for token.

use crate::dataset::Sequence;
use crate::error::{Error, Result};
use crate::io::Tokenizer;
use crate::model::Llama;
use crate::reward::source::{RewardSource, Scored};
use crate::sample::{row_rng, sample_token, Decoding, SamplingConfig};
use burn::tensor::backend::Backend;

#[derive(Debug, Clone, PartialEq)]
pub struct ArgsConfig {
    /// w: the reward's weight against the reference's log-probability.
    pub weight: f32,
    /// k: how many of the reference's most likely next tokens are rescored (the paper: 10).
    pub candidates: usize,
    /// Length, seed and end of sequence; temperature 0 is ARGS-greedy, 1 ARGS-stochastic.
    /// Its `top_k` and `top_p` are not used: the candidates are the top k.
    pub sampling: SamplingConfig,
}

/// One completion and what it cost in KL.
#[derive(Debug, Clone, PartialEq)]
pub struct GuidedSample {
    pub tokens: Vec<u32>,
    /// Σ over the chosen tokens of log π_args(y_t | ·) − log π_ref(y_t | ·): this sample's
    /// estimate of KL(π_args ‖ π_ref), each term exact because π_args is known.
    pub log_ratio: f64,
}

/// ARGS completions of `prompts` from `reference`, guided by `reward`.
pub async fn generate<B: Backend>(
    reference: &Llama<B>,
    tokenizer: &Tokenizer,
    reward: &RewardSource<B>,
    prompts: &[String],
    config: &ArgsConfig,
) -> Result<Vec<GuidedSample>> {
    if config.candidates == 0 || !config.weight.is_finite() {
        return Err(Error::Input(format!(
            "ARGS needs at least one candidate and a finite weight, got k = {} and w = {}",
            config.candidates, config.weight
        )));
    }
    let encoded = prompts
        .iter()
        .map(|p| tokenizer.encode_with_bos(p))
        .collect::<Result<Vec<_>>>()?;
    let mut decoding = Decoding::start(reference, &encoded, tokenizer.eos_id(), &config.sampling)?;
    let mut rngs: Vec<_> = (0..prompts.len())
        .map(|row| row_rng(config.sampling.seed, row))
        .collect();
    let choice = SamplingConfig {
        top_k: config.candidates,
        top_p: 1.0,
        ..config.sampling.clone()
    };
    let vocab = reference.config().vocab_size;
    let mut log_ratios = vec![0.0f64; prompts.len()];
    while let Some(logits) = decoding.next_logits().await? {
        // Each row still decoding, with the reference's top k for it.
        let rows: Vec<(usize, Vec<u32>)> = (0..prompts.len())
            .filter(|&row| !decoding.is_finished(row))
            .map(|row| {
                let logits = &logits[row * vocab..(row + 1) * vocab];
                (row, top_k(logits, config.candidates))
            })
            .collect();
        let rewards = match config.weight {
            0.0 => rows.iter().map(|(_, c)| vec![0.0; c.len()]).collect(),
            _ => prefix_rewards(&decoding, tokenizer, reward, prompts, &rows).await?,
        };
        let mut tokens = vec![None; prompts.len()];
        for ((row, candidates), rewards) in rows.iter().zip(rewards) {
            let row = *row;
            let logits = &logits[row * vocab..(row + 1) * vocab];
            // Logits differ from log π_ref by one constant per row, which neither the argmax
            // nor the softmax sees: adding w·r to the logits themselves keeps w = 0 exact.
            let mut scores = vec![f32::NEG_INFINITY; vocab];
            for (&v, r) in candidates.iter().zip(&rewards) {
                scores[v as usize] = logits[v as usize] + config.weight * r;
            }
            let token = sample_token(&scores, &choice, &mut rngs[row]);
            log_ratios[row] +=
                log_prob(&scores, token, choice.temperature) - log_prob(logits, token, 1.0);
            tokens[row] = Some(token);
        }
        decoding.push(tokens);
    }
    Ok(decoding
        .into_completions()
        .into_iter()
        .zip(log_ratios)
        .map(|(tokens, log_ratio)| GuidedSample { tokens, log_ratio })
        .collect())
}

/// The `k` highest-scoring token ids, best first (ties in id order, as `sample_token` sorts).
fn top_k(logits: &[f32], k: usize) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    ids.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    ids.truncate(k);
    ids
}

/// log softmax(scores / temperature)[token]; a greedy choice (temperature 0) has probability 1.
fn log_prob(scores: &[f32], token: u32, temperature: f32) -> f64 {
    if temperature == 0.0 {
        return 0.0;
    }
    let scaled = |s: f32| f64::from(s) / f64::from(temperature);
    let max = scores
        .iter()
        .map(|&s| scaled(s))
        .fold(f64::NEG_INFINITY, f64::max);
    let log_sum = scores
        .iter()
        .map(|&s| (scaled(s) - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    scaled(scores[token as usize]) - log_sum
}

/// r(x, [y<t, v]) for each of `rows`' candidates v, one batch for the whole step.
async fn prefix_rewards<B: Backend>(
    decoding: &Decoding<'_, B>,
    tokenizer: &Tokenizer,
    reward: &RewardSource<B>,
    prompts: &[String],
    rows: &[(usize, Vec<u32>)],
) -> Result<Vec<Vec<f32>>> {
    let mut sequences: Vec<Sequence> = Vec::new();
    let mut texts: Vec<(usize, String)> = Vec::new();
    for &(row, ref candidates) in rows {
        let (prompt, chosen) = decoding.row(row);
        for &v in candidates {
            let mut completion = chosen.to_vec();
            completion.push(v);
            // The end-of-sequence token ends the text but stays in the sequence, as in rollouts.
            let text_tokens = match tokenizer.eos_id() {
                Some(eos) if v == eos => &completion[..chosen.len()],
                _ => &completion[..],
            };
            texts.push((row, tokenizer.decode(text_tokens)));
            sequences.push((prompt.to_vec(), completion));
        }
    }
    let scored: Vec<Scored> = texts
        .iter()
        .zip(&sequences)
        .map(|((row, completion), sequence)| Scored {
            prompt: &prompts[*row],
            completion,
            sequence,
        })
        .collect();
    let flat = reward.score(&scored).await?;
    let mut at = 0;
    Ok(rows
        .iter()
        .map(|(_, c)| {
            at += c.len();
            flat[at - c.len()..at].to_vec()
        })
        .collect())
}
