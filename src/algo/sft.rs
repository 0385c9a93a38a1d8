//! Supervised fine-tuning: the negative log-likelihood of completion tokens only, averaged over
//! all completion tokens in the batch (TRL's `completion_only_loss`). Pretraining is the same
//! loss with the whole text as the completion of a BOS prompt.

use crate::backend::Backend;
use burn::tensor::Tensor;

use super::spec::{MethodKind, MethodSpec, SUPERVISED_TRAINING};

/// − Σ mask·log p / Σ mask. `per_token_logps`, `completion_mask`: [batch, seq] → [1].
pub fn sft_loss<B: Backend>(
    per_token_logps: Tensor<B, 2>,
    completion_mask: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let tokens = completion_mask.clone().sum().clamp_min(1.0);
    -(per_token_logps * completion_mask).sum() / tokens
}

/// Supervised fine-tuning.
pub const SFT: MethodSpec = MethodSpec {
    name: "sft",
    summary: "supervised fine-tuning: the negative log-likelihood of completion tokens",
    kind: MethodKind::Supervised,
    training: SUPERVISED_TRAINING,
    settings: &[],
};

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn loss_is_the_mean_nll_over_completion_tokens_only() {
        let device = Default::default();
        let logps =
            Tensor::<NdArray, 2>::from_floats([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0]], &device);
        let mask = Tensor::<NdArray, 2>::from_floats([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], &device);
        let loss = sft_loss(logps, mask).into_scalar();
        assert!((loss - (2.0 + 3.0 + 4.0) / 3.0).abs() < 1e-6, "{loss}");
    }
}
