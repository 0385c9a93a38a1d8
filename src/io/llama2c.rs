//! llama2.c's legacy (version 0) checkpoint: a header of seven i32 — dim, hidden_dim, n_layers,
//! n_heads, n_kv_heads, vocab_size (negative when the output head is not shared with the
//! embedding), seq_len — then f32 weights, each stacked over layers, in a fixed order.

use super::bytes::ByteReader;
use crate::error::{Error, Result};
use crate::model::weights::{names, HostTensor, NamedWeights};
use crate::model::LlamaConfig;

const HEADER_BYTES: usize = 7 * 4;

pub fn parse(bytes: &[u8], source_name: &str) -> Result<(LlamaConfig, NamedWeights)> {
    let mut reader = ByteReader::new(bytes, source_name);
    let mut field = |name: &str| -> Result<i32> { reader.i32(name) };
    let dim = field("dim")?;
    let hidden_dim = field("hidden_dim")?;
    let n_layers = field("n_layers")?;
    let n_heads = field("n_heads")?;
    let n_kv_heads = field("n_kv_heads")?;
    let vocab_size = field("vocab_size")?;
    let seq_len = field("seq_len")?;
    let shared_head = vocab_size > 0;
    let positive = |name: &str, value: i32| -> Result<usize> {
        if value <= 0 {
            Err(Error::format(
                source_name,
                format!("header field {name} = {value} must be positive"),
            ))
        } else {
            Ok(value as usize)
        }
    };
    let config = LlamaConfig {
        vocab_size: positive("vocab_size", vocab_size.checked_abs().unwrap_or(0))?,
        dim: positive("dim", dim)?,
        n_layers: positive("n_layers", n_layers)?,
        n_heads: positive("n_heads", n_heads)?,
        n_kv_heads: positive("n_kv_heads", n_kv_heads)?,
        hidden_dim: positive("hidden_dim", hidden_dim)?,
        max_seq_len: positive("seq_len", seq_len)?,
        norm_eps: 1e-5,
        rope_theta: 10_000.0,
        arch: Default::default(),
    };
    config.validate(source_name)?;

    // The validated sizes bound every product below far under usize::MAX on 64-bit and wasm32
    // alike only if we check them, so the expected length is computed in u128.
    let (d, h, l, v, s) = (
        config.dim as u128,
        config.hidden_dim as u128,
        config.n_layers as u128,
        config.vocab_size as u128,
        config.max_seq_len as u128,
    );
    let kv = config.kv_dim() as u128;
    let head = config.head_dim() as u128;
    let floats = v * d
        + l * d
        + l * d * d
        + 2 * l * d * kv
        + l * d * d
        + l * d
        + 3 * l * d * h
        + d
        + s * head // freq_cis_real and freq_cis_imag, s * head/2 each
        + if shared_head { 0 } else { v * d };
    let expected = HEADER_BYTES as u128 + 4 * floats;
    if expected != bytes.len() as u128 {
        return Err(Error::format(
            source_name,
            format!(
                "file is {} bytes but its header ({config:?}) implies {expected}: {}",
                bytes.len(),
                if expected > bytes.len() as u128 {
                    "truncated"
                } else {
                    "trailing data or a different format version"
                }
            ),
        ));
    }

    let (dim, hidden, layers, vocab, kv_dim) = (
        config.dim,
        config.hidden_dim,
        config.n_layers,
        config.vocab_size,
        config.kv_dim(),
    );
    let mut weights = NamedWeights::new(source_name);
    let mut stacked = |reader: &mut ByteReader, suffix: &str, shape: &[usize]| -> Result<()> {
        let per_layer: usize = shape.iter().product();
        let all = reader.f32s(per_layer * layers, suffix)?;
        for (index, chunk) in all.chunks_exact(per_layer).enumerate() {
            weights.insert(
                names::layer(index, suffix),
                HostTensor::new(shape.to_vec(), chunk.to_vec()),
            );
        }
        Ok(())
    };
    let embed = reader.f32s(vocab * dim, "token_embedding_table")?;
    stacked(&mut reader, names::ATTN_NORM, &[dim])?;
    stacked(&mut reader, names::Q, &[dim, dim])?;
    stacked(&mut reader, names::K, &[kv_dim, dim])?;
    stacked(&mut reader, names::V, &[kv_dim, dim])?;
    stacked(&mut reader, names::O, &[dim, dim])?;
    stacked(&mut reader, names::MLP_NORM, &[dim])?;
    stacked(&mut reader, names::GATE, &[hidden, dim])?;
    stacked(&mut reader, names::DOWN, &[dim, hidden])?;
    stacked(&mut reader, names::UP, &[hidden, dim])?;
    let final_norm = reader.f32s(dim, "rms_final_weight")?;
    reader.take(config.max_seq_len * config.head_dim() * 4, "freq_cis")?;
    let lm_head = if shared_head {
        embed.clone()
    } else {
        reader.f32s(vocab * dim, "wcls")?
    };
    weights.insert(names::EMBED, HostTensor::new(vec![vocab, dim], embed));
    weights.insert(names::FINAL_NORM, HostTensor::new(vec![dim], final_norm));
    weights.insert(names::LM_HEAD, HostTensor::new(vec![vocab, dim], lm_head));
    Ok((config, weights))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(fields: [i32; 7]) -> Vec<u8> {
        fields.iter().flat_map(|f| f.to_le_bytes()).collect()
    }

    #[test]
    fn a_header_claiming_a_huge_model_is_rejected_without_allocating() {
        let bytes = header([1 << 15, 1 << 17, 1 << 9, 1 << 10, 1 << 10, 1 << 20, 1 << 19]);
        let message = parse(&bytes, "huge.bin").unwrap_err().to_string();
        assert!(
            message.contains("huge.bin") && message.contains("truncated"),
            "{message}"
        );
    }

    #[test]
    fn negative_and_zero_fields_are_named() {
        let message = parse(&header([64, 172, 0, 8, 4, 512, 512]), "m.bin")
            .unwrap_err()
            .to_string();
        assert!(message.contains("n_layers"), "{message}");
    }

    #[test]
    fn a_short_header_is_truncated() {
        let message = parse(&[1, 2, 3], "m.bin").unwrap_err().to_string();
        assert!(message.contains("truncated"), "{message}");
    }
}
