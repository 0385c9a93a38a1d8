//! Direct preference optimisation, as pure functions of the log-ratios
//! ρ = log π(y|x) − log π_ref(y|x) of the chosen and rejected completions, h = ρ_c − ρ_r:
//!
//! - DPO, Rafailov et al. 2023, Eq. 7:  −log σ(β·h)
//! - conservative DPO (labels flipped with probability ε), Mitchell 2023:
//!   −(1−ε)·log σ(β·h) − ε·log σ(−β·h)
//! - robust DPO, Chowdhury et al. 2024, Eq. 8 (unbiased under flip rate ε):
//!   [−(1−ε)·log σ(β·h) + ε·log σ(−β·h)] / (1 − 2ε)

use super::preference_method::{RankedInputs, RankedMethod};
use super::spec::{
    DataShape, MethodKind, MethodSpec, Setting, Settings, BETA, PREFERENCE_TRAINING,
};
use crate::backend::Backend;
use burn::tensor::activation::log_sigmoid;
use burn::tensor::Tensor;

/// DPO's sigmoid loss per pair ([batch]); `label_smoothing` ε > 0 makes it conservative DPO.
pub fn dpo_loss<B: Backend>(
    chosen_logratios: Tensor<B, 1>,
    rejected_logratios: Tensor<B, 1>,
    beta: f64,
    label_smoothing: f64,
) -> Tensor<B, 1> {
    let h = chosen_logratios - rejected_logratios;
    log_sigmoid(h.clone().mul_scalar(beta)).mul_scalar(-(1.0 - label_smoothing))
        - log_sigmoid(h.mul_scalar(-beta)).mul_scalar(label_smoothing)
}

/// Robust DPO's loss per pair ([batch]) for preference labels flipped with rate `label_smoothing`.
pub fn robust_dpo_loss<B: Backend>(
    chosen_logratios: Tensor<B, 1>,
    rejected_logratios: Tensor<B, 1>,
    beta: f64,
    label_smoothing: f64,
) -> Tensor<B, 1> {
    let h = chosen_logratios - rejected_logratios;
    (log_sigmoid(h.clone().mul_scalar(beta)).mul_scalar(-(1.0 - label_smoothing))
        + log_sigmoid(h.mul_scalar(-beta)).mul_scalar(label_smoothing))
    .div_scalar(1.0 - 2.0 * label_smoothing)
}

const LABEL_SMOOTHING_HELP: &str = "ε, the assumed rate of flipped labels";

/// DPO, Rafailov et al. 2023.
pub const DPO: MethodSpec = MethodSpec {
    name: "dpo",
    summary: "DPO (Rafailov et al. 2023); label_smoothing > 0 is conservative DPO",
    kind: MethodKind::Preference(DataShape::Pairs),
    training: PREFERENCE_TRAINING,
    settings: &[
        BETA,
        Setting {
            name: "label_smoothing",
            default: 0.0,
            help: LABEL_SMOOTHING_HELP,
        },
    ],
};

/// Conservative DPO (Mitchell 2023): DPO with ε = 0.1 by default.
pub const CDPO: MethodSpec = MethodSpec {
    name: "cdpo",
    summary: "conservative DPO (Mitchell 2023): DPO assuming a share of flipped labels",
    settings: &[
        BETA,
        Setting {
            name: "label_smoothing",
            default: 0.1,
            help: LABEL_SMOOTHING_HELP,
        },
    ],
    ..DPO
};

/// Robust DPO, Chowdhury et al. 2024.
pub const ROBUST_DPO: MethodSpec = MethodSpec {
    name: "robust-dpo",
    summary: "robust DPO (Chowdhury et al. 2024): unbiased under a known label-flip rate",
    ..CDPO
};

/// DPO and conservative DPO.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dpo {
    pub label_smoothing: f64,
}

impl RankedMethod for Dpo {
    fn from_settings(spec: &MethodSpec, settings: &Settings) -> Self {
        Self {
            label_smoothing: settings.value(spec, "label_smoothing"),
        }
    }

    fn losses<B: Backend>(&self, x: RankedInputs<B>) -> Tensor<B, 1> {
        dpo_loss(x.chosen(), x.rejected(), x.beta, self.label_smoothing)
    }
}

/// Robust DPO.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RobustDpo {
    pub label_smoothing: f64,
}

impl RankedMethod for RobustDpo {
    fn from_settings(spec: &MethodSpec, settings: &Settings) -> Self {
        Self {
            label_smoothing: settings.value(spec, "label_smoothing"),
        }
    }

    fn losses<B: Backend>(&self, x: RankedInputs<B>) -> Tensor<B, 1> {
        robust_dpo_loss(x.chosen(), x.rejected(), x.beta, self.label_smoothing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::testing::{assert_gradients_match, t, value};

    #[test]
    fn at_initialisation_the_loss_is_ln2() {
        let loss = dpo_loss::<burn::backend::NdArray>(t(&[0.0, 0.0]), t(&[0.0, 0.0]), 0.1, 0.0);
        for l in loss.into_data().to_vec::<f32>().unwrap() {
            assert!((l - std::f32::consts::LN_2).abs() < 1e-6, "{l}");
        }
    }

    #[test]
    fn hand_computed_values() {
        // ρ_c = 1, ρ_r = −1: h = 2; β = 0.5 → βh = 1.
        let softplus = |x: f64| (1.0 + x.exp()).ln(); // −log σ(x) = softplus(−x)
        let eps = 0.1;
        value(dpo_loss(t(&[1.0]), t(&[-1.0]), 0.5, 0.0), softplus(-1.0));
        value(
            dpo_loss(t(&[1.0]), t(&[-1.0]), 0.5, eps),
            (1.0 - eps) * softplus(-1.0) + eps * softplus(1.0),
        );
        value(
            robust_dpo_loss(t(&[1.0]), t(&[-1.0]), 0.5, eps),
            ((1.0 - eps) * softplus(-1.0) - eps * softplus(1.0)) / (1.0 - 2.0 * eps),
        );
    }

    #[test]
    fn gradients_match_finite_differences() {
        assert_gradients_match(&[0.4, -0.3], |x| {
            dpo_loss(x[0].clone(), x[1].clone(), 0.7, 0.0)
        });
        assert_gradients_match(&[0.4, -0.3], |x| {
            dpo_loss(x[0].clone(), x[1].clone(), 0.7, 0.2)
        });
        assert_gradients_match(&[0.4, -0.3], |x| {
            robust_dpo_loss(x[0].clone(), x[1].clone(), 0.7, 0.2)
        });
    }
}
