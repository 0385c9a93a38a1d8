//! Best-of-n sampling as an inference-time policy: draw n samples from π_ref, keep the one with
//! the highest reward. Its KL to π_ref is at most log n − (n−1)/n (Stiennon et al. 2020; with
//! equality for continuous rewards without ties, Beirami et al. 2024), because for a continuous
//! reward with CDF F under π_ref, π_bon(y) = n·F(r(y))^{n−1}·π_ref(y).

use burn::tensor::backend::Backend;
use serde::Serialize;

use crate::error::Result;
use crate::io::Tokenizer;
use crate::metrics::MeanCi;
use crate::model::Llama;
use crate::reward::source::{RewardSource, Scored};
use crate::sample::{generate, SamplingConfig};

/// log n − (n−1)/n.
pub fn analytic_kl(n: usize) -> f64 {
    let n = n.max(1) as f64;
    n.ln() - (n - 1.0) / n
}

/// The index of the highest reward in each consecutive group of `n` (the first on ties).
pub fn best_of_groups(rewards: &[f32], n: usize) -> Vec<usize> {
    rewards
        .chunks(n.max(1))
        .enumerate()
        .map(|(g, group)| {
            let mut best = 0;
            for (i, &r) in group.iter().enumerate() {
                if r > group[best] {
                    best = i;
                }
            }
            g * n + best
        })
        .collect()
}

/// A Monte-Carlo estimate of KL(π_bon‖π_ref): the mean over selected samples of
/// log n + (n−1)·log F̂(r), where F̂ is the empirical CDF of an independent pool of π_ref rewards
/// for the same prompt (mid-rank for ties, so F̂ stays in (0, 1)). The interval covers the
/// selected samples only: the pool's own error adds about (n−1)·√((1−F)/(F·M)) for a pool of M,
/// so pools must be large next to n.
pub fn estimated_kl(selected: &[(f32, &[f32])], n: usize) -> MeanCi {
    let values: Vec<f64> = selected
        .iter()
        .map(|(reward, pool)| {
            let below = pool.iter().filter(|&&p| p < *reward).count() as f64;
            let equal = pool.iter().filter(|&&p| p == *reward).count() as f64;
            let cdf = (below + 0.5 * equal + 0.5) / (pool.len() as f64 + 1.0);
            (n as f64).ln() + (n as f64 - 1.0) * cdf.ln()
        })
        .collect();
    MeanCi::of(&values)
}

/// Best-of-n at one n: its KL to π_ref, measured and analytic, and its rewards.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BestOfNPoint {
    pub n: usize,
    pub analytic_kl: f64,
    pub estimated_kl: MeanCi,
    /// The selecting reward of the chosen samples.
    pub reward: MeanCi,
    /// A second reward of the chosen samples (the gold one when a proxy selects).
    pub monitor_reward: Option<MeanCi>,
}

/// Draws `pool + max(n)·groups` samples per prompt from `policy`; the first `pool` give each
/// prompt's reward CDF, the rest are cut into groups of n for every n in `ns`.
#[allow(clippy::too_many_arguments)]
pub async fn measure<B: Backend>(
    policy: &Llama<B>,
    tokenizer: &Tokenizer,
    prompts: &[String],
    reward: &RewardSource<B>,
    monitor: Option<&RewardSource<B>>,
    ns: &[usize],
    pool: usize,
    groups: usize,
    sampling: &SamplingConfig,
) -> Result<Vec<BestOfNPoint>> {
    let per_prompt = pool + ns.iter().max().copied().unwrap_or(1) * groups;
    let mut rewards: Vec<Vec<f32>> = Vec::new();
    let mut monitored: Vec<Vec<f32>> = Vec::new();
    for (index, prompt) in prompts.iter().enumerate() {
        let ids = tokenizer.encode_with_bos(prompt)?;
        let config = SamplingConfig {
            seed: sampling.seed.wrapping_add(index as u64),
            ..sampling.clone()
        };
        let completions = generate(
            policy,
            &vec![ids.clone(); per_prompt],
            tokenizer.eos_id(),
            &config,
        )
        .await?;
        let texts: Vec<String> = completions.iter().map(|c| tokenizer.decode(c)).collect();
        let sequences: Vec<(Vec<u32>, Vec<u32>)> = completions
            .into_iter()
            .map(|mut c| {
                c.extend(tokenizer.eos_id());
                (ids.clone(), c)
            })
            .collect();
        let scored: Vec<Scored> = texts
            .iter()
            .zip(&sequences)
            .map(|(completion, sequence)| Scored {
                prompt,
                completion,
                sequence,
            })
            .collect();
        rewards.push(reward.score(&scored).await?);
        if let Some(m) = monitor {
            monitored.push(m.score(&scored).await?);
        }
    }
    let mut points = Vec::new();
    for &n in ns {
        let (mut selected_kl, mut selected_reward, mut selected_monitor) =
            (Vec::new(), Vec::new(), Vec::new());
        for (p, r) in rewards.iter().enumerate() {
            let (pool_rewards, rest) = r.split_at(pool);
            let draws = &rest[..n * groups];
            for best in best_of_groups(draws, n) {
                selected_kl.push((draws[best], pool_rewards));
                selected_reward.push(draws[best] as f64);
                if let Some(m) = monitored.get(p) {
                    selected_monitor.push(m[pool + best] as f64);
                }
            }
        }
        points.push(BestOfNPoint {
            n,
            analytic_kl: analytic_kl(n),
            estimated_kl: estimated_kl(&selected_kl, n),
            reward: MeanCi::of(&selected_reward),
            monitor_reward: (!selected_monitor.is_empty()).then(|| MeanCi::of(&selected_monitor)),
        });
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    #[test]
    fn analytic_values_from_the_data_readme() {
        for (n, kl) in [
            (2, 0.1931),
            (4, 0.6363),
            (8, 1.2044),
            (16, 1.8351),
            (64, 3.1745),
        ] {
            assert!((analytic_kl(n) - kl).abs() < 1e-4, "n={n}");
        }
        assert_eq!(analytic_kl(1), 0.0);
    }

    #[test]
    fn the_estimate_recovers_the_analytic_kl_for_continuous_rewards() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let normal = Normal::new(0.0f32, 1.0).unwrap();
        let pool: Vec<f32> = (0..100_000).map(|_| normal.sample(&mut rng)).collect();
        for n in [2usize, 4, 8, 16] {
            let rewards: Vec<f32> = (0..3000 * n).map(|_| normal.sample(&mut rng)).collect();
            let best = best_of_groups(&rewards, n);
            let selected: Vec<(f32, &[f32])> = best
                .iter()
                .map(|&i| (rewards[i], pool.as_slice()))
                .collect();
            let estimate = estimated_kl(&selected, n);
            assert!(
                (estimate.mean - analytic_kl(n)).abs() < estimate.ci95 * 1.5 + 0.01,
                "n={n}: {estimate} vs {}",
                analytic_kl(n)
            );
        }
    }

    #[test]
    fn best_of_groups_picks_the_first_maximum() {
        assert_eq!(
            best_of_groups(&[0.0, 2.0, 2.0, 1.0, 5.0, 0.0], 3),
            vec![1, 4]
        );
    }
}
