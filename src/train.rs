//! The one optimisation step every trainer uses: backward, global gradient-norm clipping, AdamW
//! with linear warmup then cosine decay, and a guard that refuses non-finite losses.

use crate::backend::{AutodiffBackend, Backend};
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::distributed::Replica;
use crate::error::Result;
use crate::host::read_scalar;
use crate::metrics::{self as names, Metrics};
use crate::ops::reciprocal;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    /// Peak learning rate, reached at the end of warmup.
    pub lr: f64,
    /// The schedule decays to `lr · min_lr_ratio` at `total_steps` (cosine).
    pub min_lr_ratio: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    /// Decoupled weight decay (AdamW); 0 as in TRL's defaults for fine-tuning.
    pub weight_decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
    /// Rescale all gradients together when their global L2 norm exceeds this (as
    /// `torch.nn.utils.clip_grad_norm_`; burn's own clipping is per parameter tensor).
    pub max_grad_norm: Option<f32>,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            min_lr_ratio: 0.1,
            warmup_steps: 10,
            total_steps: 100,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            max_grad_norm: Some(1.0),
        }
    }
}

impl OptimConfig {
    /// Linear warmup from lr/warmup to lr, then cosine decay to lr·min_lr_ratio (the shape of
    /// HF's `get_cosine_schedule_with_warmup`, with a floor). `step` counts from 0.
    pub fn learning_rate(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.lr * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)
    }
}

/// Sums the squared gradients of every float parameter into one scalar tensor.
struct SquaredNorm<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let squares = grad.powi_scalar(2).sum();
            self.total = Some(match self.total.take() {
                Some(total) => total + squares,
                None => squares,
            });
        }
    }
}

/// Multiplies every gradient by the same scalar tensor.
struct Rescale<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    factor: Tensor<B::InnerBackend, 1>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Rescale<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let factor = self.factor.clone().reshape([1; D]);
            self.grads.register(param.id, grad * factor);
        }
    }
}

/// What one step reports; tensors stay on the device until the caller reads them.
pub struct StepOutput<B: Backend> {
    /// Global gradient L2 norm before clipping: [1].
    pub grad_norm: Tensor<B, 1>,
    pub lr: f64,
}

/// The global L2 norm of all float gradients of `model`: [1].
pub fn grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    grads: &GradientsParams,
) -> Tensor<B::InnerBackend, 1> {
    let mut norm = SquaredNorm::<B> { grads, total: None };
    model.visit(&mut norm);
    norm.total
        .map(|t| t.sqrt())
        .unwrap_or_else(|| Tensor::zeros([1], &model_device(model)))
}

/// Rescales all gradients together so their global norm is at most `max_norm`
/// (`torch.nn.utils.clip_grad_norm_`); returns them with the norm before clipping.
pub fn clip_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    mut grads: GradientsParams,
    max_norm: Option<f32>,
) -> (GradientsParams, Tensor<B::InnerBackend, 1>) {
    let norm = grad_norm(model, &grads);
    if let Some(max_norm) = max_norm {
        // min(1, max/(norm + ε)), computed on the device: no read-back in the hot loop.
        let factor = reciprocal(norm.clone().add_scalar(1e-6))
            .mul_scalar(max_norm)
            .clamp_max(1.0);
        model.visit(&mut Rescale::<B> {
            grads: &mut grads,
            factor,
        });
    }
    (grads, norm)
}

pub struct Trainer<B: AutodiffBackend, M: AutodiffModule<B>> {
    optimizer: OptimizerAdaptor<AdamW, M, B>,
    pub config: OptimConfig,
    /// Updates applied so far.
    pub step: usize,
    /// Batches whose loss was not finite and so were not applied, by step index.
    pub skipped: Vec<usize>,
    /// Which share of each batch this trainer's loss covers; gradients are summed over the
    /// replicas before clipping, so every replica applies the same update.
    replica: Replica,
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> Trainer<B, M> {
    pub fn new(config: OptimConfig) -> Self {
        Self {
            optimizer: adamw(&config),
            config,
            step: 0,
            skipped: Vec::new(),
            replica: Replica::SINGLE,
        }
    }

    /// This trainer as one replica of a data-parallel run.
    pub fn with_replica(mut self, replica: Replica) -> Self {
        self.replica = replica;
        self
    }

    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Applies one update from `loss` unless `loss_value` (the loss, read by the caller —
    /// asynchronously in the browser) is not finite; then the weights are left untouched, the
    /// step is recorded in `skipped`, and `None` is returned. In a data-parallel run `loss` is
    /// this replica's share and `loss_value` the sum over replicas (all replicas skip alike).
    pub fn step(
        &mut self,
        model: M,
        loss: Tensor<B, 1>,
        loss_value: f32,
    ) -> Result<(M, Option<StepOutput<B::InnerBackend>>)> {
        if !loss_value.is_finite() {
            self.skip();
            return Ok((model, None));
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let (model, output) = self.apply(model, grads)?;
        Ok((model, Some(output)))
    }

    /// Records a step whose loss was not finite, leaving the weights as they are.
    pub fn skip(&mut self) {
        self.skipped.push(self.step);
        self.step += 1;
    }

    /// Applies one update from gradients already taken (one backward pass over a loss that
    /// trains several modules, each with its own trainer).
    pub fn apply(
        &mut self,
        model: M,
        grads: GradientsParams,
    ) -> Result<(M, StepOutput<B::InnerBackend>)> {
        let grads = self.replica.sum_gradients(&model, grads)?;
        let (grads, grad_norm) = clip_grad_norm(&model, grads, self.config.max_grad_norm);
        let lr = self.config.learning_rate(self.step);
        let model = self.optimizer.step(lr, model, grads);
        self.step += 1;
        Ok((model, StepOutput { grad_norm, lr }))
    }

    /// The loss summed over the replicas, read back asynchronously (browser-safe), and recorded
    /// in `metrics`.
    pub async fn read_loss(&self, loss: &Tensor<B, 1>, metrics: &mut Metrics) -> Result<f32> {
        let local = read_scalar(loss.clone()).await?;
        let loss_value = self.replica.sum_values(&[local])?[0];
        metrics.insert(names::TRAIN_LOSS, loss_value as f64);
        Ok(loss_value)
    }

    /// Records a step's learning rate and gradient norm, or its skip, in `metrics`.
    pub async fn log_output(
        output: Option<StepOutput<B::InnerBackend>>,
        metrics: &mut Metrics,
    ) -> Result<()> {
        match output {
            Some(output) => {
                metrics.insert(names::TRAIN_LR, output.lr);
                metrics.insert(
                    names::TRAIN_GRAD_NORM,
                    read_scalar(output.grad_norm).await? as f64,
                );
            }
            None => metrics.insert(names::TRAIN_SKIPPED, 1.0),
        }
        Ok(())
    }

    /// [`Self::step`] with the loss read back asynchronously (browser-safe) and the step's
    /// loss, learning rate and gradient norm — or the skip — recorded in `metrics`.
    pub async fn step_logged(
        &mut self,
        model: M,
        loss: Tensor<B, 1>,
        metrics: &mut Metrics,
    ) -> Result<M> {
        let loss_value = self.read_loss(&loss, metrics).await?;
        let (model, output) = self.step(model, loss, loss_value)?;
        Self::log_output(output, metrics).await?;
        Ok(model)
    }
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> Trainer<B, M> {
    /// The optimiser's moments and step counts, for a checkpoint.
    pub fn optimizer_bytes(&self) -> Result<Vec<u8>> {
        crate::io::record::to_bytes::<B, _>(self.optimizer.to_record())
    }

    /// Restores what [`Self::optimizer_bytes`] saved; the model's parameters must carry the
    /// ids they had then (load the model from its record, not from weights).
    pub fn load_optimizer_bytes(
        &mut self,
        bytes: Vec<u8>,
        source: &str,
        device: &B::Device,
    ) -> Result<()> {
        let record = crate::io::record::from_bytes::<B, _>(bytes, source, device)?;
        let optimizer = std::mem::replace(&mut self.optimizer, adamw(&self.config));
        self.optimizer = optimizer.load_record(record);
        Ok(())
    }
}

fn adamw<B: AutodiffBackend, M: AutodiffModule<B>>(
    config: &OptimConfig,
) -> OptimizerAdaptor<AdamW, M, B> {
    AdamWConfig::new()
        .with_beta_1(config.beta1)
        .with_beta_2(config.beta2)
        .with_epsilon(config.epsilon)
        .with_weight_decay(config.weight_decay)
        .init()
}

fn model_device<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
) -> <B::InnerBackend as burn::tensor::backend::BackendTypes>::Device {
    model
        .devices()
        .into_iter()
        .next()
        .expect("a model lives on a device")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let config = OptimConfig {
            lr: 1.0,
            min_lr_ratio: 0.1,
            warmup_steps: 4,
            total_steps: 14,
            ..Default::default()
        };
        assert!((config.learning_rate(0) - 0.25).abs() < 1e-12);
        assert!((config.learning_rate(3) - 1.0).abs() < 1e-12);
        assert!((config.learning_rate(4) - 1.0).abs() < 1e-12);
        assert!((config.learning_rate(9) - 0.55).abs() < 1e-12);
        assert!((config.learning_rate(14) - 0.1).abs() < 1e-12);
        assert!((config.learning_rate(100) - 0.1).abs() < 1e-12);
    }
}
