//! Scalar heads read the right token whatever the padding; a non-finite loss never moves weights.

use crate::common::{assert_close, Cpu};
use alignlab::host::read_scalar_blocking;
use alignlab::host::read_vec_blocking;
use alignlab::logprobs::SequenceBatch;
use alignlab::model::{Llama, LlamaConfig, ScalarHead};
use alignlab::train::{clip_grad_norm, grad_norm, OptimConfig, Trainer};
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::GradientsParams;

fn config() -> LlamaConfig {
    LlamaConfig {
        vocab_size: 50,
        dim: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        hidden_dim: 48,
        max_seq_len: 64,
        norm_eps: 1e-5,
        rope_theta: 10_000.0,
        arch: Default::default(),
    }
}

#[test]
fn the_reward_head_reads_each_rows_last_real_token_regardless_of_padding() {
    let device = Default::default();
    let model = Llama::<Cpu>::init(&config(), 3, &device).unwrap();
    let head = ScalarHead::<Cpu>::new(32, 2, 4, &device);
    let short = (vec![1u32, 5, 6], vec![7u32, 8]);
    let long = (vec![1u32, 9, 10, 11, 12], vec![13u32, 14, 15, 16]);
    let alone = SequenceBatch::<Cpu>::new(std::slice::from_ref(&short), 64, &device).unwrap();
    let together = SequenceBatch::<Cpu>::new(&[short.clone(), long], 64, &device).unwrap();
    let reward = |batch: &SequenceBatch<Cpu>| {
        let hidden = model.forward_hidden(batch.tokens.clone());
        read_vec_blocking(head.at_last_token(hidden, batch.last_index.clone())).unwrap()
    };
    let alone_reward = reward(&alone);
    let together_reward = reward(&together);
    assert_eq!(alone_reward.len(), 2, "two objectives");
    assert_close(&alone_reward, &together_reward[..2], 1e-5);
    // The same value the per-token head gives at that position.
    let per_token =
        read_vec_blocking(head.per_token(model.forward_hidden(alone.tokens.clone()))).unwrap();
    assert_close(&alone_reward, &per_token[4 * 2..5 * 2], 1e-6);
    assert!(
        (together_reward[0] - together_reward[2]).abs() > 1e-6,
        "rows differ"
    );
}

#[test]
fn a_non_finite_loss_leaves_the_weights_untouched_and_is_recorded() {
    type Train = Autodiff<Cpu>;
    let device = Default::default();
    let model = Llama::<Train>::init(&config(), 1, &device).unwrap();
    let before = pollster::block_on(model.valid().to_weights()).unwrap();
    let mut trainer = Trainer::<Train, Llama<Train>>::new(OptimConfig::default());
    let batch = SequenceBatch::<Train>::new(&[(vec![1, 2], vec![3, 4])], 64, &device).unwrap();
    let loss = model
        .forward(batch.tokens.clone())
        .mean()
        .mul_scalar(f32::NAN);
    let (model, output) = trainer.step(model, loss, f32::NAN).unwrap();
    assert!(output.is_none());
    assert_eq!(trainer.skipped, vec![0]);
    let after = pollster::block_on(model.valid().to_weights()).unwrap();
    for (name, tensor) in &before.tensors {
        assert_eq!(tensor.data, after.tensors[name].data, "{name} moved");
    }
    // A finite loss does move them, and the clipped gradient norm is reported.
    let loss = model.forward(batch.tokens.clone()).mean();
    let value = read_scalar_blocking(loss.clone()).unwrap();
    let (model, output) = trainer.step(model, loss, value).unwrap();
    let grad_norm = read_scalar_blocking(output.unwrap().grad_norm).unwrap();
    assert!(grad_norm > 0.0 && grad_norm.is_finite());
    let after = pollster::block_on(model.valid().to_weights()).unwrap();
    assert_ne!(
        before.tensors["model.norm.weight"].data,
        after.tensors["model.norm.weight"].data
    );
}

#[test]
fn global_gradient_clipping_rescales_all_gradients_to_the_limit() {
    type Train = Autodiff<Cpu>;
    let device = Default::default();
    let model = Llama::<Train>::init(&config(), 2, &device).unwrap();
    let batch =
        SequenceBatch::<Train>::new(&[(vec![1, 2, 3], vec![4, 5, 6])], 64, &device).unwrap();
    let loss = model.forward(batch.tokens.clone()).powi_scalar(2).mean();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let norm = read_scalar_blocking(grad_norm(&model, &grads)).unwrap();
    assert!(norm > 0.0);
    let (clipped, reported) = clip_grad_norm(&model, grads, Some(norm / 4.0));
    assert_eq!(
        read_scalar_blocking(reported).unwrap(),
        norm,
        "reported before clipping"
    );
    let after = read_scalar_blocking(grad_norm(&model, &clipped)).unwrap();
    assert!(
        (after - norm / 4.0).abs() < 1e-4 * norm,
        "{after} vs {}",
        norm / 4.0
    );
    // Under the limit nothing changes.
    let (unclipped, _) = clip_grad_norm(&model, clipped, Some(norm));
    let same = read_scalar_blocking(grad_norm(&model, &unclipped)).unwrap();
    assert!((same - norm / 4.0).abs() < 1e-4 * norm);
}
