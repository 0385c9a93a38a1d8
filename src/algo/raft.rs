//! RAFT, Dong et al. 2023 ("RAFT: Reward rAnked FineTuning for Generative Foundation Model
//! Alignment"), Algorithm 1: for each prompt sample k completions, keep the one the reward ranks
//! highest, fine-tune on the kept ones with the SFT loss, and repeat from the updated policy.
//! The round itself is `run/raft.rs`: RAFT has no loss of its own (it is SFT on the kept samples).

use super::online_method::{KlPlacement, OnlineMethod, OnlineUpdate};
use super::policy_gradient::LossAggregation;
use super::spec::{MethodKind, MethodSpec, GROUP_SIZE, ONLINE_TRAINING, PROMPTS_PER_STEP};

/// RAFT, Dong et al. 2023.
pub const RAFT: MethodSpec = MethodSpec {
    name: "raft",
    summary: "RAFT (Dong et al. 2023): keep the best of group_size samples per prompt, then fine-tune on them",
    kind: MethodKind::Online,
    training: ONLINE_TRAINING,
    settings: &[GROUP_SIZE, PROMPTS_PER_STEP],
};

/// RAFT's round (`run/raft.rs`): no KL term; the aggregation is unused (its updates are SFT).
pub const RAFT_METHOD: OnlineMethod = OnlineMethod {
    spec: RAFT,
    aggregation: LossAggregation::SequenceMean,
    kl: KlPlacement::None,
    update: OnlineUpdate::Raft,
};
