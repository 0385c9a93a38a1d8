//! GRPO-S, the difficulty-scaled GRPO of the DR-IRL paper (dynamic reward scaling via inverse
//! reinforcement learning, 2025): GRPO whose signal is weighted per prompt by how
//! hard the prompt is, on two axes —
//!
//! - data-level hardness d(x) ∈ [0, 1]: known for the built-in world's sum questions (the size of
//!   the sum, `world::story::sum_difficulty`), 0 where the data says nothing;
//! - model-level responsiveness g(x) ∈ [0, 1]: the spread of the group's rewards (max − min) over
//!   the largest spread in the batch. A prompt the policy barely responds to (small reward gap)
//!   counts as hard.
//!
//! Each sample's GRPO advantage is multiplied by its prompt's weight w(x) = 1 + d(x) + (1 − g(x)),
//! from 1 (easy, responsive) to 3. The weight scales the advantage rather than the reward:
//! GRPO standardises rewards within each group, which would cancel a per-prompt reward scale.
//! The paper learns its weights by inverse RL; here difficulty is known, so the two terms are
//! read off directly, with equal weight — our choice, where the paper's combination rule was not
//! available to check.

use super::grpo::{grpo_advantages, per_token, GRPO};
use super::online_method::{GroupRollout, KlPlacement, OnlineMethod, OnlineUpdate};
use super::policy_gradient::LossAggregation;
use super::spec::MethodSpec;
use crate::world::story::sum_difficulty;

/// Each group's weight w = 1 + d + (1 − g), from its prompt's known hardness `d` (0 when
/// unknown) and its rewards' spread relative to the batch's largest.
pub fn difficulty_weights(rewards: &[f32], hardness: &[f32], group_size: usize) -> Vec<f32> {
    let spreads: Vec<f32> = rewards
        .chunks(group_size.max(1))
        .map(|g| {
            let max = g.iter().copied().fold(f32::MIN, f32::max);
            let min = g.iter().copied().fold(f32::MAX, f32::min);
            max - min
        })
        .collect();
    let widest = spreads.iter().copied().fold(0.0, f32::max);
    spreads
        .iter()
        .zip(hardness)
        .map(|(&spread, &d)| {
            let responsiveness = if widest > 0.0 { spread / widest } else { 1.0 };
            1.0 + d + (1.0 - responsiveness)
        })
        .collect()
}

/// GRPO-S's advantages: GRPO's, times each group's difficulty weight.
pub fn grpo_s_advantages(rewards: &[f32], hardness: &[f32], group_size: usize) -> Vec<f32> {
    let weights = difficulty_weights(rewards, hardness, group_size);
    grpo_advantages(rewards, group_size, true)
        .chunks(group_size.max(1))
        .zip(&weights)
        .flat_map(|(group, &w)| group.iter().map(move |a| a * w))
        .collect()
}

/// GRPO-S, the DR-IRL paper's difficulty-scaled GRPO.
pub const GRPO_S: MethodSpec = MethodSpec {
    name: "grpo-s",
    summary: "GRPO-S (the DR-IRL paper, 2025): GRPO with advantages scaled by each prompt's \
              difficulty (known hardness, and the policy's reward gap)",
    ..GRPO
};

pub const GRPO_S_METHOD: OnlineMethod = OnlineMethod {
    spec: GRPO_S,
    aggregation: LossAggregation::SequenceMean,
    kl: KlPlacement::LossTerm,
    update: OnlineUpdate::Group(grpo_s_update),
};

fn grpo_s_update(r: &GroupRollout) -> Vec<Vec<f32>> {
    let hardness: Vec<f32> = r
        .prompts
        .iter()
        .step_by(r.group_size.max(1))
        .map(|p| sum_difficulty(p).unwrap_or(0.0))
        .collect();
    per_token(
        &grpo_s_advantages(r.rewards, &hardness, r.group_size),
        r.lengths,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_by_hand() {
        // Group 1 spreads 2 (the widest), group 2 spreads 0.5, group 3 not at all.
        let rewards = [0.0, 2.0, 1.0, 1.5, 3.0, 3.0];
        let w = difficulty_weights(&rewards, &[0.0, 1.0, 0.5], 2);
        assert_eq!(w, vec![1.0, 1.0 + 1.0 + 0.75, 1.0 + 0.5 + 1.0]);
        // With no known hardness and equal spreads, GRPO-S is GRPO.
        let rewards = [0.0, 1.0, 1.0, 0.0];
        assert_eq!(
            grpo_s_advantages(&rewards, &[0.0, 0.0], 2),
            grpo_advantages(&rewards, 2, true)
        );
        // A harder prompt's advantages are scaled up, its group's signs kept.
        let a = grpo_s_advantages(&rewards, &[0.0, 0.5], 2);
        let plain = grpo_advantages(&rewards, 2, true);
        assert!((a[2] - 1.5 * plain[2]).abs() < 1e-6 && (a[3] - 1.5 * plain[3]).abs() < 1e-6);
    }

    #[test]
    fn the_worlds_sums_carry_their_difficulty() {
        assert_eq!(
            sum_difficulty("Tom had two balls. Tom found one more. Now Tom has"),
            Some(0.0)
        );
        assert_eq!(
            sum_difficulty("Mia had five kites. Mia found five more. Now Mia has"),
            Some(1.0)
        );
        assert_eq!(sum_difficulty("Once upon a time there was a cat."), None);
        for task in crate::world::eval::sum_tasks(3, 50) {
            let d = sum_difficulty(&task.question).unwrap();
            assert!((0.0..=1.0).contains(&d), "{}: {d}", task.question);
        }
    }
}
