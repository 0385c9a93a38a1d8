//! How a policy is measured, the same way in a sweep and in the page: samples on held-out
//! prompts, their KL to the base, every proxy's reward and the gold reward.

use std::collections::BTreeMap;

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::io::Tokenizer;
use crate::metrics::MeanCi;
use crate::model::Llama;
use crate::reward::source::RewardSource;
use crate::rollout::{collect, sequence_kl};
use crate::sample::SamplingConfig;

/// One policy measured on the evaluation prompts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrontierPoint {
    /// Training step (RL), or 0.
    pub step: usize,
    /// Σ_t log π/π_ref over sampled completions: the k1 estimate of the sequence KL.
    pub kl: MeanCi,
    pub sqrt_kl: f64,
    /// Every proxy's reward of the same samples, by name.
    pub proxies: BTreeMap<String, MeanCi>,
    pub gold: MeanCi,
    /// The first few samples, to read what the rewards reward.
    #[serde(default)]
    pub examples: Vec<Example>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Example {
    pub prompt: String,
    pub completion: String,
    pub gold: f32,
}

/// Samples kept per measured policy.
const EXAMPLES: usize = 3;

/// How every policy of a sweep (or of the page's runs) is measured: samples on the same held-out
/// prompts, their KL to the base, every proxy's reward and the gold reward.
pub struct Evaluation<'a, B: Backend> {
    pub base: &'a Llama<B>,
    pub tokenizer: &'a Tokenizer,
    pub eval_prompts: &'a [String],
    pub eval_sampling: SamplingConfig,
    pub samples_per_prompt: usize,
    pub proxies: &'a [(String, RewardSource<B>)],
    pub gold: &'a RewardSource<B>,
}

impl<B: Backend> Evaluation<'_, B> {
    pub async fn measure(&self, policy: &Llama<B>, step: usize) -> Result<FrontierPoint> {
        let rollout = collect(
            policy,
            self.base,
            self.tokenizer,
            self.eval_prompts,
            self.samples_per_prompt,
            &self.eval_sampling,
            self.gold,
        )
        .await?;
        let kl = MeanCi::of(&sequence_kl(&rollout));
        let mut proxies = BTreeMap::new();
        for (name, proxy) in self.proxies {
            let values: Vec<f64> = rollout
                .score_with(proxy)
                .await?
                .into_iter()
                .map(f64::from)
                .collect();
            proxies.insert(name.clone(), MeanCi::of(&values));
        }
        let gold: Vec<f64> = rollout.rewards.iter().map(|&r| r as f64).collect();
        // One sample from each of the first prompts.
        let examples = (0..rollout.len())
            .step_by(self.samples_per_prompt.max(1))
            .take(EXAMPLES)
            .map(|i| Example {
                prompt: rollout.prompts[i].clone(),
                completion: rollout.completions[i].clone(),
                gold: rollout.rewards[i],
            })
            .collect();
        Ok(FrontierPoint {
            step,
            kl,
            sqrt_kl: kl.mean.max(0.0).sqrt(),
            proxies,
            gold: MeanCi::of(&gold),
            examples,
        })
    }

    pub(super) fn proxy(&self, name: &str) -> &RewardSource<B> {
        &self
            .proxies
            .iter()
            .find(|(n, _)| n == name)
            .expect("checked names")
            .1
    }
}
