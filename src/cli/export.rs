//! `alignlab export`: a model (or reward model) into a format other tools load.

use std::path::PathBuf;

use crate::backend::Backend;
use crate::io::checkpoint;
use crate::io::gguf_write::{self, GgufStore};
use crate::io::hf::export::StoreAs;
use crate::reward::LearnedReward;
use crate::{policy, Error, Result};
use clap::{Args, ValueEnum};

use super::ModelArgs;

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// A Hugging Face folder: `transformers` loads it with `from_pretrained`.
    Hf,
    /// One GGUF file (llama.cpp): Llama, Qwen2, Qwen3 models with a SentencePiece vocabulary.
    Gguf,
}

#[derive(Args)]
pub struct ExportCommand {
    /// The policy as for every command, or an alignlab reward model (`train --method rm`),
    /// which exports as a sequence-classification model.
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, value_enum, default_value_t = ExportFormat::Hf)]
    pub format: ExportFormat,
    /// The folder (hf) or file (gguf) to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Type of the written weights: f32, f16 or bf16 (hf); f32, f16 or q8_0 (gguf).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

pub fn run<B: Backend>(command: &ExportCommand, device: &B::Device) -> Result<()> {
    if let ExportFormat::Gguf = command.format {
        return export_gguf(command);
    }
    let dtype: StoreAs = command
        .dtype
        .parse()
        .map_err(|e| Error::Input(format!("--dtype: {e}")))?;
    let path = std::path::Path::new(&command.model.model);
    let is_reward_model = path.is_file()
        && checkpoint::metadata_entry(&crate::error::read_file(path)?, "reward").is_some();
    if is_reward_model {
        let (reward, tokenizer) = LearnedReward::<B>::load(path, device)?;
        let bias = pollster::block_on(reward.export_hf(&tokenizer, &command.out, dtype))?;
        if bias != 0.0 {
            println!(
                "note: the reward head's bias {bias:.6} is not in the export (transformers' score \
                 head has none); rewards shift by it, preferences do not change"
            );
        }
    } else {
        let checkpoint =
            policy::load_checkpoint(&command.model.model, command.model.tokenizer.as_deref())?;
        let export = crate::io::hf::export::Export {
            config: &checkpoint.config,
            weights: checkpoint.weights,
            tokenizer: &checkpoint.tokenizer,
            head: crate::io::hf::Head::CausalLm,
            dtype,
        };
        crate::io::hf::export::write(export, &command.out)?;
    }
    println!("wrote {}", command.out.display());
    Ok(())
}

fn export_gguf(command: &ExportCommand) -> Result<()> {
    let store: GgufStore = command
        .dtype
        .parse()
        .map_err(|e| Error::Input(format!("--dtype: {e}")))?;
    let checkpoint =
        policy::load_checkpoint(&command.model.model, command.model.tokenizer.as_deref())?;
    let vocabulary = checkpoint.tokenizer.sentencepiece().map_err(|e| {
        Error::Input(format!(
            "{}: GGUF export writes llama.cpp's SentencePiece vocabulary ({e}); export this model with --format hf",
            command.model.model
        ))
    })?;
    let bytes = gguf_write::to_bytes(&checkpoint.config, &checkpoint.weights, &vocabulary, store)?;
    let partial = command.out.with_extension("partial");
    std::fs::write(&partial, bytes).map_err(|e| Error::io(&partial, e))?;
    std::fs::rename(&partial, &command.out).map_err(|e| Error::io(&command.out, e))?;
    println!("wrote {}", command.out.display());
    Ok(())
}
