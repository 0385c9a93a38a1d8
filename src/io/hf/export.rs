//! Writes a model as a Hugging Face folder that `transformers` loads with `from_pretrained`:
//! `config.json`, `model.safetensors`, `tokenizer.json`, `tokenizer_config.json`,
//! `generation_config.json`.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use serde_json::{json, Map, Value};

use super::config::{architecture_name, model_type, Head};
use super::names;
use crate::error::{Error, Result};
use crate::io::Tokenizer;
use crate::model::{LlamaConfig, NamedWeights, RopeScaling};

/// The float type of the written tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreAs {
    #[default]
    F32,
    F16,
    BF16,
}

impl std::str::FromStr for StoreAs {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" | "float32" => Ok(StoreAs::F32),
            "f16" | "float16" => Ok(StoreAs::F16),
            "bf16" | "bfloat16" => Ok(StoreAs::BF16),
            other => Err(format!("unknown dtype `{other}`; choose f32, f16 or bf16")),
        }
    }
}

impl StoreAs {
    fn torch_name(self) -> &'static str {
        match self {
            StoreAs::F32 => "float32",
            StoreAs::F16 => "float16",
            StoreAs::BF16 => "bfloat16",
        }
    }

    fn encode(self, values: &[f32]) -> (Dtype, Vec<u8>) {
        match self {
            StoreAs::F32 => (
                Dtype::F32,
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            StoreAs::F16 => (
                Dtype::F16,
                values
                    .iter()
                    .flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes())
                    .collect(),
            ),
            StoreAs::BF16 => (
                Dtype::BF16,
                values
                    .iter()
                    .flat_map(|&v| half::bf16::from_f32(v).to_bits().to_le_bytes())
                    .collect(),
            ),
        }
    }
}

/// What to write: a model's config and weights (our names), its tokenizer, and its head.
pub struct Export<'a> {
    pub config: &'a LlamaConfig,
    pub weights: NamedWeights,
    pub tokenizer: &'a Tokenizer,
    pub head: Head,
    pub dtype: StoreAs,
}

/// Writes the folder `dir` (created if needed). Files are written beside and renamed into
/// place, so an interrupted export leaves any earlier file whole.
pub fn write(export: Export, dir: &Path) -> Result<()> {
    let Some(hf_tokenizer) = export.tokenizer.hugging_face() else {
        return Err(Error::Input(format!(
            "{}: the model's tokenizer is llama2.c's SentencePiece, which transformers cannot \
             load as tokenizer.json; export a model that came with a Hugging Face tokenizer",
            dir.display()
        )));
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let config = export.config;
    let tokens = export.tokenizer.model_tokens().cloned().unwrap_or_default();
    let bos = tokens.bos.or(export.tokenizer.bos_id());
    let eos = tokens.eos.or(export.tokenizer.eos_id());
    let token_text = |id: Option<u32>| id.and_then(|id| hf_tokenizer.id_to_token(id));

    let weights = names::export(config, export.weights);
    let mut config_json = config_json(config, export.head, export.dtype);
    let ids = config_json.as_object_mut().expect("an object");
    ids.insert("bos_token_id".into(), json!(bos));
    ids.insert("eos_token_id".into(), json!(eos));
    if export.head == Head::SequenceScore {
        // transformers scores the last token that is not padding.
        ids.insert("pad_token_id".into(), json!(eos.or(bos).unwrap_or(0)));
    }
    write_file(dir, "config.json", pretty(&config_json))?;
    write_file(
        dir,
        "model.safetensors",
        safetensors_bytes(&weights, export.dtype)?,
    )?;
    let tokenizer_json = hf_tokenizer
        .to_string(true)
        .map_err(|e| Error::Input(format!("could not serialise the tokenizer: {e}")))?;
    write_file(dir, "tokenizer.json", tokenizer_json.into_bytes())?;
    let mut tokenizer_config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": token_text(bos),
        "eos_token": token_text(eos),
        "model_max_length": config.max_seq_len,
    });
    if let Some(template) = &tokens.chat_template {
        tokenizer_config["chat_template"] = json!(template);
    }
    write_file(dir, "tokenizer_config.json", pretty(&tokenizer_config))?;
    let generation = json!({"bos_token_id": bos, "eos_token_id": eos});
    write_file(dir, "generation_config.json", pretty(&generation))
}

fn pretty(value: &Value) -> Vec<u8> {
    let mut text = serde_json::to_string_pretty(value).expect("JSON serialises");
    text.push('\n');
    text.into_bytes()
}

fn write_file(dir: &Path, name: &str, bytes: Vec<u8>) -> Result<()> {
    let path = dir.join(name);
    let partial = dir.join(format!("{name}.partial"));
    std::fs::write(&partial, bytes).map_err(|e| Error::io(&partial, e))?;
    std::fs::rename(&partial, &path).map_err(|e| Error::io(&path, e))
}

fn safetensors_bytes(weights: &NamedWeights, dtype: StoreAs) -> Result<Vec<u8>> {
    let encoded: Vec<(&str, Vec<usize>, Dtype, Vec<u8>)> = weights
        .tensors
        .iter()
        .map(|(name, tensor)| {
            let (dtype, bytes) = dtype.encode(&tensor.data);
            (name.as_str(), tensor.shape.clone(), dtype, bytes)
        })
        .collect();
    let views = encoded.iter().map(|(name, shape, dtype, bytes)| {
        let view = TensorView::new(*dtype, shape.clone(), bytes).expect("shape matches data");
        (*name, view)
    });
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::Input(format!("could not serialise the weights: {e}")))
}

/// `config.json` in transformers 4.x spelling (RoPE at the top level), which 5.x reads too.
fn config_json(config: &LlamaConfig, head: Head, dtype: StoreAs) -> Value {
    let arch = &config.arch;
    let family = arch.family;
    let mut fields = Map::new();
    let mut set = |key: &str, value: Value| {
        fields.insert(key.to_string(), value);
    };
    set("architectures", json!([architecture_name(family, head)]));
    set("model_type", json!(model_type(family)));
    set("vocab_size", json!(config.vocab_size));
    set("torch_dtype", json!(dtype.torch_name()));
    set("tie_word_embeddings", json!(arch.tied_embeddings));
    if head == Head::SequenceScore {
        set("num_labels", json!(1));
    }
    if family.is_gpt2() {
        set("n_embd", json!(config.dim));
        set("n_head", json!(config.n_heads));
        set("n_layer", json!(config.n_layers));
        set("n_inner", json!(config.hidden_dim));
        set("n_positions", json!(config.max_seq_len));
        set("n_ctx", json!(config.max_seq_len));
        set("layer_norm_epsilon", json!(config.norm_eps));
        set("activation_function", json!("gelu_new"));
        return Value::Object(fields);
    }
    set("hidden_size", json!(config.dim));
    set("intermediate_size", json!(config.hidden_dim));
    set("num_attention_heads", json!(config.n_heads));
    set("num_key_value_heads", json!(config.n_kv_heads));
    set("num_hidden_layers", json!(config.n_layers));
    set("head_dim", json!(config.head_dim()));
    set(
        "max_position_embeddings",
        json!(arch.stated_context.unwrap_or(config.max_seq_len)),
    );
    set("rms_norm_eps", json!(config.norm_eps));
    set("rope_theta", json!(config.rope_theta));
    set("hidden_act", json!("silu"));
    if family == crate::model::Family::Llama || family == crate::model::Family::Mistral {
        set("attention_bias", json!(arch.qkv_bias));
        set("mlp_bias", json!(arch.mlp_bias));
    }
    if let Some(scaling) = &arch.rope_scaling {
        let value = match scaling {
            RopeScaling::Linear { factor } => json!({"rope_type": "linear", "factor": factor}),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => json!({
                "rope_type": "llama3",
                "factor": factor,
                "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings,
            }),
        };
        set("rope_scaling", value);
    }
    Value::Object(fields)
}
