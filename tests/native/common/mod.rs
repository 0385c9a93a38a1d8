#![allow(dead_code)]
//! Shared test helpers: where the real data lives, and the backends we compare.

use std::path::PathBuf;

pub type Cpu = burn::backend::Flex;
pub type Reference = burn::backend::NdArray;

/// A test data file: in `$ALIGNLAB_DATA`, or `../shared/data` beside the repository, or the
/// user's cache, downloaded there on first use from its public origin and checked
/// (`alignlab::testdata`; `cargo run -- test-data` does the same ahead of time).
pub fn data(relative: &str) -> PathBuf {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let root = ROOT.get_or_init(|| {
        let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
        alignlab::testdata::locate(&beside, |m| eprintln!("{m}"))
            .unwrap_or_else(|e| panic!("test data: {e}"))
    });
    let path = root.join(relative);
    assert!(path.exists(), "test data missing: {}", path.display());
    path
}

pub fn temp_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    dir.join(format!("{}-{}", std::process::id(), name))
}

/// |a − b| ≤ tolerance · (1 + |b|) elementwise: relative for large values, absolute near zero.
pub fn assert_close(a: &[f32], b: &[f32], tolerance: f32) {
    assert_eq!(a.len(), b.len());
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0f32, f32::max);
    assert!(
        worst <= tolerance,
        "max scaled difference {worst} > {tolerance}"
    );
}

/// `k` continuations of `n` world prompts sampled from the built-in model, with gold rewards.
pub fn world_samples(n: usize, k: usize, seed: u64) -> Vec<(String, Vec<(String, f32)>)> {
    let device = Default::default();
    let (model, tokenizer) =
        alignlab::policy::load::<Cpu>(alignlab::policy::BUILTIN, None, &device).unwrap();
    pollster::block_on(alignlab::world::preferences::sample_scored(
        &model, &tokenizer, n, k, seed, 40,
    ))
    .unwrap()
}

/// Per-token log-probs of `ids` after its first token, on the CPU backend.
pub fn token_logprobs(model: &alignlab::model::Llama<Cpu>, ids: &[u32]) -> Vec<f32> {
    let batch = alignlab::logprobs::SequenceBatch::<Cpu>::new(
        &[(ids[..1].to_vec(), ids[1..].to_vec())],
        model.config().max_seq_len,
        &Default::default(),
    )
    .unwrap();
    alignlab::host::read_vec_blocking(alignlab::logprobs::completion_logprobs(model, &batch))
        .unwrap()
}
