//! Writes GGUF v3 (llama.cpp's format) for Llama, Qwen2 and Qwen3 models with a SentencePiece
//! vocabulary: F32, F16, or Q8_0 matrices (vectors stay F32, as llama.cpp keeps them).

use super::gguf_quant::BlockType;
use super::tokenizer::SentencePieceBpe;
use crate::error::{Error, Result};
use crate::model::weights::{names, permute_heads, HostTensor, NamedWeights, RopeOrder};
use crate::model::{Family, LlamaConfig};

const MAGIC: &[u8; 4] = b"GGUF";
const VERSION: u32 = 3;
const ALIGNMENT: usize = 32;

/// The type matrices are stored as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufStore {
    F32,
    F16,
    Q8_0,
}

impl std::str::FromStr for GgufStore {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "q8_0" => Ok(Self::Q8_0),
            other => Err(format!("GGUF type `{other}`; choose f32, f16 or q8_0")),
        }
    }
}

/// One metadata value.
enum Meta {
    U32(u32),
    F32(f32),
    Str(String),
    Strings(Vec<String>),
    F32s(Vec<f32>),
    I32s(Vec<i32>),
}

fn put_string(out: &mut Vec<u8>, text: &str) {
    out.extend((text.len() as u64).to_le_bytes());
    out.extend(text.as_bytes());
}

impl Meta {
    fn write(&self, out: &mut Vec<u8>) {
        let array = |out: &mut Vec<u8>, element_type: u32, len: usize| {
            out.extend(9u32.to_le_bytes());
            out.extend(element_type.to_le_bytes());
            out.extend((len as u64).to_le_bytes());
        };
        match self {
            Meta::U32(v) => {
                out.extend(4u32.to_le_bytes());
                out.extend(v.to_le_bytes());
            }
            Meta::F32(v) => {
                out.extend(6u32.to_le_bytes());
                out.extend(v.to_le_bytes());
            }
            Meta::Str(v) => {
                out.extend(8u32.to_le_bytes());
                put_string(out, v);
            }
            Meta::Strings(values) => {
                array(out, 8, values.len());
                values.iter().for_each(|v| put_string(out, v));
            }
            Meta::F32s(values) => {
                array(out, 6, values.len());
                values.iter().for_each(|v| out.extend(v.to_le_bytes()));
            }
            Meta::I32s(values) => {
                array(out, 5, values.len());
                values.iter().for_each(|v| out.extend(v.to_le_bytes()));
            }
        }
    }
}

/// llama.cpp's names for ours.
fn gguf_name(ours: &str) -> Option<String> {
    match ours {
        names::EMBED => return Some("token_embd.weight".into()),
        names::FINAL_NORM => return Some("output_norm.weight".into()),
        names::LM_HEAD => return Some("output.weight".into()),
        _ => {}
    }
    let rest = ours.strip_prefix("model.layers.")?;
    let (index, suffix) = rest.split_once('.')?;
    let bias = |weight: &str| names::bias_of(weight);
    let theirs = [
        (names::Q.to_string(), "attn_q.weight"),
        (names::K.to_string(), "attn_k.weight"),
        (names::V.to_string(), "attn_v.weight"),
        (bias(names::Q), "attn_q.bias"),
        (bias(names::K), "attn_k.bias"),
        (bias(names::V), "attn_v.bias"),
        (names::O.to_string(), "attn_output.weight"),
        (names::Q_NORM.to_string(), "attn_q_norm.weight"),
        (names::K_NORM.to_string(), "attn_k_norm.weight"),
        (names::ATTN_NORM.to_string(), "attn_norm.weight"),
        (names::MLP_NORM.to_string(), "ffn_norm.weight"),
        (names::GATE.to_string(), "ffn_gate.weight"),
        (names::UP.to_string(), "ffn_up.weight"),
        (names::DOWN.to_string(), "ffn_down.weight"),
    ];
    theirs
        .iter()
        .find(|(ours, _)| ours == suffix)
        .map(|(_, theirs)| format!("blk.{index}.{theirs}"))
}

/// llama.cpp's Q8_0: per 32 values, d = max|x| / 127 (as f16) and q = round(x / d).
fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / 32 * BlockType::Q8_0.bytes_per_block());
    for block in values.chunks_exact(32) {
        let max = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = max / 127.0;
        let inverse = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend(half::f16::from_f32(d).to_le_bytes());
        out.extend(block.iter().map(|&v| (v * inverse).round() as i8 as u8));
    }
    out
}

/// The file's bytes. The tokenizer is written as `tokenizer.ggml.model = llama`.
pub fn to_bytes(
    config: &LlamaConfig,
    weights: &NamedWeights,
    tokenizer: &SentencePieceBpe,
    store: GgufStore,
) -> Result<Vec<u8>> {
    let family = config.arch.family;
    let arch = match family {
        Family::Llama => "llama",
        Family::Qwen2 => "qwen2",
        Family::Qwen3 => "qwen3",
        other => {
            return Err(Error::Input(format!(
                "GGUF export writes llama, qwen2 and qwen3 models; this one is {other:?}"
            )))
        }
    };
    if config.arch.rope_scaling.is_some() || config.arch.out_bias || config.arch.mlp_bias {
        return Err(Error::Input(
            "GGUF export does not write RoPE scaling or output/MLP biases".into(),
        ));
    }
    let key = |name: &str| format!("{arch}.{name}");
    let (pieces, scores): (Vec<String>, Vec<f32>) = tokenizer
        .pieces()
        .map(|(piece, score)| {
            (
                String::from_utf8_lossy(piece).replace(' ', "\u{2581}"),
                score,
            )
        })
        .unzip();
    let token_types: Vec<i32> = pieces
        .iter()
        .enumerate()
        .map(|(id, piece)| {
            let id = id as u32;
            if id == tokenizer.bos() || id == tokenizer.eos() {
                3 // control
            } else if piece.len() == 6 && piece.starts_with("<0x") && piece.ends_with('>') {
                6 // byte
            } else if piece == "<unk>" {
                2
            } else {
                1
            }
        })
        .collect();
    let metadata: Vec<(String, Meta)> = vec![
        ("general.architecture".into(), Meta::Str(arch.into())),
        ("general.name".into(), Meta::Str("alignlab export".into())),
        ("general.alignment".into(), Meta::U32(ALIGNMENT as u32)),
        (
            key("context_length"),
            Meta::U32(config.arch.stated_context.unwrap_or(config.max_seq_len) as u32),
        ),
        (key("embedding_length"), Meta::U32(config.dim as u32)),
        (key("block_count"), Meta::U32(config.n_layers as u32)),
        (
            key("feed_forward_length"),
            Meta::U32(config.hidden_dim as u32),
        ),
        (
            key("attention.head_count"),
            Meta::U32(config.n_heads as u32),
        ),
        (
            key("attention.head_count_kv"),
            Meta::U32(config.n_kv_heads as u32),
        ),
        (
            key("attention.key_length"),
            Meta::U32(config.head_dim() as u32),
        ),
        (
            key("attention.value_length"),
            Meta::U32(config.head_dim() as u32),
        ),
        (
            key("attention.layer_norm_rms_epsilon"),
            Meta::F32(config.norm_eps as f32),
        ),
        (key("rope.freq_base"), Meta::F32(config.rope_theta as f32)),
        (
            key("rope.dimension_count"),
            Meta::U32(config.head_dim() as u32),
        ),
        (key("vocab_size"), Meta::U32(config.vocab_size as u32)),
        ("tokenizer.ggml.model".into(), Meta::Str("llama".into())),
        ("tokenizer.ggml.tokens".into(), Meta::Strings(pieces)),
        ("tokenizer.ggml.scores".into(), Meta::F32s(scores)),
        ("tokenizer.ggml.token_type".into(), Meta::I32s(token_types)),
        (
            "tokenizer.ggml.bos_token_id".into(),
            Meta::U32(tokenizer.bos()),
        ),
        (
            "tokenizer.ggml.eos_token_id".into(),
            Meta::U32(tokenizer.eos()),
        ),
    ];

    // Tensor data first, to know each one's offset.
    let mut infos = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    for (name, tensor) in &weights.tensors {
        let Some(theirs) = gguf_name(name) else {
            return Err(Error::Input(format!("tensor `{name}` has no GGUF name")));
        };
        let tensor: HostTensor = match family != Family::Llama && names::is_rotated(name) {
            true => permute_heads(tensor.clone(), config.head_dim(), RopeOrder::ToHalves),
            false => tensor.clone(),
        };
        let matrix = tensor.shape.len() == 2;
        let row = *tensor.shape.last().expect("a shape");
        let (type_id, bytes) = match store {
            GgufStore::Q8_0 if matrix && row.is_multiple_of(32) => {
                (8u32, quantize_q8_0(&tensor.data))
            }
            GgufStore::F16 if matrix => (
                1,
                tensor
                    .data
                    .iter()
                    .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                    .collect(),
            ),
            _ => (
                0,
                tensor.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
        };
        data.resize(data.len().next_multiple_of(ALIGNMENT), 0);
        infos.push((theirs, tensor.shape.clone(), type_id, data.len() as u64));
        data.extend(bytes);
    }

    let mut out = Vec::with_capacity(data.len() + 4096);
    out.extend(MAGIC);
    out.extend(VERSION.to_le_bytes());
    out.extend((infos.len() as u64).to_le_bytes());
    out.extend((metadata.len() as u64).to_le_bytes());
    for (name, value) in &metadata {
        put_string(&mut out, name);
        value.write(&mut out);
    }
    for (name, shape, type_id, offset) in &infos {
        put_string(&mut out, name);
        out.extend((shape.len() as u32).to_le_bytes());
        // GGUF lists the fastest-varying dimension first.
        for &dim in shape.iter().rev() {
            out.extend((dim as u64).to_le_bytes());
        }
        out.extend(type_id.to_le_bytes());
        out.extend(offset.to_le_bytes());
    }
    out.resize(out.len().next_multiple_of(ALIGNMENT), 0);
    out.extend(data);
    Ok(out)
}
