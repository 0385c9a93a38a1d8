//! Reward models: the decoder trunk with a scalar (or multi-objective) head read at each
//! sequence's last real token, initialised from any policy checkpoint; and ensembles of them.

use crate::backend::Backend;
use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::tensor::{Int, Tensor};

use super::{Llama, ScalarHead};

/// Gives every parameter a new id. A cloned module shares its parameters' ids with the
/// original, and burn's gradients and optimiser state are keyed by id: two clones trained in
/// one module (independent ensemble members) would read and overwrite each other's gradients
/// and AdamW moments.
struct FreshIds;

impl<B: Backend> ModuleMapper<B> for FreshIds {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (_, tensor, mapper) = param.consume();
        Param::from_mapped_value(ParamId::new(), tensor, mapper)
    }
}

#[derive(Module, Debug)]
pub struct RewardModel<B: Backend> {
    pub trunk: Llama<B>,
    pub head: ScalarHead<B>,
}

impl<B: Backend> RewardModel<B> {
    /// A fresh head of `outputs` scalars on a copy of a policy's trunk (with its own parameter
    /// ids, so it never shares gradients or optimiser state with the policy or other copies).
    pub fn from_policy(trunk: Llama<B>, outputs: usize, seed: u64) -> Self {
        let trunk = trunk.map(&mut FreshIds);
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

#[cfg(test)]
mod fresh_id_tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::module::ModuleVisitor;

    struct Ids(Vec<ParamId>);

    impl<B: Backend> ModuleVisitor<B> for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.id);
        }
    }

    #[test]
    fn copies_of_one_trunk_do_not_share_parameter_ids() {
        let config = crate::model::LlamaConfig::tiny();
        let policy = Llama::<NdArray>::init(&config, 1, &Default::default()).unwrap();
        let ids = |m: &RewardModel<NdArray>| {
            let mut v = Ids(Vec::new());
            m.visit(&mut v);
            v.0
        };
        let a = ids(&RewardModel::from_policy(policy.clone(), 1, 0));
        let b = ids(&RewardModel::from_policy(policy.clone(), 1, 1));
        let mut policy_ids = Ids(Vec::new());
        policy.visit(&mut policy_ids);
        assert!(a
            .iter()
            .all(|id| !b.contains(id) && !policy_ids.0.contains(id)));
    }
}
