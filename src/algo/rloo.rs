//! RLOO, Ahmadian et al. 2024 ("Back to Basics: Revisiting REINFORCE Style Optimization"),
//! Eq. 6: each of k samples is baselined by the mean reward of the other k − 1,
//! Â_i = r_i − (1/(k−1))·Σ_{j≠i} r_j; the KL to the reference enters the reward
//! (r − β·KL per sequence, as TRL's RLOOTrainer does).
use super::grpo::per_token;
use super::online_method::{GroupRollout, KlPlacement, OnlineMethod, OnlineUpdate};
use super::policy_gradient::LossAggregation;
use super::spec::{
    MethodKind, MethodSpec, BETA, EPOCHS, GROUP_SIZE, ONLINE_TRAINING, PROMPTS_PER_STEP,
};

/// Per-sample leave-one-out advantages; samples of a group are consecutive.
pub fn rloo_advantages(rewards: &[f32], group_size: usize) -> Vec<f32> {
    let k = group_size.max(2);
    let mut out = Vec::with_capacity(rewards.len());
    for group in rewards.chunks(k) {
        let total: f64 = group.iter().map(|&r| r as f64).sum();
        let others = (group.len() as f64 - 1.0).max(1.0);
        for &r in group {
            out.push((r as f64 - (total - r as f64) / others) as f32);
        }
    }
    out
}

/// r − β·Σ_t (log π_old − log π_ref): the sequence reward with TRL's k1 KL penalty.
pub fn kl_penalised_rewards(
    rewards: &[f32],
    logps: &[Vec<f32>],
    ref_logps: &[Vec<f32>],
    kl_coef: f64,
) -> Vec<f32> {
    rewards
        .iter()
        .zip(logps.iter().zip(ref_logps))
        .map(|(&r, (lp, rp))| {
            let kl: f64 = lp.iter().zip(rp).map(|(a, b)| (a - b) as f64).sum();
            (r as f64 - kl_coef * kl) as f32
        })
        .collect()
}

/// RLOO, Ahmadian et al. 2024.
pub const RLOO: MethodSpec = MethodSpec {
    name: "rloo",
    summary: "RLOO (Ahmadian et al. 2024): leave-one-out baseline, a KL penalty β in the reward",
    kind: MethodKind::Online,
    training: ONLINE_TRAINING,
    settings: &[BETA, GROUP_SIZE, PROMPTS_PER_STEP, EPOCHS],
};

/// RLOO's update: leave-one-out advantages of the KL-penalised rewards, a sequence-mean loss.
pub const RLOO_METHOD: OnlineMethod = OnlineMethod {
    spec: RLOO,
    aggregation: LossAggregation::SequenceMean,
    kl: KlPlacement::Reward,
    update: OnlineUpdate::Group(rloo_update),
};

fn rloo_update(r: &GroupRollout) -> Vec<Vec<f32>> {
    let penalised = kl_penalised_rewards(r.rewards, r.logps, r.ref_logps, r.kl_coef);
    per_token(&rloo_advantages(&penalised, r.group_size), r.lengths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leave_one_out_by_hand() {
        let a = rloo_advantages(&[3.0, 0.0, 0.0, 1.0], 4);
        // Sample 0: 3 − (0 + 0 + 1)/3.
        assert!((a[0] - (3.0 - 1.0 / 3.0)).abs() < 1e-6);
        assert!((a[1] - (0.0 - 4.0 / 3.0)).abs() < 1e-6);
        // The advantages of a group sum to k/(k−1) × (Σ r − k·mean) = 0.
        assert!(a.iter().sum::<f32>().abs() < 1e-5);
        let penalised = kl_penalised_rewards(&[1.0], &[vec![-1.0, -2.0]], &[vec![-1.5, -2.5]], 0.1);
        assert!((penalised[0] - 0.9).abs() < 1e-6);
    }
}
