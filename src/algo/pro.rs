//! PRO, Song et al. 2024 ("Preference Ranking Optimization for Human Alignment"), Eqs. 5–8: for
//! a ranking y¹ ≻ … ≻ yⁿ with policy scores r_i = log π(y_i|x)/|y_i| (no reference model),
//! L = −Σ_{k<n} log[exp(r_k/T_k^k) / Σ_{i≥k} exp(r_i/T_k^i)] + w·NLL(y¹),
//! with temperatures from reward scores s: 1/T_k^i = s_k − s_i (i > k) and
//! 1/T_k^k = max_{i>k} 1/T_k^i; without scores every T is 1.

use super::preference_method::{RankedInputs, RankedMethod};
use super::spec::{
    DataShape, MethodKind, MethodSpec, Setting, Settings, BETA, PREFERENCE_TRAINING,
};
use crate::backend::Backend;
use burn::tensor::Tensor;

/// Per-ranking losses [batch]: `mean_logps` [batch, n] and `scores` [batch, n], best first.
pub fn pro_loss<B: Backend>(
    mean_logps: Tensor<B, 2>,
    scores: Option<Tensor<B, 2>>,
    sft_weight: f64,
) -> Tensor<B, 1> {
    let [batch, n] = mean_logps.dims();
    let mut total = Tensor::<B, 1>::zeros([batch], &mean_logps.device());
    for k in 0..n.saturating_sub(1) {
        let rest = mean_logps.clone().narrow(1, k, n - k); // [batch, n − k]: y_k … y_n
        let logits = match &scores {
            Some(scores) => {
                let s = scores.clone().detach();
                let top = s.clone().narrow(1, k, 1); // [batch, 1]
                let gaps = top - s.narrow(1, k, n - k); // s_k − s_i; 0 at i = k
                let below = gaps.clone().narrow(1, 1, n - k - 1);
                let self_inverse_t = below.clone().max_dim(1); // [batch, 1]
                let inverse_t = Tensor::cat(vec![self_inverse_t, below], 1);
                rest * inverse_t
            }
            None => rest,
        };
        let max = logits.clone().max_dim(1).detach();
        let log_normaliser =
            ((logits.clone() - max.clone()).exp().sum_dim(1).log() + max).reshape([batch]);
        total = total + log_normaliser - logits.narrow(1, 0, 1).reshape([batch]);
    }
    let nll = -mean_logps.narrow(1, 0, 1).reshape([batch]);
    total + nll.mul_scalar(sft_weight)
}

/// PRO, Song et al. 2024.
pub const PRO: MethodSpec = MethodSpec {
    name: "pro",
    summary:
        "PRO (Song et al. 2024): listwise ranking loss over k completions, plus SFT on the best",
    kind: MethodKind::Preference(DataShape::Rankings),
    training: PREFERENCE_TRAINING,
    settings: &[
        BETA,
        Setting {
            name: "sft_weight",
            default: 0.05,
            help: "weight of the SFT term on the best completion",
        },
    ],
};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pro {
    pub sft_weight: f64,
}

impl RankedMethod for Pro {
    const USES_REFERENCE: bool = false;
    const LENGTH_AVERAGED: bool = true;

    fn from_settings(spec: &MethodSpec, settings: &Settings) -> Self {
        Self {
            sft_weight: settings.value(spec, "sft_weight"),
        }
    }

    fn losses<B: Backend>(&self, x: RankedInputs<B>) -> Tensor<B, 1> {
        pro_loss(x.logratios, x.scores, self.sft_weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::testing::assert_gradients_match;
    use burn::backend::NdArray;

    fn row(values: [f32; 3]) -> Tensor<NdArray, 2> {
        Tensor::from_floats([values], &Default::default())
    }

    #[test]
    fn hand_values() {
        let r = [-1.0f64, -2.0, -0.5];
        let lse = |xs: &[f64]| xs.iter().map(|x| x.exp()).sum::<f64>().ln();
        // Temperature 1: Plackett–Luce of the scores, plus w·NLL.
        let expected = (lse(&r) - r[0]) + (lse(&r[1..]) - r[1]) + 0.5 * 1.0;
        let got = pro_loss(row([-1.0, -2.0, -0.5]), None, 0.5).into_scalar() as f64;
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
        // With scores s = (3, 1, 0): k = 1: 1/T = (3, 2, 3); k = 2: 1/T = (1, 1).
        let s1 = [3.0 * r[0], 2.0 * r[1], 3.0 * r[2]];
        let s2 = [r[1], r[2]];
        let expected = (lse(&s1) - s1[0]) + (lse(&s2) - s2[0]);
        let got =
            pro_loss(row([-1.0, -2.0, -0.5]), Some(row([3.0, 1.0, 0.0])), 0.0).into_scalar() as f64;
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        assert_gradients_match(&[-1.0, -2.0, -0.5], |x| {
            let logps = Tensor::cat(x.iter().map(|v| v.clone().reshape([1, 1])).collect(), 1);
            let scores = Tensor::from_floats([[2.0, 1.5, 0.0]], &logps.device());
            pro_loss(logps, Some(scores), 0.3)
        });
    }
}
