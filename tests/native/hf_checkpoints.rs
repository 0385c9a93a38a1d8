//! Hugging Face model folders against transformers: the per-token log-probs and greedy ids that
//! transformers 5.24 computed for each fixture (`expected_logprobs.json`), and stories260K's HF
//! conversion against its GGUF.

use crate::common;

use std::path::PathBuf;

use crate::common::{assert_close, data, token_logprobs, Cpu};
use alignlab::io::{Checkpoint, Tokenizer};
use alignlab::model::Llama;
use alignlab::sample::{generate, SamplingConfig};
use serde_json::Value;

fn load(folder: &str) -> (Llama<Cpu>, Tokenizer) {
    Checkpoint::load(&data(folder), None)
        .unwrap()
        .into_model(&Default::default())
        .unwrap()
}

fn greedy(model: &Llama<Cpu>, prompt: &[u32], new: usize) -> Vec<u32> {
    let sampling = SamplingConfig {
        max_new_tokens: new,
        temperature: 0.0,
        stop_at_eos: false,
        ..Default::default()
    };
    let out = pollster::block_on(generate(model, &[prompt.to_vec()], None, &sampling)).unwrap();
    out.into_iter().next().unwrap()
}

fn expected(path: PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

/// Every case's tokens and per-token log-probs equal transformers' (1e-4), and greedy ids from
/// "Once upon a time" too.
fn matches_transformers(folder: &str, expected_file: &str) {
    let (model, tokenizer) = load(folder);
    let expected = expected(data(expected_file));
    for case in expected["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want_ids = ids(&case["token_ids"]);
        assert_eq!(tokenizer.encode_with_bos(text).unwrap(), want_ids, "{text}");
        let got = token_logprobs(&model, &want_ids);
        assert_close(&got, &floats(&case["logprobs"]), 1e-4);
        let total: f32 = got.iter().sum();
        let want_total = case["total"].as_f64().unwrap() as f32;
        assert!(
            (total - want_total).abs() < 1e-3,
            "{text}: {total} vs {want_total}"
        );
    }
    let greedy_ids = ids(&expected["greedy_ids_from_once_upon_a_time"]);
    let prompt = tokenizer.encode_with_bos("Once upon a time").unwrap();
    assert_eq!(&greedy_ids[..prompt.len()], &prompt[..]);
    let new = greedy(&model, &prompt, greedy_ids.len() - prompt.len());
    assert_eq!(&greedy_ids[prompt.len()..], &new[..]);
}

#[test]
fn qwen2_folder_matches_transformers() {
    matches_transformers(
        "hf/tiny-random-qwen2",
        "hf/tiny-random-qwen2/expected_logprobs.json",
    );
}

#[test]
fn gpt2_folder_matches_transformers() {
    matches_transformers(
        "tiny-random-gpt2",
        "tiny-random-gpt2/expected_logprobs.json",
    );
}

#[test]
fn stories260k_hf_folder_equals_its_gguf() {
    let (hf, hf_tokenizer) = load("hf/stories260K-hf");
    let (gguf, gguf_tokenizer) = Checkpoint::load(&data("stories260K/stories260K.gguf"), None)
        .unwrap()
        .into_model::<Cpu>(&Default::default())
        .unwrap();
    let cases = [
        ("The cat sat on the mat and smiled.", 16, -44.01717f32),
        (
            "Tom was sad because his red kite broke, but his mom helped him fix it.",
            36,
            -63.37505,
        ),
    ];
    for (text, length, total) in cases {
        let ids = hf_tokenizer.encode_with_bos(text).unwrap();
        assert_eq!(ids.len(), length, "{text}");
        assert_eq!(ids, gguf_tokenizer.encode_with_bos(text).unwrap(), "{text}");
        let from_hf = token_logprobs(&hf, &ids);
        assert_close(&from_hf, &token_logprobs(&gguf, &ids), 1e-4);
        let sum: f32 = from_hf.iter().sum();
        assert!((sum - total).abs() < 1e-3, "{text}: {sum} vs {total}");
    }
}

/// Exported as a Hugging Face folder and read back, a model gives the same log-probs.
#[test]
fn folders_written_by_export_read_back_the_same() {
    for (folder, text) in [
        ("hf/tiny-random-qwen2", "Once upon a time"),
        ("tiny-random-gpt2", "Hello world, this is a test."),
        ("hf/stories260K-hf", "The cat sat on the mat and smiled."),
    ] {
        let (model, tokenizer) = load(folder);
        let out = common::temp_path(&format!("export-{}/", folder.replace('/', "-")));
        pollster::block_on(alignlab::policy::save(&model, &tokenizer, &out)).unwrap();
        let (back, back_tokenizer) = Checkpoint::load(&out, None)
            .unwrap()
            .into_model::<Cpu>(&Default::default())
            .unwrap();
        assert_eq!(back.config(), model.config(), "{folder}");
        let ids = tokenizer.encode_with_bos(text).unwrap();
        assert_eq!(back_tokenizer.encode_with_bos(text).unwrap(), ids);
        assert_eq!(back_tokenizer.eos_id(), tokenizer.eos_id());
        assert_eq!(
            token_logprobs(&back, &ids),
            token_logprobs(&model, &ids),
            "{folder}"
        );
    }
}

/// A reward model exports as a sequence-classification folder and reads back as `rm:DIR`.
#[test]
fn reward_models_round_trip_through_sequence_classification_folders() {
    use alignlab::reward::{LearnedReward, RewardHeads};
    let (trunk, tokenizer) = load("hf/tiny-random-qwen2");
    let reward = LearnedReward::from_policy(trunk, RewardHeads::single(), 7).unwrap();
    let out = common::temp_path("reward-export");
    let bias = pollster::block_on(reward.export_hf(&tokenizer, &out, Default::default())).unwrap();
    assert_eq!(bias, 0.0);
    let config: Value = expected(out.join("config.json"));
    assert_eq!(config["architectures"][0], "Qwen2ForSequenceClassification");
    let (back, _) = LearnedReward::<Cpu>::load(&out, &Default::default()).unwrap();
    let sequences = [
        tokenizer
            .encode_with_bos("Once upon a time there was")
            .unwrap(),
        tokenizer.encode_with_bos("Tom was sad").unwrap(),
    ];
    let score = |reward: &LearnedReward<Cpu>| {
        let pairs: Vec<(Vec<u32>, Vec<u32>)> = sequences
            .iter()
            .map(|s| (s[..1].to_vec(), s[1..].to_vec()))
            .collect();
        pollster::block_on(alignlab::reward::objective::score_sequences(
            reward, &pairs, 8,
        ))
        .unwrap()
        .1
    };
    assert_eq!(score(&back), score(&reward));
    // A causal LM is not a reward model, and says so.
    let message = LearnedReward::<Cpu>::load(&data("hf/tiny-random-qwen2"), &Default::default())
        .unwrap_err()
        .to_string();
    assert!(message.contains("ForSequenceClassification"), "{message}");
}

/// The model's chat template renders as transformers rendered it (three cases in the fixture).
#[test]
fn chat_templates_render_as_transformers_does() {
    let (_, tokenizer) = load("hf/tiny-random-qwen2");
    let template = tokenizer
        .chat_template()
        .unwrap()
        .expect("the fixture has a template");
    let expected = expected(data("hf/tiny-random-qwen2/expected_logprobs.json"));
    for case in expected["chat_template_cases"].as_array().unwrap() {
        let messages: Vec<alignlab::io::chat::Message> = case["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| alignlab::io::chat::Message {
                role: m["role"].as_str().unwrap().into(),
                content: m["content"].as_str().unwrap().into(),
            })
            .collect();
        let generation_prompt = case["add_generation_prompt"].as_bool().unwrap();
        assert_eq!(
            template.render(&messages, generation_prompt).unwrap(),
            case["rendered"].as_str().unwrap()
        );
    }
}

/// Conversational pairs (TRL's explicit and implicit-prompt forms) render with the template;
/// the completion, which the loss covers, is the assistant's turn only.
#[test]
fn conversational_pairs_render_with_the_models_template() {
    use alignlab::dataset::PreferenceRows;
    use alignlab::io::prefs::ChatRendering;
    let (_, tokenizer) = load("hf/tiny-random-qwen2");
    let template = tokenizer.chat_template().unwrap().unwrap();
    let text = r#"{"prompt": [{"role": "user", "content": "Tell me a story."}], "chosen": [{"role": "assistant", "content": "Once upon a time"}], "rejected": [{"role": "assistant", "content": "No."}]}
{"chosen": [{"role": "user", "content": "Tell me a story."}, {"role": "assistant", "content": "Once upon a time"}], "rejected": [{"role": "user", "content": "Tell me a story."}, {"role": "assistant", "content": "No."}]}"#;
    let (rows, _) = PreferenceRows::parse_rendered(
        text.as_bytes(),
        "c.jsonl",
        false,
        ChatRendering::Template(&template),
    )
    .unwrap();
    let PreferenceRows::Pairs(pairs) = rows else {
        panic!("pairs expected")
    };
    for pair in &pairs {
        assert_eq!(
            pair.prompt,
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nTell me a story.<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(pair.chosen, "Once upon a time<|im_end|>\n");
        assert_eq!(pair.rejected, "No.<|im_end|>\n");
    }
    // Without a template, the same rows read as the HH-RLHF transcript, as before.
    let (rows, _) = PreferenceRows::parse(text.as_bytes(), "c.jsonl", false).unwrap();
    let PreferenceRows::Pairs(pairs) = rows else {
        panic!("pairs expected")
    };
    assert_eq!(pairs[1].prompt, "\n\nHuman: Tell me a story.\n\nAssistant:");
    assert_eq!(pairs[1].chosen, " Once upon a time");
}

/// Fixtures made by `tools/make_fixtures.py` with transformers (random weights stored in bf16 or
/// f16): Qwen3's q/k norms and explicit head width, Mistral, Llama 3.1's RoPE scaling.
#[test]
fn half_precision_qwen3_mistral_and_scaled_llama_match_transformers() {
    let tokenizer = data("hf/stories260K-hf/tokenizer.json");
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf");
    for name in ["qwen3-bf16", "mistral-f16", "llama3-scaled-bf16"] {
        let folder = fixtures.join(name);
        let (model, _) = Checkpoint::load(&folder, Some(&tokenizer))
            .unwrap()
            .into_model::<Cpu>(&Default::default())
            .unwrap();
        let expected = expected(folder.join("expected.json"));
        for case in expected["cases"].as_array().unwrap() {
            let got = token_logprobs(&model, &ids(&case["token_ids"]));
            assert_close(&got, &floats(&case["logprobs"]), 1e-4);
        }
        let greedy_ids = ids(&expected["greedy_ids"]);
        let prompt = ids(&expected["cases"][1]["token_ids"]);
        let new = greedy(&model, &prompt, greedy_ids.len() - prompt.len());
        assert_eq!(&greedy_ids[prompt.len()..], &new[..], "{name}");
    }
}

/// A reward model as the Hub has them (`Qwen2ForSequenceClassification`, one label, bf16, made by
/// transformers): its rewards are transformers' score at each sequence's last token.
#[test]
fn a_hub_reward_model_scores_as_transformers_does() {
    use alignlab::reward::LearnedReward;
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf/qwen2-reward-bf16");
    let folder = common::temp_path("hub-reward");
    std::fs::create_dir_all(&folder).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(file), folder.join(file)).unwrap();
    }
    std::fs::copy(
        data("hf/stories260K-hf/tokenizer.json"),
        folder.join("tokenizer.json"),
    )
    .unwrap();
    let (reward, _) = LearnedReward::<Cpu>::load(&folder, &Default::default()).unwrap();
    let expected = expected(fixture.join("expected.json"));
    let pairs: Vec<(Vec<u32>, Vec<u32>)> = expected["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let row = ids(row);
            (row[..1].to_vec(), row[1..].to_vec())
        })
        .collect();
    let (_, rewards) = pollster::block_on(alignlab::reward::objective::score_sequences(
        &reward, &pairs, 8,
    ))
    .unwrap();
    assert_close(&rewards, &floats(&expected["rewards"]), 1e-4);
}
