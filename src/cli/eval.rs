//! `alignlab eval`: a reward model on held-out preference data, or a policy's gold reward on the
//! built-in world's held-out prompts.

use std::path::PathBuf;

use crate::backend::Backend;
use crate::dataset::{self, PreferenceRows};
use crate::io::Tokenizer;
use crate::model::Llama;
use crate::reward::objective as reward_objective;
use crate::reward::{transform, LearnedReward, RewardHeads};
use crate::sample::SamplingConfig;
use crate::{policy, world, Error, Result};
use clap::Args;

use super::train::{report_skipped, AggregateKind, DataArgs};

#[derive(Args, Clone)]
pub struct EvalCommand {
    /// A reward model from `alignlab train --method rm`, evaluated on --data.
    #[arg(long, conflicts_with = "model")]
    pub reward_model: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Override the ensemble's aggregation.
    #[arg(long, value_enum)]
    pub aggregate: Option<AggregateKind>,
    #[arg(long, default_value_t = 1.0)]
    pub std_weight: f64,
    /// Override a multi-attribute model's direction (e.g. 0,1).
    #[arg(long, value_delimiter = ',')]
    pub direction: Option<Vec<f32>>,
    /// A policy (`builtin` or a file) whose continuations of held-out world prompts are scored
    /// with the exact gold reward.
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long, default_value_t = 200)]
    pub prompts: usize,
    #[arg(long, default_value_t = 48)]
    pub max_tokens: usize,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// With --model: score samples with this reward (same specs as `train --reward`) instead of
    /// the world's gold reward, on the prompts of --prompt-source.
    #[arg(long)]
    pub reward: Option<String>,
    /// With --reward: `world`, `sums`, or a JSONL file of {"prompt"} rows.
    #[arg(long, default_value = "world")]
    pub prompt_source: String,
    /// Samples per prompt with --reward.
    #[arg(long, default_value_t = 1)]
    pub samples: usize,
}

pub fn run<B: Backend>(command: EvalCommand, device: &B::Device) -> Result<()> {
    match (&command.reward_model, &command.model) {
        (Some(path), None) => evaluate_reward_model::<B>(path, &command, device),
        (None, Some(model)) if command.reward.is_some() => {
            evaluate_reward::<B>(model, &command, device)
        }
        (None, Some(model)) => {
            let (policy, tokenizer) = policy::load::<B>(model, None, device)?;
            report_gold_reward(
                model,
                &policy,
                &tokenizer,
                command.prompts,
                command.max_tokens,
                command.seed,
            )
        }
        _ => Err(Error::Input(
            "give --reward-model FILE --data FILE, or --model MODEL for the world's gold reward"
                .into(),
        )),
    }
}

fn evaluate_reward_model<B: Backend>(
    path: &std::path::Path,
    command: &EvalCommand,
    device: &B::Device,
) -> Result<()> {
    let (mut reward, tokenizer) = LearnedReward::<B>::load(path, device)?;
    match (&mut reward.heads, command.aggregate, &command.direction) {
        (RewardHeads::Ensemble { aggregation, .. }, Some(kind), _) => {
            *aggregation = kind.aggregation(command.std_weight)
        }
        (
            RewardHeads::Attributes {
                names, direction, ..
            },
            _,
            Some(d),
        ) => *direction = transform::unit_direction(d, names)?,
        _ => {}
    }
    println!("reward model {}: {}", path.display(), reward.heads);
    let (rows, source) = command.data.read(&tokenizer)?;
    let limit = command.data.limit(reward.config().max_seq_len);
    let skip = command.data.skip_bad_rows;
    match rows {
        PreferenceRows::Ratings(rated) => {
            let tokenized = dataset::tokenize_ratings(&tokenizer, &rated, &limit, &source, skip)?;
            report_skipped(&source, "record", &tokenized.skipped);
            let eval = pollster::block_on(reward_objective::evaluate_ratings(
                &reward,
                &tokenized.rows,
                32,
            ))?;
            println!("{}", serde_json::to_string(&eval).expect("serialises"));
        }
        other => {
            let pairs = other.kind() == crate::io::prefs::PreferenceKind::Pairs;
            let rankings = other.into_rankings()?;
            let tokenized =
                dataset::tokenize_rankings(&tokenizer, &rankings, &limit, &source, skip)?;
            report_skipped(&source, "record", &tokenized.skipped);
            let eval = pollster::block_on(reward_objective::evaluate_rankings(
                &reward,
                &tokenized.rows,
                32,
            ))?;
            let mut json = serde_json::to_value(&eval).expect("serialises");
            if pairs {
                // A pair is a ranking of two; name the count after what the file holds.
                let object = json
                    .as_object_mut()
                    .expect("a struct serialises to an object");
                let count = object.remove("rankings").expect("RankingEval has rankings");
                object.insert("pairs".into(), count);
            }
            println!("{json}");
        }
    }
    Ok(())
}

/// Samples continuations of held-out world prompts and prints their mean gold reward.
pub fn report_gold_reward<B: Backend>(
    label: &str,
    model: &Llama<B>,
    tokenizer: &Tokenizer,
    prompts: usize,
    max_tokens: usize,
    seed: u64,
) -> Result<()> {
    let sampling = SamplingConfig {
        max_new_tokens: max_tokens,
        seed,
        ..Default::default()
    };
    let report = pollster::block_on(world::eval::held_out_gold_reward(
        model, tokenizer, prompts, &sampling,
    ))?;
    for (prompt, continuation, reward) in report.samples.iter().take(3) {
        println!("  [{reward:+.1}] {prompt}{continuation}");
    }
    println!("{label}: mean gold reward {}", report.reward);
    Ok(())
}

/// Mean reward (95% CI) of samples from a policy under any reward spec, with a few samples.
fn evaluate_reward<B: Backend>(
    model: &str,
    command: &EvalCommand,
    device: &B::Device,
) -> Result<()> {
    let (policy, tokenizer) = policy::load::<B>(model, None, device)?;
    let set = crate::prompts::load(
        &command.prompt_source,
        command.prompts,
        command.seed + 1_000,
    )?;
    let spec = command.reward.as_deref().expect("checked");
    let reward = crate::reward::spec::parse::<B>(spec, &set.answers, device)?;
    let prompts = set.prompts;
    let sampling = SamplingConfig {
        max_new_tokens: command.max_tokens,
        seed: command.seed,
        ..Default::default()
    };
    let rollout = pollster::block_on(crate::rollout::collect(
        &policy,
        &policy,
        &tokenizer,
        &prompts,
        command.samples.max(1),
        &sampling,
        &reward,
    ))?;
    for i in (0..rollout.len())
        .step_by((rollout.len() / 3).max(1))
        .take(3)
    {
        println!(
            "  [{:+.3}] {}{}",
            rollout.rewards[i], rollout.prompts[i], rollout.completions[i]
        );
    }
    let values: Vec<f64> = rollout.rewards.iter().map(|&r| r as f64).collect();
    println!(
        "{model}: mean {spec} reward {}",
        crate::metrics::MeanCi::of(&values)
    );
    Ok(())
}
