//! RTO, Reinforced Token Optimization (Zhong et al. 2024, "DPO Meets PPO: Reinforced Token
//! Optimization for RLHF", arXiv:2404.18922, Algorithm 2 / eq. 4.3): PPO whose reward is dense.
//! Each completion token gets DPO's implicit token reward β_dpo·log π_dpo(y_t|·)/π_ref(y_t|·)
//! (a policy DPO trained on the same preferences), the per-token KL penalty −β·log π/π_ref, and
//! any sequence-level reward at the last token, as the paper adds it. Give the reward as
//! `--reward implicit:DPO,REFERENCE,β_dpo`, or `implicit:…+1*rm:PATH` for both.
//!
//! The update is PPO's (`run/ppo.rs`); the only difference is where the reward lands, which is
//! [`crate::reward::source::RewardSource::per_token`]'s to say. The token rewards are not
//! standardised per batch (PPO standardises its one score): their scale is β_dpo's.

use super::online_method::{KlPlacement, OnlineMethod, OnlineUpdate};
use super::policy_gradient::LossAggregation;
use super::spec::{MethodKind, MethodSpec, BETA, EPOCHS, ONLINE_TRAINING, PROMPTS_PER_STEP};

pub const RTO: MethodSpec = MethodSpec {
    name: "rto",
    summary: "RTO (Zhong et al. 2024): PPO with token-level rewards, a DPO policy's implicit \
              β·log π_dpo/π_ref per token (--reward implicit:DPO,REF,β) plus any sequence reward",
    kind: MethodKind::Online,
    training: ONLINE_TRAINING,
    settings: &[BETA, PROMPTS_PER_STEP, EPOCHS],
};

pub const RTO_METHOD: OnlineMethod = OnlineMethod {
    spec: RTO,
    aggregation: LossAggregation::TokenMean,
    kl: KlPlacement::Reward,
    update: OnlineUpdate::Ppo {
        token_rewards: true,
    },
};
