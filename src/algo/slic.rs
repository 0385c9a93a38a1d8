//! The hinge loss of SLiC-HF, Zhao et al. 2023 ("Calibrating Sequence Likelihood Improves
//! Conditional Language Generation"), Eq. 3, on log-ratios as in TRL's `hinge`:
//! max(0, 1 − β·(ρ_c − ρ_r)).

use super::preference_method::{RankedInputs, RankedMethod};
use super::spec::{DataShape, MethodKind, MethodSpec, Settings, BETA, PREFERENCE_TRAINING};
use crate::backend::Backend;
use burn::tensor::activation::relu;
use burn::tensor::Tensor;

pub fn hinge_loss<B: Backend>(
    chosen_logratios: Tensor<B, 1>,
    rejected_logratios: Tensor<B, 1>,
    beta: f64,
) -> Tensor<B, 1> {
    relu(
        (chosen_logratios - rejected_logratios)
            .mul_scalar(-beta)
            .add_scalar(1.0),
    )
}

/// SLiC-HF's hinge, Zhao et al. 2023.
pub const HINGE: MethodSpec = MethodSpec {
    name: "hinge",
    summary: "SLiC-HF's hinge loss (Zhao et al. 2023) on the margin of log-ratios",
    kind: MethodKind::Preference(DataShape::Pairs),
    training: PREFERENCE_TRAINING,
    settings: &[BETA],
};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hinge;

impl RankedMethod for Hinge {
    fn from_settings(_: &MethodSpec, _: &Settings) -> Self {
        Self
    }

    fn losses<B: Backend>(&self, x: RankedInputs<B>) -> Tensor<B, 1> {
        hinge_loss(x.chosen(), x.rejected(), x.beta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::testing::{assert_gradients_match, t, value};

    #[test]
    fn hand_values_and_gradient() {
        value(hinge_loss(t(&[1.0]), t(&[-1.0]), 0.5), 0.0); // margin met
        value(hinge_loss(t(&[1.0]), t(&[-1.0]), 0.25), 0.5);
        value(hinge_loss(t(&[0.0]), t(&[0.0]), 0.25), 1.0);
        assert_gradients_match(&[0.4, -0.3], |x| {
            hinge_loss(x[0].clone(), x[1].clone(), 0.7)
        });
    }
}
