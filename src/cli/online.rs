//! The online methods of `alignlab train` (grpo, dr-grpo, rloo, reinforce-pp, ppo, raft) on
//! prompts from the built-in world, its sum questions, or a JSONL file, against a reward given
//! as a spec; checkpoints and resuming; and `alignlab best-of-n`.

use crate::algo::best_of_n::win_rate;
use crate::algo::salsa::soup;
use crate::backend::{AutodiffBackend, Backend};
use crate::distributed::Replica;
use crate::model::Llama;
use crate::reward::calibrated::{Calibrated, Transform};
use crate::reward::source::RewardSource;
use crate::reward::spec;
use crate::run::best_of_n::{self, BestOfNPlan};
use crate::run::checkpoint::resume;
use crate::run::{OnlineAlgorithm, OnlineRun, OnlineRunConfig};
use crate::sample::SamplingConfig;
use crate::{policy, prompts, Error, Result};
use burn::module::AutodiffModule;

use super::cluster::hash_debug;
use super::progress::Progress;
use super::train::TrainCommand;

/// One replica's online run (the whole run on one device); `model_hash` is the starting
/// model's, for the nodes' agreement check.
pub fn run<B: AutodiffBackend>(
    command: &TrainCommand,
    device: &B::Device,
    replica: Replica,
    model_hash: u64,
) -> Result<()> {
    let leader = replica.is_leader();
    let online = &command.online;
    let algorithm = OnlineAlgorithm::parse(&command.method)?;
    let spec = algorithm.spec();
    let steps = command.train.steps(spec);
    let prompts = prompts::load(&online.prompts, online.prompt_count, command.train.seed)?;
    if prompts.prompts.is_empty() {
        return Err(Error::Input(format!(
            "--prompts {}: no prompts",
            online.prompts
        )));
    }
    let monitor = online
        .monitor
        .as_deref()
        .map(|spec| spec::parse::<B::InnerBackend>(spec, &prompts.answers, device))
        .transpose()?;
    let reward = spec::parse::<B::InnerBackend>(&online.reward, &prompts.answers, device)?;
    let sampling = SamplingConfig {
        max_new_tokens: online.max_new_tokens,
        temperature: online.temperature,
        ..Default::default()
    };
    let mut config = OnlineRunConfig::new(
        algorithm,
        &command.settings(),
        &command.train.overrides(),
        sampling.clone(),
        command.train.seed,
    )?;
    config.target_kl = online.target_kl;
    config.policy_gradient.max_approx_kl = online.max_approx_kl;
    config.optim.max_grad_norm = Some(command.train.max_grad_norm);
    let (run, reference, tokenizer) = match &online.resume {
        Some(dir) => {
            let resumed = resume::<B>(dir, device)?;
            let at = resumed.checkpoint.display();
            if resumed.run.config != config {
                return Err(Error::Input(format!(
                    "{at}: this checkpoint is of a different run; its settings are\n{}",
                    serde_json::to_string_pretty(&resumed.run.config).expect("serialises")
                )));
            }
            if leader {
                println!("resuming {at} at step {}", resumed.run.step);
            }
            (resumed.run, resumed.reference, resumed.tokenizer)
        }
        None => {
            let (policy, tokenizer) = start::<B>(command, device)?;
            let reference = policy.valid();
            (OnlineRun::new(policy, config), reference, tokenizer)
        }
    };
    let reward = match &online.infalign {
        None => reward,
        Some(transform) => {
            let calibrated = Calibrated::new(
                reward,
                reference.clone(),
                tokenizer.clone(),
                online.calibration_samples,
                SamplingConfig {
                    seed: command.train.seed.wrapping_add(7_919),
                    ..sampling.clone()
                },
                Transform::parse(transform)?,
            )?;
            RewardSource::Calibrated(Box::new(calibrated))
        }
    };
    replica.agree(&[
        ("model", model_hash),
        ("prompts", hash_debug(&prompts.prompts)),
        ("settings", hash_debug(&(&run.config, run.step))),
    ])?;
    let mut run = run.with_replica(replica.clone());
    let checkpoint_dir = online.checkpoint_dir.clone().unwrap_or_else(|| {
        let mut name = command.out.clone().into_os_string();
        name.push(".checkpoints");
        name.into()
    });
    let metrics_path = command.train.metrics.as_deref();
    let mut progress =
        Progress::for_replica(&replica, steps, metrics_path.filter(|_| run.step == 0))?;
    if leader {
        progress.resume_at(run.step, metrics_path)?;
    }
    while run.step < steps {
        let m = pollster::block_on(run.step(
            &reference,
            &tokenizer,
            &prompts,
            &reward,
            monitor.as_ref(),
        ))?;
        progress.on_step(&m);
        let due = online
            .checkpoint_every
            .is_some_and(|every| run.step % every.max(1) == 0 || run.step == steps);
        if due && leader {
            let at =
                pollster::block_on(run.save_checkpoint(&reference, &tokenizer, &checkpoint_dir))?;
            progress.println(&format!("checkpoint {}", at.display()));
        }
    }
    progress.finish()?;
    if !leader {
        return Ok(());
    }
    pollster::block_on(policy::save(
        &run.policy().valid(),
        &tokenizer,
        &command.out,
    ))
}

/// The starting policy: `--model`, or with `--reference-soup` the SALSA soup of two models.
fn start<B: AutodiffBackend>(
    command: &TrainCommand,
    device: &B::Device,
) -> Result<(Llama<B>, crate::io::Tokenizer)> {
    let tokenizer_path = command.model.tokenizer.as_deref();
    match &command.online.reference_soup {
        None => policy::load::<B>(&command.model.model, tokenizer_path, device),
        Some(models) => {
            if models.len() != 2 {
                return Err(Error::Input(format!(
                    "--reference-soup takes two models, A,B; got {}",
                    models.len()
                )));
            }
            let (a, tokenizer) =
                policy::load::<B::InnerBackend>(&models[0], tokenizer_path, device)?;
            let (b, _) = policy::load::<B::InnerBackend>(&models[1], tokenizer_path, device)?;
            let mixed = pollster::block_on(soup(&a, &b, command.online.soup_weight))?;
            let weights = pollster::block_on(mixed.to_weights())?;
            println!(
                "SALSA: policy and reference = {} × {} + {} × {}",
                command.online.soup_weight,
                models[0],
                1.0 - command.online.soup_weight,
                models[1]
            );
            Ok((
                Llama::from_weights(mixed.config(), weights, device)?,
                tokenizer,
            ))
        }
    }
}

#[derive(clap::Args, Clone)]
pub struct BestOfNCommand {
    #[command(flatten)]
    pub model: super::ModelArgs,
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
    /// A second policy under the same best-of-n (same prompts and seeds): each n's win rate of
    /// --model against it, judged by --monitor (else --reward), ties half (InfAlign's measure).
    #[arg(long)]
    pub against: Option<String>,
}

/// Best-of-n as an inference-time policy: measured against analytic KL, with its rewards.
pub fn best_of_n<B: Backend>(command: BestOfNCommand, device: &B::Device) -> Result<()> {
    let (policy, tokenizer) = policy::load::<B>(
        &command.model.model,
        command.model.tokenizer.as_deref(),
        device,
    )?;
    let set = prompts::load(&command.prompts, command.prompt_count, command.seed)?;
    let selecting = spec::parse::<B>(&command.reward, &set.answers, device)?;
    let monitor = command
        .monitor
        .as_deref()
        .map(|s| spec::parse::<B>(s, &set.answers, device))
        .transpose()?;
    let prompts = set.prompts;
    let sampling = SamplingConfig {
        max_new_tokens: command.max_new_tokens,
        seed: command.seed,
        ..Default::default()
    };
    let plan = BestOfNPlan {
        ns: command.ns.clone(),
        pool: command.pool,
        groups: command.groups,
        sampling,
    };
    let measure = |model: &Llama<B>| {
        pollster::block_on(best_of_n::measure(
            model,
            &tokenizer,
            &prompts,
            &selecting,
            monitor.as_ref(),
            &plan,
        ))
    };
    let points = measure(&policy)?;
    let against = match &command.against {
        Some(path) => Some(measure(&policy::load::<B>(path, None, device)?.0)?),
        None => None,
    };
    let win_column = command
        .against
        .as_ref()
        .map(|path| format!("\twin rate vs {path}"))
        .unwrap_or_default();
    println!("n\tmeasured KL\tanalytic bound\treward\tmonitor{win_column}");
    for (i, p) in points.iter().enumerate() {
        let win = against
            .as_ref()
            .map(|theirs| format!("\t{}", win_rate(&p.judged, &theirs[i].judged)))
            .unwrap_or_default();
        println!(
            "{}\t{}\t{:.4}\t{}\t{}{win}",
            p.n,
            p.kl,
            p.analytic_kl,
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
