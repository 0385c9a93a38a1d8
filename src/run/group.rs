//! The online step GRPO, RLOO and REINFORCE++ share: sample a group per prompt from the current
//! policy, score it, turn rewards into per-token advantages with the method's rule, and run the
//! clipped policy-gradient update. Metrics use TRL/OpenRLHF names.

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::policy_update;
use crate::algo::grpo::{grpo_advantages, per_token};
use crate::algo::policy_gradient::PolicyGradientConfig;
use crate::algo::reinforce_pp::reinforce_pp_advantages;
use crate::algo::rloo::{kl_penalised_rewards, rloo_advantages};
use crate::error::Result;
use crate::metrics::Metrics;
use crate::model::Llama;
use crate::rollout::{insert_rollout_metrics, RolloutContext};
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
    pub policy_gradient: PolicyGradientConfig,
    /// β of the k1 KL penalty folded into the reward (RLOO, REINFORCE++); GRPO uses the k3 loss
    /// term instead.
    pub kl_coef: f64,
}

/// One rollout of `context`'s prompts and one update of `policy`.
pub async fn online_step<B: AutodiffBackend>(
    policy: Llama<B>,
    trainer: &mut Trainer<B, Llama<B>>,
    context: &RolloutContext<'_, B::InnerBackend>,
    config: &OnlineConfig,
) -> Result<(Llama<B>, Metrics)>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
{
    let rollout = context.collect(&policy.valid(), config.group_size).await?;
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
    let (policy, mut m) = policy_update::update(
        policy,
        trainer,
        &rollout,
        &advantages,
        &config.policy_gradient,
        context.seed(),
    )
    .await?;
    insert_rollout_metrics(&mut m, &rollout, config.kl_coef, context.monitor).await?;
    Ok((policy, m))
}
