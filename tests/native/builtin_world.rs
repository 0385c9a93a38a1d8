//! The built-in world end to end on the CPU backend: checkpoints round-trip, SFT is seeded and
//! deterministic, lowers its loss and moves the weights, and the shipped model is a real one.

use crate::common::{assert_close, temp_path, Cpu};
use alignlab::dataset::{tokenize_examples, Example};
use alignlab::host::read_vec_blocking;
use alignlab::io::Checkpoint;
use alignlab::logprobs::{completion_logprobs, SequenceBatch};
use alignlab::model::Llama;
use alignlab::run::sft::{self, SftConfig};
use alignlab::train::OptimConfig;
use alignlab::{policy, world};
use burn::backend::Autodiff;
use burn::module::AutodiffModule;

type Train = Autodiff<Cpu>;

fn examples(seed: u64, n: usize) -> Vec<Example> {
    let mut w = world::World::new(seed);
    (0..n)
        .map(|_| {
            let p = w.positive_example();
            Example {
                prompt: p.prompt,
                completion: p.continuation,
            }
        })
        .collect()
}

fn tiny_config(vocab: usize) -> alignlab::model::LlamaConfig {
    alignlab::model::LlamaConfig {
        dim: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        hidden_dim: 64,
        ..world::model_config(vocab)
    }
}

fn run_sft(seed: u64, steps: usize) -> (Llama<Train>, Vec<f64>) {
    let tokenizer = world::tokenizer();
    let pairs = tokenize_examples(&tokenizer, &examples(1, 64)).unwrap();
    let model = Llama::<Train>::init(
        &tiny_config(tokenizer.vocab_size()),
        seed,
        &Default::default(),
    )
    .unwrap();
    let config = SftConfig {
        optim: OptimConfig {
            lr: 3e-3,
            warmup_steps: 2,
            total_steps: steps,
            ..Default::default()
        },
        batch_size: 8,
        seed,
    };
    let mut losses = Vec::new();
    let model = pollster::block_on(sft::train(model, &pairs, &config, |m| {
        losses.push(m.get(alignlab::metrics::TRAIN_LOSS).unwrap());
    }))
    .unwrap();
    (model, losses)
}

#[test]
fn sft_is_deterministic_by_seed_and_lowers_the_loss() {
    let (_, a) = run_sft(5, 12);
    let (_, b) = run_sft(5, 12);
    assert_eq!(a, b, "same seed, same losses, bit for bit");
    let (_, c) = run_sft(6, 12);
    assert_ne!(a, c);
    assert!(a[11] < a[0] - 0.5, "loss fell: {a:?}");
}

#[test]
fn an_sft_step_changes_the_weights() {
    let tokenizer = world::tokenizer();
    let model =
        Llama::<Train>::init(&tiny_config(tokenizer.vocab_size()), 1, &Default::default()).unwrap();
    let before = pollster::block_on(model.valid().to_weights()).unwrap();
    let (after_model, _) = run_sft(1, 1);
    let after = pollster::block_on(after_model.valid().to_weights()).unwrap();
    for (name, tensor) in &before.tensors {
        assert_ne!(tensor.data, after.tensors[name].data, "{name} did not move");
    }
}

#[test]
fn checkpoints_round_trip_exactly() {
    let tokenizer = world::tokenizer();
    let model =
        Llama::<Cpu>::init(&tiny_config(tokenizer.vocab_size()), 9, &Default::default()).unwrap();
    let path = temp_path("roundtrip.safetensors");
    pollster::block_on(policy::save(&model, &tokenizer, &path)).unwrap();
    let (restored, restored_tok) = Checkpoint::load(&path, None)
        .unwrap()
        .into_model::<Cpu>(&Default::default())
        .unwrap();
    assert_eq!(restored.config(), model.config());
    let text = " Tom felt happy. The end.";
    assert_eq!(
        restored_tok.encode(text).unwrap(),
        tokenizer.encode(text).unwrap()
    );
    let ids = tokenizer.encode_with_bos(text).unwrap();
    let batch = SequenceBatch::<Cpu>::new(
        &[(ids[..1].to_vec(), ids[1..].to_vec())],
        256,
        &Default::default(),
    )
    .unwrap();
    let a = read_vec_blocking(completion_logprobs(&model, &batch)).unwrap();
    let b = read_vec_blocking(completion_logprobs(&restored, &batch)).unwrap();
    assert_close(&a, &b, 0.0);
    std::fs::remove_file(path).ok();
}

#[test]
fn a_corrupt_checkpoint_is_named() {
    let bytes = policy::BUILTIN_CHECKPOINT;
    let message = Checkpoint::from_bytes(&bytes[..bytes.len() / 2], "run.safetensors", None)
        .unwrap_err()
        .to_string();
    assert!(message.starts_with("run.safetensors"), "{message}");
}

#[test]
fn the_shipped_builtin_model_writes_the_worlds_stories() {
    let (model, tokenizer) =
        policy::load::<Cpu>(policy::BUILTIN, None, &Default::default()).unwrap();
    // Held-out stories: the pretrained model must predict them far better than chance.
    let mut held_out = world::World::new(424_242);
    let pairs = tokenize_examples(
        &tokenizer,
        &(0..32)
            .map(|_| Example {
                prompt: String::new(),
                completion: held_out.story(),
            })
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let loss = pollster::block_on(sft::eval_loss(&model, &pairs, 16)).unwrap();
    let chance = (tokenizer.vocab_size() as f32).ln();
    assert!(loss < 1.0, "held-out loss {loss} (chance {chance})");
    // Its samples are made of the world's words.
    let samples = pollster::block_on(world::eval::sample_and_score(
        &model,
        &tokenizer,
        &["Once upon a time, there was a big dog named Max.".to_string()],
        &alignlab::sample::SamplingConfig {
            max_new_tokens: 40,
            seed: 1,
            ..Default::default()
        },
    ))
    .unwrap();
    let unk = tokenizer.encode("<unk>").unwrap()[0];
    assert!(
        !tokenizer.encode(&samples[0].0).unwrap().contains(&unk),
        "{}",
        samples[0].0
    );
}
