//! GGUF written by alignlab and read back: exact in F32, close in F16 and Q8_0, and the Qwen
//! layouts (biases, NEOX rope order) through the same reader.

use crate::common::{data, token_logprobs, Cpu};
use alignlab::io::gguf_write::{self, GgufStore};
use alignlab::io::{Checkpoint, Tokenizer};
use alignlab::model::Llama;

fn stories_vocabulary() -> alignlab::io::tokenizer::SentencePieceBpe {
    match Checkpoint::load(&data("stories260K/stories260K.gguf"), None)
        .unwrap()
        .tokenizer
    {
        Tokenizer::SentencePiece(vocabulary) => vocabulary,
        other => panic!("{other:?}"),
    }
}

fn reread(bytes: &[u8]) -> (Llama<Cpu>, Tokenizer) {
    Checkpoint::from_bytes(bytes, "written.gguf", None)
        .unwrap()
        .into_model(&Default::default())
        .unwrap()
}

#[test]
fn stories260k_round_trips_exactly_in_f32_and_closely_quantised() {
    let original = Checkpoint::load(&data("stories260K/stories260K.gguf"), None).unwrap();
    let (model, tokenizer) = original
        .clone()
        .into_model::<Cpu>(&Default::default())
        .unwrap();
    let ids = tokenizer
        .encode_with_bos("The cat sat on the mat and smiled.")
        .unwrap();
    let want = token_logprobs(&model, &ids);
    let vocabulary = stories_vocabulary();
    for (store, tolerance) in [
        (GgufStore::F32, 0.0),
        (GgufStore::F16, 0.02),
        (GgufStore::Q8_0, 0.1),
    ] {
        let bytes =
            gguf_write::to_bytes(&original.config, &original.weights, &vocabulary, store).unwrap();
        let (back, back_tokenizer) = reread(&bytes);
        assert_eq!(
            back_tokenizer.encode_with_bos("The cat sat").unwrap(),
            tokenizer.encode_with_bos("The cat sat").unwrap()
        );
        let got = token_logprobs(&back, &ids);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst <= tolerance,
            "{store:?}: worst per-token difference {worst}"
        );
    }
}

#[test]
fn a_qwen2_gguf_reads_like_its_hugging_face_folder() {
    // The fixture's vocabulary is stories260K's, so its GGUF can carry that SentencePiece model.
    let folder = Checkpoint::load(&data("hf/tiny-random-qwen2"), None).unwrap();
    let bytes = gguf_write::to_bytes(
        &folder.config,
        &folder.weights,
        &stories_vocabulary(),
        GgufStore::F32,
    )
    .unwrap();
    let (from_gguf, _) = reread(&bytes);
    assert_eq!(from_gguf.config().arch, folder.config.arch);
    let (from_folder, tokenizer) = folder.into_model::<Cpu>(&Default::default()).unwrap();
    let ids = tokenizer.encode_with_bos("Once upon a time").unwrap();
    assert_eq!(
        token_logprobs(&from_gguf, &ids),
        token_logprobs(&from_folder, &ids)
    );
}

/// A SentencePiece-style Hugging Face tokenizer (stories260K-hf's) converts to the SentencePiece
/// model GGUF stores, encoding real text as the original does, so the folder exports to GGUF.
#[test]
fn a_hugging_face_folder_with_a_sentencepiece_style_vocabulary_exports_to_gguf() {
    let folder = Checkpoint::load(&data("hf/stories260K-hf"), None).unwrap();
    let vocabulary = folder.tokenizer.sentencepiece().unwrap();
    let converted = Tokenizer::SentencePiece(vocabulary.clone());
    let shakespeare = std::fs::read_to_string(data("tinyshakespeare/input.txt")).unwrap();
    for line in shakespeare.lines().filter(|l| !l.is_empty()).take(400) {
        assert_eq!(
            converted.encode_with_bos(line).unwrap(),
            folder.tokenizer.encode_with_bos(line).unwrap(),
            "{line}"
        );
    }
    let bytes =
        gguf_write::to_bytes(&folder.config, &folder.weights, &vocabulary, GgufStore::F32).unwrap();
    let (from_gguf, _) = reread(&bytes);
    let (from_folder, tokenizer) = folder.into_model::<Cpu>(&Default::default()).unwrap();
    let ids = tokenizer
        .encode_with_bos("Tom was sad because his red kite broke.")
        .unwrap();
    assert_eq!(
        token_logprobs(&from_gguf, &ids),
        token_logprobs(&from_folder, &ids)
    );
}
