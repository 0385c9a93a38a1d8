//! Truncated, corrupt or mislabelled model files give errors that name the file and the fault —
//! never a panic, never an allocation sized by an unchecked header field.

use crate::common;

use crate::common::data;
use alignlab::io::Checkpoint;

fn gguf_bytes() -> Vec<u8> {
    std::fs::read(data("stories260K/stories260K.gguf")).unwrap()
}

fn bin_bytes() -> Vec<u8> {
    std::fs::read(data("stories260K/stories260K.bin")).unwrap()
}

fn tok_bytes() -> Vec<u8> {
    std::fs::read(data("stories260K/tok512.bin")).unwrap()
}

/// The error of reading and building a model from `bytes`, whichever step finds the fault.
fn gguf_error(bytes: &[u8]) -> String {
    Checkpoint::from_bytes(bytes, "model.gguf", None)
        .and_then(|c| c.into_model::<common::Cpu>(&Default::default()))
        .unwrap_err()
        .to_string()
}

fn bin_error(bytes: &[u8]) -> String {
    let tok = tok_bytes();
    Checkpoint::from_bytes(bytes, "model.bin", Some((&tok, "tok512.bin")))
        .unwrap_err()
        .to_string()
}

/// Offset of the first occurrence of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

#[test]
fn every_truncation_of_the_gguf_is_an_error_naming_the_file() {
    let bytes = gguf_bytes();
    for cut in (0..bytes.len())
        .step_by(997)
        .chain([bytes.len() - 1, 4, 8, 23])
    {
        let message = gguf_error(&bytes[..cut]);
        assert!(message.starts_with("model.gguf"), "cut {cut}: {message}");
    }
}

#[test]
fn a_truncated_gguf_says_truncated() {
    let bytes = gguf_bytes();
    let message = gguf_error(&bytes[..bytes.len() - 100]);
    assert!(message.contains("truncated"), "{message}");
}

#[test]
fn wrong_magic_is_named() {
    let mut bytes = gguf_bytes();
    bytes[0] = b'X';
    // Not GGUF, not safetensors: read as llama2.c, whose size check fails.
    let message = Checkpoint::from_bytes(&bytes, "model.gguf", Some((b"", "t")))
        .unwrap_err()
        .to_string();
    assert!(message.contains("model.gguf"), "{message}");
    let mut bytes = gguf_bytes();
    bytes[3] = b'X';
    let message = Checkpoint::from_bytes(&bytes, "model.gguf", Some((b"", "t")))
        .unwrap_err()
        .to_string();
    assert!(message.contains("model.gguf"), "{message}");
}

#[test]
fn an_unsupported_tensor_type_names_the_tensor_and_type() {
    let mut bytes = gguf_bytes();
    // The tensor record of `output_norm.weight`: name, n_dims (u32), dims (u64 each), type (u32).
    let name = b"output_norm.weight";
    let at = find(&bytes, name) + name.len() + 4 + 8;
    assert_eq!(
        &bytes[at..at + 4],
        &0u32.to_le_bytes(),
        "F32 before patching"
    );
    bytes[at..at + 4].copy_from_slice(&10u32.to_le_bytes()); // Q2_K: not read
    let message = gguf_error(&bytes);
    assert!(
        message.contains("output_norm.weight") && message.contains("Q2_K"),
        "{message}"
    );
    // Q4_K is read, but 64 values are not whole 256-value blocks.
    bytes[at..at + 4].copy_from_slice(&12u32.to_le_bytes());
    let message = gguf_error(&bytes);
    assert!(
        message.contains("output_norm.weight") && message.contains("256-value blocks"),
        "{message}"
    );
}

#[test]
fn a_tensor_of_unexpected_shape_is_named() {
    let mut bytes = gguf_bytes();
    // output_norm.weight has one dimension, 64; claim 32 instead.
    let name = b"output_norm.weight";
    let at = find(&bytes, name) + name.len() + 4;
    bytes[at..at + 8].copy_from_slice(&32u64.to_le_bytes());
    let message = gguf_error(&bytes);
    assert!(
        message.contains("model.norm.weight")
            && message.contains("[32]")
            && message.contains("[64]"),
        "{message}"
    );
}

#[test]
fn a_huge_array_count_in_the_gguf_header_is_refused() {
    let mut bytes = gguf_bytes();
    // tokenizer.ggml.tokens: key, value type 9 (array), element type 8 (string), count u64.
    let key = b"tokenizer.ggml.tokens";
    let at = find(&bytes, key) + key.len() + 4 + 4;
    bytes[at..at + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    let message = gguf_error(&bytes);
    assert!(
        message.contains("tokenizer.ggml.tokens") && message.contains("elements"),
        "{message}"
    );
}

#[test]
fn a_huge_tensor_count_in_the_gguf_header_is_refused() {
    let mut bytes = gguf_bytes();
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    let message = gguf_error(&bytes);
    assert!(message.contains("tensors"), "{message}");
}

#[test]
fn a_huge_string_length_is_refused() {
    let mut bytes = gguf_bytes();
    // The first metadata key's length field follows the 24-byte header.
    bytes[24..32].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let message = gguf_error(&bytes);
    assert!(message.contains("string length"), "{message}");
}

#[test]
fn every_truncation_of_the_llama2c_bin_is_an_error() {
    let bytes = bin_bytes();
    for cut in (0..bytes.len())
        .step_by(7919)
        .chain([bytes.len() - 1, 3, 27])
    {
        let message = bin_error(&bytes[..cut]);
        assert!(message.starts_with("model.bin"), "cut {cut}: {message}");
    }
    let message = bin_error(&bytes[..bytes.len() - 4]);
    assert!(message.contains("truncated"), "{message}");
}

#[test]
fn a_llama2c_header_claiming_a_huge_size_is_refused() {
    let mut bytes = bin_bytes();
    bytes[0..4].copy_from_slice(&(1i32 << 15).to_le_bytes()); // dim
    bytes[4..8].copy_from_slice(&(1i32 << 18).to_le_bytes()); // hidden
    let message = bin_error(&bytes);
    assert!(
        message.contains("model.bin") && message.contains("truncated"),
        "{message}"
    );
    let mut bytes = bin_bytes();
    bytes[8..12].copy_from_slice(&(-5i32).to_le_bytes()); // n_layers
    assert!(bin_error(&bytes).contains("n_layers"));
}

#[test]
fn a_corrupt_tokenizer_bin_is_named() {
    let bytes = bin_bytes();
    let tok = tok_bytes();
    let message = Checkpoint::from_bytes(
        &bytes,
        "model.bin",
        Some((&tok[..tok.len() / 2], "tok512.bin")),
    )
    .unwrap_err()
    .to_string();
    assert!(
        message.starts_with("tok512.bin") && message.contains("truncated"),
        "{message}"
    );
    let mut bad = tok.clone();
    bad[8..12].copy_from_slice(&1_000_000i32.to_le_bytes()); // first token's length
    let message = Checkpoint::from_bytes(&bytes, "model.bin", Some((&bad, "tok512.bin")))
        .unwrap_err()
        .to_string();
    assert!(message.contains("token #0"), "{message}");
}

#[test]
fn a_llama2c_bin_without_tokenizer_says_so() {
    let message = Checkpoint::from_bytes(&bin_bytes(), "model.bin", None)
        .unwrap_err()
        .to_string();
    assert!(message.contains("tokenizer"), "{message}");
}

#[test]
fn a_missing_file_is_named() {
    let message = Checkpoint::load(std::path::Path::new("/nonexistent/model.gguf"), None)
        .unwrap_err()
        .to_string();
    assert!(message.contains("/nonexistent/model.gguf"), "{message}");
}

/// A copy of the Qwen2 fixture folder to damage, in a fresh temporary folder.
fn qwen2_copy(name: &str) -> std::path::PathBuf {
    let dir = common::temp_path(name);
    std::fs::create_dir_all(&dir).unwrap();
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(data("hf/tiny-random-qwen2").join(file), dir.join(file)).unwrap();
    }
    dir
}

fn folder_error(dir: &std::path::Path) -> String {
    Checkpoint::load(dir, None)
        .and_then(|c| c.into_model::<common::Cpu>(&Default::default()))
        .unwrap_err()
        .to_string()
}

#[test]
fn a_shard_index_naming_a_missing_or_outside_file_is_refused() {
    let dir = qwen2_copy("index-missing");
    std::fs::rename(
        dir.join("model.safetensors"),
        dir.join("model-00001-of-00002.safetensors"),
    )
    .unwrap();
    let index = r#"{"weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors", "model.norm.weight": "model-00002-of-00002.safetensors"}}"#;
    std::fs::write(dir.join("model.safetensors.index.json"), index).unwrap();
    let message = folder_error(&dir);
    assert!(
        message.contains("model.safetensors.index.json")
            && message.contains("model-00002-of-00002.safetensors"),
        "{message}"
    );
    let outside = r#"{"weight_map": {"model.norm.weight": "../../etc/passwd"}}"#;
    std::fs::write(dir.join("model.safetensors.index.json"), outside).unwrap();
    let message = folder_error(&dir);
    assert!(
        message.contains("weight_map.model.norm.weight")
            && message.contains("not a file in this folder"),
        "{message}"
    );
}

#[test]
fn a_tensor_disagreeing_with_config_json_is_named() {
    let dir = qwen2_copy("config-disagrees");
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        config.replace("\"intermediate_size\": 160", "\"intermediate_size\": 161"),
    )
    .unwrap();
    let message = folder_error(&dir);
    assert!(
        message.contains("mlp.") && message.contains("161") && message.contains("160"),
        "{message}"
    );
}

#[test]
fn a_safetensors_header_claiming_more_than_the_file_holds_is_refused() {
    let dir = qwen2_copy("truncated-safetensors");
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &bytes[..bytes.len() - 100]).unwrap();
    let message = folder_error(&dir);
    assert!(
        message.contains("model.safetensors") && message.contains("not a valid safetensors"),
        "{message}"
    );
    // A header length beyond the file: read as such, never allocated.
    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    std::fs::write(dir.join("model.safetensors"), &huge).unwrap();
    let message = folder_error(&dir);
    assert!(message.contains("model.safetensors"), "{message}");
}

#[test]
fn an_unsupported_dtype_or_architecture_in_a_folder_is_named() {
    use safetensors::tensor::{Dtype, TensorView};
    let dir = qwen2_copy("int-dtype");
    let data = vec![0u8; 4 * 64];
    let view = TensorView::new(Dtype::I32, vec![64], &data).unwrap();
    let bytes = safetensors::serialize([("model.norm.weight", view)], None).unwrap();
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    let message = folder_error(&dir);
    assert!(
        message.contains("model.norm.weight") && message.contains("I32"),
        "{message}"
    );
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        config.replace("Qwen2ForCausalLM", "PhiForCausalLM"),
    )
    .unwrap();
    let message = folder_error(&dir);
    assert!(
        message.contains("config.json")
            && message.contains("PhiForCausalLM")
            && message.contains("Qwen2ForCausalLM"),
        "{message}"
    );
}
