//! `alignlab run EXPERIMENT.toml`: an experiment file (the page's "Export experiment", or written
//! by hand) run through the lab the page drives, with a line per step; every step goes to
//! `experiment.json` and every measured policy to `points.csv`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::backend::AutodiffBackend;
use crate::lab::experiment::{self, Experiment, ExperimentLog, Progress};
use crate::lab::{labels, Lab};
use crate::model::{Llama, RewardEnsemble, RewardModel};
use crate::{policy, Error, Result};
use burn::module::AutodiffModule;

#[derive(clap::Args, Clone)]
pub struct RunCommand {
    /// The experiment (TOML): labels, reward model, runs, best-of-n. Paths in it are read from
    /// its folder.
    pub experiment: PathBuf,
    /// Folder for experiment.json (every step) and points.csv (every measured policy).
    #[arg(long, default_value = "experiment")]
    pub out: PathBuf,
}

pub fn run<B: AutodiffBackend>(command: &RunCommand, device: &B::Device) -> Result<()>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
    RewardModel<B>: AutodiffModule<B, InnerModule = RewardModel<B::InnerBackend>>,
    RewardEnsemble<B>: AutodiffModule<B, InnerModule = RewardEnsemble<B::InnerBackend>>,
{
    let path = &command.experiment;
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut experiment = Experiment::parse(&text, &path.display().to_string())?;
    let folder = path.parent().unwrap_or(Path::new(""));
    if let Some(file) = experiment.take_label_file() {
        let file = folder.join(file);
        let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
        experiment.add_file_labels(labels::import(&bytes, &file.display().to_string())?);
    }
    let model = if experiment.model == policy::BUILTIN {
        experiment.model.clone()
    } else {
        folder.join(&experiment.model).display().to_string()
    };
    let tokenizer = experiment.tokenizer.as_ref().map(|t| folder.join(t));
    let checkpoint = policy::load_checkpoint(&model, tokenizer.as_deref())?;
    let mut lab = Lab::<B>::new(checkpoint, device, experiment.lab.clone())?;
    let start = Instant::now();
    let log = pollster::block_on(experiment::run(&mut lab, &experiment, |p| {
        if let Some(line) = describe(&p) {
            println!("[{:>6.1}s] {line}", start.elapsed().as_secs_f64());
        }
    }))?;
    std::fs::create_dir_all(&command.out).map_err(|e| Error::io(&command.out, e))?;
    let json = command.out.join("experiment.json");
    let text = serde_json::to_string_pretty(&log).expect("the log serialises");
    std::fs::write(&json, text).map_err(|e| Error::io(&json, e))?;
    let csv = command.out.join("points.csv");
    std::fs::write(&csv, points_csv(&log)).map_err(|e| Error::io(&csv, e))?;
    println!("wrote {} and {}", json.display(), csv.display());
    Ok(())
}

fn describe(progress: &Progress<'_>) -> Option<String> {
    Some(match progress {
        Progress::Labels { pairs } => format!("labels state {pairs} pairs"),
        Progress::RewardModel(p) if p.done => format!(
            "reward model: {} steps, loss {:.3}, held-out accuracy {}",
            p.step,
            p.loss,
            p.held_out_accuracy
                .map_or_else(|| "- (too few pairs)".into(), |a| format!("{a:.3}"))
        ),
        Progress::RewardModel(_) => return None,
        Progress::RunStarted { name, base } => {
            format!("{name}: base KL {:.3}, gold {}", base.kl.mean, base.gold)
        }
        Progress::Run(p) => match &p.point {
            Some(point) => format!(
                "{}: step {}/{}, KL {}, gold {}",
                p.name, p.step, p.total_steps, point.kl, point.gold
            ),
            None => return None,
        },
        Progress::BestOfN(points) => {
            let mut line = String::from("best-of-n:");
            for p in *points {
                let _ = write!(
                    line,
                    " n={} KL {:.3} reward {:.3};",
                    p.n, p.kl.mean, p.reward.mean
                );
            }
            line
        }
    })
}

/// One row per measured policy: the run, its step, KL and gold with their 95% intervals, and the
/// reward model's score when there is one.
fn points_csv(log: &ExperimentLog) -> String {
    let mut out = String::from("run,step,kl,kl_ci95,gold,gold_ci95,proxy,proxy_ci95\n");
    for run in &log.runs {
        let measured = std::iter::once((0, &run.base)).chain(
            run.steps
                .iter()
                .filter_map(|s| s.point.as_ref().map(|p| (s.step, p))),
        );
        for (step, p) in measured {
            let proxy = p.proxies.get(crate::lab::PROXY);
            let _ = writeln!(
                out,
                "{},{step},{},{},{},{},{},{}",
                run.name,
                p.kl.mean,
                p.kl.ci95,
                p.gold.mean,
                p.gold.ci95,
                proxy.map_or(String::new(), |m| m.mean.to_string()),
                proxy.map_or(String::new(), |m| m.ci95.to_string()),
            );
        }
    }
    out
}
