//! `alignlab frontier` (a sweep from a TOML config) and `alignlab demo` (the built-in sweep):
//! the core's frontier run with timestamps, then the report files and a summary.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::backend::AutodiffBackend;
use crate::frontier::{self, report, FrontierConfig, FrontierReport};
use crate::model::{Llama, RewardEnsemble, RewardModel};
use crate::{Error, Result};
use burn::module::AutodiffModule;

#[derive(clap::Args, Clone)]
pub struct FrontierCommand {
    /// The sweep, as TOML (default: the built-in demo, configs/frontier-demo.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Folder for frontier.json, frontier.csv and frontier.html.
    #[arg(long, default_value = "frontier")]
    pub out: PathBuf,
    /// Run nothing: render the report again from a frontier.json a sweep wrote (after a change
    /// to the report, or to read an old sweep with today's charts and fit rules).
    #[arg(long, conflicts_with = "config")]
    pub render: Option<PathBuf>,
}

pub fn run<B: AutodiffBackend>(command: &FrontierCommand, device: &B::Device) -> Result<()>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
    RewardModel<B>: AutodiffModule<B, InnerModule = RewardModel<B::InnerBackend>>,
    RewardEnsemble<B>: AutodiffModule<B, InnerModule = RewardEnsemble<B::InnerBackend>>,
{
    if let Some(json) = &command.render {
        let text = std::fs::read_to_string(json).map_err(|e| Error::io(json, e))?;
        let mut report: FrontierReport = serde_json::from_str(&text)
            .map_err(|e| Error::format(json.display().to_string(), e.to_string()))?;
        report.refit();
        let paths = report::write(&report, &command.out)?;
        summarise(&report, &paths, &command.out, 0.0);
        return Ok(());
    }
    let config = match &command.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            FrontierConfig::parse(&text, &path.display().to_string())?
        }
        None => FrontierConfig::parse(frontier::config::DEMO, "configs/frontier-demo.toml")?,
    };
    let start = Instant::now();
    let mut log = |line: &str| println!("[{:>6.1}s] {line}", start.elapsed().as_secs_f64());
    let report = pollster::block_on(frontier::run::<B>(&config, device, &mut log))?;
    let paths = report::write(&report, &command.out)?;
    summarise(&report, &paths, &command.out, start.elapsed().as_secs_f64());
    Ok(())
}

fn summarise(report: &FrontierReport, paths: &[PathBuf], out: &Path, seconds: f64) {
    println!("\nbase policy: gold {}", report.base.gold);
    for p in &report.proxies {
        if let Some(accuracy) = p.held_out_accuracy {
            println!(
                "proxy {}: held-out accuracy {accuracy:.3} ({} pairs)",
                p.name, p.held_out_pairs
            );
        }
    }
    if let Some(bon) = &report.best_of_n {
        println!(
            "best-of-n gold fit d(α − βd): {}",
            report::fit_text(&bon.gold_fit)
        );
    }
    println!("\nrun\tfinal KL\tfinal proxy\tgold peak\tfinal gold\tgold fit d(α − β ln d)");
    for run in &report.runs {
        let last = run.points.last().expect("runs have points");
        let (peak, final_gold) = run.gold_peak_and_final();
        println!(
            "{}\t{:.3}\t{:.3}\t{:.3}\t{}\t{}",
            run.name,
            last.kl.mean,
            last.proxies
                .get(&run.proxy)
                .map(|m| m.mean)
                .unwrap_or(f64::NAN),
            peak,
            if final_gold.is_finite() {
                last.gold.to_string()
            } else {
                "-".into()
            },
            report::fit_text(&run.gold_fit)
        );
    }
    println!("\nlowest KL to a gold reward (method: KL at the first point reaching it):");
    for target in report.gold_targets() {
        let cheapest: Vec<String> = report
            .cheapest_to(target)
            .iter()
            .take(4)
            .map(|c| format!("{} {:.2}", c.name, c.kl))
            .collect();
        println!("  gold ≥ {target:.2}: {}", cheapest.join(", "));
    }
    println!("\nsamples (gold reward):");
    for (name, point) in report.final_points() {
        if let Some(e) = point.examples.first() {
            println!("  {name}: {}|{} ({:.2})", e.prompt, e.completion, e.gold);
        }
    }
    println!("\nwrote {} in {seconds:.0}s:", out.display());
    for p in paths {
        println!("  {}", p.display());
    }
}
