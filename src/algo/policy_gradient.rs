//! The policy-gradient update GRPO, RLOO, REINFORCE++ and PPO share: the clipped surrogate of
//! PPO (Schulman et al. 2017, Eq. 7) on per-token advantages, an optional KL(π‖π_ref) loss term
//! (GRPO, Shao et al. 2024, Eq. 3, with Schulman's k3), aggregated per sequence (GRPO), per token
//! (DAPO) or over a constant (Dr. GRPO, Liu et al. 2025), over epochs of shuffled minibatches.

use crate::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::dataset::Sequence;
use crate::kl::{kl_estimate, KlEstimator};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossAggregation {
    /// Mean over each sequence's tokens, then over sequences (GRPO).
    SequenceMean,
    /// Mean over all tokens of the batch (DAPO).
    TokenMean,
    /// Sum over tokens divided by batch size × max completion length (Dr. GRPO: no length bias).
    Constant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyGradientConfig {
    /// PPO's ε: the ratio π/π_old is clipped to [1 − ε, 1 + ε].
    pub clip_epsilon: f64,
    /// Weight of the k3 KL(π‖π_ref) loss term (0: none, the KL may instead be in the reward).
    pub kl_loss_coef: f64,
    pub aggregation: LossAggregation,
    /// Passes over the rollout.
    pub epochs: usize,
    pub minibatch_size: usize,
    /// The longest completion the sampler may write (Dr. GRPO's constant).
    pub max_completion_length: usize,
    /// A minibatch whose approximate KL to the rollout policy exceeds this (or is not finite)
    /// ends the update and restores the policy from before it (the optimiser's moments keep
    /// what they saw); logged as `policy/rolled_back`.
    #[serde(default)]
    pub max_approx_kl: Option<f64>,
}

impl Default for PolicyGradientConfig {
    fn default() -> Self {
        Self {
            clip_epsilon: 0.2,
            kl_loss_coef: 0.0,
            aggregation: LossAggregation::SequenceMean,
            epochs: 1,
            minibatch_size: 32,
            max_completion_length: 48,
            max_approx_kl: None,
        }
    }
}

/// Per-token values of each row's completion laid out like the batch's targets:
/// [rows, width], zero outside completions.
pub fn token_matrix<B: Backend>(
    sequences: &[&Sequence],
    values: &[&[f32]],
    width: usize,
    device: &B::Device,
) -> Tensor<B, 2> {
    let mut data = vec![0.0f32; sequences.len() * width];
    for (row, ((prompt, _), v)) in sequences.iter().zip(values).enumerate() {
        let start = row * width + prompt.len() - 1;
        data[start..start + v.len()].copy_from_slice(v);
    }
    Tensor::from_data(TensorData::new(data, [sequences.len(), width]), device)
}

/// The clipped-surrogate loss and its diagnostics for one minibatch.
pub struct SurrogateOutput<B: Backend> {
    pub loss: Tensor<B, 1>,
    /// ½·mean((log π − log π_old)²) over tokens (TRL's `policy/approxkl_avg`), detached.
    pub approx_kl: Tensor<B, 1>,
    /// Share of tokens whose ratio was clipped, detached.
    pub clip_fraction: Tensor<B, 1>,
    /// Mean k3 KL to the reference per token, detached.
    pub kl: Tensor<B, 1>,
}

/// −min(ρ·A, clip(ρ, 1−ε, 1+ε)·A) + β·k3, aggregated as configured. All inputs [rows, width];
/// `mask` is 1 on completion tokens.
pub fn clipped_surrogate_loss<B: Backend>(
    logps: Tensor<B, 2>,
    old_logps: Tensor<B, 2>,
    ref_logps: Tensor<B, 2>,
    advantages: Tensor<B, 2>,
    mask: Tensor<B, 2>,
    config: &PolicyGradientConfig,
) -> SurrogateOutput<B> {
    let eps = config.clip_epsilon;
    let log_ratio = logps.clone() - old_logps;
    let ratio = log_ratio.clone().exp();
    let unclipped = ratio.clone() * advantages.clone();
    let clipped = ratio.clone().clamp(1.0 - eps, 1.0 + eps) * advantages;
    let surrogate = unclipped.clone().min_pair(clipped.clone());
    let kl = kl_estimate(logps, ref_logps, KlEstimator::K3);
    let per_token = if config.kl_loss_coef > 0.0 {
        -surrogate + kl.clone().mul_scalar(config.kl_loss_coef)
    } else {
        -surrogate
    } * mask.clone();
    let [rows, _] = mask.dims();
    let tokens = mask.clone().sum().clamp_min(1.0);
    let loss = match config.aggregation {
        LossAggregation::SequenceMean => {
            let lengths = mask.clone().sum_dim(1).clamp_min(1.0);
            (per_token.sum_dim(1) / lengths).mean().reshape([1])
        }
        LossAggregation::TokenMean => per_token.sum() / tokens.clone(),
        LossAggregation::Constant => per_token
            .sum()
            .div_scalar((rows * config.max_completion_length.max(1)) as f64),
    };
    let masked_mean = |x: Tensor<B, 2>| (x * mask.clone()).sum() / tokens.clone();
    let clipped_tokens = unclipped.not_equal(clipped).float();
    SurrogateOutput {
        loss,
        approx_kl: masked_mean(log_ratio.powi_scalar(2).mul_scalar(0.5)).detach(),
        clip_fraction: masked_mean(clipped_tokens).detach(),
        kl: masked_mean(kl).detach(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    fn m(rows: &[[f32; 2]]) -> Tensor<NdArray, 2> {
        Tensor::from_floats(
            TensorData::new(
                rows.iter().flatten().copied().collect::<Vec<_>>(),
                [rows.len(), 2],
            ),
            &Default::default(),
        )
    }

    #[test]
    fn surrogate_by_hand() {
        // Token 1: ratio e^0.5 ≈ 1.65 > 1.2 with A = 1 → clipped to 1.2. Token 2: ratio 1, A = −2.
        let logps = m(&[[0.5, 0.0]]);
        let old = m(&[[0.0, 0.0]]);
        let adv = m(&[[1.0, -2.0]]);
        let mask = m(&[[1.0, 1.0]]);
        let config = PolicyGradientConfig::default();
        let out = clipped_surrogate_loss(
            logps.clone(),
            old.clone(),
            logps.clone(),
            adv.clone(),
            mask.clone(),
            &config,
        );
        let expected = -(1.2 + -2.0) / 2.0;
        assert!((out.loss.into_scalar() - expected).abs() < 1e-6);
        assert!((out.clip_fraction.into_scalar() - 0.5).abs() < 1e-6);
        assert!((out.approx_kl.into_scalar() - 0.0625).abs() < 1e-6);
        // With a reference equal to π the k3 term is zero; Dr. GRPO divides by rows × max length.
        let constant = PolicyGradientConfig {
            aggregation: LossAggregation::Constant,
            max_completion_length: 4,
            kl_loss_coef: 0.5,
            ..config
        };
        let out = clipped_surrogate_loss(logps.clone(), old, logps, adv, mask, &constant);
        assert!((out.loss.into_scalar() - (-(1.2 - 2.0) / 4.0)).abs() < 1e-6);
    }
}
