//! PPO for language models in the RLHF style (Ziegler et al. 2019; Stiennon et al. 2020;
//! Ouyang et al. 2022): a value model on its own copy of the trunk, per-token rewards
//! r_t = −β·(log π_old − log π_ref) with the score added at the last token (or the KL as a k3
//! loss term instead), GAE, whitened advantages, the clipped surrogate (`policy_gradient`) and
//! the clipped value loss ½·max((V − R)², (clip(V, V_old ± c) − R)²), over epochs of minibatches,
//! with a fixed or adaptive β.

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::gae::{explained_variance, gae, whiten};
use super::kl_controller::KlController;
use super::policy_gradient::{self, token_matrix, PolicyGradientConfig};
use crate::dataset::Sequence;
use crate::error::Result;
use crate::host::read_vec;
use crate::io::Tokenizer;
use crate::logprobs::SequenceBatch;
use crate::metrics::{self, Metrics};
use crate::model::{Llama, RewardModel};
use crate::online::insert_rollout_metrics;
use crate::reward::source::RewardSource;
use crate::rollout::{collect, completion_rows};
use crate::sample::SamplingConfig;
use crate::train::Trainer;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PpoConfig {
    pub samples_per_prompt: usize,
    pub sampling: SamplingConfig,
    pub gamma: f64,
    pub lambda: f64,
    /// The KL as a per-token k1 penalty in the reward (true), or as a k3 loss term (false).
    pub kl_in_reward: bool,
    /// Value predictions move at most this far from the old ones (TRL's `cliprange_value`).
    pub value_clip: f64,
    pub whiten_advantages: bool,
    /// Standardise the batch's scores before adding them to the per-token rewards, so a fresh
    /// value head starts on their scale (OpenRLHF's reward normalisation, per batch).
    pub normalize_scores: bool,
    pub policy_gradient: PolicyGradientConfig,
}

impl Default for PpoConfig {
    fn default() -> Self {
        Self {
            samples_per_prompt: 1,
            sampling: SamplingConfig::default(),
            gamma: 1.0,
            lambda: 0.95,
            kl_in_reward: true,
            value_clip: 0.2,
            whiten_advantages: true,
            normalize_scores: true,
            policy_gradient: PolicyGradientConfig {
                epochs: 4,
                aggregation: policy_gradient::LossAggregation::TokenMean,
                ..Default::default()
            },
        }
    }
}

/// The value model's per-token values of each completion token's state.
pub async fn completion_values<B: Backend>(
    value_model: &RewardModel<B>,
    sequences: &[Sequence],
    batch_size: usize,
) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(sequences.len());
    for chunk in sequences.chunks(batch_size.max(1)) {
        let config = value_model.trunk.config();
        let batch =
            SequenceBatch::<B>::new(chunk, config.max_seq_len, &value_model.trunk.device())?;
        let (inputs, _) = batch.inputs_and_targets();
        let width = inputs.dims()[1];
        let values = read_vec(value_model.token_values(inputs)).await?;
        out.extend(completion_rows(&values, chunk, width));
    }
    Ok(out)
}

/// ½·max((V − R)², (clip(V, V_old − c, V_old + c) − R)²), masked mean. All [rows, width].
pub fn clipped_value_loss<B: Backend>(
    values: Tensor<B, 2>,
    old_values: Tensor<B, 2>,
    returns: Tensor<B, 2>,
    mask: Tensor<B, 2>,
    clip: f64,
) -> Tensor<B, 1> {
    let clipped = old_values.clone() + (values.clone() - old_values).clamp(-clip, clip);
    let unclipped_loss = (values - returns.clone()).powi_scalar(2);
    let clipped_loss = (clipped - returns).powi_scalar(2);
    let loss = unclipped_loss.max_pair(clipped_loss) * mask.clone();
    loss.sum().div(mask.sum().clamp_min(1.0)).mul_scalar(0.5)
}

/// The models and optimisers one PPO run carries between steps.
pub struct PpoState<B: AutodiffBackend> {
    pub policy_trainer: Trainer<B, Llama<B>>,
    pub value_trainer: Trainer<B, RewardModel<B>>,
    pub kl: KlController,
}

/// One PPO iteration on `prompts`: rollout, rewards with the KL penalty, GAE, policy and value
/// updates, and the KL controller's update.
#[allow(clippy::too_many_arguments)]
pub async fn ppo_step<B: AutodiffBackend>(
    policy: Llama<B>,
    mut value_model: RewardModel<B>,
    state: &mut PpoState<B>,
    reference: &Llama<B::InnerBackend>,
    tokenizer: &Tokenizer,
    prompts: &[String],
    reward: &RewardSource<B::InnerBackend>,
    monitor: Option<&RewardSource<B::InnerBackend>>,
    config: &PpoConfig,
    seed: u64,
) -> Result<(Llama<B>, RewardModel<B>, Metrics)>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
    RewardModel<B>: AutodiffModule<B, InnerModule = RewardModel<B::InnerBackend>>,
{
    let sampling = SamplingConfig {
        seed,
        ..config.sampling.clone()
    };
    let rollout = collect(
        &policy.valid(),
        reference,
        tokenizer,
        prompts,
        config.samples_per_prompt,
        &sampling,
        reward,
    )
    .await?;
    let beta = state.kl.value();
    let old_values = completion_values(&value_model.valid(), &rollout.sequences, 64).await?;
    let mut scores = vec![rollout.rewards.clone()];
    if config.normalize_scores {
        whiten(&mut scores, true);
    }
    let scores = &scores[0];
    let mut advantages = Vec::with_capacity(rollout.len());
    let mut returns = Vec::with_capacity(rollout.len());
    for i in 0..rollout.len() {
        let n = rollout.logps[i].len();
        let mut token_rewards: Vec<f32> = if config.kl_in_reward {
            rollout.logps[i]
                .iter()
                .zip(&rollout.ref_logps[i])
                .map(|(lp, rp)| (-beta * (lp - rp) as f64) as f32)
                .collect()
        } else {
            vec![0.0; n]
        };
        token_rewards[n - 1] += scores[i];
        let (a, r) = gae(&token_rewards, &old_values[i], config.gamma, config.lambda);
        advantages.push(a);
        returns.push(r);
    }
    if config.whiten_advantages {
        whiten(&mut advantages, true);
    }
    let mut pg = config.policy_gradient.clone();
    if !config.kl_in_reward {
        pg.kl_loss_coef = beta;
    }
    let (policy, mut m) = policy_gradient::update(
        policy,
        &mut state.policy_trainer,
        &rollout,
        &advantages,
        &pg,
        seed,
    )
    .await?;

    // Value updates, over the same epochs and minibatch size.
    let device = policy.device();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let (mut value_loss_sum, mut value_updates) = (0.0, 0usize);
    for _ in 0..pg.epochs.max(1) {
        let mut order: Vec<usize> = (0..rollout.len()).collect();
        order.shuffle(&mut rng);
        for chunk in order.chunks(pg.minibatch_size.max(1)) {
            let sequences: Vec<&Sequence> = chunk.iter().map(|&i| &rollout.sequences[i]).collect();
            let owned: Vec<Sequence> = sequences.iter().map(|s| (*s).clone()).collect();
            let batch = SequenceBatch::<B>::new(&owned, policy.config().max_seq_len, &device)?;
            let (inputs, _) = batch.inputs_and_targets();
            let width = inputs.dims()[1];
            let rows =
                |v: &[Vec<f32>]| -> Vec<Vec<f32>> { chunk.iter().map(|&i| v[i].clone()).collect() };
            let (old, ret) = (rows(&old_values), rows(&returns));
            let old_refs: Vec<&[f32]> = old.iter().map(Vec::as_slice).collect();
            let ret_refs: Vec<&[f32]> = ret.iter().map(Vec::as_slice).collect();
            let values = value_model.token_values(inputs);
            let loss = clipped_value_loss(
                values,
                token_matrix::<B>(&sequences, &old_refs, width, &device),
                token_matrix::<B>(&sequences, &ret_refs, width, &device),
                batch.completion_mask.clone(),
                config.value_clip,
            );
            let mut vm = Metrics::new(state.value_trainer.step);
            value_model = state
                .value_trainer
                .step_logged(value_model, loss, &mut vm)
                .await?;
            if let Some(l) = vm.get(metrics::TRAIN_LOSS).filter(|l| l.is_finite()) {
                value_loss_sum += l;
                value_updates += 1;
            }
        }
    }
    let flat = |v: &[Vec<f32>]| -> Vec<f32> { v.iter().flatten().copied().collect() };
    m.insert("loss/value", value_loss_sum / value_updates.max(1) as f64);
    m.insert(
        "val/explained_variance",
        explained_variance(&flat(&old_values), &flat(&returns)),
    );
    let mean_kl = insert_rollout_metrics(&mut m, &rollout, beta, monitor).await?;
    state.kl.update(mean_kl, rollout.len());
    Ok((policy, value_model, m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::TensorData;

    #[test]
    fn value_loss_by_hand() {
        let t = |v: [f32; 2]| {
            Tensor::<NdArray, 2>::from_data(
                TensorData::new(v.to_vec(), [1, 2]),
                &Default::default(),
            )
        };
        // Token 1: V = 1, V_old = 0, R = 1, clip 0.2 → clipped V = 0.2: max(0, 0.64) = 0.64.
        // Token 2: V = 0, V_old = 0, R = 2 → 4.
        let loss = clipped_value_loss(
            t([1.0, 0.0]),
            t([0.0, 0.0]),
            t([1.0, 2.0]),
            t([1.0, 1.0]),
            0.2,
        );
        assert!((loss.into_scalar() - 0.5 * (0.64 + 4.0) / 2.0).abs() < 1e-6);
    }
}
