//! The reward-model training loop (the loss is `reward::objective`), a step at a time so the
//! page can draw between steps: batches from the one batcher, an optimiser step each, and at the
//! end each ensemble member's scale.

use crate::backend::AutodiffBackend;
use burn::module::AutodiffModule;
use serde::{Deserialize, Serialize};

use crate::batches::BatchOrder;
use crate::distributed::Replica;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::model::RewardEnsemble;
use crate::reward::objective::{
    batch_loss, member_scale, rating_scale_of, LossOptions, RewardData,
};
use crate::reward::{LearnedReward, RewardHeads};
use crate::train::{OptimConfig, Trainer};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardTrainConfig {
    pub optim: OptimConfig,
    /// Rankings (or rated completions) per batch.
    pub batch_size: usize,
    pub seed: u64,
    /// For pairs with scores: Bradley–Terry with margin m = s_chosen − s_rejected (Llama 2).
    pub margin_from_scores: bool,
}

impl Default for RewardTrainConfig {
    fn default() -> Self {
        Self {
            optim: OptimConfig {
                lr: 1e-3,
                warmup_steps: 10,
                total_steps: 100,
                ..Default::default()
            },
            batch_size: 16,
            seed: 0,
            margin_from_scores: false,
        }
    }
}

impl RewardTrainConfig {
    fn loss_options(&self) -> LossOptions {
        LossOptions {
            margin_from_scores: self.margin_from_scores,
            seed: self.seed,
        }
    }
}

/// A reward model's training, stepped by its caller: the optimiser, the data and the batch
/// order. The model itself is passed in and out of each step.
pub struct RewardModelRun<B: AutodiffBackend> {
    trainer: Trainer<B, RewardEnsemble<B>>,
    data: RewardData,
    batches: BatchOrder,
    config: RewardTrainConfig,
}

impl<B: AutodiffBackend> RewardModelRun<B>
where
    RewardEnsemble<B>: AutodiffModule<B>,
{
    /// Checks `data` against the reward's heads; a rating model without a rating scale takes
    /// the data's.
    pub fn new(
        reward: &mut LearnedReward<B>,
        data: RewardData,
        config: RewardTrainConfig,
    ) -> Result<Self> {
        if data.is_empty() {
            return Err(Error::Input("no training data for the reward model".into()));
        }
        data.check(&reward.heads)?;
        if let (RewardData::Rated(rows), RewardHeads::Attributes { rating_scale, .. }) =
            (&data, &mut reward.heads)
        {
            if rating_scale.is_empty() {
                *rating_scale = rating_scale_of(rows);
            }
        }
        Ok(Self {
            trainer: Trainer::new(config.optim.clone()),
            batches: BatchOrder::new(data.len(), config.seed),
            data,
            config,
        })
    }

    /// This run as one replica of a data-parallel run: each batch's share, gradients summed.
    pub fn with_replica(mut self, replica: Replica) -> Self {
        self.trainer = self.trainer.with_replica(replica);
        self
    }

    pub fn data(&self) -> &RewardData {
        &self.data
    }

    pub fn steps_done(&self) -> usize {
        self.trainer.step
    }

    pub fn total_steps(&self) -> usize {
        self.config.optim.total_steps
    }

    /// One update on the next batch.
    pub async fn step(&mut self, reward: LearnedReward<B>) -> Result<(LearnedReward<B>, Metrics)> {
        let batch = self.batches.next_batch(self.config.batch_size);
        let replica = self.trainer.replica().clone();
        let shard = replica.shard(&batch)?;
        let LearnedReward { ensemble, heads } = reward;
        let mut metrics = Metrics::new(self.trainer.step);
        let loss = batch_loss(
            &ensemble,
            &heads,
            &self.data,
            shard,
            &self.config.loss_options(),
            &mut metrics,
        )
        .await?;
        // The loss and the metrics are means over rows.
        let share = replica.share(shard.len() as f64)?;
        replica.reduce_metrics(&mut metrics, share)?;
        let loss = loss.mul_scalar(share);
        let ensemble = self
            .trainer
            .step_logged(ensemble, loss, &mut metrics)
            .await?;
        Ok((LearnedReward { ensemble, heads }, metrics))
    }

    /// What training ends with: an ensemble learns each member's scale over its training
    /// completions, so aggregation compares standardised members.
    pub async fn finish(&self, mut reward: LearnedReward<B>) -> Result<LearnedReward<B>> {
        if let (RewardData::Ranked(rows), RewardHeads::Ensemble { members, .. }) =
            (&self.data, &reward.heads)
        {
            if *members > 1 {
                let scale = member_scale(&reward, rows).await?;
                if let RewardHeads::Ensemble { member_scale, .. } = &mut reward.heads {
                    *member_scale = scale;
                }
            }
        }
        Ok(reward)
    }
}

/// Trains for `config.optim.total_steps` batches, calling `on_step` after each.
pub async fn train<B: AutodiffBackend>(
    reward: LearnedReward<B>,
    data: RewardData,
    config: &RewardTrainConfig,
    on_step: impl FnMut(&Metrics),
) -> Result<LearnedReward<B>>
where
    RewardEnsemble<B>: AutodiffModule<B>,
{
    train_replica(reward, data, config, Replica::SINGLE, on_step).await
}

/// [`train`] as one replica of a data-parallel run (each batch shared out).
pub async fn train_replica<B: AutodiffBackend>(
    mut reward: LearnedReward<B>,
    data: RewardData,
    config: &RewardTrainConfig,
    replica: Replica,
    mut on_step: impl FnMut(&Metrics),
) -> Result<LearnedReward<B>>
where
    RewardEnsemble<B>: AutodiffModule<B>,
{
    let mut run = RewardModelRun::new(&mut reward, data, config.clone())?.with_replica(replica);
    for _ in 0..run.total_steps() {
        let (next, metrics) = run.step(reward).await?;
        reward = next;
        on_step(&metrics);
    }
    run.finish(reward).await
}
