//! Everything that reads or writes bytes: model formats, tokenizers, checkpoints.

pub mod bytes;
pub mod chat;
pub mod checkpoint;
pub mod gguf;
pub mod gguf_quant;
pub mod gguf_write;
#[cfg(not(target_arch = "wasm32"))]
pub mod hf;
pub mod jsonl;
pub mod llama2c;
pub mod prefs;
pub mod record;
pub mod tokenizer;

use std::path::{Path, PathBuf};

use crate::backend::Backend;

use crate::error::{read_file, Error, Result};
use crate::model::{Llama, LlamaConfig, NamedWeights};
pub use tokenizer::{ModelTokens, Tokenizer};

/// alignlab's folder in the user's cache: `$XDG_CACHE_HOME/alignlab`, else `~/.cache/alignlab`.
#[cfg(not(target_arch = "wasm32"))]
pub fn user_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map(|base| base.join("alignlab"))
}

/// A policy read from a file: what to build the model from, and how to tokenize for it.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub config: LlamaConfig,
    pub weights: NamedWeights,
    pub tokenizer: Tokenizer,
}

impl Checkpoint {
    pub fn into_model<B: Backend>(self, device: &B::Device) -> Result<(Llama<B>, Tokenizer)> {
        let model = Llama::from_weights(&self.config, self.weights, device)?;
        Ok((model, self.tokenizer))
    }

    /// Reads GGUF, the project's safetensors checkpoint, or a llama2.c `.bin` (whose tokenizer is
    /// `tokenizer_bytes`), telling them apart by their first bytes.
    pub fn from_bytes(
        bytes: &[u8],
        source_name: &str,
        tokenizer_bytes: Option<(&[u8], &str)>,
    ) -> Result<Self> {
        if bytes.starts_with(b"GGUF") {
            let gguf = gguf::Gguf::parse(bytes, source_name)?;
            let config = gguf.llama_config()?;
            let tokenizer = Tokenizer::SentencePiece(gguf.sentencepiece()?);
            let weights = gguf.llama_weights(&config)?;
            return Self::checked(config, weights, tokenizer, source_name);
        }
        if checkpoint::is_safetensors(bytes) {
            if checkpoint::metadata_entry(bytes, "reward").is_some() {
                return Err(Error::format(
                    source_name,
                    "this is a reward model, not a policy: pass it as --reward-model",
                ));
            }
            let (config, weights, tokenizer) = checkpoint::from_bytes(bytes, source_name)?;
            return Self::checked(config, weights, tokenizer, source_name);
        }
        // Neither magic matched: the only format left is llama2.c's, which has none. Say so, so a
        // stray file gets "not a model" rather than only a puzzling header complaint.
        let (config, weights) = llama2c::parse(bytes, source_name).map_err(|e| match e {
            Error::Format {
                source_name,
                message,
            } => Error::Format {
                source_name,
                message: format!("not GGUF or alignlab safetensors; read as llama2.c: {message}"),
            },
            other => other,
        })?;
        let Some((tok_bytes, tok_name)) = tokenizer_bytes else {
            return Err(Error::format(
                source_name,
                "a llama2.c checkpoint needs its tokenizer.bin (none was found or given)",
            ));
        };
        let tokenizer = Tokenizer::SentencePiece(tokenizer::SentencePieceBpe::from_llama2c_bytes(
            tok_bytes,
            config.vocab_size,
            tok_name,
        )?);
        Self::checked(config, weights, tokenizer, source_name)
    }

    fn checked(
        config: LlamaConfig,
        weights: NamedWeights,
        tokenizer: Tokenizer,
        source_name: &str,
    ) -> Result<Self> {
        if tokenizer.vocab_size() != config.vocab_size {
            return Err(Error::format(
                source_name,
                format!(
                    "tokenizer has {} tokens but the model's vocabulary is {}",
                    tokenizer.vocab_size(),
                    config.vocab_size
                ),
            ));
        }
        Ok(Self {
            config,
            weights,
            tokenizer,
        })
    }

    /// Loads `path`; for a llama2.c `.bin`, the tokenizer is `tokenizer_path` or, if not given,
    /// `tokenizer.bin` or `tok<vocab>.bin` beside it.
    pub fn load(path: &Path, tokenizer_path: Option<&Path>) -> Result<Self> {
        #[cfg(not(target_arch = "wasm32"))]
        if hf::is_model_folder(path) {
            return Self::from_hf_folder(path, tokenizer_path);
        }
        let bytes = read_file(path)?;
        let name = path.display().to_string();
        let needs_tokenizer = !bytes.starts_with(b"GGUF") && !checkpoint::is_safetensors(&bytes);
        if !needs_tokenizer {
            return Self::from_bytes(&bytes, &name, None);
        }
        let tokenizer_path = match tokenizer_path {
            Some(p) => Some(p.to_path_buf()),
            None => llama2c_tokenizer_beside(path, &bytes),
        };
        match tokenizer_path {
            Some(tok_path) => {
                let tok_bytes = read_file(&tok_path)?;
                let tok_name = tok_path.display().to_string();
                Self::from_bytes(&bytes, &name, Some((&tok_bytes, &tok_name)))
            }
            None => Self::from_bytes(&bytes, &name, None),
        }
    }
}

impl Checkpoint {
    /// A Hugging Face causal-LM folder (`tokenizer_path` replaces its `tokenizer.json`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_hf_folder(dir: &Path, tokenizer_path: Option<&Path>) -> Result<Self> {
        let model = hf::load(dir, tokenizer_path)?;
        if model.head != hf::Head::CausalLm {
            return Err(Error::format(
                dir.display().to_string(),
                "this is a reward model (a sequence-classification checkpoint): pass it as --reward rm:DIR",
            ));
        }
        Ok(Self {
            config: model.config,
            weights: model.weights,
            tokenizer: model.tokenizer,
        })
    }
}

fn llama2c_tokenizer_beside(path: &Path, bytes: &[u8]) -> Option<PathBuf> {
    let dir = path.parent()?;
    let vocab = bytes
        .get(20..24)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]).unsigned_abs());
    let mut candidates = vec![dir.join("tokenizer.bin")];
    if let Some(vocab) = vocab {
        candidates.push(dir.join(format!("tok{vocab}.bin")));
    }
    candidates.into_iter().find(|p| p.is_file())
}
