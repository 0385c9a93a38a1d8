//! `config.json` of a Hugging Face model folder → [`LlamaConfig`], for the families the decoder
//! has switches for. Both spellings transformers writes are read: RoPE settings at the top level
//! (4.x, most of the Hub) or under `rope_parameters` (5.x).

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::model::{Architecture, Family, LlamaConfig, RopeScaling};

pub use crate::model::MAX_CONTEXT;

/// What the output of the network is: next-token logits, or a score per sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    CausalLm,
    /// `*ForSequenceClassification` with one label: a reward model (`score.weight`).
    SequenceScore,
}

/// The architectures read, by `architectures[0]`.
const SUPPORTED: [(&str, Family, Head); 10] = [
    ("LlamaForCausalLM", Family::Llama, Head::CausalLm),
    ("MistralForCausalLM", Family::Mistral, Head::CausalLm),
    ("Qwen2ForCausalLM", Family::Qwen2, Head::CausalLm),
    ("Qwen3ForCausalLM", Family::Qwen3, Head::CausalLm),
    ("GPT2LMHeadModel", Family::Gpt2, Head::CausalLm),
    (
        "LlamaForSequenceClassification",
        Family::Llama,
        Head::SequenceScore,
    ),
    (
        "MistralForSequenceClassification",
        Family::Mistral,
        Head::SequenceScore,
    ),
    (
        "Qwen2ForSequenceClassification",
        Family::Qwen2,
        Head::SequenceScore,
    ),
    (
        "Qwen3ForSequenceClassification",
        Family::Qwen3,
        Head::SequenceScore,
    ),
    (
        "GPT2ForSequenceClassification",
        Family::Gpt2,
        Head::SequenceScore,
    ),
];

pub fn architecture_name(family: Family, head: Head) -> &'static str {
    SUPPORTED
        .iter()
        .find(|(_, f, h)| *f == family && *h == head)
        .map(|(name, _, _)| *name)
        .expect("every family has both heads")
}

pub fn model_type(family: Family) -> &'static str {
    match family {
        Family::Llama => "llama",
        Family::Mistral => "mistral",
        Family::Qwen2 => "qwen2",
        Family::Qwen3 => "qwen3",
        Family::Gpt2 => "gpt2",
    }
}

#[derive(Debug, Clone)]
pub struct HfConfig {
    pub config: LlamaConfig,
    pub head: Head,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
}

/// Field access that names `config.json` and the field in every error.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    source: &'a str,
}

impl Fields<'_> {
    fn error(&self, message: String) -> Error {
        Error::format(self.source, message)
    }

    /// The first of `names` present (families spell the same setting differently).
    fn value<'n>(&self, names: &[&'n str]) -> Option<(&'n str, &Value)> {
        names.iter().find_map(|name| {
            self.map
                .get(*name)
                .filter(|v| !v.is_null())
                .map(|v| (*name, v))
        })
    }

    fn opt_usize(&self, names: &[&str]) -> Result<Option<usize>> {
        match self.value(names) {
            None => Ok(None),
            Some((name, value)) => value
                .as_u64()
                .map(|v| Some(v as usize))
                .ok_or_else(|| self.error(format!("field `{name}` = {value} is not a count"))),
        }
    }

    fn usize(&self, names: &[&str]) -> Result<usize> {
        self.opt_usize(names)?
            .ok_or_else(|| self.error(format!("field `{}` is missing", names[0])))
    }

    fn opt_f64(&self, names: &[&str]) -> Result<Option<f64>> {
        match self.value(names) {
            None => Ok(None),
            Some((name, value)) => value
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.error(format!("field `{name}` = {value} is not a number"))),
        }
    }

    fn bool(&self, name: &str, default: bool) -> Result<bool> {
        match self.value(&[name]) {
            None => Ok(default),
            Some((_, value)) => value
                .as_bool()
                .ok_or_else(|| self.error(format!("field `{name}` = {value} is not true/false"))),
        }
    }

    fn str(&self, name: &str) -> Option<&str> {
        self.value(&[name]).and_then(|(_, v)| v.as_str())
    }

    /// A token id, or the first of a list of them (`eos_token_id: [1, 2]`).
    fn token_id(&self, name: &str) -> Option<u32> {
        let (_, value) = self.value(&[name])?;
        let first = value.as_array().and_then(|a| a.first()).unwrap_or(value);
        first.as_u64().map(|v| v as u32)
    }
}

/// Parses `config.json`'s text; `source` names it in errors.
pub fn parse(json: &str, source: &str) -> Result<HfConfig> {
    let value: Value =
        serde_json::from_str(json).map_err(|e| Error::format(source, format!("not JSON: {e}")))?;
    let map = value
        .as_object()
        .ok_or_else(|| Error::format(source, "not a JSON object"))?;
    let fields = Fields { map, source };
    let (family, head) = architecture(&fields)?;
    let gpt2 = family.is_gpt2();
    let activation = fields
        .str(if gpt2 {
            "activation_function"
        } else {
            "hidden_act"
        })
        .unwrap_or(if gpt2 { "gelu_new" } else { "silu" });
    let expected = if gpt2 {
        &["gelu_new", "gelu_pytorch_tanh"][..]
    } else {
        &["silu"][..]
    };
    if !expected.contains(&activation) {
        return Err(fields.error(format!(
            "activation `{activation}` is not supported for {}; supported: {}",
            model_type(family),
            expected.join(", ")
        )));
    }

    let dim = fields.usize(&["hidden_size", "n_embd"])?;
    let n_heads = fields.usize(&["num_attention_heads", "n_head"])?;
    let n_kv_heads = match gpt2 {
        true => n_heads,
        false => fields
            .opt_usize(&["num_key_value_heads"])?
            .unwrap_or(n_heads),
    };
    let hidden_dim = match gpt2 {
        true => fields.opt_usize(&["n_inner"])?.unwrap_or(4 * dim),
        false => fields.usize(&["intermediate_size"])?,
    };
    let positions = fields.usize(&["max_position_embeddings", "n_positions"])?;
    // Learned positions are weights: the table is the checkpoint's own length.
    let mut max_seq_len = if gpt2 {
        positions
    } else {
        positions.min(MAX_CONTEXT)
    };
    if family == Family::Mistral {
        if let Some(window) = fields.opt_usize(&["sliding_window"])? {
            // No sliding attention yet: sequences are held within the window, where full
            // attention is the same computation.
            max_seq_len = max_seq_len.min(window);
        }
    }
    let rope_parameters = map.get("rope_parameters").and_then(Value::as_object);
    let rope_theta = match rope_parameters {
        Some(parameters) => Fields {
            map: parameters,
            source,
        }
        .opt_f64(&["rope_theta"])?,
        None => None,
    }
    .or(fields.opt_f64(&["rope_theta"])?)
    .unwrap_or(10_000.0);
    let attention_bias = fields.bool("attention_bias", false)?;
    let arch = Architecture {
        family,
        // Written out only where it departs from dim / heads, so configs compare equal.
        head_dim: fields
            .opt_usize(&["head_dim"])?
            .filter(|&width| width * n_heads != dim),
        qkv_bias: gpt2 || family == Family::Qwen2 || attention_bias,
        out_bias: gpt2 || attention_bias,
        mlp_bias: gpt2 || fields.bool("mlp_bias", false)?,
        qk_norm: family == Family::Qwen3,
        // transformers' default: tied for GPT-2, separate for the others.
        tied_embeddings: fields.bool("tie_word_embeddings", gpt2)?,
        rope_scaling: rope_scaling(&fields, rope_parameters)?,
        stated_context: (positions > max_seq_len && !gpt2).then_some(positions),
    };
    let config = LlamaConfig {
        vocab_size: fields.usize(&["vocab_size"])?,
        dim,
        n_layers: fields.usize(&["num_hidden_layers", "n_layer"])?,
        n_heads,
        n_kv_heads,
        hidden_dim,
        max_seq_len,
        norm_eps: fields
            .opt_f64(&["rms_norm_eps", "layer_norm_epsilon"])?
            .unwrap_or(1e-5),
        rope_theta,
        arch,
    };
    config.validate(source)?;
    if head == Head::SequenceScore {
        let labels = fields.opt_usize(&["num_labels"])?.or_else(|| {
            map.get("id2label")
                .and_then(Value::as_object)
                .map(|labels| labels.len())
        });
        if labels.unwrap_or(1) != 1 {
            return Err(fields.error(format!(
                "field `num_labels` is {}; a reward model has one",
                labels.unwrap_or(1)
            )));
        }
    }
    Ok(HfConfig {
        config,
        head,
        bos_token_id: fields.token_id("bos_token_id"),
        eos_token_id: fields.token_id("eos_token_id"),
    })
}

fn architecture(fields: &Fields) -> Result<(Family, Head)> {
    let named = fields
        .value(&["architectures"])
        .and_then(|(_, v)| v.as_array())
        .and_then(|a| a.first())
        .and_then(Value::as_str);
    let supported = || {
        SUPPORTED
            .iter()
            .map(|(name, _, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match named {
        Some(name) => SUPPORTED
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|&(_, family, head)| (family, head))
            .ok_or_else(|| {
                fields.error(format!(
                    "field `architectures` names {name}, which alignlab does not read; supported: {}",
                    supported()
                ))
            }),
        // No `architectures`: a bare `model_type` means the causal LM.
        None => {
            let model_type_name = fields.str("model_type").unwrap_or("(none)");
            SUPPORTED
                .iter()
                .find(|(_, f, h)| *h == Head::CausalLm && model_type(*f) == model_type_name)
                .map(|&(_, family, head)| (family, head))
                .ok_or_else(|| {
                    fields.error(format!(
                        "field `model_type` is {model_type_name} and there is no `architectures`; supported: {}",
                        supported()
                    ))
                })
        }
    }
}

/// `rope_scaling` (4.x) or the scaling inside `rope_parameters` (5.x).
fn rope_scaling(
    fields: &Fields,
    rope_parameters: Option<&Map<String, Value>>,
) -> Result<Option<RopeScaling>> {
    let (field, scaling) = match (fields.map.get("rope_scaling"), rope_parameters) {
        (Some(Value::Object(scaling)), _) => ("rope_scaling", scaling),
        (_, Some(parameters)) => ("rope_parameters", parameters),
        _ => return Ok(None),
    };
    let inner = Fields {
        map: scaling,
        source: fields.source,
    };
    let kind = inner
        .str("rope_type")
        .or(inner.str("type"))
        .unwrap_or("default");
    let number = |name: &str| -> Result<f64> {
        inner.opt_f64(&[name])?.ok_or_else(|| {
            fields.error(format!(
                "field `{field}.{name}` is missing for `{kind}` scaling"
            ))
        })
    };
    match kind {
        "default" => Ok(None),
        "linear" => Ok(Some(RopeScaling::Linear {
            factor: number("factor")?,
        })),
        "llama3" => Ok(Some(RopeScaling::Llama3 {
            factor: number("factor")?,
            low_freq_factor: number("low_freq_factor")?,
            high_freq_factor: number("high_freq_factor")?,
            original_max_position_embeddings: number("original_max_position_embeddings")?,
        })),
        other => Err(fields.error(format!(
            "field `{field}` has RoPE type `{other}`; supported: default, linear, llama3"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QWEN3: &str = r#"{"architectures": ["Qwen3ForCausalLM"], "hidden_size": 64,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
        "intermediate_size": 96, "max_position_embeddings": 40960, "num_hidden_layers": 2,
        "vocab_size": 100, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "tie_word_embeddings": true, "eos_token_id": [7, 8]}"#;

    #[test]
    fn qwen3_gets_qk_norm_an_explicit_head_width_and_a_capped_context() {
        let parsed = parse(QWEN3, "config.json").unwrap();
        let config = parsed.config;
        assert_eq!(config.head_dim(), 32);
        assert_eq!(config.q_dim(), 128);
        assert!(config.arch.qk_norm && config.arch.tied_embeddings && !config.arch.qkv_bias);
        assert_eq!(config.max_seq_len, MAX_CONTEXT);
        assert_eq!(config.arch.stated_context, Some(40960));
        assert_eq!(config.rope_theta, 1e6);
        assert_eq!(parsed.eos_token_id, Some(7));
    }

    #[test]
    fn rope_theta_is_read_from_either_place_and_llama3_scaling_is_parsed() {
        let json = r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
            "num_attention_heads": 4, "intermediate_size": 96, "max_position_embeddings": 512,
            "num_hidden_layers": 1, "vocab_size": 100,
            "rope_parameters": {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0,
              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 8192}}"#;
        let config = parse(json, "config.json").unwrap().config;
        assert_eq!(config.rope_theta, 5e5);
        let scaling = config.arch.rope_scaling.unwrap();
        // Short wavelengths kept, long ones divided by the factor (Llama 3.1's rule).
        assert_eq!(scaling.apply(1.0), 1.0);
        assert!((scaling.apply(1e-4) - 1e-4 / 8.0).abs() < 1e-12);
    }

    #[test]
    fn unknown_architectures_and_bad_fields_are_named() {
        let message = parse(
            r#"{"architectures": ["FalconForCausalLM"]}"#,
            "m/config.json",
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.contains("m/config.json")
                && message.contains("FalconForCausalLM")
                && message.contains("Qwen3ForCausalLM"),
            "{message}"
        );
        let message = parse(
            &QWEN3.replace("\"hidden_size\": 64", "\"hidden_size\": \"64\""),
            "c.json",
        )
        .unwrap_err()
        .to_string();
        assert!(message.contains("hidden_size"), "{message}");
        let message = parse(
            &QWEN3.replace(
                "\"rope_theta\": 1000000.0",
                "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4}",
            ),
            "c.json",
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.contains("yarn") && message.contains("rope_scaling"),
            "{message}"
        );
    }
}
