//! How a policy is measured, the same way in a sweep and in the page: samples on held-out
//! prompts, their KL to the base, every proxy's reward and the gold reward.

use std::collections::BTreeMap;

use crate::backend::Backend;
use serde::{Deserialize, Serialize};
use web_time::Instant;

use crate::decoding::{self, DecodingSpec, Guide, GuideInputs};
use crate::error::Result;
use crate::io::Tokenizer;
use crate::metrics::MeanCi;
use crate::model::Llama;
use crate::reward::source::RewardSource;
use crate::rollout::{collect, sequence_kl, Rollout};
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
    /// Decoding-time methods: what steering costs at every request, in new tokens per second
    /// of the whole measurement (the reference's own sampling speed is the base point's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<f64>,
    /// Decoding-time methods: the reward weight w = 1/β it decoded at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
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
        self.point(&rollout, &sequence_kl(&rollout), step).await
    }

    /// A decoding-time method steering the base with `steer_by` (and `models`, where it decodes
    /// with more), measured like a policy: its KL is each sample's exact log-ratio sum, and its
    /// cost the new tokens per second of decoding.
    pub async fn measure_guided(
        &self,
        spec: &DecodingSpec,
        guide: &Guide,
        steer_by: &RewardSource<B>,
        models: &[Llama<B>],
    ) -> Result<FrontierPoint> {
        let group_size = self.samples_per_prompt.max(1);
        let group: Vec<usize> = (0..self.eval_prompts.len())
            .flat_map(|i| std::iter::repeat_n(i, group_size))
            .collect();
        let prompts: Vec<String> = group
            .iter()
            .map(|&g| self.eval_prompts[g].clone())
            .collect();
        let inputs = GuideInputs {
            reference: self.base,
            tokenizer: self.tokenizer,
            reward: steer_by,
            models,
        };
        let started = Instant::now();
        let samples =
            decoding::generate(spec, guide, &inputs, &prompts, &self.eval_sampling).await?;
        let seconds = started.elapsed().as_secs_f64();
        let new_tokens: usize = samples.iter().map(|s| s.tokens.len()).sum();
        let mut rollout = Rollout {
            group,
            group_size,
            ..Rollout::default()
        };
        let mut kls = Vec::with_capacity(samples.len());
        for (prompt, sample) in prompts.into_iter().zip(samples) {
            rollout
                .completions
                .push(self.tokenizer.decode(&sample.tokens));
            let mut completion = sample.tokens;
            // Stopped early: at EOS, which the sequence keeps (as a rollout's does).
            if completion.len() < self.eval_sampling.max_new_tokens || completion.is_empty() {
                completion.extend(self.tokenizer.eos_id());
            }
            rollout
                .sequences
                .push((self.tokenizer.encode_with_bos(&prompt)?, completion));
            rollout.prompts.push(prompt);
            kls.push(sample.log_ratio);
        }
        rollout.rewards = rollout.score_with(self.gold).await?;
        let mut point = self.point(&rollout, &kls, 0).await?;
        point.tokens_per_second = Some(new_tokens as f64 / seconds.max(1e-9));
        Ok(point)
    }

    /// The point of a rollout whose rewards are the gold's, with each sample's KL.
    async fn point(&self, rollout: &Rollout, kls: &[f64], step: usize) -> Result<FrontierPoint> {
        let kl = MeanCi::of(kls);
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
            tokens_per_second: None,
            weight: None,
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
