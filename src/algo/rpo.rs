//! RPO, Pang et al. 2024 ("Iterative Reasoning Preference Optimization"), Eq. 1: the DPO loss
//! plus α times the chosen completion's negative log-likelihood, normalised by its length:
//! L = −log σ(β·h) − α·log π(y_c|x) / |y_c|.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::dpo::dpo_loss;

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
