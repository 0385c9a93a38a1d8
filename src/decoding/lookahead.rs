//! Reward-guided decoding by looking ahead: the reference's k most likely next tokens v are
//! rescored by
//!
//!     s(v) = log π_ref(v | x, y<t) + w · Q(x, [y<t, v])
//!
//! where Q is the reward of where v leads: the mean reward of `rollouts` continuations of up to
//! `horizon` tokens from a baseline model. Four papers are four settings of this one rule:
//!
//! - **ARGS** (Khanov, Burapacheep and Li, ICLR 2024, arXiv:2402.01694, eq. 2): horizon 0, the
//!   reward of the prefix itself.
//! - **Controlled decoding** (Mudgal et al., ICML 2024, arXiv:2310.17022): π(v) ∝
//!   π_ref(v)·exp(Q(v)/β), Q estimated by sampled rollouts of the reference; w = 1/β. (The paper
//!   also trains a prefix scorer to stand in for the rollouts; here Q is always the rollouts'.)
//! - **Transfer Q\*** (Chakraborty et al., NeurIPS 2024, arXiv:2405.20495): the same, with the
//!   rollouts drawn from an already aligned baseline (e.g. a DPO policy), whose continuations
//!   estimate Q* of the target reward better than the reference's do.
//! - **DeAL** (Huang et al. 2024, arXiv:2402.06147): decoding as search, each candidate expanded
//!   greedily a few steps (one rollout at temperature 0) and the partial completion scored,
//!   programmatic rewards included; the best is taken (temperature 0) or sampled.
//!
//! With w = 0 (β → ∞) every method is the reference's top-k sampler, token for token.

use crate::backend::Backend;

use super::steer::{top_k, Scored, Steering};
use crate::dataset::Sequence;
use crate::error::Result;
use crate::io::Tokenizer;
use crate::model::Llama;
use crate::reward::source::{RewardSource, Scored as RewardInput};
use crate::sample::{generate_rows, Decoding, SamplingConfig};

#[derive(Debug, Clone, PartialEq)]
pub struct LookaheadConfig {
    /// w: Q's weight against the reference's log-probability (1/β in controlled decoding).
    pub weight: f32,
    /// k: how many of the reference's most likely next tokens are rescored.
    pub candidates: usize,
    /// Continuations per candidate whose rewards average into Q (0 or a horizon of 0: the
    /// reward of the prefix itself).
    pub rollouts: usize,
    /// Tokens per continuation at most (fewer where the context ends first).
    pub horizon: usize,
    /// The continuations' temperature: 0 expands greedily (DeAL), 1 samples (CD, Transfer Q*).
    pub rollout_temperature: f32,
}

/// A [`Steering`] that rescores the top k by the reward of where each leads.
pub(crate) struct Lookahead<'a, B: Backend> {
    pub config: &'a LookaheadConfig,
    /// The model the continuations come from (the reference, or an aligned one).
    pub baseline: &'a Llama<B>,
    pub reward: &'a RewardSource<B>,
    pub tokenizer: &'a Tokenizer,
    /// The prompts as texts, for rewards that read text.
    pub prompts: &'a [String],
    /// The continuations' seed, a new one each step.
    pub seed: u64,
}

impl<B: Backend> Steering<B> for Lookahead<'_, B> {
    async fn score(
        &mut self,
        decoding: &Decoding<'_, B>,
        logits: &[f32],
        rows: &[usize],
    ) -> Result<Vec<Vec<Scored>>> {
        let vocab = logits.len() / decoding.rows();
        let candidates: Vec<Vec<u32>> = rows
            .iter()
            .map(|&row| {
                top_k(
                    &logits[row * vocab..(row + 1) * vocab],
                    self.config.candidates,
                )
            })
            .collect();
        let values = match self.config.weight {
            0.0 => candidates.iter().map(|c| vec![0.0; c.len()]).collect(),
            _ => self.values(decoding, rows, &candidates).await?,
        };
        self.seed = self.seed.wrapping_add(1);
        Ok(rows
            .iter()
            .zip(candidates.iter().zip(values))
            .map(|(&row, (candidates, values))| {
                // Logits differ from log π_ref by one constant per row, which neither the
                // argmax nor the softmax sees: adding w·Q to the logits keeps w = 0 exact.
                candidates
                    .iter()
                    .zip(values)
                    .map(|(&v, q)| (v, logits[row * vocab + v as usize] + self.config.weight * q))
                    .collect()
            })
            .collect())
    }
}

impl<B: Backend> Lookahead<'_, B> {
    /// Q(x, [y<t, v]) for each row's candidates v: one batch of continuations and one of
    /// rewards for the whole step.
    async fn values(
        &self,
        decoding: &Decoding<'_, B>,
        rows: &[usize],
        candidates: &[Vec<u32>],
    ) -> Result<Vec<Vec<f32>>> {
        let eos = self.tokenizer.eos_id();
        // Every (row, prefix) a continuation starts from, `rollouts` times unless v ends it.
        let mut starts: Vec<(usize, Vec<u32>)> = Vec::new();
        let mut owners: Vec<usize> = Vec::new(); // the candidate each start belongs to
        let mut candidate = 0;
        for (&row, candidates) in rows.iter().zip(candidates) {
            let (_, chosen) = decoding.row(row);
            for &v in candidates {
                let mut prefix = chosen.to_vec();
                prefix.push(v);
                let ends = Some(v) == eos;
                let copies = if ends { 1 } else { self.config.rollouts.max(1) };
                for _ in 0..copies {
                    starts.push((row, prefix.clone()));
                    owners.push(candidate);
                }
                candidate += 1;
            }
        }
        let completions = self.continue_from(decoding, &starts).await?;
        let sequences: Vec<Sequence> = starts
            .iter()
            .zip(completions)
            .map(|((row, _), completion)| (decoding.row(*row).0.to_vec(), completion))
            .collect();
        let texts: Vec<String> = sequences
            .iter()
            .map(|(_, completion)| {
                // The end-of-sequence token ends the text but stays in the sequence, as in
                // rollouts.
                let text = match completion.last() {
                    Some(&last) if Some(last) == eos => &completion[..completion.len() - 1],
                    _ => &completion[..],
                };
                self.tokenizer.decode(text)
            })
            .collect();
        let inputs: Vec<RewardInput> = starts
            .iter()
            .zip(texts.iter().zip(&sequences))
            .map(|((row, _), (completion, sequence))| RewardInput {
                prompt: &self.prompts[*row],
                completion,
                sequence,
            })
            .collect();
        let rewards = self.reward.score(&inputs).await?;
        let mut sums = vec![(0.0f32, 0usize); candidate];
        for (owner, reward) in owners.into_iter().zip(rewards) {
            sums[owner].0 += reward;
            sums[owner].1 += 1;
        }
        let mut means = sums.into_iter().map(|(sum, n)| sum / n as f32);
        Ok(candidates
            .iter()
            .map(|c| means.by_ref().take(c.len()).collect())
            .collect())
    }

    /// Each start's prefix followed by a continuation from the baseline (the end-of-sequence
    /// token kept where one was drawn); the prefix alone where it already ends, or where the
    /// horizon or the context leaves no room.
    async fn continue_from(
        &self,
        decoding: &Decoding<'_, B>,
        starts: &[(usize, Vec<u32>)],
    ) -> Result<Vec<Vec<u32>>> {
        let eos = self.tokenizer.eos_id();
        let open: Vec<usize> = (0..starts.len())
            .filter(|&i| starts[i].1.last().copied() != eos)
            .collect();
        let prompts: Vec<Vec<u32>> = open
            .iter()
            .map(|&i| {
                let (row, prefix) = &starts[i];
                [decoding.row(*row).0, &prefix[..]].concat()
            })
            .collect();
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let room = self.baseline.config().max_seq_len.saturating_sub(longest);
        let horizon = self.config.horizon.min(room);
        let mut completions: Vec<Vec<u32>> = starts.iter().map(|(_, p)| p.clone()).collect();
        if horizon == 0 || self.config.rollouts == 0 || prompts.is_empty() {
            return Ok(completions);
        }
        let sampling = SamplingConfig {
            max_new_tokens: horizon,
            temperature: self.config.rollout_temperature,
            top_k: 0,
            top_p: 1.0,
            seed: self.seed,
            stop_at_eos: true,
            use_cache: true,
        };
        let continuations = generate_rows(self.baseline, &prompts, eos, &sampling, 0).await?;
        for (i, continuation) in open.into_iter().zip(continuations) {
            let ended = continuation.len() < horizon;
            completions[i].extend(continuation);
            if ended {
                completions[i].extend(eos);
            }
        }
        Ok(completions)
    }
}
