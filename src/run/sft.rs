//! The supervised fine-tuning loop (the loss is `algo::sft`): shuffled minibatches from the one
//! batcher, an optimiser step each, and a held-out loss.

use crate::backend::{AutodiffBackend, Backend};
use burn::module::AutodiffModule;
use serde::{Deserialize, Serialize};

use crate::algo::sft::sft_loss;
use crate::batches::BatchOrder;
use crate::distributed::Replica;
use crate::error::{Error, Result};
use crate::host::read_scalar;
use crate::logprobs::{gather_logprobs, SequenceBatch};
use crate::metrics::Metrics;
use crate::model::Llama;
use crate::train::{OptimConfig, Trainer};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftConfig {
    pub optim: OptimConfig,
    pub batch_size: usize,
    /// Shuffles the examples; with the model's seed, fixes the whole run.
    pub seed: u64,
}

impl Default for SftConfig {
    fn default() -> Self {
        Self {
            optim: OptimConfig {
                lr: 5e-4,
                warmup_steps: 5,
                total_steps: 50,
                ..Default::default()
            },
            batch_size: 16,
            seed: 0,
        }
    }
}

/// One SFT update on `pairs`; returns the model and the step's metrics (loss read back
/// asynchronously, so this runs in the browser too).
pub async fn sft_step<B: AutodiffBackend>(
    model: Llama<B>,
    trainer: &mut Trainer<B, Llama<B>>,
    pairs: &[(Vec<u32>, Vec<u32>)],
) -> Result<(Llama<B>, Metrics)> {
    // In a data-parallel run `pairs` is the global batch; this replica computes its share, its
    // token-mean loss weighted by its share of the tokens.
    let replica = trainer.replica().clone();
    let pairs = replica.shard(pairs)?;
    let batch = SequenceBatch::<B>::new(pairs, model.config().max_seq_len, &model.device())?;
    let (inputs, targets) = batch.inputs_and_targets();
    let per_token_logps = gather_logprobs(model.forward(inputs), targets);
    let share = replica.token_share(batch.completion_mask.clone()).await?;
    let loss = sft_loss(per_token_logps, batch.completion_mask.clone()).mul_scalar(share);
    let mut m = Metrics::new(trainer.step);
    let model = trainer.step_logged(model, loss, &mut m).await?;
    Ok((model, m))
}

/// Mean SFT loss of `pairs` under `model`, without gradients (for held-out evaluation).
pub async fn eval_loss<B: Backend>(
    model: &Llama<B>,
    pairs: &[(Vec<u32>, Vec<u32>)],
    batch_size: usize,
) -> Result<f32> {
    let mut total = 0.0f64;
    let mut tokens = 0.0f64;
    for chunk in pairs.chunks(batch_size.max(1)) {
        let batch = SequenceBatch::<B>::new(chunk, model.config().max_seq_len, &model.device())?;
        let (inputs, targets) = batch.inputs_and_targets();
        let logps = gather_logprobs(model.forward(inputs), targets) * batch.completion_mask.clone();
        total += read_scalar(logps.sum()).await? as f64;
        tokens += read_scalar(batch.completion_mask.sum()).await? as f64;
    }
    Ok((-total / tokens.max(1.0)) as f32)
}

/// Runs `steps` SFT updates over `pairs`, calling `on_step` with each step's metrics.
pub async fn train<B: AutodiffBackend>(
    model: Llama<B>,
    pairs: &[(Vec<u32>, Vec<u32>)],
    config: &SftConfig,
    on_step: impl FnMut(&Metrics),
) -> Result<Llama<B>>
where
    Llama<B>: AutodiffModule<B>,
{
    train_replica(model, pairs, config, Replica::SINGLE, on_step).await
}

/// [`train`] as one replica of a data-parallel run (each batch shared out).
pub async fn train_replica<B: AutodiffBackend>(
    mut model: Llama<B>,
    pairs: &[(Vec<u32>, Vec<u32>)],
    config: &SftConfig,
    replica: Replica,
    mut on_step: impl FnMut(&Metrics),
) -> Result<Llama<B>>
where
    Llama<B>: AutodiffModule<B>,
{
    if pairs.is_empty() {
        return Err(Error::Input("no training examples".into()));
    }
    let mut trainer = Trainer::new(config.optim.clone()).with_replica(replica);
    let mut batches = BatchOrder::new(pairs.len(), config.seed);
    for _ in 0..config.optim.total_steps {
        let batch: Vec<(Vec<u32>, Vec<u32>)> = batches
            .next_batch(config.batch_size)
            .into_iter()
            .map(|i| pairs[i].clone())
            .collect();
        let (next, metrics) = sft_step(model, &mut trainer, &batch).await?;
        model = next;
        on_step(&metrics);
    }
    Ok(model)
}
