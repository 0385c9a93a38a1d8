//! RPO, Pang et al. 2024 ("Iterative Reasoning Preference Optimization"), Eq. 1: the DPO loss
//! plus α times the chosen completion's negative log-likelihood, normalised by its length:
//! L = −log σ(β·h) − α·log π(y_c|x) / |y_c|.

use crate::backend::Backend;
use burn::tensor::Tensor;

use super::dpo::dpo_loss;
use super::preference_method::{RankedInputs, RankedMethod};
use super::spec::{
    DataShape, MethodKind, MethodSpec, Setting, Settings, BETA, PREFERENCE_TRAINING,
};

pub fn rpo_loss<B: Backend>(
    chosen_logratios: Tensor<B, 1>,
    rejected_logratios: Tensor<B, 1>,
    chosen_logps: Tensor<B, 1>,
    chosen_lengths: Tensor<B, 1>,
    beta: f64,
    alpha: f64,
) -> Tensor<B, 1> {
    let nll = -chosen_logps / chosen_lengths.clamp_min(1.0);
    dpo_loss(chosen_logratios, rejected_logratios, beta, 0.0) + nll.mul_scalar(alpha)
}

/// RPO, Pang et al. 2024.
pub const RPO: MethodSpec = MethodSpec {
    name: "rpo",
    summary: "RPO (Pang et al. 2024): DPO plus α times the chosen completion's NLL",
    kind: MethodKind::Preference(DataShape::Pairs),
    training: PREFERENCE_TRAINING,
    settings: &[
        BETA,
        Setting {
            name: "alpha",
            default: 1.0,
            help: "weight α of the chosen completion's negative log-likelihood",
        },
    ],
};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rpo {
    pub alpha: f64,
}

impl RankedMethod for Rpo {
    fn from_settings(spec: &MethodSpec, settings: &Settings) -> Self {
        Self {
            alpha: settings.value(spec, "alpha"),
        }
    }

    fn losses<B: Backend>(&self, x: RankedInputs<B>) -> Tensor<B, 1> {
        rpo_loss(
            x.chosen(),
            x.rejected(),
            x.chosen_logps(),
            x.chosen_lengths(),
            x.beta,
            self.alpha,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::testing::{assert_gradients_match, t, value};

    #[test]
    fn hand_value_and_gradient() {
        // DPO part at h = 0 is ln 2; NLL = 6/3 = 2; α = 0.5.
        value(
            rpo_loss(t(&[0.3]), t(&[0.3]), t(&[-6.0]), t(&[3.0]), 0.1, 0.5),
            std::f64::consts::LN_2 + 1.0,
        );
        assert_gradients_match(&[0.4, -0.3, -5.0], |x| {
            rpo_loss(
                x[0].clone(),
                x[1].clone(),
                x[2].clone(),
                t(&[4.0]),
                0.7,
                0.5,
            )
        });
    }
}
