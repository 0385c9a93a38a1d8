//! SparsePO (Christopoulou et al. 2024, arXiv:2410.05102, §3): DPO with a weight on every token,
//! one mask m_u on the token-level rewards and one m_d on the token-level KL terms, built on
//! TDPO's sequential KL (Zeng et al. 2024). For a pair with chosen y_w and rejected y_l, with
//! ρ_t = log π(y_t|x, y<t) − log π_ref(y_t|x, y<t) and KL_t = KL(π_ref(·|x, y<t) ‖ π(·|x, y<t)):
//!
//!     u = β Σ_t m_u(y_w,t)·ρ_w,t − β Σ_t m_u(y_l,t)·ρ_l,t
//!     δ = β Σ_t m_d(y_l,t)·KL_l,t − β Σ_t m_d(y_w,t)·KL_w,t
//!     loss = −log σ(u − α·δ)
//!
//! With every m_u = 1 and α = 0 (or every m_d = 0) this is DPO exactly; with both masks all ones
//! and α = 1 it is TDPO₁. α (`kl_weight`) is ours, for that comparison; the paper's objective is
//! α = 1.
//!
//! The masks, two variants (`run::token_level` builds them):
//! - `sparsepo`: learned, m = ReLU(w·h_t + b) on the policy's last hidden state, one head for both
//!   terms or one each (`mask_heads` 2); ReLU is what makes the masks sparse.
//! - `sparsepo-ref`: from the reference's activations, the same mask for both terms.

use crate::backend::Backend;
use burn::tensor::activation::log_sigmoid;
use burn::tensor::Tensor;

use super::spec::{
    DataShape, MethodKind, MethodSpec, Setting, Settings, BETA, PREFERENCE_TRAINING,
};

/// One side of a batch of pairs, per token [rows, T], zero outside each completion.
pub struct TokenTerms<B: Backend> {
    /// ρ_t = log π − log π_ref of the completion's tokens.
    pub logratios: Tensor<B, 2>,
    /// KL(π_ref ‖ π) of the next-token distributions the completion's tokens were drawn from.
    pub kls: Tensor<B, 2>,
    pub reward_mask: Tensor<B, 2>,
    pub kl_mask: Tensor<B, 2>,
}

impl<B: Backend> TokenTerms<B> {
    /// Σ_t m_u·ρ per row [rows]: the masked log-ratio (times β, the masked implicit reward).
    pub fn masked_logratio(&self) -> Tensor<B, 1> {
        (self.reward_mask.clone() * self.logratios.clone())
            .sum_dim(1)
            .squeeze_dim(1)
    }

    /// Σ_t m_d·KL_t per row [rows].
    pub fn masked_kl(&self) -> Tensor<B, 1> {
        (self.kl_mask.clone() * self.kls.clone())
            .sum_dim(1)
            .squeeze_dim(1)
    }
}

/// SparsePO's loss per pair [rows].
pub fn sparse_po_loss<B: Backend>(
    chosen: &TokenTerms<B>,
    rejected: &TokenTerms<B>,
    beta: f64,
    kl_weight: f64,
) -> Tensor<B, 1> {
    let u = (chosen.masked_logratio() - rejected.masked_logratio()).mul_scalar(beta);
    let delta = (rejected.masked_kl() - chosen.masked_kl()).mul_scalar(beta);
    -log_sigmoid(u - delta.mul_scalar(kl_weight))
}

const KL_WEIGHT: Setting = Setting {
    name: "kl_weight",
    default: 1.0,
    help: "α, the weight of the masked token-level KL term (1: the paper's; 0: masked DPO)",
};

/// SparsePO with learned masks.
pub const SPARSEPO: MethodSpec = MethodSpec {
    name: "sparsepo",
    summary: "SparsePO (Christopoulou et al. 2024): DPO with learned sparse token masks on the \
              reward and the KL",
    kind: MethodKind::Preference(DataShape::Pairs),
    training: PREFERENCE_TRAINING,
    settings: &[
        BETA,
        KL_WEIGHT,
        Setting {
            name: "mask_heads",
            default: 1.0,
            help: "1: one learned mask for the reward and the KL; 2: a mask each",
        },
    ],
};

/// SparsePO with masks from the reference model's activations.
pub const SPARSEPO_REF: MethodSpec = MethodSpec {
    name: "sparsepo-ref",
    summary: "SparsePO (Christopoulou et al. 2024) with token masks from the reference \
              model's activations",
    settings: &[BETA, KL_WEIGHT],
    ..SPARSEPO
};

/// Where SparsePO's masks come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Masks {
    /// A ReLU head on the policy's hidden states with one output (shared) or two.
    Learned { heads: usize },
    /// The reference's mean activation per token, scaled to at most 1 per sequence.
    ReferenceActivations,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SparsePo {
    pub kl_weight: f64,
    pub masks: Masks,
}

impl SparsePo {
    pub fn from_settings(spec: &MethodSpec, settings: &Settings) -> Self {
        let masks = match spec.setting("mask_heads") {
            Some(_) => Masks::Learned {
                heads: if settings.value(spec, "mask_heads") >= 2.0 {
                    2
                } else {
                    1
                },
            },
            None => Masks::ReferenceActivations,
        };
        Self {
            kl_weight: settings.value(spec, KL_WEIGHT.name),
            masks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::dpo::dpo_loss;
    use crate::algo::testing::{assert_gradients_match, value, Grad};
    use burn::backend::NdArray;

    fn row<B: Backend>(values: &[f32]) -> Tensor<B, 2> {
        Tensor::<B, 1>::from_floats(values, &Default::default()).reshape([1, values.len()])
    }

    fn side<B: Backend>(
        logratios: &[f32],
        kls: &[f32],
        reward: &[f32],
        kl: &[f32],
    ) -> TokenTerms<B> {
        TokenTerms {
            logratios: row(logratios),
            kls: row(kls),
            reward_mask: row(reward),
            kl_mask: row(kl),
        }
    }

    #[test]
    fn all_ones_reward_masks_without_the_kl_term_are_dpo() {
        let ones = [1.0; 3];
        let chosen = side::<NdArray>(&[0.3, -0.2, 0.5], &[0.1, 0.2, 0.05], &ones, &ones);
        let rejected = side::<NdArray>(&[-0.4, 0.1, 0.0], &[0.3, 0.0, 0.2], &ones, &ones);
        let dpo = dpo_loss::<NdArray>(
            Tensor::from_floats([0.6], &Default::default()),
            Tensor::from_floats([-0.3], &Default::default()),
            0.5,
            0.0,
        )
        .into_scalar() as f64;
        value(sparse_po_loss(&chosen, &rejected, 0.5, 0.0), dpo);
        // The same with the KL masks all zero and α = 1.
        let zeros = [0.0; 3];
        let chosen = side::<NdArray>(&[0.3, -0.2, 0.5], &[0.1, 0.2, 0.05], &ones, &zeros);
        let rejected = side::<NdArray>(&[-0.4, 0.1, 0.0], &[0.3, 0.0, 0.2], &ones, &zeros);
        value(sparse_po_loss(&chosen, &rejected, 0.5, 1.0), dpo);
    }

    #[test]
    fn hand_values_with_masks_and_the_kl_term() {
        let softplus = |x: f64| (1.0 + x.exp()).ln(); // −log σ(x) = softplus(−x)
                                                      // All-ones masks, α = 1 (TDPO₁): u = 0.5·(0.6 − −0.3) = 0.45,
                                                      // δ = 0.5·(0.5 − 0.35) = 0.075.
        let ones = [1.0; 3];
        let chosen = side::<NdArray>(&[0.3, -0.2, 0.5], &[0.1, 0.2, 0.05], &ones, &ones);
        let rejected = side::<NdArray>(&[-0.4, 0.1, 0.0], &[0.3, 0.0, 0.2], &ones, &ones);
        value(
            sparse_po_loss(&chosen, &rejected, 0.5, 1.0),
            softplus(-(0.45 - 0.075)),
        );
        // A sparse reward mask keeps only the first chosen and last rejected token:
        // u = 0.5·(0.3 − 0) = 0.15; the KL mask m_d = (0, 1, 2): δ = 0.5·(0.4 − 0.3) = 0.05.
        let chosen = side::<NdArray>(
            &[0.3, -0.2, 0.5],
            &[0.1, 0.2, 0.05],
            &[1.0, 0.0, 0.0],
            &[0.0, 1.0, 2.0],
        );
        let rejected = side::<NdArray>(
            &[-0.4, 0.1, 0.0],
            &[0.3, 0.0, 0.2],
            &[0.0, 0.0, 1.0],
            &[0.0, 1.0, 2.0],
        );
        value(
            sparse_po_loss(&chosen, &rejected, 0.5, 1.0),
            softplus(-(0.15 - 0.05)),
        );
    }

    #[test]
    fn gradients_match_finite_differences() {
        // Inputs: the chosen and rejected side's ρ, KL, m_u, m_d over two tokens each.
        let inputs = [
            0.3, -0.2, 0.1, 0.2, 0.9, 0.4, 0.7, 1.2, // chosen
            -0.4, 0.1, 0.3, 0.05, 0.6, 1.1, 0.2, 0.8, // rejected
        ];
        assert_gradients_match(&inputs, |x| {
            let pair =
                |i: usize| Tensor::cat(vec![x[i].clone(), x[i + 1].clone()], 0).reshape([1, 2]);
            let make = |at: usize| TokenTerms::<Grad> {
                logratios: pair(at),
                kls: pair(at + 2),
                reward_mask: pair(at + 4),
                kl_mask: pair(at + 6),
            };
            sparse_po_loss(&make(0), &make(8), 0.7, 1.0)
        });
    }
}
