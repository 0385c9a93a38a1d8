//! GGUF v2/v3 reader (llama.cpp's format): metadata, F32/F16 tensors of Llama models, and the
//! embedded SentencePiece vocabulary. Every count and offset is checked against the file size
//! before anything is allocated.

use std::collections::BTreeMap;

use super::bytes::ByteReader;
use super::gguf_quant::BlockType;
use super::tokenizer::SentencePieceBpe;
use crate::error::{Error, Result};
use crate::model::weights::{names, permute_heads, HostTensor, NamedWeights, RopeOrder};
use crate::model::{Architecture, Family, LlamaConfig, MAX_CONTEXT};

const MAGIC: u32 = 0x4655_4747; // "GGUF" read as little-endian u32
const DEFAULT_ALIGNMENT: u64 = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Uint(u64),
    Float(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// Row-major shape (GGUF stores dimensions fastest-first; this is reversed).
    pub shape: Vec<usize>,
    pub type_id: u32,
    pub offset: u64,
}

#[derive(Debug)]
pub struct Gguf<'a> {
    pub source_name: &'a str,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    bytes: &'a [u8],
    data_start: usize,
}

fn type_name(type_id: u32) -> &'static str {
    match type_id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16..=23 | 29 => "IQ (importance-matrix quantised)",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        30 => "BF16",
        _ => "unknown",
    }
}

fn read_string(reader: &mut ByteReader, what: &str) -> Result<String> {
    let len = reader.u64(what)?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len <= reader.remaining())
        .ok_or_else(|| {
            reader.error(format!(
                "{what}: string length {len} exceeds the {} bytes left in the file",
                reader.remaining()
            ))
        })?;
    let raw = reader.take(len, what)?;
    String::from_utf8(raw.to_vec()).map_err(|_| reader.error(format!("{what}: not valid UTF-8")))
}

fn read_value(reader: &mut ByteReader, type_id: u32, key: &str, depth: usize) -> Result<Value> {
    Ok(match type_id {
        0 => Value::Uint(reader.u8(key)? as u64),
        1 => Value::Int(reader.u8(key)? as i8 as i64),
        2 => Value::Uint(reader.u16(key)? as u64),
        3 => Value::Int(reader.u16(key)? as i16 as i64),
        4 => Value::Uint(reader.u32(key)? as u64),
        5 => Value::Int(reader.i32(key)? as i64),
        6 => Value::Float(reader.f32(key)? as f64),
        7 => Value::Bool(reader.u8(key)? != 0),
        8 => Value::String(read_string(reader, key)?),
        9 => {
            if depth > 2 {
                return Err(reader.error(format!("metadata `{key}`: arrays nested too deeply")));
            }
            let element_type = reader.u32(key)?;
            let count = reader.u64(key)?;
            // Every element takes at least one byte, so a larger count is a lie.
            if count > reader.remaining() as u64 {
                return Err(reader.error(format!(
                    "metadata `{key}`: array claims {count} elements but only {} bytes remain",
                    reader.remaining()
                )));
            }
            let mut items = Vec::with_capacity(count as usize);
            for _ in 0..count {
                items.push(read_value(reader, element_type, key, depth + 1)?);
            }
            Value::Array(items)
        }
        10 => Value::Uint(reader.u64(key)?),
        11 => Value::Int(reader.u64(key)? as i64),
        12 => Value::Float(reader.f64(key)?),
        other => {
            return Err(reader.error(format!("metadata `{key}` has unknown value type {other}")))
        }
    })
}

impl<'a> Gguf<'a> {
    pub fn parse(bytes: &'a [u8], source_name: &'a str) -> Result<Self> {
        let mut reader = ByteReader::new(bytes, source_name);
        let magic = reader.u32("magic number")?;
        if magic != MAGIC {
            return Err(reader.error(format!(
                "not a GGUF file: magic number is {magic:#010x}, expected {MAGIC:#010x} (\"GGUF\")"
            )));
        }
        let version = reader.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(reader.error(format!(
                "GGUF version {version} is not supported (2 and 3 are)"
            )));
        }
        let tensor_count = reader.u64("tensor count")?;
        let kv_count = reader.u64("metadata count")?;
        // A tensor record takes at least 24 bytes and a key/value at least 12.
        if tensor_count > (reader.remaining() / 24) as u64
            || kv_count > (reader.remaining() / 12) as u64
        {
            return Err(reader.error(format!(
                "header claims {tensor_count} tensors and {kv_count} metadata entries, more than a {}-byte file can hold",
                bytes.len()
            )));
        }
        let mut metadata = BTreeMap::new();
        for index in 0..kv_count {
            let key = read_string(&mut reader, &format!("metadata key #{index}"))?;
            let type_id = reader.u32(&key)?;
            let value = read_value(&mut reader, type_id, &key, 0)?;
            metadata.insert(key, value);
        }
        let mut tensors = Vec::with_capacity(tensor_count as usize);
        for index in 0..tensor_count {
            let name = read_string(&mut reader, &format!("tensor name #{index}"))?;
            let n_dims = reader.u32(&name)?;
            if n_dims == 0 || n_dims > 4 {
                return Err(reader.error(format!("tensor `{name}` has {n_dims} dimensions")));
            }
            let mut shape = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                let dim = reader.u64(&name)?;
                let dim = usize::try_from(dim)
                    .ok()
                    .filter(|&d| d > 0 && d <= bytes.len())
                    .ok_or_else(|| {
                        reader.error(format!("tensor `{name}` has an impossible dimension {dim}"))
                    })?;
                shape.push(dim);
            }
            shape.reverse();
            let type_id = reader.u32(&name)?;
            let offset = reader.u64(&name)?;
            tensors.push(TensorInfo {
                name,
                shape,
                type_id,
                offset,
            });
        }
        let alignment = match metadata.get("general.alignment") {
            Some(Value::Uint(a)) if *a > 0 && a.is_power_of_two() => *a,
            Some(other) => {
                return Err(
                    reader.error(format!("general.alignment {other:?} is not a power of two"))
                )
            }
            None => DEFAULT_ALIGNMENT,
        };
        let data_start = (reader.position() as u64).div_ceil(alignment) * alignment;
        reader.seek(data_start as usize, "tensor data")?;
        Ok(Self {
            source_name,
            version,
            metadata,
            tensors,
            bytes,
            data_start: data_start as usize,
        })
    }

    fn missing(&self, key: &str) -> Error {
        Error::format(self.source_name, format!("metadata `{key}` is missing"))
    }

    pub fn get_uint(&self, key: &str) -> Result<u64> {
        match self.metadata.get(key) {
            Some(Value::Uint(v)) => Ok(*v),
            Some(Value::Int(v)) if *v >= 0 => Ok(*v as u64),
            Some(other) => Err(Error::format(
                self.source_name,
                format!("metadata `{key}` is {other:?}, expected an unsigned integer"),
            )),
            None => Err(self.missing(key)),
        }
    }

    pub fn get_float(&self, key: &str) -> Result<f64> {
        match self.metadata.get(key) {
            Some(Value::Float(v)) => Ok(*v),
            Some(other) => Err(Error::format(
                self.source_name,
                format!("metadata `{key}` is {other:?}, expected a float"),
            )),
            None => Err(self.missing(key)),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.metadata.get(key) {
            Some(Value::String(v)) => Ok(v),
            Some(other) => Err(Error::format(
                self.source_name,
                format!("metadata `{key}` is {other:?}, expected a string"),
            )),
            None => Err(self.missing(key)),
        }
    }

    pub fn get_array(&self, key: &str) -> Result<&[Value]> {
        match self.metadata.get(key) {
            Some(Value::Array(v)) => Ok(v),
            Some(_) => Err(Error::format(
                self.source_name,
                format!("metadata `{key}` is not an array"),
            )),
            None => Err(self.missing(key)),
        }
    }

    /// Reads one tensor's values as f32 (F32 as is, F16 widened, quantised blocks dequantised).
    pub fn tensor_data(&self, info: &TensorInfo) -> Result<HostTensor> {
        let count = info
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let blocks = BlockType::from_type_id(info.type_id);
        let size = match (info.type_id, blocks) {
            (0, _) => count.and_then(|c| c.checked_mul(4)),
            (1, _) => count.and_then(|c| c.checked_mul(2)),
            (_, Some(kind)) => {
                let per_block = kind.values_per_block();
                if count.is_some_and(|c| !c.is_multiple_of(per_block)) {
                    return Err(Error::format(
                        self.source_name,
                        format!(
                            "tensor `{}` {:?} is {} but its size is not a whole number of {per_block}-value blocks",
                            info.name, info.shape, type_name(info.type_id)
                        ),
                    ));
                }
                count.and_then(|c| (c / per_block).checked_mul(kind.bytes_per_block()))
            }
            (other, None) => {
                return Err(Error::format(
                    self.source_name,
                    format!(
                        "tensor `{}` has type {} (id {other}); supported: F32, F16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K",
                        info.name,
                        type_name(other)
                    ),
                ))
            }
        };
        let start = usize::try_from(info.offset)
            .ok()
            .and_then(|o| o.checked_add(self.data_start));
        let (count, start) = match (count, size, start) {
            (Some(count), Some(size), Some(start))
                if start.checked_add(size).is_some_and(|end| end <= self.bytes.len()) =>
            {
                (count, start)
            }
            _ => {
                return Err(Error::format(
                    self.source_name,
                    format!(
                        "truncated: tensor `{}` {:?} at data offset {} runs past the end of the file ({} bytes)",
                        info.name,
                        info.shape,
                        info.offset,
                        self.bytes.len()
                    ),
                ))
            }
        };
        let size = size.expect("checked above");
        let data = match (info.type_id, blocks) {
            (_, Some(kind)) => kind.dequantize(&self.bytes[start..start + size]),
            (type_id, None) => {
                let mut reader = ByteReader::new(self.bytes, self.source_name);
                reader.seek(start, &info.name)?;
                match type_id {
                    0 => reader.f32s(count, &info.name)?,
                    _ => reader.f16s(count, &info.name)?,
                }
            }
        };
        Ok(HostTensor::new(info.shape.clone(), data))
    }

    /// The model family of `general.architecture`.
    fn family(&self) -> Result<(&str, Family)> {
        let arch = self.get_str("general.architecture")?;
        let family = match arch {
            "llama" => Family::Llama,
            "qwen2" => Family::Qwen2,
            "qwen3" => Family::Qwen3,
            other => {
                return Err(Error::format(
                    self.source_name,
                    format!(
                    "metadata `general.architecture` is `{other}`; supported: llama, qwen2, qwen3"
                ),
                ))
            }
        };
        Ok((arch, family))
    }

    /// Hyperparameters of a `llama`, `qwen2` or `qwen3` architecture model.
    pub fn llama_config(&self) -> Result<LlamaConfig> {
        let (arch, family) = self.family()?;
        let as_usize = |key: &str| -> Result<usize> {
            let v = self.get_uint(key)?;
            usize::try_from(v).map_err(|_| {
                Error::format(
                    self.source_name,
                    format!("metadata `{key}` = {v} is too large"),
                )
            })
        };
        let key = |name: &str| format!("{arch}.{name}");
        let n_heads = as_usize(&key("attention.head_count"))?;
        let vocab_size = match self.get_array("tokenizer.ggml.tokens") {
            Ok(tokens) => tokens.len(),
            Err(_) => as_usize(&key("vocab_size"))?,
        };
        let dim = as_usize(&key("embedding_length"))?;
        let context = as_usize(&key("context_length"))?;
        let head_dim = as_usize(&key("attention.key_length"))
            .ok()
            .filter(|&width| width * n_heads != dim);
        let config = LlamaConfig {
            vocab_size,
            dim,
            n_layers: as_usize(&key("block_count"))?,
            n_heads,
            n_kv_heads: as_usize(&key("attention.head_count_kv")).unwrap_or(n_heads),
            hidden_dim: as_usize(&key("feed_forward_length"))?,
            max_seq_len: context.min(MAX_CONTEXT),
            norm_eps: self.get_float(&key("attention.layer_norm_rms_epsilon"))?,
            rope_theta: self.get_float(&key("rope.freq_base")).unwrap_or(10_000.0),
            arch: Architecture {
                family,
                head_dim,
                qkv_bias: family == Family::Qwen2,
                qk_norm: family == Family::Qwen3,
                tied_embeddings: !self.tensors.iter().any(|t| t.name == "output.weight"),
                stated_context: (context > MAX_CONTEXT).then_some(context),
                ..Default::default()
            },
        };
        config.validate(self.source_name)?;
        Ok(config)
    }

    /// The weights under the crate's tensor names and layout, for `config` (from
    /// [`Self::llama_config`]).
    pub fn llama_weights(&self, config: &LlamaConfig) -> Result<NamedWeights> {
        let family = config.arch.family;
        let mut weights = NamedWeights::new(self.source_name);
        for info in &self.tensors {
            let name = match gguf_to_hf_name(&info.name) {
                Some(name) => name,
                // Precomputed RoPE tables and the like: we compute our own.
                None => continue,
            };
            let tensor = self.tensor_data(info)?;
            // llama.cpp permutes Llama's q/k rows into interleaved pairs at conversion; Qwen's
            // (NEOX rope) keep transformers' halves, so they are permuted here.
            let tensor = match family != Family::Llama && names::is_rotated(&name) {
                true => permute_heads(tensor, config.head_dim(), RopeOrder::ToInterleaved),
                false => tensor,
            };
            weights.insert(name, tensor);
        }
        Ok(weights)
    }

    /// The embedded SentencePiece vocabulary (`tokenizer.ggml.model = llama`).
    pub fn sentencepiece(&self) -> Result<SentencePieceBpe> {
        let model = self.get_str("tokenizer.ggml.model")?;
        if model != "llama" {
            return Err(Error::format(
                self.source_name,
                format!("tokenizer model `{model}` is not supported (only `llama` SentencePiece)"),
            ));
        }
        let tokens = self.get_array("tokenizer.ggml.tokens")?;
        let scores = self.get_array("tokenizer.ggml.scores")?;
        if tokens.len() != scores.len() {
            return Err(Error::format(
                self.source_name,
                format!(
                    "tokenizer has {} tokens but {} scores",
                    tokens.len(),
                    scores.len()
                ),
            ));
        }
        let mut pieces = Vec::with_capacity(tokens.len());
        let mut piece_scores = Vec::with_capacity(tokens.len());
        for (index, (token, score)) in tokens.iter().zip(scores).enumerate() {
            match (token, score) {
                (Value::String(t), Value::Float(s)) => {
                    pieces.push(t.replace('\u{2581}', " ").into_bytes());
                    piece_scores.push(*s as f32);
                }
                _ => {
                    return Err(Error::format(
                        self.source_name,
                        format!("tokenizer entry #{index} is not a (string, float) pair"),
                    ))
                }
            }
        }
        let special = |key: &str, default: u32| -> u32 {
            self.get_uint(key)
                .ok()
                .and_then(|v| u32::try_from(v).ok())
                .filter(|&v| (v as usize) < pieces.len())
                .unwrap_or(default)
        };
        let bos = special("tokenizer.ggml.bos_token_id", 1);
        let eos = special("tokenizer.ggml.eos_token_id", 2);
        SentencePieceBpe::new(pieces, piece_scores, bos, eos, self.source_name)
    }
}

fn gguf_to_hf_name(name: &str) -> Option<String> {
    match name {
        "token_embd.weight" => return Some(names::EMBED.into()),
        "output_norm.weight" => return Some(names::FINAL_NORM.into()),
        "output.weight" => return Some(names::LM_HEAD.into()),
        _ => {}
    }
    let rest = name.strip_prefix("blk.")?;
    let (index, suffix) = rest.split_once('.')?;
    let index: usize = index.parse().ok()?;
    let suffix = match suffix {
        "attn_q.bias" => return Some(names::bias_of(&names::layer(index, names::Q))),
        "attn_k.bias" => return Some(names::bias_of(&names::layer(index, names::K))),
        "attn_v.bias" => return Some(names::bias_of(&names::layer(index, names::V))),
        "attn_q_norm.weight" => names::Q_NORM,
        "attn_k_norm.weight" => names::K_NORM,
        "attn_q.weight" => names::Q,
        "attn_k.weight" => names::K,
        "attn_v.weight" => names::V,
        "attn_output.weight" => names::O,
        "attn_norm.weight" => names::ATTN_NORM,
        "ffn_norm.weight" => names::MLP_NORM,
        "ffn_gate.weight" => names::GATE,
        "ffn_up.weight" => names::UP,
        "ffn_down.weight" => names::DOWN,
        _ => return None,
    };
    Some(names::layer(index, suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF v3 file with no metadata and one 1-D tensor of the given type and raw data.
    fn one_tensor_file(type_id: u32, len: u64, data: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend(MAGIC.to_le_bytes());
        bytes.extend(3u32.to_le_bytes());
        bytes.extend(1u64.to_le_bytes()); // tensors
        bytes.extend(0u64.to_le_bytes()); // metadata entries
        let name = b"w";
        bytes.extend((name.len() as u64).to_le_bytes());
        bytes.extend(name);
        bytes.extend(1u32.to_le_bytes());
        bytes.extend(len.to_le_bytes());
        bytes.extend(type_id.to_le_bytes());
        bytes.extend(0u64.to_le_bytes()); // offset
        bytes.resize(bytes.len().div_ceil(32) * 32, 0);
        bytes.extend(data);
        bytes
    }

    #[test]
    fn f16_tensors_are_widened_exactly() {
        let values = [1.0f32, -2.5, 0.0009765625, 65504.0];
        let data: Vec<u8> = values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let bytes = one_tensor_file(1, 4, &data);
        let gguf = Gguf::parse(&bytes, "h.gguf").unwrap();
        assert_eq!(gguf.tensor_data(&gguf.tensors[0]).unwrap().data, values);
    }

    #[test]
    fn unread_quantisations_are_refused_by_name_and_type_and_q8_0_is_read() {
        let bytes = one_tensor_file(3, 32, &[0; 20]); // Q4_1
        let gguf = Gguf::parse(&bytes, "q.gguf").unwrap();
        let message = gguf.tensor_data(&gguf.tensors[0]).unwrap_err().to_string();
        assert!(
            message.contains("q.gguf") && message.contains("`w`") && message.contains("Q4_1"),
            "{message}"
        );
        // One Q8_0 block: d = 0.5 (f16 0x3800), q = 0, 1, …, 31.
        let mut block = vec![0x00, 0x38];
        block.extend(0..32u8);
        let bytes = one_tensor_file(8, 32, &block);
        let gguf = Gguf::parse(&bytes, "q.gguf").unwrap();
        let values = gguf.tensor_data(&gguf.tensors[0]).unwrap().data;
        assert_eq!(values, (0..32).map(|q| q as f32 * 0.5).collect::<Vec<_>>());
    }

    #[test]
    fn a_tensor_past_the_end_is_truncated() {
        let bytes = one_tensor_file(0, 4, &[0; 12]);
        let gguf = Gguf::parse(&bytes, "t.gguf").unwrap();
        let message = gguf.tensor_data(&gguf.tensors[0]).unwrap_err().to_string();
        assert!(message.contains("truncated"), "{message}");
    }
}
