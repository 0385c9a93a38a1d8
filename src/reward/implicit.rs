//! The implicit reward of a policy trained by DPO (Rafailov et al. 2023, eq. 5, up to the
//! prompt's constant): r(x, y) = β·Σ_t log π_dpo(y_t | x, y<t)/π_ref(y_t | x, y<t), which
//! splits token by token into r_t = β·log π_dpo(y_t | ·)/π_ref(y_t | ·). RTO (Zhong et al. 2024,
//! "DPO Meets PPO: Reinforced Token Optimization for RLHF", arXiv:2404.18922, §4) is PPO with
//! these token rewards in place of one score at the end.

use crate::backend::Backend;

use crate::dataset::Sequence;
use crate::error::Result;
use crate::model::Llama;
use crate::rollout::sequence_token_logps;

#[derive(Clone)]
pub struct ImplicitReward<B: Backend> {
    pub policy: Llama<B>,
    pub reference: Llama<B>,
    pub beta: f32,
}

/// β·(log π_dpo − log π_ref) per token, from the two models' per-token log-probs.
pub fn token_rewards(policy_logps: &[f32], reference_logps: &[f32], beta: f32) -> Vec<f32> {
    policy_logps
        .iter()
        .zip(reference_logps)
        .map(|(p, r)| beta * (p - r))
        .collect()
}

impl<B: Backend> ImplicitReward<B> {
    /// Each sequence's token rewards, one per completion token.
    pub async fn per_token(&self, sequences: &[Sequence]) -> Result<Vec<Vec<f32>>> {
        let policy = sequence_token_logps(&self.policy, sequences, 64).await?;
        let reference = sequence_token_logps(&self.reference, sequences, 64).await?;
        Ok(policy
            .iter()
            .zip(&reference)
            .map(|(p, r)| token_rewards(p, r, self.beta))
            .collect())
    }
}
