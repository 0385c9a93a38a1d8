//! AlignDistil (Zhang et al., ACL 2025, arXiv:2503.02832): RLHF with DPO's reward as token-level
//! distillation. A DPO model π_dpo trained at β_dpo has the token reward
//! r_t = β_dpo·log π_dpo(y_t|·)/π_ref(y_t|·); the optimum of E[r] − β·KL(π ‖ π_ref) is, token by
//! token, the teacher
//!
//!     π*(·|s_t) = softmax(z_ref + α·(z_dpo − z_ref)),   α = β_dpo / β
//!
//! (z: next-token log-probs), and the policy is trained towards it by the per-token KL
//! Σ_t KL(π*(·|s_t) ‖ π_θ(·|s_t)) on the training completions.
//!
//! - Contrastive reward: with a reverse DPO model π_rdpo (trained on the same pairs swapped), the
//!   reward is the half-difference β_dpo·½(log π_dpo − log π_rdpo), which equals r_t when the two
//!   models are mirror images around π_ref; the teacher's logits become z_ref + α·½(z_dpo − z_rdpo).
//! - Token-adaptive extrapolation: α_t = min(α, τ / TV_t), where TV_t is the total variation
//!   between the two distributions that make the reward (π_dpo and π_rdpo, or π_dpo and π_ref).
//!   Where they differ a lot the reward is large and a full α would over-optimise; where they
//!   nearly agree α stays at its cap. τ = 0 keeps α fixed. This rule is our reading of the paper's
//!   §4.3 (the published text was not available to check the exact form against).

use crate::backend::Backend;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::Tensor;

use super::spec::{DataShape, MethodKind, MethodSpec, Setting, Settings, PREFERENCE_TRAINING};

/// Total variation between two next-token distributions given as log-probs: [R, T, V] → [R, T, 1].
pub fn total_variation<B: Backend>(a: Tensor<B, 3>, b: Tensor<B, 3>) -> Tensor<B, 3> {
    (a.exp() - b.exp()).abs().sum_dim(2).mul_scalar(0.5)
}

/// α_t per token [R, T, 1]: `alpha` where `tv_target` is 0, else min(α, τ / TV_t).
pub fn adaptive_alpha<B: Backend>(
    dpo: Tensor<B, 3>,
    contrast: Tensor<B, 3>,
    alpha: f64,
    tv_target: f64,
) -> Tensor<B, 3> {
    let tv = total_variation(dpo, contrast);
    if tv_target <= 0.0 {
        return tv.zeros_like().add_scalar(alpha);
    }
    tv.clamp_min(1e-6)
        .recip()
        .mul_scalar(tv_target)
        .clamp_max(alpha)
}

/// The teacher's next-token log-probs [R, T, V] from the reference's, the DPO model's and — for
/// the contrastive reward — the reverse DPO model's (all log-probs [R, T, V]), at α_t [R, T, 1].
pub fn teacher_logprobs<B: Backend>(
    reference: Tensor<B, 3>,
    dpo: Tensor<B, 3>,
    reverse: Option<Tensor<B, 3>>,
    alpha: Tensor<B, 3>,
) -> Tensor<B, 3> {
    let reward_direction = match reverse {
        Some(reverse) => (dpo - reverse).mul_scalar(0.5),
        None => dpo - reference.clone(),
    };
    log_softmax(reference + reward_direction * alpha, 2)
}

/// Σ_t mask_t · KL(π* ‖ π_θ) per row [R], from the teacher's and the policy's log-probs
/// [R, T, V] and the completion mask [R, T].
pub fn distillation_loss<B: Backend>(
    teacher: Tensor<B, 3>,
    policy_logits: Tensor<B, 3>,
    mask: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let policy = log_softmax(policy_logits, 2);
    let per_token = (teacher.clone().exp() * (teacher - policy))
        .sum_dim(2)
        .squeeze_dim::<2>(2);
    (per_token * mask).sum_dim(1).squeeze_dim(1)
}

/// The teacher's probabilities, for tests and metrics.
pub fn teacher_probs<B: Backend>(teacher_logprobs: Tensor<B, 3>) -> Tensor<B, 3> {
    softmax(teacher_logprobs, 2)
}

/// AlignDistil, Zhang et al. 2025.
pub const ALIGNDISTIL: MethodSpec = MethodSpec {
    name: "aligndistil",
    summary:
        "AlignDistil (Zhang et al. 2025): token-level distillation towards a teacher \
              extrapolated from a DPO model (--teacher; a reverse one makes the reward contrastive)",
    kind: MethodKind::Preference(DataShape::Pairs),
    training: PREFERENCE_TRAINING,
    settings: &[
        Setting {
            name: "beta",
            default: 0.1,
            help:
                "β of the RLHF objective distilled: the teacher extrapolates by α = teacher_beta/β",
        },
        Setting {
            name: "teacher_beta",
            default: 0.1,
            help: "the β the DPO teacher was trained with",
        },
        Setting {
            name: "tv_target",
            default: 0.0,
            help: "τ of the token-adaptive α_t = min(α, τ/TV_t); 0 keeps α fixed",
        },
    ],
};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlignDistil {
    pub teacher_beta: f64,
    pub tv_target: f64,
}

impl AlignDistil {
    pub fn from_settings(spec: &MethodSpec, settings: &Settings) -> Self {
        Self {
            teacher_beta: settings.value(spec, "teacher_beta"),
            tv_target: settings.value(spec, "tv_target"),
        }
    }

    /// α = β_dpo / β for a run at `beta`.
    pub fn alpha(&self, beta: f64) -> f64 {
        self.teacher_beta / beta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::testing::{assert_gradients_match, Grad};
    use burn::backend::NdArray;
    use burn::tensor::TensorData;

    fn logprobs<B: Backend>(logits: &[f32], vocab: usize) -> Tensor<B, 3> {
        let rows = logits.len() / vocab;
        log_softmax(
            Tensor::from_data(
                TensorData::new(logits.to_vec(), [1, rows, vocab]),
                &Default::default(),
            ),
            2,
        )
    }

    fn close(a: Tensor<NdArray, 3>, b: Tensor<NdArray, 3>) {
        let (a, b) = (
            a.into_data().to_vec::<f32>().unwrap(),
            b.into_data().to_vec::<f32>().unwrap(),
        );
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn the_teacher_is_the_reference_at_alpha_0_and_the_dpo_model_at_alpha_1() {
        let reference = logprobs::<NdArray>(&[0.1, 0.5, -0.3, 1.0, 0.0, 0.2], 3);
        let dpo = logprobs::<NdArray>(&[0.9, -0.5, 0.3, 0.2, 0.4, -1.0], 3);
        let alpha = |a: f64| adaptive_alpha(dpo.clone(), reference.clone(), a, 0.0);
        close(
            teacher_logprobs(reference.clone(), dpo.clone(), None, alpha(0.0)),
            reference.clone(),
        );
        close(
            teacher_logprobs(reference.clone(), dpo.clone(), None, alpha(1.0)),
            dpo.clone(),
        );
        // α = 2 extrapolates: log π* = log softmax(2·z_dpo − z_ref).
        let extrapolated = log_softmax(dpo.clone().mul_scalar(2.0) - reference.clone(), 2);
        close(
            teacher_logprobs(reference.clone(), dpo.clone(), None, alpha(2.0)),
            extrapolated,
        );
        // A mirror-image reverse model (z_rdpo = 2·z_ref − z_dpo) gives the same teacher.
        let reverse = log_softmax(reference.clone().mul_scalar(2.0) - dpo.clone(), 2);
        close(
            teacher_logprobs(reference.clone(), dpo.clone(), Some(reverse), alpha(2.0)),
            log_softmax(dpo.clone().mul_scalar(2.0) - reference, 2),
        );
    }

    #[test]
    fn the_adaptive_alpha_caps_where_the_models_differ_most() {
        // Row 1: identical distributions (TV 0) → α; row 2: TV = 0.5 → τ/0.5 = 0.2.
        let a = logprobs::<NdArray>(&[0.0, 0.0, 0.0, 0.0], 2);
        let b = logprobs::<NdArray>(&[0.0, 0.0, 0.0, 1000.0], 2);
        let alpha = adaptive_alpha(a, b, 3.0, 0.1)
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert!((alpha[0] - 3.0).abs() < 1e-6, "{alpha:?}");
        assert!((alpha[1] - 0.2).abs() < 1e-5, "{alpha:?}");
    }

    #[test]
    fn the_loss_is_zero_at_the_teacher_and_its_gradients_match() {
        let teacher = logprobs::<NdArray>(&[0.3, -0.1, 0.7], 3);
        let mask = Tensor::<NdArray, 2>::ones([1, 1], &Default::default());
        let at_teacher = distillation_loss(teacher.clone(), teacher.clone(), mask).into_scalar();
        assert!(at_teacher.abs() < 1e-6, "{at_teacher}");
        let sum = teacher_probs(teacher).sum().into_scalar();
        assert!((sum - 1.0).abs() < 1e-6);
        // Two tokens of vocab 3; the second is outside the completion (no gradient, no loss).
        assert_gradients_match(&[0.2, -0.4, 0.9, 1.0, 2.0, 3.0], |x| {
            let logits = Tensor::cat(x.to_vec(), 0).reshape([1, 2, 3]);
            let teacher = logprobs::<Grad>(&[0.3, -0.1, 0.7, 0.0, 0.0, 0.0], 3);
            let mask =
                Tensor::<Grad, 1>::from_floats([1.0, 0.0], &Default::default()).reshape([1, 2]);
            distillation_loss(teacher, logits, mask)
        });
    }
}
