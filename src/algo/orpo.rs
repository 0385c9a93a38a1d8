//! ORPO, Hong et al. 2024 ("ORPO: Monolithic Preference Optimization without Reference Model"),
//! Eqs. 6–7: L = L_SFT − λ·log σ(log odds(y_c) − log odds(y_r)), where odds(y) = P/(1 − P) with
//! P = exp of the length-averaged log-prob, and L_SFT the chosen completion's mean NLL.

use super::preference_method::{RankedInputs, RankedMethod};
use super::spec::{
    DataShape, MethodKind, MethodSpec, Setting, Settings, BETA, PREFERENCE_TRAINING,
};
use crate::backend::Backend;
use burn::tensor::activation::log_sigmoid;
use burn::tensor::Tensor;

/// log(P/(1−P)) for log P = `mean_logps` < 0: log P − log(1 − exp(log P)).
fn log_odds<B: Backend>(mean_logps: Tensor<B, 1>) -> Tensor<B, 1> {
    // Clamp keeps 1 − P away from 0 when P rounds to 1.
    let mean_logps = mean_logps.clamp_max(-1e-6);
    mean_logps.clone() - (-(mean_logps.exp())).log1p()
}

pub fn orpo_loss<B: Backend>(
    chosen_mean_logps: Tensor<B, 1>,
    rejected_mean_logps: Tensor<B, 1>,
    lambda: f64,
) -> Tensor<B, 1> {
    let ratio = log_odds(chosen_mean_logps.clone()) - log_odds(rejected_mean_logps);
    -chosen_mean_logps - log_sigmoid(ratio).mul_scalar(lambda)
}

/// ORPO, Hong et al. 2024.
pub const ORPO: MethodSpec = MethodSpec {
    name: "orpo",
    summary: "ORPO (Hong et al. 2024): reference-free, SFT plus λ times an odds-ratio term",
    kind: MethodKind::Preference(DataShape::Pairs),
    training: PREFERENCE_TRAINING,
    settings: &[
        BETA,
        Setting {
            name: "orpo_lambda",
            default: 0.1,
            help: "weight λ of the odds-ratio term",
        },
    ],
};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Orpo {
    pub lambda: f64,
}

impl RankedMethod for Orpo {
    const USES_REFERENCE: bool = false;
    const LENGTH_AVERAGED: bool = true;

    fn from_settings(spec: &MethodSpec, settings: &Settings) -> Self {
        Self {
            lambda: settings.value(spec, "orpo_lambda"),
        }
    }

    fn losses<B: Backend>(&self, x: RankedInputs<B>) -> Tensor<B, 1> {
        orpo_loss(x.chosen(), x.rejected(), self.lambda)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::testing::{assert_gradients_match, t, value};

    #[test]
    fn hand_value_and_gradient() {
        let (c, r) = (-0.5f64, -1.5f64);
        let odds = |l: f64| l - (1.0 - l.exp()).ln();
        let expected = 0.5 + 0.1 * (1.0 + (-(odds(c) - odds(r))).exp()).ln();
        value(orpo_loss(t(&[c as f32]), t(&[r as f32]), 0.1), expected);
        assert_gradients_match(&[-0.6, -1.4], |x| {
            orpo_loss(x[0].clone(), x[1].clone(), 0.3)
        });
    }
}
