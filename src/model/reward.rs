//! A reward model: the decoder trunk with a scalar (or multi-objective) head read at each
//! sequence's last real token, initialised from any policy checkpoint.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use super::{Llama, ScalarHead};

#[derive(Module, Debug)]
pub struct RewardModel<B: Backend> {
    pub trunk: Llama<B>,
    pub head: ScalarHead<B>,
}

impl<B: Backend> RewardModel<B> {
    /// A fresh head of `objectives` outputs on a policy's trunk.
    pub fn from_policy(trunk: Llama<B>, objectives: usize, seed: u64) -> Self {
        let head = ScalarHead::new(trunk.config().dim, objectives, seed, &trunk.device());
        Self { trunk, head }
    }

    /// Rewards of right-padded sequences: tokens [batch, seq], `last_index` [batch]
    /// → [batch, objectives].
    pub fn rewards(
        &self,
        tokens: Tensor<B, 2, Int>,
        last_index: Tensor<B, 1, Int>,
    ) -> Tensor<B, 2> {
        let hidden = self.trunk.forward_hidden(tokens); // [B, T, dim]
        self.head.at_last_token(hidden, last_index)
    }
}
