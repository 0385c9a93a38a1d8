//! How an online method describes its update to the loop in `run/`: its registry entry, how its
//! policy-gradient loss is averaged, where its KL to the reference goes, and — for the methods
//! that share the group update — how a scored rollout becomes per-token advantages. Each method's
//! file declares one; `methods.rs` lists them, one line each.

use super::policy_gradient::LossAggregation;
use super::spec::MethodSpec;

/// Where β·KL enters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KlPlacement {
    /// A k3 KL term in the loss (GRPO).
    LossTerm,
    /// A per-token k1 penalty in the reward (RLOO, REINFORCE++, PPO).
    Reward,
    /// No KL term (RAFT).
    None,
}

/// What a group method's advantages are computed from: one scored rollout of `group_size`
/// samples per prompt, consecutive.
pub struct GroupRollout<'a> {
    /// Prompt text of each sample.
    pub prompts: &'a [String],
    pub rewards: &'a [f32],
    /// Per-token log-probs of each sample under the rollout policy and the reference.
    pub logps: &'a [Vec<f32>],
    pub ref_logps: &'a [Vec<f32>],
    /// Completion tokens of each sample.
    pub lengths: &'a [usize],
    pub group_size: usize,
    /// β when the KL goes into the reward, else 0.
    pub kl_coef: f64,
}

/// The loop a method runs each step.
#[derive(Clone, Copy)]
pub enum OnlineUpdate {
    /// Sample groups, score them, per-token advantages from this function, then the shared
    /// clipped policy-gradient update.
    Group(fn(&GroupRollout) -> Vec<Vec<f32>>),
    /// PPO: a value model, GAE, an adaptive β (`run/ppo.rs`); with `token_rewards`, the
    /// reward's own per-token split in place of one score at the end (RTO).
    Ppo { token_rewards: bool },
    /// RAFT: the best of each group, then supervised updates on those (`run/raft.rs`).
    Raft,
}

/// An online method, as the loop in `run/` needs it.
pub struct OnlineMethod {
    pub spec: MethodSpec,
    pub aggregation: LossAggregation,
    pub kl: KlPlacement,
    pub update: OnlineUpdate,
}

impl OnlineMethod {
    /// β split as this method places it: (the k3 loss term's weight, the reward penalty's).
    pub fn kl_weights(&self, beta: f64) -> (f64, f64) {
        match self.kl {
            KlPlacement::LossTerm => (beta, 0.0),
            KlPlacement::Reward => (0.0, beta),
            KlPlacement::None => (0.0, 0.0),
        }
    }
}
