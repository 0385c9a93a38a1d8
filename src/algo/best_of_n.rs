//! Best-of-n sampling as an inference-time policy: draw n samples from π_ref, keep the one with
//! the highest reward. Its KL to π_ref is at most log n − (n−1)/n (Stiennon et al. 2020; with
//! equality for continuous rewards without ties, Beirami et al. 2024), because for a continuous
//! reward with CDF F under π_ref, π_bon(y) = n·F(r(y))^{n−1}·π_ref(y).

use serde::Serialize;

use crate::metrics::MeanCi;

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

/// The rewards best-of-n selected for one prompt, and that prompt's independent pool of π_ref
/// rewards that stands in for its reward CDF.
pub struct PromptSelection<'a> {
    pub selected: Vec<f32>,
    pub pool: &'a [f32],
}

/// F̂(r): the pool's empirical CDF at `reward`, mid-rank for ties and shrunk by ½ at both ends so
/// that it stays in (0, 1). `sorted_pool` is sorted ascending.
fn empirical_cdf(sorted_pool: &[f32], reward: f32) -> f64 {
    let below = sorted_pool.partition_point(|&p| p < reward) as f64;
    let not_above = sorted_pool.partition_point(|&p| p <= reward) as f64;
    let equal = not_above - below;
    (below + 0.5 * equal + 0.5) / (sorted_pool.len() as f64 + 1.0)
}

/// log n + (n−1)·log F̂(r) for every selected reward of every prompt: each one's contribution to
/// the KL estimate.
fn kl_terms(prompts: &[(Vec<f32>, Vec<f32>)], n: usize) -> Vec<f64> {
    let log_n = (n as f64).ln();
    prompts
        .iter()
        .flat_map(|(selected, sorted_pool)| {
            selected
                .iter()
                .map(move |&r| log_n + (n as f64 - 1.0) * empirical_cdf(sorted_pool, r).ln())
        })
        .collect()
}

/// Bootstrap replicates behind the interval of [`estimated_kl`].
const BOOTSTRAP_REPLICATES: usize = 400;

/// A Monte-Carlo estimate of KL(π_bon‖π_ref): the mean over selected samples of
/// log n + (n−1)·log F̂(r), where F̂ is the empirical CDF of an independent pool of π_ref rewards
/// for the same prompt.
///
/// The 95% interval is a cluster bootstrap (1.96 standard errors): each replicate resamples the
/// prompts, and within each prompt both its selected samples and its pool. The pool's error is
/// shared by every sample of its prompt and grows with n (about (n−1)·√((1−F)/(F·M)) for a pool
/// of M), so an interval over the selected samples alone is too narrow and can sit wholly above
/// the analytic bound, which the true KL never exceeds.
pub fn estimated_kl(prompts: &[PromptSelection], n: usize, seed: u64) -> MeanCi {
    use rand::{Rng, SeedableRng};

    let pools: Vec<RankedPool> = prompts.iter().map(|p| RankedPool::new(p.pool)).collect();
    let observed: Vec<(Vec<f32>, Vec<f32>)> = prompts
        .iter()
        .zip(&pools)
        .map(|(p, pool)| (p.selected.clone(), pool.sorted.clone()))
        .collect();
    let terms = kl_terms(&observed, n);
    let count = terms.len();
    if count == 0 {
        return MeanCi::of(&[]);
    }
    let mean = terms.iter().sum::<f64>() / count as f64;
    if n == 1 {
        // log 1 + 0·log F̂ = 0 exactly: nothing to be uncertain about.
        return MeanCi {
            mean,
            ci95: 0.0,
            n: count,
        };
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (n as u64).wrapping_mul(0x9e37));
    let replicates: Vec<f64> = (0..BOOTSTRAP_REPLICATES)
        .map(|_| {
            let drawn: Vec<(Vec<f32>, Vec<f32>)> = (0..prompts.len())
                .map(|_| {
                    let i = rng.random_range(0..prompts.len());
                    let selected = &prompts[i].selected;
                    let selected = (0..selected.len())
                        .map(|_| selected[rng.random_range(0..selected.len())])
                        .collect();
                    (selected, pools[i].resample_sorted(&mut rng))
                })
                .collect();
            let terms = kl_terms(&drawn, n);
            terms.iter().sum::<f64>() / terms.len().max(1) as f64
        })
        .collect();
    let spread = MeanCi::of(&replicates);
    // MeanCi's ci95 is 1.96·s/√B; the bootstrap's standard error is s itself.
    let standard_error = spread.ci95 / 1.96 * (BOOTSTRAP_REPLICATES as f64).sqrt();
    // With G prompts the bootstrap sees G clusters: it understates the variance by (G−1)/G, and
    // the interval takes Student's t with G−1 degrees of freedom (2.36 for 8 prompts, 2.00 for
    // 64) rather than the normal 1.96.
    let clusters = prompts.len().max(2) as f64;
    let corrected = standard_error * (clusters / (clusters - 1.0)).sqrt();
    MeanCi {
        mean,
        ci95: student_t_975(clusters - 1.0) * corrected,
        n: count,
    }
}

/// A pool of rewards sorted ascending, with the rank each sample of the pool (in its given order)
/// has there. A bootstrap draw of the pool is then a count per rank, which lists the draw already
/// sorted: no sort per replicate (a pool of 100,000 took most of a unit test's minute), and the
/// same values as drawing from the pool in its order and sorting.
struct RankedPool {
    sorted: Vec<f32>,
    rank: Vec<usize>,
}

impl RankedPool {
    fn new(pool: &[f32]) -> Self {
        let mut order: Vec<usize> = (0..pool.len()).collect();
        order.sort_by(|&a, &b| pool[a].total_cmp(&pool[b]));
        let mut rank = vec![0; pool.len()];
        for (r, &i) in order.iter().enumerate() {
            rank[i] = r;
        }
        let sorted = order.iter().map(|&i| pool[i]).collect();
        Self { sorted, rank }
    }

    /// As many draws with replacement as the pool holds, sorted ascending.
    fn resample_sorted(&self, rng: &mut impl rand::Rng) -> Vec<f32> {
        let mut counts = vec![0u32; self.rank.len()];
        for _ in 0..self.rank.len() {
            counts[self.rank[rng.random_range(0..self.rank.len())]] += 1;
        }
        self.sorted
            .iter()
            .zip(counts)
            .flat_map(|(&value, count)| std::iter::repeat_n(value, count as usize))
            .collect()
    }
}

/// The 97.5% quantile of Student's t with `df` degrees of freedom (Cornish–Fisher expansion
/// around the normal's 1.96; within 0.004 of the table from 3 degrees of freedom on).
fn student_t_975(df: f64) -> f64 {
    let z: f64 = 1.959_964;
    let df = df.max(1.0);
    z + (z.powi(3) + z) / (4.0 * df)
        + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * df * df)
        + (3.0 * z.powi(7) + 19.0 * z.powi(5) + 17.0 * z.powi(3) - 15.0 * z) / (384.0 * df.powi(3))
        + (79.0 * z.powi(9) + 776.0 * z.powi(7) + 1482.0 * z.powi(5)
            - 1920.0 * z.powi(3)
            - 945.0 * z)
            / (92160.0 * df.powi(4))
}

/// Best-of-n at one n: its KL to π_ref as measured (with its interval) and as the analytic
/// bound, and the rewards it buys.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BestOfNPoint {
    pub n: usize,
    /// The measured KL(π_bon‖π_ref): what charts and tables place the point at.
    pub kl: MeanCi,
    /// log n − (n−1)/n: the KL's upper bound, exact for a continuous reward without ties.
    pub analytic_kl: f64,
    /// The selecting reward of the chosen samples.
    pub reward: MeanCi,
    /// A second reward of the chosen samples (the gold one when a proxy selects).
    pub monitor_reward: Option<MeanCi>,
    /// Completion tokens delivered per second: the sampler's measured throughput over n, since
    /// each delivered completion costs n samples (scoring not counted).
    #[serde(default)]
    pub tokens_per_second: Option<f64>,
    /// The judged reward of each chosen sample, prompt by prompt and draw by draw (the
    /// monitor's where there is one, else the selecting reward's): what a win rate pairs up.
    #[serde(skip)]
    pub judged: Vec<f64>,
}

/// The share of paired draws `ours` wins against `theirs` (a tie counts half), with its interval:
/// InfAlign's measure of a policy aligned for best-of-n against another under best-of-n.
pub fn win_rate(ours: &[f64], theirs: &[f64]) -> MeanCi {
    let outcomes: Vec<f64> = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| match a.partial_cmp(b) {
            Some(std::cmp::Ordering::Greater) => 1.0,
            Some(std::cmp::Ordering::Equal) => 0.5,
            _ => 0.0,
        })
        .collect();
    MeanCi::of(&outcomes)
}

impl BestOfNPoint {
    /// √ of the measured KL (0 when the estimate is below 0).
    pub fn sqrt_kl(&self) -> f64 {
        self.kl.mean.max(0.0).sqrt()
    }
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

    /// Best-of-n from a standard normal reward: `prompts` prompts, each with its own pool of
    /// `pool` rewards and `groups` selected maxima of n.
    fn normal_selections(
        seed: u64,
        prompts: usize,
        pool: usize,
        groups: usize,
        n: usize,
    ) -> Vec<(Vec<f32>, Vec<f32>)> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let normal = Normal::new(0.0f32, 1.0).unwrap();
        (0..prompts)
            .map(|_| {
                let pool: Vec<f32> = (0..pool).map(|_| normal.sample(&mut rng)).collect();
                let draws: Vec<f32> = (0..groups * n).map(|_| normal.sample(&mut rng)).collect();
                let selected = best_of_groups(&draws, n)
                    .into_iter()
                    .map(|i| draws[i])
                    .collect();
                (selected, pool)
            })
            .collect()
    }

    fn estimate(data: &[(Vec<f32>, Vec<f32>)], n: usize, seed: u64) -> MeanCi {
        let selections: Vec<PromptSelection> = data
            .iter()
            .map(|(selected, pool)| PromptSelection {
                selected: selected.clone(),
                pool,
            })
            .collect();
        estimated_kl(&selections, n, seed)
    }

    #[test]
    fn the_estimate_recovers_the_analytic_kl_for_continuous_rewards() {
        for n in [2usize, 4, 8, 16] {
            // One prompt with a large pool: the plain Monte-Carlo regime.
            let data = normal_selections(4, 1, 100_000, 3000, n);
            let estimate = estimate(&data, n, 0);
            assert!(
                (estimate.mean - analytic_kl(n)).abs() < estimate.ci95 * 1.5 + 0.01,
                "n={n}: {estimate} vs {}",
                analytic_kl(n)
            );
        }
        assert_eq!(estimate(&normal_selections(1, 4, 32, 4, 1), 1, 0).mean, 0.0);
    }

    #[test]
    fn a_resampled_pool_is_the_sorted_draw_from_the_pool_in_its_order() {
        // Ties (the rounded values) and both signs of zero included.
        let pool: Vec<f32> = [0.5f32, -1.25, 0.5, 3.0, -0.0, 0.0, 2.0, -1.25, 7.5, 0.5]
            .into_iter()
            .cycle()
            .take(37)
            .enumerate()
            .map(|(i, v)| if i % 3 == 0 { v } else { v + i as f32 / 8.0 })
            .collect();
        let ranked = RankedPool::new(&pool);
        let mut sorted = pool.clone();
        sorted.sort_by(f32::total_cmp);
        assert_eq!(ranked.sorted, sorted);
        for seed in 0..5 {
            let mut by_rank = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut in_order = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut drawn: Vec<f32> = (0..pool.len())
                .map(|_| pool[rand::Rng::random_range(&mut in_order, 0..pool.len())])
                .collect();
            drawn.sort_by(f32::total_cmp);
            let resampled = ranked.resample_sorted(&mut by_rank);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&resampled), bits(&drawn), "seed {seed}");
        }
    }

    #[test]
    fn the_interval_includes_the_pools_error_and_covers_the_bound() {
        // Small pools next to n, as a sweep uses them: 16 prompts, pools of 128, 4 groups. The
        // interval over the selected samples alone misses the analytic value far more often
        // than 5%; the bootstrap over prompts and pools covers it.
        let (seeds, n) = (40u64, 32usize);
        let (mut covered, mut covered_naive) = (0, 0);
        for seed in 0..seeds {
            let data = normal_selections(100 + seed, 16, 128, 4, n);
            let estimate = estimate(&data, n, seed);
            let terms = kl_terms(
                &data
                    .iter()
                    .map(|(s, p)| {
                        let mut p = p.clone();
                        p.sort_by(f32::total_cmp);
                        (s.clone(), p)
                    })
                    .collect::<Vec<_>>(),
                n,
            );
            let naive = MeanCi::of(&terms);
            assert!((naive.mean - estimate.mean).abs() < 1e-12);
            assert!(estimate.ci95 > naive.ci95, "{estimate} vs naive {naive}");
            let truth = analytic_kl(n);
            covered += usize::from((estimate.mean - truth).abs() <= estimate.ci95);
            covered_naive += usize::from((naive.mean - truth).abs() <= naive.ci95);
        }
        println!(
            "n={n}: bootstrap covers {covered}/{seeds}, selected-only {covered_naive}/{seeds}"
        );
        assert!(covered >= 34, "bootstrap covered {covered}/{seeds}");
        assert!(covered > covered_naive);
    }

    #[test]
    fn student_t_quantiles_match_the_table() {
        for (df, t) in [
            (3.0, 3.182),
            (7.0, 2.365),
            (15.0, 2.131),
            (63.0, 1.998),
            (1e6, 1.960),
        ] {
            assert!(
                (student_t_975(df) - t).abs() < 0.004,
                "df {df}: {}",
                student_t_975(df)
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

    #[test]
    fn win_rates_count_ties_half() {
        let rate = win_rate(&[2.0, 1.0, 0.5, 3.0], &[1.0, 1.0, 0.7, 0.0]);
        assert!((rate.mean - (1.0 + 0.5 + 0.0 + 1.0) / 4.0).abs() < 1e-12);
        assert_eq!(rate.n, 4);
        assert_eq!(win_rate(&[1.0, 2.0], &[1.0, 2.0]).mean, 0.5);
    }
}
