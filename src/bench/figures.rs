//! The figures `alignlab bench` measures, each a workload a user of the lab runs: sampling,
//! scoring, a DPO step and a PPO iteration. `benches/pytorch_twin.py` takes the same steps in
//! PyTorch under the same names.

use crate::backend::{AutodiffBackend, Backend};
use burn::module::AutodiffModule;

use super::{time_best, time_steps, Measurement};
use crate::algo::policy_gradient::PolicyGradientConfig;
use crate::algo::preference::{reference_logps, PreferenceConfig, PreferenceData, PreferenceLoss};
use crate::dataset::RankedSequences;
use crate::error::Result;
use crate::io::Tokenizer;
use crate::logprobs::{completion_logprobs, SequenceBatch};
use crate::model::{Llama, LlamaConfig, RewardModel};
use crate::prompts::PromptSet;
use crate::reward::source::RewardSource;
use crate::reward::{LearnedReward, RewardHeads};
use crate::run::preference::PreferenceRun;
use crate::run::{OnlineAlgorithm, OnlineRun, OnlineRunConfig};
use crate::sample::{generate, SamplingConfig};
use crate::train::OptimConfig;

/// Parameters each token's activations are multiplied by: every matrix of the blocks and the
/// output head (tied or not), not the embedding lookup or learned positions.
fn matmul_params(config: &LlamaConfig) -> f64 {
    let lookups = match config.arch.tied_embeddings {
        true => 0,
        false => config.vocab_size * config.dim,
    } + match config.arch.family.is_gpt2() {
        true => config.max_seq_len * config.dim,
        false => 0,
    };
    (config.num_params() - lookups) as f64
}

/// Deterministic pseudo-text of `len` tokens (row `row`): speed does not depend on which tokens.
fn pseudo_text(row: usize, len: usize, vocab: usize) -> Vec<u32> {
    (0..len)
        .map(|t| ((row * 7919 + t * 104_729) % vocab) as u32)
        .collect()
}

pub fn generation<B: Backend>(
    model: &Llama<B>,
    bos: u32,
    batch: usize,
    new_tokens: usize,
    use_cache: bool,
    repeats: usize,
) -> Result<Measurement> {
    let prompts = vec![vec![bos]; batch];
    let config = SamplingConfig {
        max_new_tokens: new_tokens,
        temperature: 1.0,
        stop_at_eos: false,
        use_cache,
        ..Default::default()
    };
    let timing = time_best(repeats, || {
        pollster::block_on(generate(model, &prompts, None, &config)).map(|_| ())
    })?;
    let label = if use_cache { "kv-cache" } else { "no-cache" };
    Ok(timing.measurement(
        format!("generate batch={batch} new={new_tokens} {label}"),
        batch * new_tokens,
    ))
}

pub fn scoring<B: Backend>(
    model: &Llama<B>,
    batch: usize,
    seq: usize,
    repeats: usize,
) -> Result<Measurement> {
    let vocab = model.config().vocab_size;
    let pairs: Vec<(Vec<u32>, Vec<u32>)> = (0..batch)
        .map(|row| {
            let tokens = pseudo_text(row, seq, vocab);
            (tokens[..1].to_vec(), tokens[1..].to_vec())
        })
        .collect();
    let device = model.device();
    let timing = time_best(repeats, || {
        let sequences = SequenceBatch::<B>::new(&pairs, model.config().max_seq_len, &device)?;
        let logps = completion_logprobs(model, &sequences).sum();
        crate::host::read_scalar_blocking(logps)?;
        Ok(())
    })?;
    let forward = 2.0 * matmul_params(model.config());
    Ok(timing
        .measurement(format!("score {batch}x{seq}"), batch * seq)
        .with_flops_per_token(forward))
}

/// One DPO update as TRL takes it by default: the reference model's forward pass on the batch,
/// then the policy's forward and backward passes and an AdamW step, on `pairs` pairs of
/// sequences of `seq` tokens (a one-token prompt, then the completion).
pub fn dpo_step<B: AutodiffBackend>(
    policy: Llama<B>,
    pairs: usize,
    seq: usize,
    repeats: usize,
) -> Result<Measurement>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
{
    let vocab = policy.config().vocab_size;
    let rows: Vec<RankedSequences> = (0..pairs)
        .map(|index| {
            let (chosen, rejected) = (
                pseudo_text(2 * index, seq, vocab),
                pseudo_text(2 * index + 1, seq, vocab),
            );
            RankedSequences {
                index,
                prompt: chosen[..1].to_vec(),
                completions: vec![chosen[1..].to_vec(), rejected[1..].to_vec()],
                scores: None,
            }
        })
        .collect();
    let data = PreferenceData::Ranked(rows);
    let config = PreferenceConfig {
        loss: PreferenceLoss::named("dpo").expect("DPO is in the registry"),
        beta: 0.1,
        optim: OptimConfig {
            lr: 1e-6,
            warmup_steps: 1,
            total_steps: repeats + 1,
            ..Default::default()
        },
        batch_size: pairs,
        seed: 0,
    };
    let reference = policy.valid();
    let model_config = policy.config().clone();
    let mut run = pollster::block_on(PreferenceRun::new(&reference, data.clone(), config))?;
    let timing = time_steps(repeats, policy, |policy| {
        pollster::block_on(async {
            // TRL's default scores the batch under the reference at every step; the run has
            // those log-probs already, so this pass is timed and its result not used.
            reference_logps(&reference, &data, pairs * 2).await?;
            Ok(run.step(policy).await?.0)
        })
    })?;
    // The reference's forward pass (2 per parameter) and the policy's forward and backward (6).
    let flops = 8.0 * matmul_params(&model_config);
    Ok(timing
        .measurement(format!("dpo step {pairs} pairs x {seq}"), 2 * pairs * seq)
        .with_flops_per_token(flops))
}

/// One PPO iteration as `alignlab train ppo` takes it: `rollouts` samples of `new_tokens`
/// tokens from the BOS token, the policy's and the reference's log-probs, a reward model and
/// the value model (each the policy's trunk with a fresh scalar head) reading them, GAE, then
/// `epochs` epochs of minibatches of 8 for the policy and for the value model.
pub fn ppo_iteration<B: AutodiffBackend>(
    policy: Llama<B>,
    tokenizer: &Tokenizer,
    rollouts: usize,
    new_tokens: usize,
    epochs: usize,
    repeats: usize,
) -> Result<Measurement>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
    RewardModel<B>: AutodiffModule<B, InnerModule = RewardModel<B::InnerBackend>>,
{
    let reference = policy.valid();
    let reward = RewardSource::Learned(Box::new(LearnedReward::from_policy(
        reference.clone(),
        RewardHeads::single(),
        1,
    )?));
    // Empty prompts: every sample starts from the BOS token alone, as the twin's do.
    let prompts = PromptSet {
        prompts: vec![String::new(); rollouts],
        ..Default::default()
    };
    let config = OnlineRunConfig {
        algorithm: OnlineAlgorithm::Ppo,
        kl_coef: 0.05,
        target_kl: None,
        group_size: 1,
        prompts_per_step: rollouts,
        sampling: SamplingConfig {
            max_new_tokens: new_tokens,
            stop_at_eos: false,
            ..Default::default()
        },
        policy_gradient: PolicyGradientConfig {
            epochs,
            minibatch_size: 8,
            ..Default::default()
        },
        optim: OptimConfig {
            lr: 1e-6,
            warmup_steps: 1,
            total_steps: repeats + 1,
            ..Default::default()
        },
        seed: 0,
    };
    let run = OnlineRun::new(policy, config);
    let timing = time_steps(repeats, run, |mut run| {
        pollster::block_on(run.step(&reference, tokenizer, &prompts, &reward, None))?;
        Ok(run)
    })?;
    Ok(timing.measurement(
        format!("ppo iteration {rollouts} rollouts x {new_tokens}, {epochs} epochs"),
        rollouts * new_tokens,
    ))
}
