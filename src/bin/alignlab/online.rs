//! The online methods of `alignlab train`: grpo, dr-grpo, rloo, ppo and raft, on prompts from
//! the built-in world, its sum questions, or a JSONL file, against a reward given as a spec.

use std::collections::HashMap;
use std::path::Path;

use alignlab::algo::kl_controller::KlController;
use alignlab::algo::policy_gradient::{LossAggregation, PolicyGradientConfig};
use alignlab::algo::ppo::{ppo_step, PpoConfig, PpoState};
use alignlab::algo::raft::raft_round;
use alignlab::io::jsonl;
use alignlab::model::{Llama, RewardModel};
use alignlab::online::{online_step, OnlineConfig, OnlineMethod};
use alignlab::reward::lexicon::Lexicon;
use alignlab::reward::source::RewardSource;
use alignlab::reward::LearnedReward;
use alignlab::sample::SamplingConfig;
use alignlab::train::Trainer;
use alignlab::world::eval::sum_tasks;
use alignlab::{policy, world, Error, Result};
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::Deserialize;

use crate::progress::Progress;
use crate::train::{Method, TrainCommand};

/// Prompts and, for sum questions, their answers.
pub fn prompts(
    spec: &str,
    count: usize,
    seed: u64,
) -> Result<(Vec<String>, HashMap<String, String>)> {
    match spec {
        "world" => {
            let mut w = world::World::new(seed + 100);
            Ok((
                (0..count).map(|_| w.prompt().prompt).collect(),
                HashMap::new(),
            ))
        }
        "sums" => {
            let tasks = sum_tasks(seed + 200, count);
            let answers = tasks
                .iter()
                .map(|t| (t.question.clone(), t.answer.to_string()))
                .collect();
            Ok((tasks.into_iter().map(|t| t.question).collect(), answers))
        }
        path => {
            #[derive(Deserialize)]
            struct Row {
                prompt: String,
            }
            let rows: Vec<Row> = jsonl::read(Path::new(path))?;
            Ok((rows.into_iter().map(|r| r.prompt).collect(), HashMap::new()))
        }
    }
}

/// `gold`, `verifier`, `lexicon:PATH`, `rm:PATH`, or a sum of `WEIGHT*SPEC` terms joined by `+`.
pub fn reward<B: Backend>(
    spec: &str,
    answers: &HashMap<String, String>,
    device: &B::Device,
) -> Result<RewardSource<B>> {
    if spec.contains('+') || spec.contains('*') {
        let parts = spec
            .split('+')
            .map(|term| {
                let (weight, inner) = term.split_once('*').unwrap_or(("1", term));
                let weight: f32 = weight.trim().parse().map_err(|_| {
                    Error::Input(format!("--reward: `{weight}` is not a weight in `{term}`"))
                })?;
                Ok((weight, reward(inner.trim(), answers, device)?))
            })
            .collect::<Result<Vec<_>>>()?;
        return Ok(RewardSource::Weighted(parts));
    }
    match spec.split_once(':') {
        None if spec == "gold" => Ok(RewardSource::Gold),
        None if spec == "verifier" => {
            if answers.is_empty() {
                return Err(Error::Input(
                    "--reward verifier needs --prompts sums".into(),
                ));
            }
            Ok(RewardSource::Verifier {
                answers: answers.clone(),
            })
        }
        Some(("lexicon", path)) => Ok(RewardSource::Lexicon(Lexicon::read(Path::new(path))?)),
        Some(("rm", path)) => Ok(RewardSource::Learned(Box::new(
            LearnedReward::load(Path::new(path), device)?.0,
        ))),
        _ => Err(Error::Input(format!(
            "--reward `{spec}`: expected gold, verifier, lexicon:PATH, rm:PATH or WEIGHT*SPEC+…"
        ))),
    }
}

pub fn run<B: AutodiffBackend>(
    command: &TrainCommand,
    policy: Llama<B>,
    device: &B::Device,
) -> Result<()> {
    let online = &command.online;
    let (_, tokenizer) = policy::load::<B::InnerBackend>(
        &command.model.model,
        command.model.tokenizer.as_deref(),
        device,
    )?;
    let (prompts, answers) = prompts(&online.prompts, online.prompt_count, command.train.seed)?;
    if prompts.is_empty() {
        return Err(Error::Input("no prompts".into()));
    }
    let monitor = online
        .monitor
        .as_deref()
        .map(|spec| reward::<B::InnerBackend>(spec, &answers, device))
        .transpose()?;
    let reward = reward::<B::InnerBackend>(&online.reward, &answers, device)?;
    let reference = policy.valid();
    let sampling = SamplingConfig {
        max_new_tokens: online.max_new_tokens,
        temperature: online.temperature,
        ..Default::default()
    };
    let pg = PolicyGradientConfig {
        clip_epsilon: 0.2,
        kl_loss_coef: if matches!(command.method, Method::Grpo | Method::DrGrpo) {
            command.beta
        } else {
            0.0
        },
        aggregation: match command.method {
            Method::DrGrpo => LossAggregation::Constant,
            Method::Ppo => LossAggregation::TokenMean,
            _ => LossAggregation::SequenceMean,
        },
        epochs: online.epochs,
        minibatch_size: command.train.batch_size,
        max_completion_length: online.max_new_tokens + 1,
        max_approx_kl: online.max_approx_kl,
    };
    let mut progress = Progress::new(command.train.steps, command.train.metrics.as_deref())?;
    let mut trainer = Trainer::new(command.train.optim());
    let batch_of = |step: usize| -> Vec<String> {
        (0..online.prompts_per_step)
            .map(|i| prompts[(step * online.prompts_per_step + i) % prompts.len()].clone())
            .collect()
    };
    let mut policy = policy;
    match command.method {
        Method::Ppo => {
            let mut value_model =
                RewardModel::from_policy(policy.clone(), 1, command.train.seed + 1);
            let mut state = PpoState {
                policy_trainer: trainer,
                value_trainer: Trainer::new(command.train.optim()),
                kl: match online.target_kl {
                    Some(target) => KlController::Adaptive {
                        kl_coef: command.beta,
                        target,
                        horizon: 10_000.0,
                    },
                    None => KlController::Fixed {
                        kl_coef: command.beta,
                    },
                },
            };
            let config = PpoConfig {
                samples_per_prompt: 1,
                sampling,
                policy_gradient: pg,
                ..Default::default()
            };
            for step in 0..command.train.steps {
                let (p, v, m) = pollster::block_on(ppo_step(
                    policy,
                    value_model,
                    &mut state,
                    &reference,
                    &tokenizer,
                    &batch_of(step),
                    &reward,
                    monitor.as_ref(),
                    &config,
                    step as u64,
                ))?;
                policy = p;
                value_model = v;
                progress.on_step(&m);
            }
        }
        Method::Raft => {
            for step in 0..command.train.steps {
                let sampling = SamplingConfig {
                    seed: step as u64,
                    ..sampling.clone()
                };
                let (p, m) = pollster::block_on(raft_round(
                    policy,
                    &mut trainer,
                    &reference,
                    &tokenizer,
                    &batch_of(step),
                    &reward,
                    online.group_size,
                    &sampling,
                    command.train.batch_size,
                ))?;
                policy = p;
                progress.on_step(&m);
            }
        }
        method => {
            let config = OnlineConfig {
                method: match method {
                    Method::Rloo => OnlineMethod::Rloo,
                    Method::DrGrpo => OnlineMethod::Grpo {
                        scale_by_std: false,
                    },
                    _ => OnlineMethod::Grpo { scale_by_std: true },
                },
                group_size: online.group_size,
                prompts_per_step: online.prompts_per_step,
                sampling,
                policy_gradient: pg,
                kl_coef: if method == Method::Rloo {
                    command.beta
                } else {
                    0.0
                },
            };
            for step in 0..command.train.steps {
                let (p, m) = pollster::block_on(online_step(
                    policy,
                    &reference,
                    &mut trainer,
                    &tokenizer,
                    &batch_of(step),
                    &reward,
                    monitor.as_ref(),
                    &config,
                    step as u64,
                ))?;
                policy = p;
                progress.on_step(&m);
            }
        }
    }
    progress.finish()?;
    pollster::block_on(policy::save(&policy.valid(), &tokenizer, &command.out))
}

#[derive(clap::Args, Clone)]
pub struct BestOfNCommand {
    #[command(flatten)]
    pub model: crate::ModelArgs,
    /// The selecting reward (same specs as `train --reward`).
    #[arg(long, default_value = "gold")]
    pub reward: String,
    /// A second reward of the selected samples (e.g. `gold` while an `rm:` proxy selects).
    #[arg(long)]
    pub monitor: Option<String>,
    #[arg(long, default_value = "world")]
    pub prompts: String,
    #[arg(long, default_value_t = 32)]
    pub prompt_count: usize,
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16")]
    pub ns: Vec<usize>,
    /// Samples per prompt that give the reward's CDF under π_ref.
    #[arg(long, default_value_t = 256)]
    pub pool: usize,
    /// Best-of-n draws per prompt and n.
    #[arg(long, default_value_t = 16)]
    pub groups: usize,
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the points as JSON.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// Best-of-n as an inference-time policy: measured against analytic KL, with its rewards.
pub fn best_of_n<B: Backend>(command: BestOfNCommand, device: &B::Device) -> Result<()> {
    let (policy, tokenizer) = policy::load::<B>(
        &command.model.model,
        command.model.tokenizer.as_deref(),
        device,
    )?;
    let (prompts, answers) = prompts(&command.prompts, command.prompt_count, command.seed)?;
    let selecting = reward::<B>(&command.reward, &answers, device)?;
    let monitor = command
        .monitor
        .as_deref()
        .map(|s| reward::<B>(s, &answers, device))
        .transpose()?;
    let sampling = SamplingConfig {
        max_new_tokens: command.max_new_tokens,
        seed: command.seed,
        ..Default::default()
    };
    let points = pollster::block_on(alignlab::algo::best_of_n::measure(
        &policy,
        &tokenizer,
        &prompts,
        &selecting,
        monitor.as_ref(),
        &command.ns,
        command.pool,
        command.groups,
        &sampling,
    ))?;
    println!("n\tanalytic KL\testimated KL\treward\tmonitor");
    for p in &points {
        println!(
            "{}\t{:.4}\t{}\t{}\t{}",
            p.n,
            p.analytic_kl,
            p.estimated_kl,
            p.reward,
            p.monitor_reward.map(|m| m.to_string()).unwrap_or_default()
        );
    }
    if let Some(path) = &command.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&points).expect("serialises"),
        )
        .map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}
