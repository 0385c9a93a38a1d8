//! InfAlign's calibrate-and-transform (Balashankar et al. 2024, "InfAlign: Inference-aware
//! language model alignment", arXiv:2412.19792, §4). A reward is first calibrated to its
//! quantile under the reference policy's samples for the same prompt,
//!
//!     C(x, y) = P_{y' ~ π_ref(·|x)}[r(x, y') < r(x, y)]  (ties counted half),
//!
//! which makes it uniform on [0, 1] under π_ref whatever the reward's scale; then transformed for
//! the procedure the aligned policy will be decoded with: Φ(C) = exp(t·C) for best-of-n (the
//! larger n, the larger t), −exp(−t·C) for worst-of-n (robustness to "jailbreaking" by sampling
//! many). KL-regularised RL (PPO here) then optimises Φ(C) in place of r.
//!
//! The reference samples are drawn the first time a prompt is scored and kept for the run.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::backend::Backend;

use super::source::{RewardSource, Scored};
use crate::dataset::Sequence;
use crate::error::{Error, Result};
use crate::io::Tokenizer;
use crate::model::Llama;
use crate::sample::{generate, SamplingConfig};

/// Φ, for the decoding procedure the policy is aligned for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transform {
    /// The calibrated reward itself.
    Identity,
    /// exp(t·C): best-of-n.
    BestOfN { t: f32 },
    /// −exp(−t·C): worst-of-n.
    WorstOfN { t: f32 },
}

impl Transform {
    /// `calibrate`, `bon:T` or `won:T`.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || {
            Error::Input(format!(
                "transform `{text}`: expected calibrate, bon:T or won:T (T a number > 0)"
            ))
        };
        let t = |value: &str| {
            value
                .parse::<f32>()
                .ok()
                .filter(|t| t.is_finite() && *t > 0.0)
                .ok_or_else(bad)
        };
        match text.split_once(':') {
            None if text == "calibrate" => Ok(Self::Identity),
            Some(("bon", value)) => Ok(Self::BestOfN { t: t(value)? }),
            Some(("won", value)) => Ok(Self::WorstOfN { t: t(value)? }),
            _ => Err(bad()),
        }
    }

    pub fn apply(&self, calibrated: f32) -> f32 {
        match *self {
            Self::Identity => calibrated,
            Self::BestOfN { t } => (t * calibrated).exp(),
            Self::WorstOfN { t } => -(-t * calibrated).exp(),
        }
    }
}

/// The share of `sorted_reference` below `reward`, ties counted half.
pub fn calibrate(reward: f32, sorted_reference: &[f32]) -> f32 {
    let below = sorted_reference.partition_point(|&r| r < reward);
    let not_above = sorted_reference.partition_point(|&r| r <= reward);
    (below as f32 + 0.5 * (not_above - below) as f32) / sorted_reference.len().max(1) as f32
}

pub struct Calibrated<B: Backend> {
    pub reward: RewardSource<B>,
    pub reference: Llama<B>,
    pub tokenizer: Tokenizer,
    /// Reference samples per prompt.
    pub samples: usize,
    pub sampling: SamplingConfig,
    pub transform: Transform,
    /// Each prompt's reference rewards, sorted.
    quantiles: Mutex<HashMap<String, Vec<f32>>>,
}

impl<B: Backend> Clone for Calibrated<B> {
    fn clone(&self) -> Self {
        Self {
            reward: self.reward.clone(),
            reference: self.reference.clone(),
            tokenizer: self.tokenizer.clone(),
            samples: self.samples,
            sampling: self.sampling.clone(),
            transform: self.transform,
            quantiles: Mutex::new(self.cached().clone()),
        }
    }
}

impl<B: Backend> Calibrated<B> {
    pub fn new(
        reward: RewardSource<B>,
        reference: Llama<B>,
        tokenizer: Tokenizer,
        samples: usize,
        sampling: SamplingConfig,
        transform: Transform,
    ) -> Result<Self> {
        if samples == 0 {
            return Err(Error::Input(
                "calibration needs at least one reference sample per prompt".into(),
            ));
        }
        Ok(Self {
            reward,
            reference,
            tokenizer,
            samples,
            sampling,
            transform,
            quantiles: Mutex::new(HashMap::new()),
        })
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<f32>>> {
        // A panic elsewhere cannot leave the map half-written: entries are inserted whole.
        self.quantiles.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Φ(C(x, y)) of each rollout.
    pub async fn score(&self, rollouts: &[Scored<'_>]) -> Result<Vec<f32>> {
        let mut missing: Vec<&str> = Vec::new();
        {
            let cached = self.cached();
            for r in rollouts {
                if !cached.contains_key(r.prompt) && !missing.contains(&r.prompt) {
                    missing.push(r.prompt);
                }
            }
        }
        for prompt in missing {
            let rewards = self.reference_rewards(prompt).await?;
            self.cached().insert(prompt.to_string(), rewards);
        }
        let rewards = self.reward.score(rollouts).await?;
        let cached = self.cached();
        Ok(rollouts
            .iter()
            .zip(rewards)
            .map(|(r, reward)| self.transform.apply(calibrate(reward, &cached[r.prompt])))
            .collect())
    }

    /// The rewards of `samples` reference completions of `prompt`, sorted.
    async fn reference_rewards(&self, prompt: &str) -> Result<Vec<f32>> {
        let ids = self.tokenizer.encode_with_bos(prompt)?;
        let eos = self.tokenizer.eos_id();
        let prompts = vec![ids.clone(); self.samples];
        let completions = generate(&self.reference, &prompts, eos, &self.sampling).await?;
        let texts: Vec<String> = completions
            .iter()
            .map(|c| self.tokenizer.decode(c))
            .collect();
        let sequences: Vec<Sequence> = completions
            .into_iter()
            .map(|mut c| {
                if c.len() < self.sampling.max_new_tokens || c.is_empty() {
                    c.extend(eos);
                }
                (ids.clone(), c)
            })
            .collect();
        let scored: Vec<Scored> = texts
            .iter()
            .zip(&sequences)
            .map(|(completion, sequence)| Scored {
                prompt,
                completion,
                sequence,
            })
            .collect();
        let mut rewards = self.reward.score(&scored).await?;
        rewards.sort_by(f32::total_cmp);
        Ok(rewards)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_is_the_mid_rank_among_the_reference_rewards() {
        let reference = [-1.0, 0.0, 0.0, 2.0];
        assert_eq!(calibrate(-5.0, &reference), 0.0);
        assert_eq!(calibrate(5.0, &reference), 1.0);
        assert_eq!(calibrate(0.0, &reference), 0.5); // one below, two tied
        assert_eq!(calibrate(1.0, &reference), 0.75);
        // Calibrated against its own samples, a reward is uniform: mean ½.
        let own: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let mean = own.iter().map(|&r| calibrate(r, &own)).sum::<f32>() / 10.0;
        assert!((mean - 0.5).abs() < 1e-6);
    }

    #[test]
    fn transforms_and_their_spelling() {
        assert_eq!(Transform::parse("calibrate").unwrap(), Transform::Identity);
        assert_eq!(
            Transform::parse("bon:4").unwrap(),
            Transform::BestOfN { t: 4.0 }
        );
        assert_eq!(
            Transform::parse("won:2").unwrap(),
            Transform::WorstOfN { t: 2.0 }
        );
        for bad in ["bon", "bon:-1", "won:x", "best"] {
            let e = Transform::parse(bad).unwrap_err().to_string();
            assert!(e.contains("expected calibrate, bon:T or won:T"), "{e}");
        }
        let bon = Transform::BestOfN { t: 3.0 };
        assert!((bon.apply(0.5) - 1.5f32.exp()).abs() < 1e-5);
        let won = Transform::WorstOfN { t: 3.0 };
        assert!((won.apply(1.0) + (-3.0f32).exp()).abs() < 1e-6);
        // Both keep the order of the calibrated reward.
        for t in [bon, won] {
            assert!(t.apply(0.2) < t.apply(0.8));
        }
    }
}
