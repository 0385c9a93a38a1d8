//! PPO's step (Ziegler et al. 2019; Stiennon et al. 2020; Ouyang et al. 2022): rollout,
//! per-token rewards with the KL penalty, GAE, the clipped policy update and the clipped value
//! update over epochs of minibatches, then the KL controller. The losses and the value model's
//! reads are `algo/ppo.rs`.

use crate::backend::{AutodiffBackend, Backend};
use burn::module::AutodiffModule;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::policy_update;
use crate::algo::gae::{explained_variance, gae, whiten};
use crate::algo::kl_controller::KlController;
use crate::algo::policy_gradient::token_matrix;
use crate::algo::ppo::{clipped_value_loss, completion_values, PpoConfig};
use crate::dataset::Sequence;
use crate::error::{Error, Result};
use crate::logprobs::SequenceBatch;
use crate::metrics::{self, Metrics};
use crate::model::{Llama, RewardModel};
use crate::reward::source::RewardSource;
use crate::rollout::{insert_rollout_metrics, Rollout, RolloutContext};
use crate::train::Trainer;

/// What a PPO run carries between steps and a step updates: both optimisers and the KL
/// controller, borrowed from the run that owns them.
pub struct PpoLearner<'a, B: AutodiffBackend> {
    pub policy_trainer: &'a mut Trainer<B, Llama<B>>,
    pub value_trainer: &'a mut Trainer<B, RewardModel<B>>,
    pub kl: &'a mut KlController,
}

/// One PPO iteration on `context`'s prompts: rollout, rewards with the KL penalty, GAE, policy
/// and value updates, and the KL controller's update.
pub async fn ppo_step<B: AutodiffBackend>(
    policy: Llama<B>,
    mut value_model: RewardModel<B>,
    learner: PpoLearner<'_, B>,
    context: &RolloutContext<'_, B::InnerBackend>,
    config: &PpoConfig,
) -> Result<(Llama<B>, RewardModel<B>, Metrics)>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
    RewardModel<B>: AutodiffModule<B, InnerModule = RewardModel<B::InnerBackend>>,
{
    let seed = context.seed();
    let rollout = context
        .collect(&policy.valid(), config.samples_per_prompt)
        .await?;
    let beta = learner.kl.value();
    // Each replica reads the values of its share of the samples; all get them all.
    let replica = learner.value_trainer.replica().clone();
    let mine = &rollout.sequences[replica.shard_range(rollout.len())];
    let old_values = completion_values(&value_model.valid(), mine, 64).await?;
    let old_values = replica.gather_rows(old_values)?;
    let mut scores = vec![rollout.rewards.clone()];
    if config.normalize_scores {
        whiten(&mut scores, true);
    }
    let scores = &scores[0];
    let dense = match config.token_rewards {
        true => Some(dense_rewards(&rollout, context.reward).await?),
        false => None,
    };
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
        match &dense {
            Some(dense) => token_rewards
                .iter_mut()
                .zip(&dense[i])
                .for_each(|(t, d)| *t += d),
            None => token_rewards[n - 1] += scores[i],
        }
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
    let (policy, mut m) = policy_update::update(
        policy,
        learner.policy_trainer,
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
        for minibatch in order.chunks(pg.minibatch_size.max(1)) {
            let chunk = replica.shard(minibatch)?;
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
            // A token-mean loss: this share weighs by its tokens.
            let loss = loss.mul_scalar(replica.token_share(batch.completion_mask.clone()).await?);
            let mut vm = Metrics::new(learner.value_trainer.step);
            value_model = learner
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
    m.insert(
        metrics::LOSS_VALUE,
        value_loss_sum / value_updates.max(1) as f64,
    );
    m.insert(
        metrics::VAL_EXPLAINED_VARIANCE,
        explained_variance(&flat(&old_values), &flat(&returns)),
    );
    let mean_kl = insert_rollout_metrics(&mut m, &rollout, beta, context.monitor).await?;
    learner.kl.update(mean_kl, rollout.len());
    Ok((policy, value_model, m))
}

/// Each sample's rewards token by token (RTO): a token-level reward's own split, any other
/// part's score at the last token.
async fn dense_rewards<B: Backend>(
    rollout: &Rollout,
    reward: &RewardSource<B>,
) -> Result<Vec<Vec<f32>>> {
    if !reward.is_token_level() {
        return Err(Error::Input(
            "rto needs a token-level reward: implicit:DPO,REFERENCE,BETA (alone or in a \
             weighted sum); with only sequence rewards it is ppo"
                .into(),
        ));
    }
    reward.per_token(&rollout.scored()).await
}
