//! IPO, Azar et al. 2023 ("A General Theoretical Paradigm to Understand Learning from Human
//! Preferences"), Eq. 17: (h − 1/(2β))² with h = ρ_c − ρ_r the difference of log-ratios. As in
//! TRL, the log-ratios are of length-averaged log-probs.

use super::preference_method::{RankedInputs, RankedMethod};
use super::spec::{DataShape, MethodKind, MethodSpec, Settings, BETA, PREFERENCE_TRAINING};
use crate::backend::Backend;
use burn::tensor::Tensor;

pub fn ipo_loss<B: Backend>(
    chosen_logratios: Tensor<B, 1>,
    rejected_logratios: Tensor<B, 1>,
    beta: f64,
) -> Tensor<B, 1> {
    (chosen_logratios - rejected_logratios)
        .sub_scalar(1.0 / (2.0 * beta))
        .powi_scalar(2)
}

/// IPO, Azar et al. 2023.
pub const IPO: MethodSpec = MethodSpec {
    name: "ipo",
    summary: "IPO (Azar et al. 2023): squared distance of the length-averaged margin to 1/(2β)",
    kind: MethodKind::Preference(DataShape::Pairs),
    training: PREFERENCE_TRAINING,
    settings: &[BETA],
};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ipo;

impl RankedMethod for Ipo {
    const LENGTH_AVERAGED: bool = true;

    fn from_settings(_: &MethodSpec, _: &Settings) -> Self {
        Self
    }

    fn losses<B: Backend>(&self, x: RankedInputs<B>) -> Tensor<B, 1> {
        ipo_loss(x.chosen(), x.rejected(), x.beta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::testing::{assert_gradients_match, t, value};

    #[test]
    fn at_initialisation_the_loss_is_one_over_four_beta_squared() {
        for beta in [0.1, 0.5, 2.0] {
            value(
                ipo_loss(t(&[0.0]), t(&[0.0]), beta),
                1.0 / (4.0 * beta * beta),
            );
        }
    }

    #[test]
    fn hand_value_and_gradient() {
        value(ipo_loss(t(&[1.0]), t(&[-1.0]), 0.5), 1.0); // (2 − 1)²
        assert_gradients_match(&[0.4, -0.3], |x| ipo_loss(x[0].clone(), x[1].clone(), 0.7));
    }
}
