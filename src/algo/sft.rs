//! Supervised fine-tuning: the negative log-likelihood of completion tokens only, averaged over
//! all completion tokens in the batch (TRL's `completion_only_loss`). Pretraining is the same
//! loss with the whole text as the completion of a BOS prompt.

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::spec::{MethodKind, MethodSpec, SUPERVISED_TRAINING};
use crate::batches::BatchOrder;
use crate::error::{Error, Result};
use crate::host::read_scalar;
use crate::io::Tokenizer;
use crate::logprobs::{gather_logprobs, SequenceBatch};
use crate::metrics::Metrics;
use crate::model::Llama;
use crate::train::{OptimConfig, Trainer};

/// − Σ mask·log p / Σ mask. `per_token_logps`, `completion_mask`: [batch, seq] → [1].
pub fn sft_loss<B: Backend>(
    per_token_logps: Tensor<B, 2>,
    completion_mask: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let tokens = completion_mask.clone().sum().clamp_min(1.0);
    -(per_token_logps * completion_mask).sum() / tokens
}

/// One supervised example, as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub prompt: String,
    pub completion: String,
}

/// Token ids of examples: the prompt after BOS, the completion followed by EOS.
pub fn tokenize_examples(
    tokenizer: &Tokenizer,
    examples: &[Example],
) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
    examples
        .iter()
        .enumerate()
        .map(|(index, example)| {
            let prompt = tokenizer.encode_with_bos(&example.prompt)?;
            let mut completion = tokenizer.encode(&example.completion)?;
            completion.extend(tokenizer.eos_id());
            if prompt.is_empty() || completion.is_empty() {
                return Err(Error::Input(format!(
                    "example {index}: prompt and completion must both give tokens"
                )));
            }
            Ok((prompt, completion))
        })
        .collect()
}

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

/// Streams shuffled minibatches over the data, reshuffling at each epoch (the rows of
/// [`BatchOrder`]).
pub struct Batches<'a, T> {
    data: &'a [T],
    order: BatchOrder,
}

impl<'a, T> Batches<'a, T> {
    pub fn new(data: &'a [T], seed: u64) -> Self {
        Self {
            data,
            order: BatchOrder::new(data.len(), seed),
        }
    }

    pub fn next_batch(&mut self, size: usize) -> Vec<&'a T> {
        self.order
            .next_batch(size)
            .into_iter()
            .map(|i| &self.data[i])
            .collect()
    }
}

/// One SFT update on `pairs`; returns the model and the step's metrics (loss read back
/// asynchronously, so this runs in the browser too).
pub async fn sft_step<B: AutodiffBackend>(
    model: Llama<B>,
    trainer: &mut Trainer<B, Llama<B>>,
    pairs: &[(Vec<u32>, Vec<u32>)],
) -> Result<(Llama<B>, Metrics)> {
    let batch = SequenceBatch::<B>::new(pairs, model.config().max_seq_len, &model.device())?;
    let (inputs, targets) = batch.inputs_and_targets();
    let per_token_logps = gather_logprobs(model.forward(inputs), targets);
    let loss = sft_loss(per_token_logps, batch.completion_mask.clone());
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
    mut model: Llama<B>,
    pairs: &[(Vec<u32>, Vec<u32>)],
    config: &SftConfig,
    mut on_step: impl FnMut(&Metrics),
) -> Result<Llama<B>>
where
    Llama<B>: AutodiffModule<B>,
{
    if pairs.is_empty() {
        return Err(Error::Input("no training examples".into()));
    }
    let mut trainer = Trainer::new(config.optim.clone());
    let mut batches = Batches::new(pairs, config.seed);
    for _ in 0..config.optim.total_steps {
        let batch: Vec<(Vec<u32>, Vec<u32>)> = batches
            .next_batch(config.batch_size)
            .into_iter()
            .cloned()
            .collect();
        let (next, metrics) = sft_step(model, &mut trainer, &batch).await?;
        model = next;
        on_step(&metrics);
    }
    Ok(model)
}

/// Supervised fine-tuning.
pub const SFT: MethodSpec = MethodSpec {
    name: "sft",
    summary: "supervised fine-tuning: the negative log-likelihood of completion tokens",
    kind: MethodKind::Supervised,
    training: SUPERVISED_TRAINING,
    settings: &[],
};

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn loss_is_the_mean_nll_over_completion_tokens_only() {
        let device = Default::default();
        let logps =
            Tensor::<NdArray, 2>::from_floats([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0]], &device);
        let mask = Tensor::<NdArray, 2>::from_floats([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], &device);
        let loss = sft_loss(logps, mask).into_scalar();
        assert!((loss - (2.0 + 3.0 + 4.0) / 3.0).abs() < 1e-6, "{loss}");
    }
}
