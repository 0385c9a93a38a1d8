//! The core on WebGPU inside headless Chromium (wasm-bindgen-test), always against the CPU
//! backend in the same page: a known wgpu/Chrome issue can make shaders fail silently.
//! Run: `cargo test --target wasm32-unknown-unknown --test webgpu` (see DEVELOPERS.md).
#![cfg(target_arch = "wasm32")]

use alignlab::algo::preference::{PreferenceConfig, PreferenceData, PreferenceLoss};
use alignlab::backend::Backend;
use alignlab::dataset::RankedSequences;
use alignlab::io::Checkpoint;
use alignlab::kernel_checks::{
    add_rms_norm_deviation, attention_cases, attention_deviation, log_prob_deviation,
    rms_norm_deviation,
};
use alignlab::lab::{memory_plan, LabConfig};
use alignlab::memory::{wgpu_device_memory, Bytes};
use alignlab::metrics::TRAIN_LOSS;
use alignlab::model::{Llama, LlamaConfig};
use alignlab::policy;
use alignlab::rollout::sequence_token_logps;
use alignlab::run::preference;
use alignlab::sample::{generate, SamplingConfig};
use alignlab::shapes::LengthBlocks;
use alignlab::train::OptimConfig;
use burn::backend::wgpu::{graphics::WebGpu, init_setup_async, Wgpu, WgpuDevice};
use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use std::sync::atomic::{AtomicBool, Ordering};

use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// The WebGPU device, set up once per page (a second setup of the same device panics).
async fn gpu() -> WgpuDevice {
    static READY: AtomicBool = AtomicBool::new(false);
    let device = WgpuDevice::default();
    if !READY.swap(true, Ordering::SeqCst) {
        init_setup_async::<WebGpu>(&device, Default::default()).await;
    }
    device
}

fn builtin() -> Checkpoint {
    policy::builtin_from_bytes(include_bytes!("../assets/builtin.safetensors"))
        .expect("the built-in model")
}

fn sequences() -> Vec<(Vec<u32>, Vec<u32>)> {
    let tokenizer = builtin().tokenizer;
    [
        ("Once upon a time", " there was a happy dog."),
        ("Tom went to the park.", " He was sad and the rain fell."),
        (
            "The cat",
            " liked to play with Lily in the sun all day long.",
        ),
    ]
    .iter()
    .map(|(p, c)| {
        (
            tokenizer.encode_with_bos(p).unwrap(),
            tokenizer.encode(c).unwrap(),
        )
    })
    .collect()
}

/// Each completion token's log-prob, row after row (on WebGPU the batch is padded to a length
/// block, on the CPU not: the rows' completions are compared, not the padded tensors).
async fn logprobs<B: Backend>(model: &Llama<B>) -> Vec<f32> {
    sequence_token_logps(model, &sequences(), 3)
        .await
        .unwrap()
        .concat()
}

/// The page's WebGPU backend is burn's fused one (kernel fusion on, as natively), and pads shapes.
#[wasm_bindgen_test]
async fn the_page_runs_the_fused_backend_and_pads_shapes_on_webgpu() {
    let device = gpu().await;
    let name = <Autodiff<Wgpu> as burn::tensor::backend::Backend>::name(&device);
    assert!(name.starts_with("autodiff<fusion<cubecl<wgpu"), "{name}");
    assert_eq!(
        LengthBlocks::of::<Autodiff<Wgpu>>(&device),
        LengthBlocks::COMPILED
    );
}

/// WebGPU's own buffer limit, read from the adapter the page got: the built-in model fits; GPT-2
/// small's shape with a vocabulary whose embedding alone passes the limit is refused before
/// anything is allocated, the error naming the size asked for and the limit.
#[wasm_bindgen_test]
async fn a_model_too_big_for_webgpu_is_refused_naming_its_size_and_the_limit() {
    let memory = wgpu_device_memory(&gpu().await, "WebGPU");
    let limit = memory.largest_buffer.expect("WebGPU limits each buffer");
    let lab = LabConfig::default();
    memory_plan(&builtin().config, &lab).check(&memory).unwrap();
    let mut big = LlamaConfig::random_shape("llama-124m").unwrap();
    big.vocab_size = (limit / (4 * big.dim as u64)) as usize + 1;
    let message = memory_plan(&big, &lab)
        .check(&memory)
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("out of memory on WebGPU")
            && message.contains(&format!("allows {}", Bytes(limit))),
        "{message}"
    );
}

#[wasm_bindgen_test]
async fn a_forward_pass_on_webgpu_equals_the_cpu_backend() {
    let device = gpu().await;
    let (gpu_model, _) = builtin().into_model::<Wgpu>(&device).unwrap();
    let (cpu_model, _) = builtin().into_model::<Flex>(&Default::default()).unwrap();
    let on_gpu = logprobs(&gpu_model).await;
    let on_cpu = logprobs(&cpu_model).await;
    assert_eq!(on_gpu.len(), on_cpu.len());
    let worst = on_gpu
        .iter()
        .zip(&on_cpu)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(on_cpu.iter().any(|&v| v < -0.5), "log-probs look empty");
    assert!(worst < 1e-4, "WebGPU differs from the CPU by {worst}");
}

/// alignlab's log-prob kernel (CubeCL, `shaders/`) equals burn's unfused log_softmax + gather on
/// the same WebGPU device, in values and in gradients: a vocabulary of 300 (more than a cube's 256
/// units, not a power of two) and logits up to ±40.
#[wasm_bindgen_test]
async fn the_log_prob_kernel_equals_the_unfused_path_on_webgpu() {
    let device = gpu().await;
    let logits =
        Tensor::<Wgpu, 3>::random([3, 7, 300], Distribution::Uniform(-40.0, 40.0), &device);
    let targets: Vec<i64> = (0..21).map(|i| (i * 97 + 13) % 300).collect();
    let targets = Tensor::<Wgpu, 2, Int>::from_data(TensorData::new(targets, [3, 7]), &device);
    let gaps = read_all(log_prob_deviation::<Autodiff<Wgpu>>(logits, targets)).await;
    assert!(
        gaps.iter().all(|&gap| gap < 1e-4),
        "values, gradients: {gaps:?}"
    );
}

/// alignlab's RMSNorm kernels, alone and after a residual add, equal the unfused composition on the
/// same WebGPU device: values, and the gradients of the inputs and of the weight, on rows of 300
/// (more than a cube's 256 units) and of 8.
#[wasm_bindgen_test]
async fn the_rms_norm_kernels_equal_the_unfused_path_on_webgpu() {
    let device = gpu().await;
    for width in [300, 8] {
        let x = Tensor::<Wgpu, 3>::random([3, 7, width], Distribution::Normal(0.5, 2.0), &device);
        let weight = Tensor::<Wgpu, 1>::random([width], Distribution::Uniform(0.5, 1.5), &device);
        let gaps = read_all(rms_norm_deviation::<Autodiff<Wgpu>>(x, weight, 1e-5)).await;
        assert!(
            gaps.iter().all(|&gap| gap < 1e-4),
            "width {width}: values, x's and the weight's gradients: {gaps:?}"
        );
        let terms = [0.0, 1.0].map(|mean| {
            Tensor::<Wgpu, 3>::random([3, 7, width], Distribution::Normal(mean, 2.0), &device)
        });
        let weight = Tensor::<Wgpu, 1>::random([width], Distribution::Uniform(0.5, 1.5), &device);
        let gaps = read_all(add_rms_norm_deviation::<Autodiff<Wgpu>>(
            terms, weight, 1e-5,
        ))
        .await;
        assert!(
            gaps.iter().all(|&gap| gap < 1e-4),
            "after a residual add, width {width}: the sum, the norm, the residual's, the \
             update's and the weight's gradients: {gaps:?}"
        );
    }
}

/// alignlab's attention kernel (flash-style, forward and backward) equals burn's matmul, masked
/// softmax, matmul on the same WebGPU device, in values and in the gradients of q, k and v: causal
/// attention with two query heads per key/value head, and a cached decoding step over
/// left-padded rows, one query of which sees no key.
#[wasm_bindgen_test]
async fn the_attention_kernel_equals_the_unfused_path_on_webgpu() {
    let device = gpu().await;
    for (case, (inputs, spans)) in attention_cases::<Wgpu>(&device).into_iter().enumerate() {
        let gaps = read_all(attention_deviation::<Autodiff<Wgpu>>(inputs, &spans)).await;
        assert!(
            gaps.iter().all(|&gap| gap < 1e-4),
            "case {case}: values, q's, k's and v's gradients: {gaps:?}"
        );
    }
}

async fn read_all<const N: usize>(gaps: [Tensor<Wgpu, 1>; N]) -> Vec<f32> {
    let mut values = Vec::new();
    for gap in gaps {
        values.push(
            gap.into_data_async()
                .await
                .unwrap()
                .to_vec::<f32>()
                .unwrap()[0],
        );
    }
    values
}

async fn dpo_losses<B: alignlab::backend::AutodiffBackend>(device: &B::Device) -> Vec<f64> {
    let (policy, _) = builtin().into_model::<B>(device).unwrap();
    let reference = policy.clone().valid();
    let rows: Vec<RankedSequences> = sequences()
        .into_iter()
        .enumerate()
        .map(|(index, (prompt, completion))| {
            let mut worse = completion.clone();
            worse.reverse();
            RankedSequences {
                index,
                prompt,
                completions: vec![completion, worse],
                scores: None,
            }
        })
        .collect();
    let config = PreferenceConfig {
        loss: PreferenceLoss::named("dpo").unwrap(),
        beta: 0.1,
        optim: OptimConfig {
            lr: 2e-3,
            warmup_steps: 1,
            total_steps: 3,
            ..Default::default()
        },
        batch_size: 3,
        seed: 0,
    };
    let mut losses = Vec::new();
    preference::train(
        policy,
        &reference,
        &PreferenceData::Ranked(rows),
        &config,
        |m| losses.push(m.get(TRAIN_LOSS).unwrap()),
    )
    .await
    .unwrap();
    losses
}

use burn::module::AutodiffModule;

#[wasm_bindgen_test]
async fn dpo_steps_on_webgpu_lower_the_loss_as_on_the_cpu() {
    let device = gpu().await;
    let on_gpu = dpo_losses::<Autodiff<Wgpu>>(&device).await;
    let on_cpu = dpo_losses::<Autodiff<Flex>>(&Default::default()).await;
    assert!(
        (on_gpu[0] - std::f64::consts::LN_2).abs() < 1e-4,
        "{on_gpu:?}"
    );
    assert!(
        on_gpu[1] < on_gpu[0] && on_gpu[2] < on_gpu[1],
        "the loss did not fall: {on_gpu:?}"
    );
    for (g, c) in on_gpu.iter().zip(&on_cpu) {
        assert!((g - c).abs() < 1e-3, "WebGPU {on_gpu:?} vs CPU {on_cpu:?}");
    }
}

#[wasm_bindgen_test]
async fn greedy_sampling_on_webgpu_equals_the_cpu_backend() {
    let device = gpu().await;
    let checkpoint = builtin();
    let tokenizer = checkpoint.tokenizer.clone();
    let (gpu_model, _) = checkpoint.clone().into_model::<Wgpu>(&device).unwrap();
    let (cpu_model, _) = checkpoint.into_model::<Flex>(&Default::default()).unwrap();
    let prompts = vec![tokenizer.encode_with_bos("Once upon a time").unwrap(); 2];
    let config = SamplingConfig {
        max_new_tokens: 12,
        temperature: 0.0,
        ..Default::default()
    };
    let on_gpu = generate(&gpu_model, &prompts, tokenizer.eos_id(), &config)
        .await
        .unwrap();
    let on_cpu = generate(&cpu_model, &prompts, tokenizer.eos_id(), &config)
        .await
        .unwrap();
    assert!(!on_gpu[0].is_empty());
    assert_eq!(on_gpu, on_cpu, "{:?}", tokenizer.decode(&on_gpu[0]));
}
