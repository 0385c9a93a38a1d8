//! Hugging Face model folders, in and out: `config.json`, safetensors (one file or shards),
//! `tokenizer.json`, `tokenizer_config.json` (special tokens, chat template),
//! `generation_config.json`.

pub mod config;
pub mod export;
pub mod names;
pub mod safetensors;

use std::path::Path;

use serde_json::Value;

pub use config::{Head, HfConfig};

use super::tokenizer::{ModelTokens, Tokenizer};
use crate::error::{read_file, Error, Result};
use crate::model::{HostTensor, LlamaConfig, NamedWeights};

/// A model folder read into memory.
#[derive(Debug, Clone)]
pub struct HfModel {
    pub config: LlamaConfig,
    pub head: Head,
    /// Under our names and layouts ([`names::import`]); a reward model's head is
    /// [`names::SCORE`].
    pub weights: NamedWeights,
    pub tokenizer: Tokenizer,
}

impl HfModel {
    /// Takes out the reward head of a sequence-classification checkpoint.
    pub fn take_score(&mut self) -> Result<HostTensor> {
        self.weights.take(names::SCORE, &[1, self.config.dim])
    }
}

/// Whether `path` is a folder to read as a Hugging Face model.
pub fn is_model_folder(path: &Path) -> bool {
    path.is_dir()
}

fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read_file(path)?)
        .map_err(|_| Error::format(path.display().to_string(), "not UTF-8"))
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = read_text(path)?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::format(path.display().to_string(), format!("not JSON: {e}")))
}

/// Reads the folder `dir`; `tokenizer` replaces its `tokenizer.json`.
pub fn load(dir: &Path, tokenizer: Option<&Path>) -> Result<HfModel> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(Error::format(
            dir.display().to_string(),
            "a model folder needs config.json (a Hugging Face model folder), and has none",
        ));
    }
    let parsed = config::parse(
        &read_text(&config_path)?,
        &config_path.display().to_string(),
    )?;
    let tokenizer = load_tokenizer(dir, tokenizer, &parsed)?;
    if tokenizer.vocab_size() > parsed.config.vocab_size {
        return Err(Error::format(
            config_path.display().to_string(),
            format!(
                "vocab_size is {} but the tokenizer has {} tokens",
                parsed.config.vocab_size,
                tokenizer.vocab_size()
            ),
        ));
    }
    let mut weights = NamedWeights::new(dir.display().to_string());
    for path in safetensors::weight_files(dir)? {
        let file = safetensors::MappedFile::open(&path)?;
        let mut file_weights = NamedWeights::new(path.display().to_string());
        file.for_each_tensor(|name, tensor| {
            names::import(&parsed.config, &name, tensor, &mut file_weights)
        })?;
        weights.tensors.append(&mut file_weights.tensors);
    }
    Ok(HfModel {
        config: parsed.config,
        head: parsed.head,
        weights,
        tokenizer,
    })
}

fn load_tokenizer(dir: &Path, explicit: Option<&Path>, parsed: &HfConfig) -> Result<Tokenizer> {
    let path = explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join("tokenizer.json"));
    if !path.is_file() {
        return Err(Error::format(
            dir.display().to_string(),
            "no tokenizer.json in the model folder: pass --tokenizer FILE",
        ));
    }
    let tokenizer = Tokenizer::from_hf_file(&path)?;
    let inner = tokenizer.hugging_face().expect("read as Hugging Face");
    let tokenizer_config_path = dir.join("tokenizer_config.json");
    let tokenizer_config = read_json(&tokenizer_config_path)?;
    let generation = read_json(&dir.join("generation_config.json"))?;
    let token_named = |field: &str| -> Option<u32> {
        let value = tokenizer_config.as_ref()?.get(field)?;
        // Older files write `{"content": "<s>", …}` where newer write "<s>".
        let text = value.as_str().or_else(|| value.get("content")?.as_str())?;
        inner.token_to_id(text)
    };
    // The BOS transformers feeds is the one the tokenizer's post-processor adds, if any.
    let added = inner
        .encode("", true)
        .map_err(|e| Error::format(path.display().to_string(), e.to_string()))?;
    let bos = added.get_ids().first().copied();
    let generation_eos = generation
        .as_ref()
        .and_then(|g| g.get("eos_token_id"))
        .and_then(|v| v.as_array().and_then(|a| a.first()).unwrap_or(v).as_u64())
        .map(|v| v as u32);
    let eos = token_named("eos_token")
        .or(generation_eos)
        .or(parsed.eos_token_id);
    let chat_template = chat_template(dir, tokenizer_config.as_ref(), &tokenizer_config_path)?;
    Ok(tokenizer.with_model_tokens(ModelTokens {
        bos,
        eos,
        chat_template,
    }))
}

/// `chat_template.jinja` (transformers ≥ 4.43 writes it apart), else `tokenizer_config.json`'s
/// `chat_template` (a string, or a list of named templates, of which `default` is taken).
fn chat_template(
    dir: &Path,
    tokenizer_config: Option<&Value>,
    source: &Path,
) -> Result<Option<String>> {
    let separate = dir.join("chat_template.jinja");
    if separate.is_file() {
        return read_text(&separate).map(Some);
    }
    let Some(value) = tokenizer_config.and_then(|c| c.get("chat_template")) else {
        return Ok(None);
    };
    if let Some(text) = value.as_str() {
        return Ok(Some(text.to_string()));
    }
    let named = value.as_array().and_then(|templates| {
        templates.iter().find_map(|t| {
            (t.get("name")?.as_str()? == "default").then(|| t.get("template")?.as_str())?
        })
    });
    match named {
        Some(text) => Ok(Some(text.to_string())),
        None => Err(Error::format(
            source.display().to_string(),
            "field `chat_template` is neither a string nor a list with a `default` template",
        )),
    }
}
