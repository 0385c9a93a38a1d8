//! BCO, Jung et al. 2024 ("Binary Classifier Optimization for Large Language Model Alignment"),
//! Eq. 7: a logistic classifier whose logit is the implicit reward r = β·ρ shifted by δ, the
//! running mean of the rewards seen so far: desirable completions pay −log σ(r − δ), undesirable
//! ones −log σ(−(r − δ)). Works on unpaired labels; pairs are unpaired first (as TRL does).

use super::preference_method::{UnpairedInputs, UnpairedMethod};
use super::spec::{DataShape, MethodKind, MethodSpec, Settings, BETA, PREFERENCE_TRAINING};
use crate::backend::Backend;
use burn::tensor::activation::log_sigmoid;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// Per-completion losses: `logratios` [n], `desirable` [n] of 1.0 / 0.0.
pub fn bco_loss<B: Backend>(
    logratios: Tensor<B, 1>,
    desirable: Tensor<B, 1>,
    beta: f64,
    delta: f64,
) -> Tensor<B, 1> {
    let shifted = logratios.mul_scalar(beta).sub_scalar(delta);
    let desirable_losses = -log_sigmoid(shifted.clone());
    let undesirable_losses = -log_sigmoid(-shifted);
    desirable_losses * desirable.clone() + undesirable_losses * (desirable.neg().add_scalar(1.0))
}

/// The running mean of implicit rewards that gives BCO's δ (TRL's `RunningMoments`, mean only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RunningMean {
    pub mean: f64,
    pub count: f64,
}

impl RunningMean {
    /// Folds in a batch of rewards (Chan et al.'s parallel update of the mean).
    pub fn update(&mut self, rewards: &[f32]) {
        if rewards.is_empty() {
            return;
        }
        let n = rewards.len() as f64;
        let batch_mean = rewards.iter().map(|&r| r as f64).sum::<f64>() / n;
        let total = self.count + n;
        self.mean += (batch_mean - self.mean) * n / total;
        self.count = total;
    }
}

/// BCO, Jung et al. 2024.
pub const BCO: MethodSpec = MethodSpec {
    name: "bco",
    summary: "BCO (Jung et al. 2024): a binary classifier of desirable completions with a running reward shift",
    kind: MethodKind::Preference(DataShape::Unpaired),
    training: PREFERENCE_TRAINING,
    settings: &[BETA],
};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bco;

impl UnpairedMethod for Bco {
    const NEEDS_REWARD_SHIFT: bool = true;

    fn from_settings(_: &MethodSpec, _: &Settings) -> Self {
        Self
    }

    fn losses<B: Backend>(&self, x: UnpairedInputs<B>) -> Tensor<B, 1> {
        bco_loss(x.logratios, x.desirable, x.beta, x.reward_shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::testing::{assert_gradients_match, t, value};

    #[test]
    fn hand_values_and_gradient() {
        let softplus = |x: f64| (1.0 + x.exp()).ln();
        // β = 0.5, ρ = 2, δ = 0.25: r − δ = 0.75.
        value(bco_loss(t(&[2.0]), t(&[1.0]), 0.5, 0.25), softplus(-0.75));
        value(bco_loss(t(&[2.0]), t(&[0.0]), 0.5, 0.25), softplus(0.75));
        assert_gradients_match(&[0.4, -0.3], |x| {
            bco_loss(x[0].clone(), t(&[1.0]), 0.7, 0.1)
                + bco_loss(x[1].clone(), t(&[0.0]), 0.7, 0.1)
        });
    }

    #[test]
    fn running_mean_equals_the_mean_of_everything_seen() {
        let mut running = RunningMean::default();
        running.update(&[1.0, 2.0, 3.0]);
        running.update(&[10.0]);
        assert!((running.mean - 4.0).abs() < 1e-12);
        assert_eq!(running.count, 4.0);
    }
}
