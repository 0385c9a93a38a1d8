//! REINFORCE++, Hu 2025 ("REINFORCE++: A Simple and Efficient Approach for Aligning Large
//! Language Models"), Eq. 5–7: per-token rewards r_t = 1[t = T]·r(x, y) − β·log(π_old/π_ref)_t,
//! returns A_t = Σ_{s ≥ t} r_s (no critic, γ = 1), normalised over the whole batch's tokens.

use super::gae::whiten;
use super::online_method::{GroupRollout, KlPlacement, OnlineMethod, OnlineUpdate};
use super::policy_gradient::LossAggregation;
use super::spec::{
    MethodKind, MethodSpec, BETA, EPOCHS, GROUP_SIZE, ONLINE_TRAINING, PROMPTS_PER_STEP,
};

/// Per-token advantages of each sample (rows as long as its completion).
pub fn reinforce_pp_advantages(
    rewards: &[f32],
    logps: &[Vec<f32>],
    ref_logps: &[Vec<f32>],
    kl_coef: f64,
) -> Vec<Vec<f32>> {
    let mut advantages: Vec<Vec<f32>> = rewards
        .iter()
        .zip(logps.iter().zip(ref_logps))
        .map(|(&score, (lp, rp))| {
            let mut token_rewards: Vec<f64> = lp
                .iter()
                .zip(rp)
                .map(|(a, b)| -kl_coef * (a - b) as f64)
                .collect();
            if let Some(last) = token_rewards.last_mut() {
                *last += score as f64;
            }
            let mut to_go = 0.0;
            let mut returns = vec![0.0f32; token_rewards.len()];
            for t in (0..token_rewards.len()).rev() {
                to_go += token_rewards[t];
                returns[t] = to_go as f32;
            }
            returns
        })
        .collect();
    whiten(&mut advantages, true);
    advantages
}

/// REINFORCE++, Hu 2025.
pub const REINFORCE_PP: MethodSpec = MethodSpec {
    name: "reinforce-pp",
    summary: "REINFORCE++ (Hu 2025): per-token KL penalty β, returns normalised over the batch, no critic",
    kind: MethodKind::Online,
    training: ONLINE_TRAINING,
    settings: &[BETA, GROUP_SIZE, PROMPTS_PER_STEP, EPOCHS],
};

/// REINFORCE++'s update: a token-mean loss on batch-normalised returns.
pub const REINFORCE_PP_METHOD: OnlineMethod = OnlineMethod {
    spec: REINFORCE_PP,
    aggregation: LossAggregation::TokenMean,
    kl: KlPlacement::Reward,
    update: OnlineUpdate::Group(reinforce_pp_update),
};

fn reinforce_pp_update(r: &GroupRollout) -> Vec<Vec<f32>> {
    reinforce_pp_advantages(r.rewards, r.logps, r.ref_logps, r.kl_coef)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_to_go_then_batch_normalised() {
        // Sample 0: scores 1, KL per token (0.5, 0): rewards (−0.05, 1) at β 0.1 → returns
        // (0.95, 1). Sample 1: score 0, one token with KL −1: reward 0.1 → return 0.1.
        let a = reinforce_pp_advantages(
            &[1.0, 0.0],
            &[vec![-1.0, -2.0], vec![-3.0]],
            &[vec![-1.5, -2.0], vec![-2.0]],
            0.1,
        );
        let raw = [0.95f64, 1.0, 0.1];
        let mean = raw.iter().sum::<f64>() / 3.0;
        let sd = (raw.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
        let flat: Vec<f32> = a.iter().flatten().copied().collect();
        for (got, want) in flat.iter().zip(raw) {
            assert!((*got as f64 - (want - mean) / sd).abs() < 1e-5, "{flat:?}");
        }
        assert_eq!(a[0].len(), 2);
    }
}
