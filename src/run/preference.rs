//! An offline preference run (the DPO family) driven a step at a time: reference log-probs
//! computed once, then one update per call on the batcher's next rows. The CLI's `train`, the
//! frontier sweep and the page all step this same loop.

use crate::backend::AutodiffBackend;
use burn::module::AutodiffModule;

use super::token_level::TokenLevel;
use crate::algo::preference::{
    reference_logps_sharded, PreferenceConfig, PreferenceData, PreferenceObjective, ReferenceLogps,
};
use crate::batches::BatchOrder;
use crate::dataset::RankedSequences;
use crate::distributed::Replica;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::model::Llama;
use crate::train::Trainer;

pub struct PreferenceRun<B: AutodiffBackend> {
    trainer: Trainer<B, Llama<B>>,
    objective: PreferenceObjective,
    data: PreferenceData,
    reference: ReferenceLogps,
    /// The token-level methods' frozen models and masks (their reference table stays empty).
    token_level: Option<TokenLevel<B>>,
    batches: BatchOrder,
}

impl<B: AutodiffBackend> PreferenceRun<B>
where
    Llama<B>: AutodiffModule<B>,
{
    /// Checks that the method can train on `data` and scores every sequence under the frozen
    /// `reference` once.
    pub async fn new(
        reference: &Llama<B::InnerBackend>,
        data: PreferenceData,
        config: PreferenceConfig,
    ) -> Result<Self> {
        Self::new_replica(reference, data, config, Replica::SINGLE).await
    }

    /// [`Self::new`] as one replica of a data-parallel run: the reference log-probs are
    /// computed once over all replicas (each scores its share), every batch is the global
    /// batch's share of this replica.
    pub async fn new_replica(
        reference: &Llama<B::InnerBackend>,
        data: PreferenceData,
        config: PreferenceConfig,
        replica: Replica,
    ) -> Result<Self> {
        if data.is_empty() {
            return Err(Error::Input("no preference data".into()));
        }
        data.check(&config.loss)?;
        let token_level = TokenLevel::new(&config, reference, &replica);
        let reference = match token_level {
            Some(_) => ReferenceLogps::Ranked(Vec::new()),
            None => {
                reference_logps_sharded(reference, &data, config.batch_size * 2, &replica).await?
            }
        };
        let mut objective = PreferenceObjective::new(config);
        objective.replica = replica.clone();
        Ok(Self {
            batches: BatchOrder::new(data.len(), objective.config.seed),
            trainer: Trainer::new(objective.config.optim.clone()).with_replica(replica),
            objective,
            data,
            reference,
            token_level,
        })
    }

    /// AlignDistil's teachers: the DPO model, and optionally the reverse DPO model after it.
    pub fn with_teachers(mut self, teachers: Vec<Llama<B::InnerBackend>>) -> Result<Self> {
        match &mut self.token_level {
            Some(token_level) if self.objective.config.loss.name() == "aligndistil" => {
                token_level.set_teachers(teachers)?;
                Ok(self)
            }
            _ => Err(Error::Input(format!(
                "{} takes no teacher model (aligndistil does)",
                self.objective.config.loss
            ))),
        }
    }

    /// Updates taken so far.
    pub fn steps_done(&self) -> usize {
        self.trainer.step
    }

    /// One update on the next batch.
    pub async fn step(&mut self, policy: Llama<B>) -> Result<(Llama<B>, Metrics)> {
        let batch = self.batches.next_batch(self.objective.config.batch_size);
        let replica = self.trainer.replica().clone();
        let shard = replica.shard(&batch)?;
        let mut metrics = Metrics::new(self.trainer.step);
        let loss = match (&self.token_level, &self.data) {
            (Some(token_level), PreferenceData::Ranked(rows)) => {
                let rows: Vec<&RankedSequences> = shard.iter().map(|&i| &rows[i]).collect();
                let config = &self.objective.config;
                token_level
                    .batch_loss(&policy, config, &rows, &mut metrics)
                    .await?
                    .mean()
            }
            _ => {
                self.objective
                    .batch_loss(&policy, &self.data, &self.reference, shard, &mut metrics)
                    .await?
            }
        };
        let share = replica.share(shard.len() as f64)?;
        replica.reduce_metrics(&mut metrics, share)?;
        let loss = loss.mul_scalar(share);
        let policy = match &mut self.token_level {
            Some(token_level) => {
                token_level
                    .step(&mut self.trainer, policy, loss, &mut metrics)
                    .await?
            }
            None => self.trainer.step_logged(policy, loss, &mut metrics).await?,
        };
        Ok((policy, metrics))
    }
}

/// Trains `policy` for `config.optim.total_steps` batches against reference log-probs computed
/// once from `reference` (the policy before training, usually).
pub async fn train<B: AutodiffBackend>(
    mut policy: Llama<B>,
    reference: &Llama<B::InnerBackend>,
    data: &PreferenceData,
    config: &PreferenceConfig,
    mut on_step: impl FnMut(&Metrics),
) -> Result<Llama<B>>
where
    Llama<B>: AutodiffModule<B>,
{
    let mut run = PreferenceRun::new(reference, data.clone(), config.clone()).await?;
    for _ in 0..config.optim.total_steps {
        let (next, metrics) = run.step(policy).await?;
        policy = next;
        on_step(&metrics);
    }
    Ok(policy)
}
