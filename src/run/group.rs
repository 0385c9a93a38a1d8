//! The online step GRPO, RLOO and REINFORCE++ share: sample a group per prompt from the current
//! policy, score it, turn rewards into per-token advantages with the method's rule, and run the
//! clipped policy-gradient update. Metrics use TRL/OpenRLHF names.

use crate::backend::AutodiffBackend;
use burn::module::AutodiffModule;
use serde::{Deserialize, Serialize};

use super::policy_update;
use crate::algo::online_method::{GroupRollout, OnlineUpdate};
use crate::algo::policy_gradient::PolicyGradientConfig;
use crate::error::{Error, Result};
use crate::methods::OnlineAlgorithm;
use crate::metrics::Metrics;
use crate::model::Llama;
use crate::rollout::{insert_rollout_metrics, RolloutContext};
use crate::train::Trainer;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnlineConfig {
    /// A group method (its update is `OnlineUpdate::Group`).
    pub algorithm: OnlineAlgorithm,
    /// Samples per prompt (GRPO's G, RLOO's k).
    pub group_size: usize,
    pub policy_gradient: PolicyGradientConfig,
    /// β of the k1 KL penalty folded into the reward (RLOO, REINFORCE++); 0 for GRPO, whose k3
    /// loss term is set in `policy_gradient`.
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
    let method = config.algorithm.method();
    let OnlineUpdate::Group(advantages) = method.update else {
        return Err(Error::Input(format!(
            "{} is not a group method: `OnlineRun` steps it",
            method.spec.name
        )));
    };
    let advantages = advantages(&GroupRollout {
        prompts: &rollout.prompts,
        rewards: &rollout.rewards,
        logps: &rollout.logps,
        ref_logps: &rollout.ref_logps,
        lengths: &lengths,
        group_size: config.group_size,
        kl_coef: config.kl_coef,
    });
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
