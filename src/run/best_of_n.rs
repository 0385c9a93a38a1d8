//! Best-of-n measured as an inference-time policy: sample each prompt's pool and groups from the
//! reference, select by a reward, and report every n's measured and analytic KL and rewards
//! (the estimators are `algo/best_of_n.rs`).

use crate::backend::Backend;
use web_time::Instant;

use crate::algo::best_of_n::{
    analytic_kl, best_of_groups, estimated_kl, BestOfNPoint, PromptSelection,
};
use crate::error::Result;
use crate::io::Tokenizer;
use crate::metrics::MeanCi;
use crate::model::Llama;
use crate::reward::source::{RewardSource, Scored};
use crate::sample::{generate, SamplingConfig};

/// How best-of-n is measured: the n to report, and the samples drawn per prompt for them.
#[derive(Debug, Clone, PartialEq)]
pub struct BestOfNPlan {
    pub ns: Vec<usize>,
    /// π_ref samples per prompt that give its reward CDF (independent of the selected ones).
    pub pool: usize,
    /// Groups of n per prompt for every n.
    pub groups: usize,
    pub sampling: SamplingConfig,
}

/// Draws `pool + max(n)·groups` samples per prompt from `policy`; the first `pool` give each
/// prompt's reward CDF, the rest are cut into groups of n for every n of the plan.
pub async fn measure<B: Backend>(
    policy: &Llama<B>,
    tokenizer: &Tokenizer,
    prompts: &[String],
    reward: &RewardSource<B>,
    monitor: Option<&RewardSource<B>>,
    plan: &BestOfNPlan,
) -> Result<Vec<BestOfNPoint>> {
    let BestOfNPlan {
        ns,
        pool,
        groups,
        sampling,
    } = plan;
    let (pool, groups) = (*pool, *groups);
    let per_prompt = pool + ns.iter().max().copied().unwrap_or(1) * groups;
    let mut rewards: Vec<Vec<f32>> = Vec::new();
    let mut monitored: Vec<Vec<f32>> = Vec::new();
    let (mut sampled_tokens, mut sampling_seconds) = (0usize, 0.0f64);
    for (index, prompt) in prompts.iter().enumerate() {
        let ids = tokenizer.encode_with_bos(prompt)?;
        let config = SamplingConfig {
            seed: sampling.seed.wrapping_add(index as u64),
            ..sampling.clone()
        };
        let started = Instant::now();
        let completions = generate(
            policy,
            &vec![ids.clone(); per_prompt],
            tokenizer.eos_id(),
            &config,
        )
        .await?;
        sampling_seconds += started.elapsed().as_secs_f64();
        sampled_tokens += completions.iter().map(Vec::len).sum::<usize>();
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
        let (mut selections, mut selected_reward, mut selected_monitor) =
            (Vec::new(), Vec::new(), Vec::new());
        for (p, r) in rewards.iter().enumerate() {
            let (pool_rewards, rest) = r.split_at(pool);
            let draws = &rest[..n * groups];
            let best = best_of_groups(draws, n);
            selected_reward.extend(best.iter().map(|&b| draws[b] as f64));
            if let Some(m) = monitored.get(p) {
                selected_monitor.extend(best.iter().map(|&b| m[pool + b] as f64));
            }
            selections.push(PromptSelection {
                selected: best.iter().map(|&b| draws[b]).collect(),
                pool: pool_rewards,
            });
        }
        points.push(BestOfNPoint {
            n,
            kl: estimated_kl(&selections, n, sampling.seed),
            analytic_kl: analytic_kl(n),
            reward: MeanCi::of(&selected_reward),
            monitor_reward: (!selected_monitor.is_empty()).then(|| MeanCi::of(&selected_monitor)),
            tokens_per_second: (sampling_seconds > 0.0)
                .then(|| sampled_tokens as f64 / sampling_seconds / n as f64),
            judged: if selected_monitor.is_empty() {
                selected_reward
            } else {
                selected_monitor
            },
        });
    }
    Ok(points)
}
