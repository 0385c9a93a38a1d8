//! Reward-model losses over scalar rewards.
//!
//! - Bradley–Terry (Bradley & Terry 1952; as in Ouyang et al. 2022, Eq. 1): −log σ(r_c − r_r − m),
//!   with an optional per-pair margin m (Touvron et al. 2023, Llama 2, Eq. 2).
//! - Plackett–Luce for a ranking of k (Plackett 1975; the listwise RM loss of Zhu et al. 2023):
//!   −Σ_{i<k} [r_i − log Σ_{j≥i} exp r_j], rewards ordered best first.

use super::spec::{MethodKind, MethodSpec, Setting, REWARD_MODEL_TRAINING};
use crate::backend::Backend;
use burn::tensor::activation::log_sigmoid;
use burn::tensor::Tensor;

/// Per-pair losses ([batch]) of rewards of chosen and rejected completions ([batch] each).
pub fn bradley_terry_loss<B: Backend>(
    chosen_rewards: Tensor<B, 1>,
    rejected_rewards: Tensor<B, 1>,
    margin: Option<Tensor<B, 1>>,
) -> Tensor<B, 1> {
    let difference = chosen_rewards - rejected_rewards;
    let difference = match margin {
        Some(margin) => difference - margin,
        None => difference,
    };
    -log_sigmoid(difference)
}

/// Per-ranking losses ([batch]) of rewards [batch, k], ordered from most to least preferred.
pub fn plackett_luce_loss<B: Backend>(ranked_rewards: Tensor<B, 2>) -> Tensor<B, 1> {
    let [batch, k] = ranked_rewards.dims();
    let mut total = Tensor::zeros([batch], &ranked_rewards.device());
    for i in 0..k.saturating_sub(1) {
        let rest = ranked_rewards.clone().narrow(1, i, k - i); // [batch, k − i]
        let log_normaliser = logsumexp_rows(rest); // [batch]
        let top = ranked_rewards.clone().narrow(1, i, 1).reshape([batch]);
        total = total + log_normaliser - top;
    }
    total
}

/// log Σ exp over each row: [batch, n] → [batch].
fn logsumexp_rows<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 1> {
    let max = x.clone().max_dim(1).detach(); // [batch, 1]
    let [batch, _] = x.dims();
    ((x - max.clone()).exp().sum_dim(1).log() + max).reshape([batch])
}

/// Strict accuracy: the fraction of pairs whose chosen reward is greater.
pub fn pairwise_accuracy<B: Backend>(
    chosen_rewards: Tensor<B, 1>,
    rejected_rewards: Tensor<B, 1>,
) -> Tensor<B, 1> {
    chosen_rewards.greater(rejected_rewards).float().mean()
}

/// A reward model: Bradley–Terry on pairs, Plackett–Luce on rankings, regression on ratings.
pub const REWARD_MODEL: MethodSpec = MethodSpec {
    name: "rm",
    summary: "a reward model: Bradley–Terry on pairs, Plackett–Luce on rankings, squared error on ratings",
    kind: MethodKind::RewardModel,
    training: REWARD_MODEL_TRAINING,
    settings: &[
        Setting {
            name: "members",
            default: 1.0,
            help: "ensemble members (heads on a shared trunk, or independent models)",
        },
        Setting {
            name: "std_weight",
            default: 1.0,
            help: "λ of the ensemble's mean − λ·std",
        },
    ],
};

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray;

    fn t1(values: &[f32]) -> Tensor<B, 1> {
        Tensor::from_floats(values, &Default::default())
    }

    #[test]
    fn bradley_terry_hand_values() {
        let loss = bradley_terry_loss(t1(&[1.0, 0.0]), t1(&[0.0, 0.0]), None)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert!((loss[0] - (1.0f32 + (-1.0f32).exp()).ln()).abs() < 1e-6);
        assert!((loss[1] - std::f32::consts::LN_2).abs() < 1e-6);
        let with_margin =
            bradley_terry_loss(t1(&[1.0]), t1(&[0.0]), Some(t1(&[1.0]))).into_scalar();
        assert!((with_margin - std::f32::consts::LN_2).abs() < 1e-6);
    }

    #[test]
    fn plackett_luce_of_two_is_bradley_terry_and_of_three_is_hand_computed() {
        let rewards: Tensor<B, 2> = Tensor::from_floats([[0.7, -0.4]], &Default::default());
        let pl = plackett_luce_loss(rewards).into_scalar();
        let bt = bradley_terry_loss(t1(&[0.7]), t1(&[-0.4]), None).into_scalar();
        assert!((pl - bt).abs() < 1e-6, "{pl} vs {bt}");
        let r = [2.0f32, 1.0, -1.0];
        let rewards: Tensor<B, 2> = Tensor::from_floats([r], &Default::default());
        let expected = -(r[0] - (r[0].exp() + r[1].exp() + r[2].exp()).ln())
            - (r[1] - (r[1].exp() + r[2].exp()).ln());
        assert!((plackett_luce_loss(rewards).into_scalar() - expected).abs() < 1e-5);
    }

    #[test]
    fn gradients_match_finite_differences() {
        use crate::algo::testing::{assert_gradients_match, t};
        assert_gradients_match(&[0.7, -0.4], |x| {
            bradley_terry_loss(x[0].clone(), x[1].clone(), Some(t(&[0.3])))
        });
        assert_gradients_match(&[2.0, 1.0, -1.0], |x| {
            let ranked = Tensor::cat(x.iter().map(|v| v.clone().reshape([1, 1])).collect(), 1);
            plackett_luce_loss(ranked)
        });
    }

    #[test]
    fn accuracy_is_strict() {
        let acc =
            pairwise_accuracy(t1(&[1.0, 0.5, 2.0, 0.0]), t1(&[0.0, 0.5, 3.0, -1.0])).into_scalar();
        assert_eq!(acc, 0.5);
    }
}
