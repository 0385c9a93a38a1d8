//! GenARM (Xu et al., ICLR 2025, arXiv:2410.08193): decoding with an autoregressive reward
//! model. The reward model π_r is a language model trained on preference pairs with the
//! token-level parametrisation r(x, y) = β_r Σ_t log π_r(y_t | x, y<t) (the `arm` method), so
//! its reward of the next token alone is known, and the KL-regularised optimum decodes
//! token by token from (their eq. 7)
//!
//!     π(y_t | ·) ∝ π_ref(y_t | ·) · π_r(y_t | ·)^(1/β),
//!
//! normalised per token. Two reward models mix with weights α and 1 − α (eq. 9):
//! π_ref · (π_r1^α · π_r2^(1−α))^(1/β), one weight for trading two objectives at decoding time.
//!
//! Closed forms: a uniform π_r leaves the reference; π_r = π_ref gives the reference at
//! temperature β/(β + 1).

use crate::backend::Backend;

use super::steer::{top_k, Scored, Steering};
use crate::error::{Error, Result};
use crate::model::Llama;
use crate::sample::{Decoding, SamplingConfig};

#[derive(Debug, Clone, PartialEq)]
pub struct GenArmConfig {
    /// 1/β: the reward models' weight against the reference.
    pub weight: f32,
    /// Tokens considered per step: the reference's top k (0: the whole vocabulary, the paper's).
    pub candidates: usize,
    /// α: the first reward model's share when there are two.
    pub mix: f32,
}

/// The scores of `candidates`: log π_ref + (1/β)·Σ_i c_i·log π_ri, with one coefficient c_i per
/// reward model, each log-prob normalised over the whole vocabulary (π_r is a distribution over
/// it, whichever tokens are considered).
pub fn scores(
    reference_logits: &[f32],
    reward_logits: &[&[f32]],
    coefficients: &[f32],
    weight: f32,
    candidates: &[u32],
) -> Vec<Scored> {
    let log_norms: Vec<f32> = reward_logits.iter().map(|l| log_sum_exp(l)).collect();
    candidates
        .iter()
        .map(|&v| {
            let v_at = v as usize;
            let reward: f32 = reward_logits
                .iter()
                .zip(&log_norms)
                .zip(coefficients)
                .map(|((logits, norm), c)| c * (logits[v_at] - norm))
                .sum();
            (v, reference_logits[v_at] + weight * reward)
        })
        .collect()
}

fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    logits.iter().map(|&l| (l - max).exp()).sum::<f32>().ln() + max
}

/// A [`Steering`] that decodes the reward models alongside the reference.
pub(crate) struct GenArm<'a, B: Backend> {
    config: &'a GenArmConfig,
    rewards: Vec<Decoding<'a, B>>,
    coefficients: Vec<f32>,
}

impl<'a, B: Backend> GenArm<'a, B> {
    /// One or two reward models over the reference's vocabulary.
    pub fn new(
        config: &'a GenArmConfig,
        reference: &Llama<B>,
        reward_models: &'a [Llama<B>],
        prompts: &[Vec<u32>],
        eos: Option<u32>,
        sampling: &SamplingConfig,
    ) -> Result<Self> {
        let coefficients = match reward_models.len() {
            1 => vec![1.0],
            2 => vec![config.mix, 1.0 - config.mix],
            n => {
                return Err(Error::Input(format!(
                    "genarm decodes with one or two autoregressive reward models, got {n}"
                )))
            }
        };
        let vocab = reference.config().vocab_size;
        if let Some(other) = reward_models
            .iter()
            .find(|m| m.config().vocab_size != vocab)
        {
            return Err(Error::Input(format!(
                "genarm: a reward model's vocabulary has {} tokens, the model's {vocab}: they \
                 must share a tokenizer",
                other.config().vocab_size
            )));
        }
        let rewards = reward_models
            .iter()
            .map(|m| Decoding::start(m, prompts, eos, sampling))
            .collect::<Result<_>>()?;
        Ok(Self {
            config,
            rewards,
            coefficients,
        })
    }
}

impl<B: Backend> Steering<B> for GenArm<'_, B> {
    async fn score(
        &mut self,
        decoding: &Decoding<'_, B>,
        logits: &[f32],
        rows: &[usize],
    ) -> Result<Vec<Vec<Scored>>> {
        let vocab = logits.len() / decoding.rows();
        let mut reward_logits = Vec::with_capacity(self.rewards.len());
        for reward in &mut self.rewards {
            let next = reward.next_logits().await?;
            reward_logits.push(next.expect("decoded in step with the reference"));
        }
        Ok(rows
            .iter()
            .map(|&row| {
                let at = row * vocab..(row + 1) * vocab;
                let reference = &logits[at.clone()];
                let rewards: Vec<&[f32]> = reward_logits.iter().map(|l| &l[at.clone()]).collect();
                let candidates = top_k(reference, self.config.candidates);
                scores(
                    reference,
                    &rewards,
                    &self.coefficients,
                    self.config.weight,
                    &candidates,
                )
            })
            .collect())
    }

    fn chose(&mut self, tokens: &[Option<u32>]) {
        for reward in &mut self.rewards {
            reward.push(tokens.to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoding::steer::log_prob;

    fn distribution(scored: &[Scored]) -> Vec<f64> {
        let scores: Vec<f32> = scored.iter().map(|s| s.1).collect();
        (0..scores.len())
            .map(|i| log_prob(&scores, i, 1.0).exp())
            .collect()
    }

    fn softmax(logits: &[f32], temperature: f32) -> Vec<f64> {
        (0..logits.len())
            .map(|i| log_prob(logits, i, temperature).exp())
            .collect()
    }

    const REFERENCE: [f32; 5] = [1.0, -0.5, 2.0, 0.3, -2.0];
    const ALL: [u32; 5] = [0, 1, 2, 3, 4];

    fn assert_close(a: &[f64], b: &[f64]) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-6, "{a:?} against {b:?}");
        }
    }

    #[test]
    fn the_per_token_distribution_sums_to_one() {
        let reward = [0.2, 1.5, -1.0, 0.0, 0.7];
        let other = [-0.3, 0.0, 0.9, 2.0, 0.1];
        for weight in [0.0, 0.5, 3.0] {
            let p = distribution(&scores(
                &REFERENCE,
                &[&reward, &other],
                &[0.3, 0.7],
                weight,
                &ALL,
            ));
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
    }

    #[test]
    fn a_uniform_reward_model_leaves_the_reference() {
        let uniform = [0.7; 5];
        let p = distribution(&scores(&REFERENCE, &[&uniform], &[1.0], 4.0, &ALL));
        assert_close(&p, &softmax(&REFERENCE, 1.0));
    }

    #[test]
    fn the_reference_as_reward_model_is_the_reference_cooled() {
        // π_ref · π_ref^(1/β) ∝ π_ref^((β + 1)/β): temperature β/(β + 1).
        let beta = 0.5f32;
        let p = distribution(&scores(&REFERENCE, &[&REFERENCE], &[1.0], 1.0 / beta, &ALL));
        assert_close(&p, &softmax(&REFERENCE, beta / (beta + 1.0)));
    }

    #[test]
    fn mixing_weights_interpolate_the_two_reward_models() {
        let (a, b) = ([0.2, 1.5, -1.0, 0.0, 0.7], [-0.3, 0.0, 0.9, 2.0, 0.1]);
        let only_a = scores(&REFERENCE, &[&a], &[1.0], 2.0, &ALL);
        let mixed = scores(&REFERENCE, &[&a, &b], &[1.0, 0.0], 2.0, &ALL);
        assert_close(&distribution(&only_a), &distribution(&mixed));
    }
}
