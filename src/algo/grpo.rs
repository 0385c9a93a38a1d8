//! GRPO's group-relative advantages, Shao et al. 2024 ("DeepSeekMath"), Eq. 3 with outcome
//! supervision: every token of sample i gets Â_i = (r_i − mean(r_group)) / std(r_group); Dr. GRPO
//! (Liu et al. 2025, "Understanding R1-Zero-Like Training") drops the division by std. The
//! update itself (clipped surrogate, k3 KL loss) is `policy_gradient`.
use super::online_method::{GroupRollout, KlPlacement, OnlineMethod, OnlineUpdate};
use super::policy_gradient::LossAggregation;
use super::spec::{
    MethodKind, MethodSpec, BETA, EPOCHS, GROUP_SIZE, ONLINE_TRAINING, PROMPTS_PER_STEP,
};

/// Per-sample advantages; samples of a group are consecutive, `group_size` of them.
pub fn grpo_advantages(rewards: &[f32], group_size: usize, scale_by_std: bool) -> Vec<f32> {
    let g = group_size.max(1);
    let mut out = Vec::with_capacity(rewards.len());
    for group in rewards.chunks(g) {
        let n = group.len() as f64;
        let mean = group.iter().map(|&r| r as f64).sum::<f64>() / n;
        // torch.std's default (unbiased), as TRL uses.
        let std = if n > 1.0 {
            (group
                .iter()
                .map(|&r| (r as f64 - mean).powi(2))
                .sum::<f64>()
                / (n - 1.0))
                .sqrt()
        } else {
            0.0
        };
        for &r in group {
            let centred = r as f64 - mean;
            out.push(if scale_by_std {
                centred / (std + 1e-4)
            } else {
                centred
            } as f32);
        }
    }
    out
}

/// Broadcasts one advantage per sample to each of its `lengths[i]` completion tokens.
pub fn per_token(advantages: &[f32], lengths: &[usize]) -> Vec<Vec<f32>> {
    advantages
        .iter()
        .zip(lengths)
        .map(|(&a, &len)| vec![a; len])
        .collect()
}

/// GRPO, Shao et al. 2024.
pub const GRPO: MethodSpec = MethodSpec {
    name: "grpo",
    summary: "GRPO (Shao et al. 2024): group-relative advantages, a k3 KL loss with weight β",
    kind: MethodKind::Online,
    training: ONLINE_TRAINING,
    settings: &[BETA, GROUP_SIZE, PROMPTS_PER_STEP, EPOCHS],
};

/// Dr. GRPO, Liu et al. 2025.
pub const DR_GRPO: MethodSpec = MethodSpec {
    name: "dr-grpo",
    summary: "Dr. GRPO (Liu et al. 2025): GRPO without the std division, a constant normaliser",
    ..GRPO
};

/// GRPO's update: a sequence-mean loss with a k3 KL term.
pub const GRPO_METHOD: OnlineMethod = OnlineMethod {
    spec: GRPO,
    aggregation: LossAggregation::SequenceMean,
    kl: KlPlacement::LossTerm,
    update: OnlineUpdate::Group(grpo_update),
};

fn grpo_update(r: &GroupRollout) -> Vec<Vec<f32>> {
    per_token(&grpo_advantages(r.rewards, r.group_size, true), r.lengths)
}

/// Dr. GRPO's: no std division, and a constant normaliser instead of each sequence's length.
pub const DR_GRPO_METHOD: OnlineMethod = OnlineMethod {
    spec: DR_GRPO,
    aggregation: LossAggregation::Constant,
    kl: KlPlacement::LossTerm,
    update: OnlineUpdate::Group(dr_grpo_update),
};

fn dr_grpo_update(r: &GroupRollout) -> Vec<Vec<f32>> {
    per_token(&grpo_advantages(r.rewards, r.group_size, false), r.lengths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_relative_by_hand() {
        let a = grpo_advantages(&[1.0, 0.0, 0.0, 1.0, 2.0, 2.0], 2, true);
        // Group (1, 0): mean 0.5, unbiased std √0.5.
        let s = 0.5f32 / (0.5f32.sqrt() + 1e-4);
        assert!((a[0] - s).abs() < 1e-5 && (a[1] + s).abs() < 1e-5, "{a:?}");
        assert!((a[2] + s).abs() < 1e-5 && (a[3] - s).abs() < 1e-5);
        // A group with one reward teaches nothing.
        assert_eq!(&a[4..], &[0.0, 0.0]);
        let dr = grpo_advantages(&[1.0, 0.0, 0.0, 1.0], 2, false);
        assert_eq!(dr, vec![0.5, -0.5, -0.5, 0.5]);
        assert_eq!(
            per_token(&[0.5, -1.0], &[2, 1]),
            vec![vec![0.5, 0.5], vec![-1.0]]
        );
    }
}
