//! Hugging Face tensor names and layouts ↔ the model's named weights.
//!
//! Llama-family checkpoints differ from ours in one layout: transformers rotates the two halves
//! of each query/key head (`rotate_half`), llama.cpp and we rotate interleaved pairs. Attention
//! scores are the same when queries and keys are permuted alike, so the q/k rows (and their
//! biases and per-head norms) are permuted on the way in and back on the way out, as llama.cpp's
//! converter does. GPT-2 keeps its projections in `Conv1D` ([in, out]) with q, k and v in one.

use crate::error::{Error, Result};
use crate::model::weights::names;
use crate::model::weights::{names::is_rotated, permute_heads, RopeOrder};
use crate::model::{HostTensor, LlamaConfig, NamedWeights};

/// The reward head of `*ForSequenceClassification` checkpoints, [1, dim].
pub const SCORE: &str = "score.weight";

/// Buffers some checkpoints carry that are not weights.
fn is_buffer(name: &str) -> bool {
    let gpt2_causal_mask = name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias");
    name.ends_with("rotary_emb.inv_freq") || gpt2_causal_mask
}

/// Puts one tensor of a Hugging Face checkpoint into `weights` under our names and layout.
/// `score` receives a reward head. Unknown names are an error naming the tensor.
pub fn import(
    config: &LlamaConfig,
    name: &str,
    tensor: HostTensor,
    weights: &mut NamedWeights,
) -> Result<()> {
    if is_buffer(name) {
        return Ok(());
    }
    if name == SCORE {
        weights.insert(SCORE, tensor);
        return Ok(());
    }
    if config.arch.family.is_gpt2() {
        return import_gpt2(config, name, tensor, weights);
    }
    let known = name == names::EMBED
        || name == names::FINAL_NORM
        || name == names::LM_HEAD
        || name.starts_with("model.layers.");
    if !known {
        return Err(unknown(weights, name));
    }
    let tensor = match is_rotated(name) {
        true => permute_heads(tensor, config.head_dim(), RopeOrder::ToInterleaved),
        false => tensor,
    };
    weights.insert(name, tensor);
    Ok(())
}

fn unknown(weights: &NamedWeights, name: &str) -> Error {
    Error::format(
        &weights.source_name,
        format!("tensor `{name}` is not part of this architecture"),
    )
}

fn import_gpt2(
    config: &LlamaConfig,
    name: &str,
    tensor: HostTensor,
    weights: &mut NamedWeights,
) -> Result<()> {
    let bare = name.strip_prefix("transformer.").unwrap_or(name);
    let top = match bare {
        "wte.weight" => Some(names::EMBED.to_string()),
        "wpe.weight" => Some(names::POSITIONS.to_string()),
        "ln_f.weight" => Some(names::FINAL_NORM.to_string()),
        "ln_f.bias" => Some(names::bias_of(names::FINAL_NORM)),
        // The head is the embedding; a copy of it is not a separate weight.
        "lm_head.weight" => return Ok(()),
        _ => None,
    };
    if let Some(ours) = top {
        weights.insert(ours, tensor);
        return Ok(());
    }
    let Some((layer, part)) = bare
        .strip_prefix("h.")
        .and_then(|rest| rest.split_once('.'))
        .and_then(|(layer, part)| Some((layer.parse::<usize>().ok()?, part)))
    else {
        return Err(unknown(weights, name));
    };
    let ours = |suffix: &str| names::layer(layer, suffix);
    let is_bias = part.ends_with(".bias");
    let insert = |weights: &mut NamedWeights, suffix: &str, tensor: HostTensor| {
        let name = ours(suffix);
        match is_bias {
            true => weights.insert(names::bias_of(&name), tensor),
            false => weights.insert(name, tensor),
        }
    };
    // Conv1D stores [in, out]; ours is [out, in].
    let as_rows = |tensor: HostTensor| match is_bias {
        true => tensor,
        false if tensor.shape.len() == 2 => tensor.transposed(),
        false => tensor,
    };
    match part.rsplit_once('.').map(|(module, _)| module) {
        Some("ln_1") => insert(weights, names::ATTN_NORM, tensor),
        Some("ln_2") => insert(weights, names::MLP_NORM, tensor),
        Some("attn.c_proj") => insert(weights, names::O, as_rows(tensor)),
        Some("mlp.c_fc") => insert(weights, names::UP, as_rows(tensor)),
        Some("mlp.c_proj") => insert(weights, names::DOWN, as_rows(tensor)),
        Some("attn.c_attn") => {
            let fused = as_rows(tensor);
            let dim = config.dim;
            if fused.shape[0] != 3 * dim {
                return Err(Error::format(
                    &weights.source_name,
                    format!(
                        "tensor `{name}` has shape {:?}, expected 3·{dim} outputs",
                        fused.shape
                    ),
                ));
            }
            for (index, suffix) in [names::Q, names::K, names::V].into_iter().enumerate() {
                insert(weights, suffix, fused.rows(index * dim, dim));
            }
        }
        _ => return Err(unknown(weights, name)),
    }
    Ok(())
}

/// Our named weights → Hugging Face names and layouts for `config`'s family.
pub fn export(config: &LlamaConfig, weights: NamedWeights) -> NamedWeights {
    let mut out = NamedWeights::new(weights.source_name.clone());
    if config.arch.family.is_gpt2() {
        export_gpt2(config, weights, &mut out);
        return out;
    }
    for (name, tensor) in weights.tensors {
        let tensor = match is_rotated(&name) {
            true => permute_heads(tensor, config.head_dim(), RopeOrder::ToHalves),
            false => tensor,
        };
        out.insert(name, tensor);
    }
    out
}

fn export_gpt2(config: &LlamaConfig, mut weights: NamedWeights, out: &mut NamedWeights) {
    let moved = |weights: &mut NamedWeights,
                 out: &mut NamedWeights,
                 ours: &str,
                 theirs: String,
                 conv1d: bool| {
        if let Some(tensor) = weights.tensors.remove(ours) {
            let tensor = match conv1d && tensor.shape.len() == 2 {
                true => tensor.transposed(),
                false => tensor,
            };
            out.insert(theirs, tensor);
        }
    };
    let pairs = [
        (
            names::EMBED.to_string(),
            "transformer.wte.weight".to_string(),
        ),
        (
            names::POSITIONS.to_string(),
            "transformer.wpe.weight".to_string(),
        ),
        (
            names::FINAL_NORM.to_string(),
            "transformer.ln_f.weight".to_string(),
        ),
        (
            names::bias_of(names::FINAL_NORM),
            "transformer.ln_f.bias".to_string(),
        ),
    ];
    for (ours, theirs) in pairs {
        moved(&mut weights, out, &ours, theirs, false);
    }
    for layer in 0..config.n_layers {
        let prefix = format!("transformer.h.{layer}");
        let parts = [
            (names::ATTN_NORM, "ln_1", false),
            (names::MLP_NORM, "ln_2", false),
            (names::O, "attn.c_proj", true),
            (names::UP, "mlp.c_fc", true),
            (names::DOWN, "mlp.c_proj", true),
        ];
        for (suffix, module, conv1d) in parts {
            let ours = names::layer(layer, suffix);
            moved(
                &mut weights,
                out,
                &ours,
                format!("{prefix}.{module}.weight"),
                conv1d,
            );
            let bias = names::bias_of(&ours);
            moved(
                &mut weights,
                out,
                &bias,
                format!("{prefix}.{module}.bias"),
                false,
            );
        }
        let mut fused = |bias: bool| {
            let parts: Vec<HostTensor> = [names::Q, names::K, names::V]
                .iter()
                .filter_map(|suffix| {
                    let ours = names::layer(layer, suffix);
                    let ours = if bias { names::bias_of(&ours) } else { ours };
                    weights.tensors.remove(&ours)
                })
                .collect();
            (parts.len() == 3).then(|| HostTensor::concat_rows(&parts))
        };
        if let Some(weight) = fused(false) {
            out.insert(format!("{prefix}.attn.c_attn.weight"), weight.transposed());
        }
        if let Some(bias) = fused(true) {
            out.insert(format!("{prefix}.attn.c_attn.bias"), bias);
        }
    }
    for (name, tensor) in weights.tensors {
        out.insert(name, tensor); // the reward head, if any
    }
}
