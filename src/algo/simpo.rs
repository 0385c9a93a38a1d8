//! SimPO, Meng et al. 2024 ("Simple Preference Optimization with a Reference-Free Reward"),
//! Eq. 6: −log σ(β/|y_c|·log π(y_c|x) − β/|y_r|·log π(y_r|x) − γ). No reference model: the
//! inputs are length-averaged log-probs of the policy.

use burn::tensor::activation::log_sigmoid;
use burn::tensor::backend::Backend;
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
