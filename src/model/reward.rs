//! Reward models: the decoder trunk with a scalar (or multi-objective) head read at each
//! sequence's last real token, initialised from any policy checkpoint; and ensembles of them.

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
    /// A fresh head of `outputs` scalars on a policy's trunk.
    pub fn from_policy(trunk: Llama<B>, outputs: usize, seed: u64) -> Self {
        let head = ScalarHead::new(trunk.config().dim, outputs, seed, &trunk.device());
        Self { trunk, head }
    }

    /// Rewards of right-padded sequences: tokens [batch, seq], `last_index` [batch]
    /// → [batch, outputs].
    pub fn rewards(
        &self,
        tokens: Tensor<B, 2, Int>,
        last_index: Tensor<B, 1, Int>,
    ) -> Tensor<B, 2> {
        let hidden = self.trunk.forward_hidden(tokens); // [B, T, dim]
        self.head.at_last_token(hidden, last_index)
    }
}

impl<B: Backend> RewardModel<B> {
    /// Per-token outputs of the first head (a value function): tokens [batch, seq] →
    /// [batch, seq]; position t values the state after token t.
    pub fn token_values(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        let [batch, seq] = tokens.dims();
        let hidden = self.trunk.forward_hidden(tokens);
        self.head
            .per_token(hidden)
            .narrow(2, 0, 1)
            .reshape([batch, seq])
    }
}

/// Reward models whose outputs are read side by side: one member with K heads on a shared
/// trunk, K independent members with one head each, or one member with a head per attribute.
#[derive(Module, Debug)]
pub struct RewardEnsemble<B: Backend> {
    pub members: Vec<RewardModel<B>>,
}

impl<B: Backend> RewardEnsemble<B> {
    /// Every member's outputs, concatenated: [batch, Σ outputs].
    pub fn member_rewards(
        &self,
        tokens: Tensor<B, 2, Int>,
        last_index: Tensor<B, 1, Int>,
    ) -> Tensor<B, 2> {
        let outputs: Vec<Tensor<B, 2>> = self
            .members
            .iter()
            .map(|m| m.rewards(tokens.clone(), last_index.clone()))
            .collect();
        Tensor::cat(outputs, 1)
    }

    pub fn outputs(&self) -> usize {
        self.members.iter().map(|m| m.head.outputs()).sum()
    }
}
