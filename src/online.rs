//! The online loop GRPO, RLOO and REINFORCE++ share: sample a group per prompt from the current policy, score
//! it, turn rewards into per-token advantages with the method's rule, and run the clipped
//! policy-gradient update. Metrics use TRL/OpenRLHF names.

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::{Deserialize, Serialize};

use crate::algo::grpo::{grpo_advantages, per_token};
use crate::algo::policy_gradient::{self, PolicyGradientConfig};
use crate::algo::reinforce_pp::reinforce_pp_advantages;
use crate::algo::rloo::{kl_penalised_rewards, rloo_advantages};
use crate::error::Result;
use crate::io::Tokenizer;
use crate::metrics::{self, Metrics};
use crate::model::Llama;
use crate::reward::source::RewardSource;
use crate::rollout::{collect, Rollout};
use crate::sample::SamplingConfig;
use crate::train::Trainer;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum OnlineMethod {
    /// Group-relative advantages; `scale_by_std: false` is Dr. GRPO.
    Grpo { scale_by_std: bool },
    /// Leave-one-out baseline, KL penalty in the reward.
    Rloo,
    /// Per-token KL penalty and returns-to-go, normalised over the batch; no critic.
    ReinforcePlusPlus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnlineConfig {
    pub method: OnlineMethod,
    /// Samples per prompt (GRPO's G, RLOO's k).
    pub group_size: usize,
    pub prompts_per_step: usize,
    pub sampling: SamplingConfig,
    pub policy_gradient: PolicyGradientConfig,
    /// β of the k1 KL penalty folded into the reward (RLOO, REINFORCE++); GRPO uses the k3 loss
    /// term instead.
    pub kl_coef: f64,
}

/// Mean over samples of Σ_t (log π_old − log π_ref): the k1 estimate of KL(π‖π_ref) per sequence.
pub fn sequence_kl(rollout: &Rollout) -> Vec<f64> {
    rollout
        .logps
        .iter()
        .zip(&rollout.ref_logps)
        .map(|(lp, rp)| lp.iter().zip(rp).map(|(a, b)| (a - b) as f64).sum())
        .collect()
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n.max(1) as f64
}

/// Adds the rollout's objective metrics (scores, KL and its root, the KL-penalised reward at
/// `kl_coef`, entropy, length, and the monitor's scores when given); returns the mean KL.
pub async fn insert_rollout_metrics<B: Backend>(
    m: &mut Metrics,
    rollout: &Rollout,
    kl_coef: f64,
    monitor: Option<&RewardSource<B>>,
) -> Result<f64> {
    let scores = mean(rollout.rewards.iter().map(|&r| r as f64));
    let mean_kl = mean(sequence_kl(rollout).into_iter());
    m.insert(metrics::OBJECTIVE_SCORES, scores);
    m.insert(metrics::OBJECTIVE_KL, mean_kl);
    m.insert(metrics::OBJECTIVE_SQRT_KL, mean_kl.max(0.0).sqrt());
    m.insert(metrics::OBJECTIVE_RLHF_REWARD, scores - kl_coef * mean_kl);
    m.insert(
        metrics::OBJECTIVE_ENTROPY,
        mean(
            rollout
                .logps
                .iter()
                .map(|lp| -lp.iter().map(|&v| v as f64).sum::<f64>()),
        ),
    );
    m.insert(metrics::RESPONSE_LENGTH, rollout.mean_length());
    if let Some(monitor) = monitor {
        let values = rollout.score_with(monitor).await?;
        m.insert(
            metrics::OBJECTIVE_MONITOR_SCORES,
            mean(values.iter().map(|&v| v as f64)),
        );
    }
    m.insert(metrics::KL_COEF, kl_coef);
    Ok(mean_kl)
}

/// One rollout and update on `prompts`.
#[allow(clippy::too_many_arguments)]
pub async fn online_step<B: AutodiffBackend>(
    policy: Llama<B>,
    reference: &Llama<B::InnerBackend>,
    trainer: &mut Trainer<B, Llama<B>>,
    tokenizer: &Tokenizer,
    prompts: &[String],
    reward: &RewardSource<B::InnerBackend>,
    monitor: Option<&RewardSource<B::InnerBackend>>,
    config: &OnlineConfig,
    seed: u64,
) -> Result<(Llama<B>, Metrics)>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
{
    let sampling = SamplingConfig {
        seed,
        ..config.sampling.clone()
    };
    let rollout = collect(
        &policy.valid(),
        reference,
        tokenizer,
        prompts,
        config.group_size,
        &sampling,
        reward,
    )
    .await?;
    let lengths: Vec<usize> = rollout.sequences.iter().map(|s| s.1.len()).collect();
    let advantages = match config.method {
        OnlineMethod::Grpo { scale_by_std } => per_token(
            &grpo_advantages(&rollout.rewards, config.group_size, scale_by_std),
            &lengths,
        ),
        OnlineMethod::Rloo => {
            let penalised = kl_penalised_rewards(
                &rollout.rewards,
                &rollout.logps,
                &rollout.ref_logps,
                config.kl_coef,
            );
            per_token(&rloo_advantages(&penalised, config.group_size), &lengths)
        }
        OnlineMethod::ReinforcePlusPlus => reinforce_pp_advantages(
            &rollout.rewards,
            &rollout.logps,
            &rollout.ref_logps,
            config.kl_coef,
        ),
    };
    let (policy, mut m) = policy_gradient::update(
        policy,
        trainer,
        &rollout,
        &advantages,
        &config.policy_gradient,
        seed,
    )
    .await?;
    insert_rollout_metrics(&mut m, &rollout, config.kl_coef, monitor).await?;
    Ok((policy, m))
}
