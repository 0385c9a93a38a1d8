//! The policy-gradient update every online method shares: epochs of shuffled minibatches over a
//! rollout, each the clipped surrogate of `algo::policy_gradient` and one optimiser step, with an
//! early stop when the approximate KL passes its limit.

use crate::backend::AutodiffBackend;
use burn::module::AutodiffModule;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::algo::policy_gradient::{
    clipped_surrogate_loss, token_matrix, LossAggregation, PolicyGradientConfig,
};
use crate::dataset::Sequence;
use crate::error::{Error, Result};
use crate::host::read_scalar;
use crate::logprobs::{completion_logprobs, SequenceBatch};
use crate::metrics::{self, Metrics};
use crate::model::Llama;
use crate::rollout::Rollout;
use crate::train::Trainer;

/// Runs `config.epochs` passes of minibatch updates over `rollout` with per-token `advantages`
/// (one vector per sample, one value per completion token). Returns the policy and the mean of
/// each metric over the updates.
pub async fn update<B: AutodiffBackend>(
    mut policy: Llama<B>,
    trainer: &mut Trainer<B, Llama<B>>,
    rollout: &Rollout,
    advantages: &[Vec<f32>],
    config: &PolicyGradientConfig,
    seed: u64,
) -> Result<(Llama<B>, Metrics)>
where
    Llama<B>: AutodiffModule<B>,
{
    if advantages.len() != rollout.len() {
        return Err(Error::Input(format!(
            "{} advantage rows for {} samples",
            advantages.len(),
            rollout.len()
        )));
    }
    let device = policy.device();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut sums: Vec<(&'static str, f64)> = vec![
        (metrics::LOSS_POLICY, 0.0),
        (metrics::POLICY_APPROXKL, 0.0),
        (metrics::POLICY_CLIPFRAC, 0.0),
        (metrics::POLICY_KL_K3, 0.0),
    ];
    let mut updates = 0usize;
    let mut skipped = 0usize;
    let mut last = Metrics::new(trainer.step);
    let before = config.max_approx_kl.map(|_| policy.clone());
    let mut rolled_back = None;
    let replica = trainer.replica().clone();
    'epochs: for _ in 0..config.epochs.max(1) {
        let mut order: Vec<usize> = (0..rollout.len()).collect();
        order.shuffle(&mut rng);
        for minibatch in order.chunks(config.minibatch_size.max(1)) {
            // Every replica draws the same minibatch and computes its share.
            let chunk = replica.shard(minibatch)?;
            let sequences: Vec<&Sequence> = chunk.iter().map(|&i| &rollout.sequences[i]).collect();
            let owned: Vec<Sequence> = sequences.iter().map(|s| (*s).clone()).collect();
            let batch = SequenceBatch::<B>::new(&owned, policy.config().max_seq_len, &device)?;
            let width = batch.tokens.dims()[1] - 1;
            fn pick<'r>(rows: &'r [Vec<f32>], chunk: &[usize]) -> Vec<&'r [f32]> {
                chunk.iter().map(|&i| rows[i].as_slice()).collect()
            }
            let old = token_matrix::<B>(&sequences, &pick(&rollout.logps, chunk), width, &device);
            let reference =
                token_matrix::<B>(&sequences, &pick(&rollout.ref_logps, chunk), width, &device);
            let adv = token_matrix::<B>(&sequences, &pick(advantages, chunk), width, &device);
            let logps = completion_logprobs(&policy, &batch);
            let out = clipped_surrogate_loss(
                logps,
                old,
                reference,
                adv,
                batch.completion_mask.clone(),
                config,
            );
            let mut m = Metrics::new(trainer.step);
            for (name, value) in [
                (metrics::POLICY_APPROXKL, out.approx_kl),
                (metrics::POLICY_CLIPFRAC, out.clip_fraction),
                (metrics::POLICY_KL_K3, out.kl),
            ] {
                m.insert(name, read_scalar(value).await? as f64);
            }
            // The token means above, and a token-mean loss, weigh by this share's tokens; the
            // other aggregations are means over rows.
            let token_share = replica.token_share(batch.completion_mask.clone()).await?;
            replica.reduce_metrics(&mut m, token_share)?;
            let share = match config.aggregation {
                LossAggregation::TokenMean => token_share,
                LossAggregation::SequenceMean | LossAggregation::Constant => {
                    replica.share(chunk.len() as f64)?
                }
            };
            let loss = out.loss.mul_scalar(share);
            if let (Some(limit), Some(approx_kl)) =
                (config.max_approx_kl, m.get(metrics::POLICY_APPROXKL))
            {
                if !approx_kl.is_finite() || approx_kl > limit {
                    rolled_back = Some(updates + skipped);
                    break 'epochs;
                }
            }
            policy = trainer.step_logged(policy, loss, &mut m).await?;
            if m.get(crate::metrics::TRAIN_SKIPPED).is_some() {
                skipped += 1;
            } else {
                updates += 1;
                for (name, sum) in sums.iter_mut() {
                    let key = if *name == metrics::LOSS_POLICY {
                        crate::metrics::TRAIN_LOSS
                    } else {
                        name
                    };
                    *sum += m.get(key).unwrap_or(0.0);
                }
            }
            last = m;
        }
    }
    if let (Some(at), Some(before)) = (rolled_back, before) {
        policy = before;
        last.insert(metrics::POLICY_ROLLED_BACK, 1.0);
        last.insert(metrics::POLICY_ROLLED_BACK_AT, at as f64);
    }
    let mut out = Metrics::new(last.step);
    for name in [metrics::POLICY_ROLLED_BACK, metrics::POLICY_ROLLED_BACK_AT] {
        if let Some(v) = last.get(name) {
            out.insert(name, v);
        }
    }
    for (name, sum) in sums {
        out.insert(name, sum / updates.max(1) as f64);
    }
    if let Some(lr) = last.get(crate::metrics::TRAIN_LR) {
        out.insert(crate::metrics::TRAIN_LR, lr);
    }
    if skipped > 0 {
        out.insert(crate::metrics::TRAIN_SKIPPED, skipped as f64);
    }
    Ok((policy, out))
}
