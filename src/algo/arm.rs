//! GenARM's autoregressive reward model (Xu et al., ICLR 2025, arXiv:2410.08193, eq. 6): a
//! language model π_r trained on preference pairs as a Bradley–Terry reward model whose reward is
//! its own log-likelihood, r(x, y) = β_r Σ_t log π_r(y_t | x, y<t):
//!
//!     −log σ(β_r · (log π_r(y_c|x) − log π_r(y_r|x)))
//!
//! No reference model (the reward is the log-likelihood itself) and no length averaging (the
//! reward is a sum over tokens, which is what makes it token-level). Decode with it through
//! `alignlab generate --guide genarm`.

use super::preference_method::{RankedInputs, RankedMethod};
use super::spec::{DataShape, MethodKind, MethodSpec, Setting, Settings, PREFERENCE_TRAINING};
use crate::backend::Backend;
use burn::tensor::activation::log_sigmoid;
use burn::tensor::Tensor;

pub fn arm_loss<B: Backend>(
    chosen_logps: Tensor<B, 1>,
    rejected_logps: Tensor<B, 1>,
    beta_r: f64,
) -> Tensor<B, 1> {
    -log_sigmoid((chosen_logps - rejected_logps).mul_scalar(beta_r))
}

/// GenARM's reward model, Xu et al. 2025.
pub const ARM: MethodSpec = MethodSpec {
    name: "arm",
    summary: "GenARM's autoregressive reward model (Xu et al. 2025): a language model whose \
              log-likelihood is the reward, trained on pairs; decode with --guide genarm",
    kind: MethodKind::Preference(DataShape::Pairs),
    training: PREFERENCE_TRAINING,
    settings: &[Setting {
        name: "beta",
        default: 0.1,
        help: "β_r: the reward's scale, r = β_r · Σ log π_r",
    }],
};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arm;

impl RankedMethod for Arm {
    const USES_REFERENCE: bool = false;

    fn from_settings(_spec: &MethodSpec, _settings: &Settings) -> Self {
        Self
    }

    fn losses<B: Backend>(&self, x: RankedInputs<B>) -> Tensor<B, 1> {
        arm_loss(x.chosen(), x.rejected(), x.beta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::testing::{assert_gradients_match, t, value};

    #[test]
    fn hand_value_and_gradient() {
        // β_r = 0.5: 0.5·(−3 − −7) = 2, loss log(1 + e^−2).
        value(
            arm_loss(t(&[-3.0]), t(&[-7.0]), 0.5),
            (1.0 + (-2.0f64).exp()).ln(),
        );
        assert_gradients_match(&[-3.2, -6.1], |x| arm_loss(x[0].clone(), x[1].clone(), 0.5));
    }
}
