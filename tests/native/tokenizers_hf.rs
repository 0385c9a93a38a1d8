//! Hugging Face tokenizers where they fit: GPT-2 byte-level BPE from OpenAI's files and from a
//! `tokenizer.json`, round-tripping real and non-ASCII text.

use crate::common::data;
use alignlab::io::Tokenizer;

#[test]
fn gpt2_bpe_round_trips_shakespeare_and_unicode() {
    let tokenizer =
        Tokenizer::gpt2_from_files(&data("gpt2-bpe/encoder.json"), &data("gpt2-bpe/vocab.bpe"))
            .unwrap();
    assert_eq!(tokenizer.vocab_size(), 50_257);
    assert_eq!(tokenizer.eos_id(), Some(50_256));
    // Known GPT-2 ids: "Hello" = 15496, " world" = 995.
    assert_eq!(tokenizer.encode("Hello world").unwrap(), vec![15496, 995]);
    let text = std::fs::read_to_string(data("tinyshakespeare/input.txt")).unwrap();
    for line in text.lines().take(500) {
        let ids = tokenizer.encode(line).unwrap();
        assert_eq!(tokenizer.decode(&ids), line);
    }
    for s in [
        "naïve café — 東京 🙂",
        "Ünïcödé: ∑ x² ≥ 0\n\ttabs  and  spaces",
    ] {
        assert_eq!(tokenizer.decode(&tokenizer.encode(s).unwrap()), s);
    }
}

#[test]
fn hf_tokenizer_json_loads_and_round_trips() {
    let tokenizer = Tokenizer::from_hf_file(&data("tiny-random-gpt2/tokenizer.json")).unwrap();
    assert_eq!(tokenizer.vocab_size(), 1000);
    let text = "First Citizen: Before we proceed any further, hear me speak.";
    assert_eq!(tokenizer.decode(&tokenizer.encode(text).unwrap()), text);
}

#[test]
fn tokenizers_survive_the_checkpoint_json_round_trip() {
    let gpt2 = Tokenizer::from_hf_file(&data("tiny-random-gpt2/tokenizer.json")).unwrap();
    let restored = Tokenizer::from_json(&gpt2.to_json(), "ckpt").unwrap();
    let text = "Speak, speak.";
    assert_eq!(gpt2.encode(text).unwrap(), restored.encode(text).unwrap());
}

#[test]
fn a_broken_tokenizer_json_is_named() {
    let message = Tokenizer::from_hf_json("{\"model\": 3}", "tok.json")
        .unwrap_err()
        .to_string();
    assert!(message.starts_with("tok.json"), "{message}");
}
