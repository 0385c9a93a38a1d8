//! `alignlab train --method M`: one command for every trainer — supervised fine-tuning, reward
//! models, and the offline preference methods — with the same data, progress and output flags.

use std::path::PathBuf;

use crate::algo::preference::{self, DataShape, PreferenceConfig, PreferenceData, PreferenceLoss};
use crate::algo::reward_model::REWARD_MODEL;
use crate::algo::sft::SFT;
use crate::algo::spec::{MethodKind, MethodSpec, Settings, TrainingOverrides, BETA};
use crate::backend::AutodiffBackend;
use crate::dataset::{self, Example, LengthLimit, PreferenceRows};
use crate::distributed::{all_reduce_time, run_replicas, Replica};
use crate::io::prefs::ChatRendering;
use crate::io::{jsonl, Tokenizer};
use crate::model::Llama;
use crate::reward::objective::{evaluate_rankings, evaluate_ratings, RewardData};
use crate::reward::{Aggregation, LearnedReward, RewardHeads};
use crate::run::preference::PreferenceRun;
use crate::run::reward_model::{self, RewardTrainConfig};
use crate::run::sft::{self, SftConfig};
use crate::train::OptimConfig;
use crate::{methods, policy, world, Error, Result};
use burn::module::AutodiffModule;
use clap::{Args, ValueEnum};

use super::cluster::{hash_debug, hash_model, is_quiet, set_quiet, ClusterArgs};
use super::progress::Progress;
use super::ModelArgs;

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
    /// `implicit:DPO,REFERENCE,BETA` (token-level, for rto), or weighted terms like
    /// `1*gold+0.5*lexicon:PATH`.
    #[arg(long, default_value = "gold")]
    pub reward: String,
    /// InfAlign (Balashankar et al. 2024): optimise the reward calibrated to its quantile under
    /// the reference's samples of each prompt (`calibrate`), then transformed for best-of-n
    /// (`bon:T`, exp(T·C)) or worst-of-n (`won:T`, −exp(−T·C)).
    #[arg(long)]
    pub infalign: Option<String>,
    /// InfAlign: reference samples per prompt the calibration is measured on.
    #[arg(long, default_value_t = 16)]
    pub calibration_samples: usize,
    /// Samples per prompt (GRPO's G, RLOO's k, RAFT's k) [default: the method's, 8].
    #[arg(long)]
    pub group_size: Option<usize>,
    /// Prompts per update [default: the method's, 16].
    #[arg(long)]
    pub prompts_per_step: Option<usize>,
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Passes over each rollout [default: the method's, 1].
    #[arg(long)]
    pub epochs: Option<usize>,
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

    /// Reads `--data`; chat messages in pairs are rendered with the model's chat template when
    /// its tokenizer has one (as TRL does), else as an HH-RLHF transcript.
    pub fn read(&self, tokenizer: &Tokenizer) -> Result<(PreferenceRows, String)> {
        let path = self
            .data
            .as_ref()
            .ok_or_else(|| Error::Input("--data FILE is required for this method".into()))?;
        let template = tokenizer.chat_template()?;
        let chat = match &template {
            Some(template) => ChatRendering::Template(template),
            None => ChatRendering::Transcript,
        };
        let bytes = crate::error::read_file(path)?;
        let (rows, skipped) = PreferenceRows::parse_rendered(
            &bytes,
            &path.display().to_string(),
            self.skip_bad_rows,
            chat,
        )?;
        report_skipped(&path.display().to_string(), "row", &skipped);
        if !is_quiet() {
            println!(
                "read {} {} rows from {}",
                rows.len(),
                rows.kind(),
                path.display()
            );
        }
        Ok((rows, path.display().to_string()))
    }
}

pub fn report_skipped(source: &str, what: &str, skipped: &[String]) {
    if skipped.is_empty() || is_quiet() {
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

/// The optimiser's flags. Each one left out takes the method's default from the registry
/// (`alignlab methods` lists them): the same defaults the sweep and the page start from.
#[derive(Args, Clone)]
pub struct TrainArgs {
    #[arg(long)]
    pub steps: Option<usize>,
    /// Rows per update (online methods: samples per minibatch).
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    /// Warmup steps [default: a tenth of the steps, 1 to 20].
    #[arg(long)]
    pub warmup: Option<usize>,
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write each step's metrics as JSON lines.
    #[arg(long)]
    pub metrics: Option<PathBuf>,
}

impl TrainArgs {
    pub fn overrides(&self) -> TrainingOverrides {
        TrainingOverrides {
            lr: self.lr,
            steps: self.steps,
            batch_size: self.batch_size,
            warmup: self.warmup,
        }
    }

    pub fn steps(&self, spec: &MethodSpec) -> usize {
        self.overrides().steps(spec)
    }

    pub fn batch_size(&self, spec: &MethodSpec) -> usize {
        self.overrides().batch_size(spec)
    }

    pub fn optim(&self, spec: &MethodSpec) -> OptimConfig {
        OptimConfig {
            max_grad_norm: Some(self.max_grad_norm),
            ..self.overrides().optim(spec)
        }
    }

    pub fn sft_config(&self) -> SftConfig {
        SftConfig {
            optim: self.optim(&SFT),
            batch_size: self.batch_size(&SFT),
            seed: self.seed,
        }
    }
}

#[derive(Args, Clone)]
pub struct TrainCommand {
    /// sft, rm, a preference method (dpo, cdpo, robust-dpo, ipo, hinge, rpo, simpo, orpo, pro,
    /// lipo, kto, bco) or an online one (grpo, dr-grpo, rloo, reinforce-pp, ppo, raft);
    /// `alignlab methods` describes each with its settings and defaults.
    #[arg(long)]
    pub method: String,
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
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Preference and online methods: strength of the tie to the reference [default: the
    /// method's, 0.1].
    #[arg(long)]
    pub beta: Option<f64>,
    /// DPO / robust DPO: assumed label-flip rate ε.
    #[arg(long)]
    pub label_smoothing: Option<f64>,
    /// RPO: weight of the chosen NLL.
    #[arg(long)]
    pub alpha: Option<f64>,
    /// SimPO: target reward margin γ.
    #[arg(long)]
    pub gamma: Option<f64>,
    /// ORPO: weight λ of the odds-ratio term.
    #[arg(long)]
    pub orpo_lambda: Option<f64>,
    /// KTO: weight of desirable examples.
    #[arg(long)]
    pub desirable_weight: Option<f64>,
    /// KTO: weight of undesirable examples.
    #[arg(long)]
    pub undesirable_weight: Option<f64>,
    /// PRO: weight of the SFT term on the best completion.
    #[arg(long)]
    pub sft_weight: Option<f64>,
    /// Reward model: number of ensemble members [default: 1].
    #[arg(long)]
    pub ensemble: Option<usize>,
    /// Reward model: independent members (own trunk each) instead of heads on a shared trunk.
    #[arg(long)]
    pub independent: bool,
    /// Reward model: how members combine into one reward.
    #[arg(long, value_enum, default_value_t = AggregateKind::Mean)]
    pub aggregate: AggregateKind,
    /// Reward model: λ of mean − λ·std.
    #[arg(long)]
    pub std_weight: Option<f64>,
    /// Reward model on pairs with scores: Bradley–Terry margin = score difference.
    #[arg(long)]
    pub margin_from_scores: bool,
    /// Multi-attribute reward model: the direction combining attributes (e.g. 1,0.5).
    #[arg(long, value_delimiter = ',')]
    pub direction: Option<Vec<f32>>,
    /// SparsePO: α, the weight of the masked token-level KL term.
    #[arg(long)]
    pub kl_weight: Option<f64>,
    /// SparsePO: 1 learned mask for the reward and the KL, 2 a mask each.
    #[arg(long)]
    pub mask_heads: Option<usize>,
    /// AlignDistil: the DPO model to distil from; given twice, the second is the reverse DPO
    /// model (trained with --reverse-pairs) and the reward becomes contrastive.
    #[arg(long)]
    pub teacher: Vec<String>,
    /// AlignDistil: the β the DPO teacher was trained with (α = teacher_beta / β).
    #[arg(long)]
    pub teacher_beta: Option<f64>,
    /// AlignDistil: τ of the token-adaptive α_t = min(α, τ/TV_t); 0 keeps α fixed.
    #[arg(long)]
    pub tv_target: Option<f64>,
    /// Train on every preference reversed (rejected first): a reverse DPO model.
    #[arg(long)]
    pub reverse_pairs: bool,
}

impl TrainCommand {
    /// The method's own settings as the flags give them (those not given are left to the
    /// method's defaults; a flag the method has no setting for is refused by name).
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::new();
        let given = [
            ("beta", self.beta),
            ("label_smoothing", self.label_smoothing),
            ("alpha", self.alpha),
            ("gamma", self.gamma),
            ("orpo_lambda", self.orpo_lambda),
            ("desirable_weight", self.desirable_weight),
            ("undesirable_weight", self.undesirable_weight),
            ("sft_weight", self.sft_weight),
            ("std_weight", self.std_weight),
            ("members", self.ensemble.map(|m| m as f64)),
            ("group_size", self.online.group_size.map(|g| g as f64)),
            (
                "prompts_per_step",
                self.online.prompts_per_step.map(|p| p as f64),
            ),
            ("epochs", self.online.epochs.map(|e| e as f64)),
            ("kl_weight", self.kl_weight),
            ("mask_heads", self.mask_heads.map(|m| m as f64)),
            ("teacher_beta", self.teacher_beta),
            ("tv_target", self.tv_target),
        ];
        for (name, value) in given {
            if let Some(value) = value {
                settings.insert(name, value);
            }
        }
        settings
    }
}

/// `train`: on one device here; on several (`--devices`, `--nodes`) one replica per device,
/// each running [`run_replica`], rank 0 writing the outputs.
pub fn run<B: AutodiffBackend>(command: TrainCommand, backend: &str) -> Result<()> {
    let cluster = command.cluster.cluster(backend)?;
    if !cluster.is_single() {
        println!(
            "data parallel over {} device(s) × {} node(s)",
            cluster.devices.len(),
            cluster.nodes.as_ref().map_or(1, |n| n.count)
        );
    }
    run_replicas::<B::InnerBackend, _, _>(&cluster, move |replica, device| {
        run_replica::<B>(&command, replica, &device)
    })
}

/// One replica's run of `train` (the whole run when there is one).
fn run_replica<B: AutodiffBackend>(
    command: &TrainCommand,
    replica: Replica,
    device: &B::Device,
) -> Result<()> {
    let spec = methods::find(&command.method)?;
    command
        .settings()
        .check(spec)
        .map_err(|e| Error::Input(format!("{e} (flags use dashes: --label-smoothing)")))?;
    let (policy, tokenizer) = policy::load::<B>(
        &command.model.model,
        command.model.tokenizer.as_deref(),
        device,
    )?;
    let context = policy.config().max_seq_len;
    let model_hash = if replica.is_single() {
        0
    } else {
        hash_model(&policy.valid())?
    };
    let leader = replica.is_leader();
    set_quiet(!leader);
    let started = std::time::Instant::now();
    match spec.kind {
        MethodKind::Supervised => {
            let examples: Vec<Example> = match &command.data.data {
                Some(path) => jsonl::read(path)?,
                None => world::World::new(command.train.seed + 1).positive_examples(2000),
            };
            let pairs = dataset::tokenize_examples(&tokenizer, &examples)?;
            let config = command.train.sft_config();
            replica.agree(&[
                ("model", model_hash),
                ("data", hash_debug(&pairs)),
                ("settings", hash_debug(&config)),
            ])?;
            let policy = train_sft(policy, &pairs, &command.train, replica.clone())?;
            if leader {
                pollster::block_on(policy::save(&policy.valid(), &tokenizer, &command.out))?;
            }
        }
        MethodKind::RewardModel => train_reward_model(
            policy,
            &tokenizer,
            command,
            context,
            replica.clone(),
            model_hash,
        )?,
        MethodKind::Online => {
            super::online::run::<B>(command, device, replica.clone(), model_hash)?
        }
        MethodKind::Preference(_) => {
            let plan = Plan {
                spec,
                command,
                context,
                replica: replica.clone(),
                model_hash,
            };
            train_preference(policy, &tokenizer, &plan)?
        }
    }
    if leader {
        println!("saved {}", command.out.display());
        if !replica.is_single() {
            let elapsed = started.elapsed().as_secs_f64();
            let in_all_reduce = all_reduce_time(replica.rank).as_secs_f64();
            println!(
                "replica 0: {elapsed:.2} s in all, {in_all_reduce:.2} s of it in all-reduces \
                 (waiting for the other replicas included)"
            );
        }
    }
    Ok(())
}

/// What a training function needs besides the model: the method, the flags, the context
/// length, and this replica with the model's hash (for the nodes' agreement check).
struct Plan<'a> {
    spec: &'a MethodSpec,
    command: &'a TrainCommand,
    context: usize,
    replica: Replica,
    model_hash: u64,
}

/// SFT with a progress bar and optional JSONL metrics.
pub fn train_sft<B: AutodiffBackend>(
    model: Llama<B>,
    pairs: &[(Vec<u32>, Vec<u32>)],
    args: &TrainArgs,
    replica: Replica,
) -> Result<Llama<B>> {
    let mut progress = Progress::for_replica(&replica, args.steps(&SFT), args.metrics.as_deref())?;
    let model = pollster::block_on(sft::train_replica(
        model,
        pairs,
        &args.sft_config(),
        replica,
        |m| progress.on_step(m),
    ))?;
    progress.finish()?;
    Ok(model)
}

fn train_reward_model<B: AutodiffBackend>(
    policy: Llama<B>,
    tokenizer: &Tokenizer,
    command: &TrainCommand,
    context: usize,
    replica: Replica,
    model_hash: u64,
) -> Result<()> {
    let (rows, source) = command.data.read(tokenizer)?;
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
            let direction = crate::reward::transform::unit_direction(&direction, &names)?;
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
            let settings = command.settings();
            let heads = RewardHeads::Ensemble {
                members: (settings.value(&REWARD_MODEL, "members") as usize).max(1),
                shared_trunk: !command.independent,
                aggregation: command
                    .aggregate
                    .aggregation(settings.value(&REWARD_MODEL, "std_weight")),
                member_scale: Vec::new(),
            };
            (heads, RewardData::Ranked(tokenized.rows), held)
        }
    };
    let leader = replica.is_leader();
    if leader {
        println!("training a reward model ({heads}) on {} rows", data.len());
    }
    let reward = LearnedReward::from_policy(policy, heads, command.train.seed)?;
    let config = RewardTrainConfig {
        optim: command.train.optim(&REWARD_MODEL),
        batch_size: command.train.batch_size(&REWARD_MODEL),
        seed: command.train.seed,
        margin_from_scores: command.margin_from_scores,
    };
    replica.agree(&[
        ("model", model_hash),
        ("data", hash_debug(&data)),
        ("settings", hash_debug(&(&config, &reward.heads))),
    ])?;
    let mut progress = Progress::for_replica(
        &replica,
        command.train.steps(&REWARD_MODEL),
        command.train.metrics.as_deref(),
    )?;
    let reward = pollster::block_on(reward_model::train_replica(
        reward,
        data,
        &config,
        replica,
        |m| progress.on_step(m),
    ))?;
    progress.finish()?;
    if !leader {
        return Ok(());
    }
    let reward = LearnedReward {
        ensemble: reward.ensemble.valid(),
        heads: reward.heads,
    };
    match held_out_data {
        Some(RewardData::Ranked(rows)) => {
            let eval = pollster::block_on(evaluate_rankings(&reward, &rows, 32))?;
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
            let eval = pollster::block_on(evaluate_ratings(&reward, &rows, 32))?;
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
    plan: &Plan,
) -> Result<()> {
    let Plan {
        spec,
        command,
        context,
        ..
    } = *plan;
    let replica = plan.replica.clone();
    let settings = command.settings();
    let loss = PreferenceLoss::from_spec(spec, &settings)
        .expect("the registry's preference methods are the loss list's")?;
    let (rows, source) = command.data.read(tokenizer)?;
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
    let data = if command.reverse_pairs {
        data.reversed()
    } else {
        data
    };
    let config = PreferenceConfig {
        loss,
        beta: settings.value(spec, BETA.name),
        optim: command.train.optim(spec),
        batch_size: command.train.batch_size(spec),
        seed: command.train.seed,
    };
    let leader = replica.is_leader();
    if leader {
        println!("{loss} with β = {} on {} rows", config.beta, data.len());
    }
    replica.agree(&[
        ("model", plan.model_hash),
        ("data", hash_debug(&data)),
        ("settings", hash_debug(&config)),
    ])?;
    let reference = policy.valid();
    let mut progress = Progress::for_replica(
        &replica,
        command.train.steps(spec),
        command.train.metrics.as_deref(),
    )?;
    let mut run = pollster::block_on(PreferenceRun::new_replica(
        &reference, data, config, replica,
    ))?;
    if !command.teacher.is_empty() {
        let device = reference.device();
        let teachers = command
            .teacher
            .iter()
            .map(|path| policy::load::<B::InnerBackend>(path, None, &device).map(|(m, _)| m))
            .collect::<Result<Vec<_>>>()?;
        run = run.with_teachers(teachers)?;
    }
    let mut policy = policy;
    for _ in 0..command.train.steps(spec) {
        let (next, metrics) = pollster::block_on(run.step(policy))?;
        policy = next;
        progress.on_step(&metrics);
    }
    progress.finish()?;
    if !leader {
        return Ok(());
    }
    let policy = policy.valid();
    if !held_out.is_empty()
        && matches!(
            held_out.kind(),
            crate::io::prefs::PreferenceKind::Pairs | crate::io::prefs::PreferenceKind::Rankings
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
