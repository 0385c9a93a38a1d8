//! RAFT's round (Dong et al. 2023, Algorithm 1): sample k completions per prompt, keep the one
//! the reward ranks highest, fine-tune on the kept ones with the SFT loss.

use crate::backend::AutodiffBackend;
use burn::module::AutodiffModule;

use super::sft::sft_step;
use crate::algo::best_of_n::best_of_groups;
use crate::error::Result;
use crate::metrics::{self, Metrics};
use crate::model::Llama;
use crate::rollout::RolloutContext;
use crate::train::Trainer;

/// One RAFT round on `context`'s prompts: `k` samples each, the best kept, SFT updates on them
/// in minibatches of `batch_size`.
pub async fn raft_round<B: AutodiffBackend>(
    mut policy: Llama<B>,
    trainer: &mut Trainer<B, Llama<B>>,
    context: &RolloutContext<'_, B::InnerBackend>,
    k: usize,
    batch_size: usize,
) -> Result<(Llama<B>, Metrics)>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
{
    let rollout = context.collect(&policy.valid(), k).await?;
    let best = best_of_groups(&rollout.rewards, k);
    let kept: Vec<(Vec<u32>, Vec<u32>)> =
        best.iter().map(|&i| rollout.sequences[i].clone()).collect();
    let mut m = Metrics::new(trainer.step);
    let mut losses = Vec::new();
    for chunk in kept.chunks(batch_size.max(1)) {
        let (next, step_metrics) = sft_step(policy, trainer, chunk).await?;
        policy = next;
        losses.extend(step_metrics.get(metrics::TRAIN_LOSS));
    }
    let mean = |v: &mut dyn Iterator<Item = f64>| {
        let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
        s / n.max(1) as f64
    };
    m.insert(metrics::TRAIN_LOSS, mean(&mut losses.iter().copied()));
    m.insert(
        metrics::OBJECTIVE_SCORES,
        mean(&mut rollout.rewards.iter().map(|&r| r as f64)),
    );
    m.insert(
        metrics::RAFT_KEPT_SCORES,
        mean(&mut best.iter().map(|&i| rollout.rewards[i] as f64)),
    );
    Ok((policy, m))
}
