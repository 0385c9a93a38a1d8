//! The core against a real pretrained model: stories260K in GGUF and llama2.c formats.

use crate::common::{assert_close, data, Cpu, Reference};
use alignlab::host::read_vec_blocking;
use alignlab::io::{Checkpoint, Tokenizer};
use alignlab::logprobs::{completion_logprobs, SequenceBatch};
use alignlab::model::Llama;
use alignlab::sample::{generate, SamplingConfig};

const EXPECTED: &str = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high";

fn load_gguf() -> (Llama<Cpu>, Tokenizer) {
    Checkpoint::load(&data("stories260K/stories260K.gguf"), None)
        .unwrap()
        .into_model(&Default::default())
        .unwrap()
}

fn load_bin() -> (Llama<Cpu>, Tokenizer) {
    Checkpoint::load(
        &data("stories260K/stories260K.bin"),
        Some(&data("stories260K/tok512.bin")),
    )
    .unwrap()
    .into_model(&Default::default())
    .unwrap()
}

fn greedy(max_new_tokens: usize, use_cache: bool) -> SamplingConfig {
    SamplingConfig {
        max_new_tokens,
        temperature: 0.0,
        use_cache,
        ..Default::default()
    }
}

fn greedy_text(model: &Llama<Cpu>, tokenizer: &Tokenizer) -> String {
    let bos = tokenizer.bos_id().unwrap();
    let out = pollster::block_on(generate(
        model,
        &[vec![bos]],
        tokenizer.eos_id(),
        &greedy(60, true),
    ))
    .unwrap();
    tokenizer.decode(&out[0])
}

#[test]
fn greedy_decoding_from_gguf_reproduces_the_documented_sample() {
    let (model, tokenizer) = load_gguf();
    let text = greedy_text(&model, &tokenizer);
    assert!(text.starts_with(&EXPECTED[..100]), "got: {text}");
}

#[test]
fn greedy_decoding_from_llama2c_bin_reproduces_the_documented_sample() {
    let (model, tokenizer) = load_bin();
    let text = greedy_text(&model, &tokenizer);
    assert!(text.starts_with(&EXPECTED[..100]), "got: {text}");
}

#[test]
fn both_formats_give_the_same_vocabulary_and_logits() {
    let (gguf, gguf_tok) = load_gguf();
    let (bin, bin_tok) = load_bin();
    let text = "Once upon a time, Tim had a dog. ünïcödé ✓";
    assert_eq!(
        gguf_tok.encode(text).unwrap(),
        bin_tok.encode(text).unwrap()
    );
    let ids = gguf_tok.encode_with_bos(text).unwrap();
    let batch = SequenceBatch::<Cpu>::new(
        &[(ids[..1].to_vec(), ids[1..].to_vec())],
        512,
        &Default::default(),
    )
    .unwrap();
    let a = read_vec_blocking(completion_logprobs(&gguf, &batch)).unwrap();
    let b = read_vec_blocking(completion_logprobs(&bin, &batch)).unwrap();
    assert_close(&a, &b, 1e-5);
}

#[test]
fn tokenizer_encodes_like_llama2c_and_round_trips_real_text() {
    let (_, tokenizer) = load_gguf();
    // llama2.c's encoder: a dummy-prefix space, then merges by score.
    let ids = tokenizer.encode("Once upon a time").unwrap();
    assert_eq!(tokenizer.decode(&ids), "Once upon a time");
    assert!(
        ids.len() < "Once upon a time".len(),
        "merges happened: {ids:?}"
    );
    let shakespeare = std::fs::read_to_string(data("tinyshakespeare/input.txt")).unwrap();
    for line in shakespeare.lines().filter(|l| !l.is_empty()).take(300) {
        let ids = tokenizer.encode(line).unwrap();
        assert_eq!(tokenizer.decode(&ids), line);
    }
    // Characters outside the 512-token vocabulary fall back to bytes.
    for text in ["naïve café — 東京 🙂", "Ünïcödé: ∑ x² ≥ 0"] {
        let ids = tokenizer.encode(text).unwrap();
        assert!(
            ids.iter().any(|&t| (3..259).contains(&t)),
            "byte fallback used"
        );
        assert_eq!(tokenizer.decode(&ids), text);
    }
}

#[test]
fn cached_and_uncached_generation_agree() {
    let (model, tokenizer) = load_gguf();
    let prompts = vec![tokenizer.encode_with_bos("Once upon a time").unwrap()];
    let sampling = SamplingConfig {
        max_new_tokens: 30,
        temperature: 1.0,
        seed: 3,
        stop_at_eos: false,
        ..Default::default()
    };
    let cached = pollster::block_on(generate(&model, &prompts, None, &sampling)).unwrap();
    let uncached = pollster::block_on(generate(
        &model,
        &prompts,
        None,
        &SamplingConfig {
            use_cache: false,
            ..sampling
        },
    ))
    .unwrap();
    assert_eq!(cached, uncached);
}

#[test]
fn batched_generation_of_different_length_prompts_matches_one_at_a_time() {
    let (model, tokenizer) = load_gguf();
    let prompts: Vec<Vec<u32>> = [
        "Once upon a time, there was a big dog",
        "Lily",
        "The sun was",
    ]
    .iter()
    .map(|p| tokenizer.encode_with_bos(p).unwrap())
    .collect();
    let sampling = greedy(25, true);
    let batched = pollster::block_on(generate(
        &model,
        &prompts,
        None,
        &SamplingConfig {
            stop_at_eos: false,
            ..sampling.clone()
        },
    ))
    .unwrap();
    for (prompt, expected) in prompts.iter().zip(&batched) {
        let single = pollster::block_on(generate(
            &model,
            std::slice::from_ref(prompt),
            None,
            &SamplingConfig {
                stop_at_eos: false,
                ..sampling.clone()
            },
        ))
        .unwrap();
        assert_eq!(&single[0], expected);
    }
}

#[test]
fn sampling_is_reproducible_by_seed() {
    let (model, tokenizer) = load_gguf();
    let prompts = vec![tokenizer.encode_with_bos("Once").unwrap(); 3];
    let sampling = SamplingConfig {
        max_new_tokens: 20,
        temperature: 1.0,
        top_k: 40,
        top_p: 0.9,
        seed: 11,
        ..Default::default()
    };
    let a = pollster::block_on(generate(&model, &prompts, tokenizer.eos_id(), &sampling)).unwrap();
    let b = pollster::block_on(generate(&model, &prompts, tokenizer.eos_id(), &sampling)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a[0], a[1], "rows draw from different streams");
    let c = pollster::block_on(generate(
        &model,
        &prompts,
        tokenizer.eos_id(),
        &SamplingConfig {
            seed: 12,
            ..sampling
        },
    ))
    .unwrap();
    assert_ne!(a, c);
}

#[test]
fn flex_and_ndarray_backends_agree_on_logprobs() {
    let (flex, tokenizer) = load_gguf();
    let (reference, _): (Llama<Reference>, _) =
        Checkpoint::load(&data("stories260K/stories260K.gguf"), None)
            .unwrap()
            .into_model(&Default::default())
            .unwrap();
    let pairs: Vec<(Vec<u32>, Vec<u32>)> = [
        "Once upon a time",
        "The cat sat on the mat and looked at the bird.",
    ]
    .iter()
    .map(|t| {
        let ids = tokenizer.encode_with_bos(t).unwrap();
        (ids[..2].to_vec(), ids[2..].to_vec())
    })
    .collect();
    let a = read_vec_blocking(completion_logprobs(
        &flex,
        &SequenceBatch::new(&pairs, 512, &Default::default()).unwrap(),
    ))
    .unwrap();
    let b = read_vec_blocking(completion_logprobs(
        &reference,
        &SequenceBatch::new(&pairs, 512, &Default::default()).unwrap(),
    ))
    .unwrap();
    assert_close(&a, &b, 1e-4);
}

#[test]
fn a_prompt_longer_than_the_context_is_refused() {
    let (model, _) = load_gguf();
    let long = vec![1u32; model.config().max_seq_len];
    let err = pollster::block_on(generate(&model, &[long], None, &greedy(10, true))).unwrap_err();
    assert!(err.to_string().contains("context"), "{err}");
}
