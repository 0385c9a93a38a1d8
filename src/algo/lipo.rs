//! LiPO-λ, Liu et al. 2024 ("LiPO: Listwise Preference Optimization through Learning-to-Rank"),
//! Eqs. 9–11: with s_i = β·(log π(y_i|x) − log π_ref(y_i|x)) and labels ψ (higher is better),
//! L = −Σ_{ψ_i > ψ_j} Δ_ij · log σ(s_i − s_j), Δ_ij = |G_i − G_j|·|1/D(τ(i)) − 1/D(τ(j))|,
//! G_i = 2^ψ_i − 1, D(τ) = log(1 + τ), τ(i) the 1-based rank of s_i (largest first). The λ
//! weights Δ are constants of the gradient (detached), as in LambdaRank.

use super::preference_method::{RankedInputs, RankedMethod};
use super::spec::{DataShape, MethodKind, MethodSpec, Settings, BETA, PREFERENCE_TRAINING};
use crate::backend::Backend;
use crate::ops::reciprocal;
use burn::tensor::activation::log_sigmoid;
use burn::tensor::{Tensor, TensorData};

/// Per-list losses [batch]: `logratios` and `labels` [batch, n].
pub fn lipo_lambda_loss<B: Backend>(
    logratios: Tensor<B, 2>,
    labels: Tensor<B, 2>,
    beta: f64,
) -> Tensor<B, 1> {
    let [batch, n] = logratios.dims();
    let s = logratios.mul_scalar(beta);
    let s_i = s.clone().reshape([batch, n, 1]);
    let s_j = s.clone().reshape([batch, 1, n]);
    // τ(i) = 1 + #{j : s_j > s_i}
    let detached = s.detach();
    let rank = detached
        .clone()
        .reshape([batch, 1, n])
        .greater(detached.reshape([batch, n, 1]))
        .float()
        .sum_dim(2)
        .reshape([batch, n])
        .add_scalar(1.0);
    let inverse_discount = reciprocal(rank.add_scalar(1.0).log()); // 1/D(τ)
    let gain = labels
        .clone()
        .mul_scalar(std::f64::consts::LN_2)
        .exp()
        .sub_scalar(1.0); // 2^ψ − 1
    let pairwise_abs =
        |x: Tensor<B, 2>| (x.clone().reshape([batch, n, 1]) - x.reshape([batch, 1, n])).abs();
    let delta = pairwise_abs(gain) * pairwise_abs(inverse_discount);
    let ordered = labels
        .clone()
        .reshape([batch, n, 1])
        .greater(labels.reshape([batch, 1, n]))
        .float();
    let pair_losses = -log_sigmoid(s_i - s_j) * delta.detach() * ordered;
    pair_losses.sum_dim(2).sum_dim(1).reshape([batch])
}

/// LiPO-λ, Liu et al. 2024.
pub const LIPO: MethodSpec = MethodSpec {
    name: "lipo",
    summary: "LiPO-λ (Liu et al. 2024): listwise, lambda-weighted pairs of a ranking",
    kind: MethodKind::Preference(DataShape::Rankings),
    training: PREFERENCE_TRAINING,
    settings: &[BETA],
};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lipo;

impl RankedMethod for Lipo {
    fn from_settings(_: &MethodSpec, _: &Settings) -> Self {
        Self
    }

    fn losses<B: Backend>(&self, x: RankedInputs<B>) -> Tensor<B, 1> {
        let [rows, k] = x.logratios.dims();
        // Labels ψ: the scores when given, else k−1 for the best down to 0.
        let labels = x.scores.unwrap_or_else(|| {
            let ranks: Vec<f32> = (0..rows)
                .flat_map(|_| (0..k).map(|j| (k - 1 - j) as f32))
                .collect();
            Tensor::from_data(TensorData::new(ranks, [rows, k]), &x.logratios.device())
        });
        lipo_lambda_loss(x.logratios, labels, x.beta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::testing::assert_gradients_match;
    use burn::backend::NdArray;

    #[test]
    fn hand_value() {
        // β = 1, s = (0.5, 1.0, −1.0), ψ = (2, 1, 0) → τ = (2, 1, 3).
        let s = [0.5f64, 1.0, -1.0];
        let psi = [2.0f64, 1.0, 0.0];
        let tau = [2.0f64, 1.0, 3.0];
        let mut expected = 0.0;
        for i in 0..3 {
            for j in 0..3 {
                if psi[i] > psi[j] {
                    let g = |p: f64| 2f64.powf(p) - 1.0;
                    let d = |t: f64| 1.0 / (1.0 + t).ln();
                    let delta = (g(psi[i]) - g(psi[j])).abs() * (d(tau[i]) - d(tau[j])).abs();
                    expected += delta * (1.0 + (-(s[i] - s[j])).exp()).ln();
                }
            }
        }
        let device = Default::default();
        let got = lipo_lambda_loss(
            Tensor::<NdArray, 2>::from_floats([[0.5, 1.0, -1.0]], &device),
            Tensor::from_floats([[2.0, 1.0, 0.0]], &device),
            1.0,
        )
        .into_scalar() as f64;
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        assert_gradients_match(&[0.5, 1.0, -1.0], |x| {
            let logratios = Tensor::cat(x.iter().map(|v| v.clone().reshape([1, 1])).collect(), 1);
            let labels = Tensor::from_floats([[2.0, 1.0, 0.0]], &logratios.device());
            lipo_lambda_loss(logratios, labels, 0.8)
        });
    }
}
