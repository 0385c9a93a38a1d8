//! `alignlab train --method M`: one command for every trainer — supervised fine-tuning, reward
//! models, and the offline preference methods — with the same data, progress and output flags.

use std::path::PathBuf;

use alignlab::algo::preference::{
    self, DataShape, PreferenceConfig, PreferenceData, PreferenceLoss,
};
use alignlab::algo::sft::{self, Example, SftConfig};
use alignlab::dataset::{self, LengthLimit, PreferenceRows};
use alignlab::io::{jsonl, Tokenizer};
use alignlab::model::Llama;
use alignlab::reward::train::{self as reward_train, RewardData, RewardTrainConfig};
use alignlab::reward::{Aggregation, LearnedReward, RewardHeads};
use alignlab::train::OptimConfig;
use alignlab::{policy, world, Error, Result};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use clap::{Args, ValueEnum};

use crate::progress::Progress;
use crate::ModelArgs;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// Supervised fine-tuning on {"prompt", "completion"} rows (loss on completion tokens).
    Sft,
    /// A reward model: Bradley–Terry on pairs, Plackett–Luce on rankings, regression on ratings.
    Rm,
    /// DPO (with --label-smoothing: conservative DPO).
    Dpo,
    /// Robust DPO for noisy labels (--label-smoothing is the flip rate).
    RobustDpo,
    Ipo,
    /// SLiC-HF's hinge loss.
    Hinge,
    /// DPO + α·NLL of the chosen completion.
    Rpo,
    /// Reference-free, length-normalised, with margin γ.
    Simpo,
    /// Reference-free odds ratio + SFT.
    Orpo,
    /// Binary classifier with a running reward shift (unpaired labels, or pairs unpaired).
    Bco,
    /// Kahneman–Tversky optimisation (unpaired labels, or pairs unpaired).
    Kto,
    /// Preference ranking optimisation (rankings of any k).
    Pro,
    /// LiPO-λ (listwise, lambda-weighted).
    Lipo,
    /// Online: group-relative advantages, k3 KL loss (--beta).
    Grpo,
    /// Online: GRPO without the std division, constant-normalised loss.
    DrGrpo,
    /// Online: leave-one-out baseline, KL penalty (--beta) in the reward.
    Rloo,
    /// Online: REINFORCE++ (per-token KL penalty --beta, returns normalised over the batch).
    ReinforcePp,
    /// Online: PPO with a value model; KL penalty --beta, adaptive with --target-kl.
    Ppo,
    /// Online: reward-ranked fine-tuning (best of --group-size, then SFT).
    Raft,
}

#[derive(Args, Clone)]
pub struct OnlineArgs {
    /// Online methods: `world` (story openings), `sums` (questions with answers), or a JSONL
    /// file of {"prompt"} rows.
    #[arg(long, default_value = "world")]
    pub prompts: String,
    /// How many prompts to draw from `world` or `sums`.
    #[arg(long, default_value_t = 2000)]
    pub prompt_count: usize,
    /// `gold`, `verifier` (with --prompts sums), `lexicon:PATH` (VADER/AFINN format), `rm:PATH`,
    /// or weighted terms like `1*gold+0.5*lexicon:PATH`.
    #[arg(long, default_value = "gold")]
    pub reward: String,
    #[arg(long, default_value_t = 8)]
    pub group_size: usize,
    #[arg(long, default_value_t = 16)]
    pub prompts_per_step: usize,
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Passes over each rollout.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// A second reward to score every rollout with, logged as `objective/monitor_scores` (e.g.
    /// `gold` while optimising `rm:PATH`, to watch over-optimisation).
    #[arg(long)]
    pub monitor: Option<String>,
    /// Roll an update back when a minibatch's approximate KL to the rollout policy exceeds this.
    #[arg(long)]
    pub max_approx_kl: Option<f64>,
    /// PPO: adapt β towards this KL (Ziegler et al.).
    #[arg(long)]
    pub target_kl: Option<f64>,
    /// Write a resumable checkpoint every N steps (and at the end) under --checkpoint-dir.
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Where checkpoints go (default: the --out path with `.checkpoints` appended).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue a stopped run from a checkpoint (or the latest in a folder of them); the other
    /// flags must describe the same run.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// SALSA (Chegini et al. 2024): start from, and take the KL to, the weight average of these
    /// two models (same architecture), e.g. two SFT runs: `A.safetensors,B.safetensors`.
    #[arg(long, value_delimiter = ',')]
    pub reference_soup: Option<Vec<String>>,
    /// SALSA: the soup's weight on the first model.
    #[arg(long, default_value_t = 0.5)]
    pub soup_weight: f32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AggregateKind {
    Mean,
    Min,
    /// mean − λ·std, λ = --std-weight.
    MeanMinusStd,
}

impl AggregateKind {
    pub fn aggregation(self, std_weight: f64) -> Aggregation {
        match self {
            Self::Mean => Aggregation::Mean,
            Self::Min => Aggregation::Min,
            Self::MeanMinusStd => Aggregation::MeanMinusStd { lambda: std_weight },
        }
    }
}

#[derive(Args, Clone)]
pub struct DataArgs {
    /// JSONL or JSON array, gzipped or not: pairs, rankings, unpaired labels or ratings (the kind
    /// is told from the first row).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Skip malformed rows (and rows too long for the context) and report them, instead of
    /// stopping at the first.
    #[arg(long)]
    pub skip_bad_rows: bool,
    /// Truncate rows longer than the context (prompt keeps its end) instead of rejecting them.
    #[arg(long)]
    pub truncate: bool,
    /// Longest prompt + completion in tokens (default: the model's context).
    #[arg(long)]
    pub max_length: Option<usize>,
}

impl DataArgs {
    pub fn limit(&self, context: usize) -> LengthLimit {
        LengthLimit {
            max_length: self.max_length.unwrap_or(context).min(context),
            truncate: self.truncate,
        }
    }

    pub fn read(&self) -> Result<(PreferenceRows, String)> {
        let path = self
            .data
            .as_ref()
            .ok_or_else(|| Error::Input("--data FILE is required for this method".into()))?;
        let (rows, skipped) = PreferenceRows::read(path, self.skip_bad_rows)?;
        report_skipped(&path.display().to_string(), "row", &skipped);
        println!(
            "read {} {:?} rows from {}",
            rows.len(),
            rows.kind(),
            path.display()
        );
        Ok((rows, path.display().to_string()))
    }
}

pub fn report_skipped(source: &str, what: &str, skipped: &[String]) {
    if skipped.is_empty() {
        return;
    }
    println!("skipped {} {what}(s) of {source}:", skipped.len());
    for reason in skipped.iter().take(5) {
        println!("  {reason}");
    }
    if skipped.len() > 5 {
        println!("  … and {} more", skipped.len() - 5);
    }
}

#[derive(Args, Clone)]
pub struct TrainArgs {
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 5e-4)]
    pub lr: f64,
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write each step's metrics as JSON lines.
    #[arg(long)]
    pub metrics: Option<PathBuf>,
}

impl TrainArgs {
    pub fn optim(&self) -> OptimConfig {
        OptimConfig {
            lr: self.lr,
            warmup_steps: self.warmup,
            total_steps: self.steps,
            max_grad_norm: Some(self.max_grad_norm),
            ..Default::default()
        }
    }

    pub fn sft_config(&self) -> SftConfig {
        SftConfig {
            optim: self.optim(),
            batch_size: self.batch_size,
            seed: self.seed,
        }
    }
}

#[derive(Args, Clone)]
pub struct TrainCommand {
    #[arg(long, value_enum)]
    pub method: Method,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Where to write the trained policy or reward model (alignlab safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Share of rows held out and evaluated after training (0 keeps everything for training).
    #[arg(long, default_value_t = 0.0)]
    pub eval_fraction: f64,
    #[command(flatten)]
    pub train: TrainArgs,
    #[command(flatten)]
    pub online: OnlineArgs,
    /// Preference methods: strength of the tie to the reference.
    #[arg(long, default_value_t = 0.1)]
    pub beta: f64,
    /// DPO / robust DPO: assumed label-flip rate ε.
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// RPO: weight of the chosen NLL.
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
    /// SimPO: target reward margin γ.
    #[arg(long, default_value_t = 0.5)]
    pub gamma: f64,
    /// ORPO: weight λ of the odds-ratio term.
    #[arg(long, default_value_t = 0.1)]
    pub orpo_lambda: f64,
    /// KTO: weight of desirable examples.
    #[arg(long, default_value_t = 1.0)]
    pub desirable_weight: f64,
    /// KTO: weight of undesirable examples.
    #[arg(long, default_value_t = 1.0)]
    pub undesirable_weight: f64,
    /// PRO: weight of the SFT term on the best completion.
    #[arg(long, default_value_t = 0.05)]
    pub sft_weight: f64,
    /// Reward model: number of ensemble members.
    #[arg(long, default_value_t = 1)]
    pub ensemble: usize,
    /// Reward model: independent members (own trunk each) instead of heads on a shared trunk.
    #[arg(long)]
    pub independent: bool,
    /// Reward model: how members combine into one reward.
    #[arg(long, value_enum, default_value_t = AggregateKind::Mean)]
    pub aggregate: AggregateKind,
    /// Reward model: λ of mean − λ·std.
    #[arg(long, default_value_t = 1.0)]
    pub std_weight: f64,
    /// Reward model on pairs with scores: Bradley–Terry margin = score difference.
    #[arg(long)]
    pub margin_from_scores: bool,
    /// Multi-attribute reward model: the direction combining attributes (e.g. 1,0.5).
    #[arg(long, value_delimiter = ',')]
    pub direction: Option<Vec<f32>>,
}

impl TrainCommand {
    fn preference_loss(&self) -> Option<PreferenceLoss> {
        Some(match self.method {
            Method::Sft
            | Method::Rm
            | Method::Grpo
            | Method::DrGrpo
            | Method::Rloo
            | Method::ReinforcePp
            | Method::Ppo
            | Method::Raft => return None,
            Method::Dpo => PreferenceLoss::Dpo {
                label_smoothing: self.label_smoothing,
            },
            Method::RobustDpo => PreferenceLoss::RobustDpo {
                label_smoothing: self.label_smoothing,
            },
            Method::Ipo => PreferenceLoss::Ipo,
            Method::Hinge => PreferenceLoss::Hinge,
            Method::Rpo => PreferenceLoss::Rpo { alpha: self.alpha },
            Method::Simpo => PreferenceLoss::Simpo { gamma: self.gamma },
            Method::Orpo => PreferenceLoss::Orpo {
                lambda: self.orpo_lambda,
            },
            Method::Bco => PreferenceLoss::Bco,
            Method::Kto => PreferenceLoss::Kto {
                desirable_weight: self.desirable_weight,
                undesirable_weight: self.undesirable_weight,
            },
            Method::Pro => PreferenceLoss::Pro {
                sft_weight: self.sft_weight,
            },
            Method::Lipo => PreferenceLoss::Lipo,
        })
    }
}

pub fn run<B: AutodiffBackend>(command: TrainCommand, device: &B::Device) -> Result<()> {
    let (policy, tokenizer) = policy::load::<B>(
        &command.model.model,
        command.model.tokenizer.as_deref(),
        device,
    )?;
    let context = policy.config().max_seq_len;
    match command.method {
        Method::Sft => {
            let examples: Vec<Example> = match &command.data.data {
                Some(path) => jsonl::read(path)?,
                None => world::World::new(command.train.seed + 1).positive_examples(2000),
            };
            let pairs = sft::tokenize_examples(&tokenizer, &examples)?;
            let policy = train_sft(policy, &pairs, &command.train)?;
            pollster::block_on(policy::save(&policy.valid(), &tokenizer, &command.out))?;
        }
        Method::Rm => train_reward_model(policy, &tokenizer, &command, context)?,
        Method::Grpo
        | Method::DrGrpo
        | Method::Rloo
        | Method::ReinforcePp
        | Method::Ppo
        | Method::Raft => crate::online::run::<B>(&command, device)?,
        _ => train_preference(policy, &tokenizer, &command, context)?,
    }
    println!("saved {}", command.out.display());
    Ok(())
}

/// SFT with a progress bar and optional JSONL metrics.
pub fn train_sft<B: AutodiffBackend>(
    model: Llama<B>,
    pairs: &[(Vec<u32>, Vec<u32>)],
    args: &TrainArgs,
) -> Result<Llama<B>> {
    let mut progress = Progress::new(args.steps, args.metrics.as_deref())?;
    let model = pollster::block_on(sft::train(model, pairs, &args.sft_config(), |m| {
        progress.on_step(m)
    }))?;
    progress.finish()?;
    Ok(model)
}

fn train_reward_model<B: AutodiffBackend>(
    policy: Llama<B>,
    tokenizer: &Tokenizer,
    command: &TrainCommand,
    context: usize,
) -> Result<()> {
    let (rows, source) = command.data.read()?;
    let (train_rows, held_out) = rows.split(command.eval_fraction, command.train.seed);
    let limit = command.data.limit(context);
    let skip = command.data.skip_bad_rows;
    let (heads, data, held_out_data) = match train_rows {
        PreferenceRows::Ratings(rated) => {
            let names: Vec<String> = rated[0].scores.keys().cloned().collect();
            let direction = command
                .direction
                .clone()
                .unwrap_or_else(|| vec![1.0; names.len()]);
            let direction = alignlab::reward::transform::unit_direction(&direction, &names)?;
            let tokenized = dataset::tokenize_ratings(tokenizer, &rated, &limit, &source, skip)?;
            report_skipped(&source, "record", &tokenized.skipped);
            let held = match held_out {
                PreferenceRows::Ratings(h) if !h.is_empty() => Some(RewardData::Rated(
                    dataset::tokenize_ratings(tokenizer, &h, &limit, &source, skip)?.rows,
                )),
                _ => None,
            };
            (
                RewardHeads::Attributes {
                    names,
                    direction,
                    rating_scale: Vec::new(),
                },
                RewardData::Rated(tokenized.rows),
                held,
            )
        }
        other => {
            let rankings = other.into_rankings()?;
            let tokenized =
                dataset::tokenize_rankings(tokenizer, &rankings, &limit, &source, skip)?;
            report_skipped(&source, "record", &tokenized.skipped);
            let held = if held_out.is_empty() {
                None
            } else {
                let h = held_out.into_rankings()?;
                Some(RewardData::Ranked(
                    dataset::tokenize_rankings(tokenizer, &h, &limit, &source, skip)?.rows,
                ))
            };
            let heads = RewardHeads::Ensemble {
                members: command.ensemble.max(1),
                shared_trunk: !command.independent,
                aggregation: command.aggregate.aggregation(command.std_weight),
                member_scale: Vec::new(),
            };
            (heads, RewardData::Ranked(tokenized.rows), held)
        }
    };
    println!("training a reward model {heads:?} on {} rows", data.len());
    let reward = LearnedReward::from_policy(policy, heads, command.train.seed)?;
    let config = RewardTrainConfig {
        optim: command.train.optim(),
        batch_size: command.train.batch_size,
        seed: command.train.seed,
        margin_from_scores: command.margin_from_scores,
    };
    let mut progress = Progress::new(command.train.steps, command.train.metrics.as_deref())?;
    let reward = pollster::block_on(reward_train::train(reward, &data, &config, |m| {
        progress.on_step(m)
    }))?;
    progress.finish()?;
    let reward = LearnedReward {
        ensemble: reward.ensemble.valid(),
        heads: reward.heads,
    };
    match held_out_data {
        Some(RewardData::Ranked(rows)) => {
            let eval = pollster::block_on(reward_train::evaluate_rankings(&reward, &rows, 32))?;
            println!(
                "held-out ({} rankings): accuracy {:.3}, chosen {:.3}, rejected {:.3}, margin {:.3}",
                eval.rankings, eval.accuracy, eval.chosen_reward, eval.rejected_reward, eval.margin
            );
            if eval.member_accuracy.len() > 1 {
                println!(
                    "  members' accuracy {:?}, disagreement {:.3}, members' std {:.3}",
                    eval.member_accuracy, eval.disagreement, eval.member_std
                );
            }
        }
        Some(RewardData::Rated(rows)) => {
            let eval = pollster::block_on(reward_train::evaluate_ratings(&reward, &rows, 32))?;
            for (i, name) in eval.names.iter().enumerate() {
                println!(
                    "held-out {name}: rmse {:.3}, pairwise accuracy {:.3}",
                    eval.rmse[i], eval.pairwise_accuracy[i]
                );
            }
        }
        None => {}
    }
    pollster::block_on(reward.save(tokenizer, &command.out))
}

fn train_preference<B: AutodiffBackend>(
    policy: Llama<B>,
    tokenizer: &Tokenizer,
    command: &TrainCommand,
    context: usize,
) -> Result<()> {
    let loss = command.preference_loss().expect("a preference method");
    let (rows, source) = command.data.read()?;
    let (train_rows, held_out) = rows.split(command.eval_fraction, command.train.seed);
    let limit = command.data.limit(context);
    let skip = command.data.skip_bad_rows;
    let data = match loss.data_shape() {
        DataShape::Unpaired => {
            let unpaired = train_rows.into_unpaired()?;
            let tokenized =
                dataset::tokenize_unpaired(tokenizer, &unpaired, &limit, &source, skip)?;
            report_skipped(&source, "record", &tokenized.skipped);
            PreferenceData::Unpaired(tokenized.rows)
        }
        DataShape::Pairs | DataShape::Rankings => {
            let rankings = train_rows.into_rankings()?;
            let tokenized =
                dataset::tokenize_rankings(tokenizer, &rankings, &limit, &source, skip)?;
            report_skipped(&source, "record", &tokenized.skipped);
            PreferenceData::Ranked(tokenized.rows)
        }
    };
    let config = PreferenceConfig {
        loss,
        beta: command.beta,
        optim: command.train.optim(),
        batch_size: command.train.batch_size,
        seed: command.train.seed,
    };
    println!("{loss:?} with β = {} on {} rows", config.beta, data.len());
    let reference = policy.valid();
    let mut progress = Progress::new(command.train.steps, command.train.metrics.as_deref())?;
    let policy = pollster::block_on(preference::train(policy, &reference, &data, &config, |m| {
        progress.on_step(m)
    }))?;
    progress.finish()?;
    let policy = policy.valid();
    if !held_out.is_empty()
        && matches!(
            held_out.kind(),
            alignlab::io::prefs::PreferenceKind::Pairs
                | alignlab::io::prefs::PreferenceKind::Rankings
        )
    {
        let rankings = held_out.into_rankings()?;
        let rows = dataset::tokenize_rankings(tokenizer, &rankings, &limit, &source, skip)?.rows;
        let held = PreferenceData::Ranked(rows.clone());
        let reference_logps =
            pollster::block_on(preference::reference_logps(&reference, &held, 32))?;
        let accuracy = pollster::block_on(preference::implicit_reward_accuracy(
            &policy,
            &reference_logps,
            &rows,
            32,
        ))?;
        println!(
            "held-out ({} rows): implicit-reward accuracy {accuracy:.3}",
            rows.len()
        );
    }
    pollster::block_on(policy::save(&policy, tokenizer, &command.out))
}
