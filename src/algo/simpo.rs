//! SimPO, Meng et al. 2024 ("Simple Preference Optimization with a Reference-Free Reward"),
//! Eq. 6: −log σ(β/|y_c|·log π(y_c|x) − β/|y_r|·log π(y_r|x) − γ). No reference model: the
//! inputs are length-averaged log-probs of the policy.

use super::preference_method::{RankedInputs, RankedMethod};
use super::spec::{
    DataShape, MethodKind, MethodSpec, Setting, Settings, BETA, PREFERENCE_TRAINING,
};
use crate::backend::Backend;
use burn::tensor::activation::log_sigmoid;
use burn::tensor::Tensor;

pub fn simpo_loss<B: Backend>(
    chosen_mean_logps: Tensor<B, 1>,
    rejected_mean_logps: Tensor<B, 1>,
    beta: f64,
    gamma: f64,
) -> Tensor<B, 1> {
    -log_sigmoid(
        (chosen_mean_logps - rejected_mean_logps)
            .mul_scalar(beta)
            .sub_scalar(gamma),
    )
}

/// SimPO, Meng et al. 2024.
pub const SIMPO: MethodSpec = MethodSpec {
    name: "simpo",
    summary: "SimPO (Meng et al. 2024): reference-free, length-normalised, with a target margin γ",
    kind: MethodKind::Preference(DataShape::Pairs),
    training: PREFERENCE_TRAINING,
    settings: &[
        BETA,
        Setting {
            name: "gamma",
            default: 0.5,
            help: "target reward margin γ",
        },
    ],
};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Simpo {
    pub gamma: f64,
}

impl RankedMethod for Simpo {
    const USES_REFERENCE: bool = false;
    const LENGTH_AVERAGED: bool = true;

    fn from_settings(spec: &MethodSpec, settings: &Settings) -> Self {
        Self {
            gamma: settings.value(spec, "gamma"),
        }
    }

    fn losses<B: Backend>(&self, x: RankedInputs<B>) -> Tensor<B, 1> {
        simpo_loss(x.chosen(), x.rejected(), x.beta, self.gamma)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::testing::{assert_gradients_match, t, value};

    #[test]
    fn hand_value_and_gradient() {
        // β = 2, γ = 1: 2·(−1 − −2) − 1 = 1.
        value(
            simpo_loss(t(&[-1.0]), t(&[-2.0]), 2.0, 1.0),
            (1.0 + (-1.0f64).exp()).ln(),
        );
        assert_gradients_match(&[-1.2, -1.9], |x| {
            simpo_loss(x[0].clone(), x[1].clone(), 2.0, 0.5)
        });
    }
}
