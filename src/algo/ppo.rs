//! PPO for language models in the RLHF style (Ziegler et al. 2019; Stiennon et al. 2020;
//! Ouyang et al. 2022): a value model on its own copy of the trunk, per-token rewards
//! r_t = −β·(log π_old − log π_ref) with the score added at the last token (or the KL as a k3
//! loss term instead), GAE, whitened advantages, the clipped surrogate (`policy_gradient`) and
//! the clipped value loss ½·max((V − R)², (clip(V, V_old ± c) − R)²), over epochs of minibatches,
//! with a fixed or adaptive β.

use crate::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::online_method::{KlPlacement, OnlineMethod, OnlineUpdate};
use super::policy_gradient::{self, LossAggregation, PolicyGradientConfig};
use super::spec::{MethodKind, MethodSpec, BETA, EPOCHS, ONLINE_TRAINING, PROMPTS_PER_STEP};
use crate::dataset::Sequence;
use crate::error::Result;
use crate::host::read_vec;
use crate::logprobs::SequenceBatch;
use crate::model::RewardModel;
use crate::rollout::completion_rows;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PpoConfig {
    pub samples_per_prompt: usize,
    pub gamma: f64,
    pub lambda: f64,
    /// The KL as a per-token k1 penalty in the reward (true), or as a k3 loss term (false).
    pub kl_in_reward: bool,
    /// Value predictions move at most this far from the old ones (TRL's `cliprange_value`).
    pub value_clip: f64,
    pub whiten_advantages: bool,
    /// Standardise the batch's scores before adding them to the per-token rewards, so a fresh
    /// value head starts on their scale (OpenRLHF's reward normalisation, per batch).
    pub normalize_scores: bool,
    /// Each token's own reward from the reward's per-token split (RTO) in place of one score at
    /// the last token.
    pub token_rewards: bool,
    pub policy_gradient: PolicyGradientConfig,
}

impl Default for PpoConfig {
    fn default() -> Self {
        Self {
            samples_per_prompt: 1,
            gamma: 1.0,
            lambda: 0.95,
            kl_in_reward: true,
            value_clip: 0.2,
            whiten_advantages: true,
            normalize_scores: true,
            token_rewards: false,
            policy_gradient: PolicyGradientConfig {
                epochs: 4,
                aggregation: policy_gradient::LossAggregation::TokenMean,
                ..Default::default()
            },
        }
    }
}

/// The value model's per-token values of each completion token's state.
pub async fn completion_values<B: Backend>(
    value_model: &RewardModel<B>,
    sequences: &[Sequence],
    batch_size: usize,
) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(sequences.len());
    for chunk in sequences.chunks(batch_size.max(1)) {
        let config = value_model.trunk.config();
        let batch =
            SequenceBatch::<B>::new(chunk, config.max_seq_len, &value_model.trunk.device())?;
        let (inputs, _) = batch.inputs_and_targets();
        let width = inputs.dims()[1];
        let values = read_vec(value_model.token_values(inputs)).await?;
        out.extend(completion_rows(&values, chunk, width));
    }
    Ok(out)
}

/// ½·max((V − R)², (clip(V, V_old − c, V_old + c) − R)²), masked mean. All [rows, width].
pub fn clipped_value_loss<B: Backend>(
    values: Tensor<B, 2>,
    old_values: Tensor<B, 2>,
    returns: Tensor<B, 2>,
    mask: Tensor<B, 2>,
    clip: f64,
) -> Tensor<B, 1> {
    let clipped = old_values.clone() + (values.clone() - old_values).clamp(-clip, clip);
    let unclipped_loss = (values - returns.clone()).powi_scalar(2);
    let clipped_loss = (clipped - returns).powi_scalar(2);
    let loss = unclipped_loss.max_pair(clipped_loss) * mask.clone();
    loss.sum().div(mask.sum().clamp_min(1.0)).mul_scalar(0.5)
}

/// PPO in the RLHF style.
pub const PPO: MethodSpec = MethodSpec {
    name: "ppo",
    summary: "PPO (Ziegler et al. 2019; Ouyang et al. 2022): a value model, GAE, a KL penalty β in the reward",
    kind: MethodKind::Online,
    training: ONLINE_TRAINING,
    settings: &[BETA, PROMPTS_PER_STEP, EPOCHS],
};

/// PPO's update (`run/ppo.rs`): a token-mean loss, β·KL in the reward.
pub const PPO_METHOD: OnlineMethod = OnlineMethod {
    spec: PPO,
    aggregation: LossAggregation::TokenMean,
    kl: KlPlacement::Reward,
    update: OnlineUpdate::Ppo {
        token_rewards: false,
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::TensorData;

    #[test]
    fn value_loss_by_hand() {
        let t = |v: [f32; 2]| {
            Tensor::<NdArray, 2>::from_data(
                TensorData::new(v.to_vec(), [1, 2]),
                &Default::default(),
            )
        };
        // Token 1: V = 1, V_old = 0, R = 1, clip 0.2 → clipped V = 0.2: max(0, 0.64) = 0.64.
        // Token 2: V = 0, V_old = 0, R = 2 → 4.
        let loss = clipped_value_loss(
            t([1.0, 0.0]),
            t([0.0, 0.0]),
            t([1.0, 2.0]),
            t([1.0, 1.0]),
            0.2,
        );
        assert!((loss.into_scalar() - 0.5 * (0.64 + 4.0) / 2.0).abs() < 1e-6);
    }
}
