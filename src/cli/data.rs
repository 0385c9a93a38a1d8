//! `alignlab data`: gold-labelled preference files for the built-in world, sampled from a policy.

use std::path::PathBuf;

use crate::backend::Backend;
use crate::io::prefs::write_jsonl;
use crate::world::preferences;
use crate::{policy, prompts, Result};
use clap::{Args, ValueEnum};

use super::ModelArgs;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DataKind {
    /// {"prompt", "chosen", "rejected"}: two samples per prompt, the higher gold reward chosen.
    Pairs,
    /// {"prompt", "completions", "scores"}: k samples per prompt with their gold rewards.
    Rankings,
    /// {"prompt", "completion", "label"}: desirable when the gold reward is above zero.
    Unpaired,
    /// {"prompt", "completion", "scores": {"brevity", "positivity"}}.
    Ratings,
    /// {"prompt"}: the world's story openings, for online methods' `--prompts FILE` (no model
    /// is run).
    Prompts,
}

#[derive(Args, Clone)]
pub struct DataCommand {
    #[arg(long, value_enum)]
    pub kind: DataKind,
    /// The policy that writes the completions.
    #[command(flatten)]
    pub model: ModelArgs,
    /// World prompts to sample for (ties and repeats are dropped, so files can be shorter).
    #[arg(long, default_value_t = 2000)]
    pub prompts: usize,
    /// Samples per prompt for rankings.
    #[arg(long, default_value_t = 4)]
    pub k: usize,
    #[arg(long, default_value_t = 48)]
    pub max_tokens: usize,
    /// Seeds the prompts and the sampling; the held-out evaluation prompts use their own seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run<B: Backend>(command: DataCommand, device: &B::Device) -> Result<()> {
    if command.kind == DataKind::Prompts {
        let set = prompts::load("world", command.prompts, command.seed)?;
        let rows: Vec<serde_json::Value> = set
            .prompts
            .iter()
            .map(|p| serde_json::json!({ "prompt": p }))
            .collect();
        write_jsonl(&command.out, &rows)?;
        println!("wrote {} prompts to {}", rows.len(), command.out.display());
        return Ok(());
    }
    let (model, tokenizer) = policy::load::<B>(
        &command.model.model,
        command.model.tokenizer.as_deref(),
        device,
    )?;
    let k = match command.kind {
        DataKind::Rankings => command.k.max(2),
        _ => 2,
    };
    let scored = pollster::block_on(preferences::sample_scored(
        &model,
        &tokenizer,
        command.prompts,
        k,
        command.seed,
        command.max_tokens,
    ))?;
    let written = match command.kind {
        DataKind::Pairs => {
            let rows = preferences::pairs(&scored);
            write_jsonl(&command.out, &rows)?;
            rows.len()
        }
        DataKind::Rankings => {
            let rows = preferences::rankings(&scored, k);
            write_jsonl(&command.out, &rows)?;
            rows.len()
        }
        DataKind::Unpaired => {
            let rows = preferences::unpaired(&scored);
            write_jsonl(&command.out, &rows)?;
            rows.len()
        }
        DataKind::Ratings => {
            let rows = preferences::ratings(&scored);
            write_jsonl(&command.out, &rows)?;
            rows.len()
        }
        DataKind::Prompts => unreachable!("written above without a model"),
    };
    println!(
        "wrote {written} {} rows from {} prompts to {}",
        command
            .kind
            .to_possible_value()
            .expect("every kind has a name")
            .get_name(),
        command.prompts,
        command.out.display()
    );
    Ok(())
}
