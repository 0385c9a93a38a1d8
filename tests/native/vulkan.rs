//! The CubeCL kernels natively: `--backend wgpu` on Vulkan, the path the CLI takes on a GPU
//! (here Mesa's lavapipe, Vulkan on the CPU), against the unfused path on the same device, values
//! and gradients. Opt-in with `ALIGNLAB_TEST_VULKAN=1` (CI sets it after installing
//! `mesa-vulkan-drivers`): a machine without a Vulkan driver has no adapter, and wgpu then panics
//! on another thread; the README's test command must pass on a fresh machine without one.

use alignlab::kernel_checks::{
    add_rms_norm_deviation, attention_cases, attention_deviation, log_prob_deviation,
    rms_norm_deviation,
};
use burn::backend::{Autodiff, Wgpu};
use burn::tensor::{Distribution, ElementConversion, Int, Tensor, TensorData};

fn vulkan_requested() -> bool {
    let requested = std::env::var("ALIGNLAB_TEST_VULKAN").is_ok_and(|value| value == "1");
    if !requested {
        eprintln!("skipped: set ALIGNLAB_TEST_VULKAN=1 on a machine with a Vulkan driver");
    }
    requested
}

fn read(gaps: impl IntoIterator<Item = Tensor<Wgpu, 1>>) -> Vec<f32> {
    gaps.into_iter()
        .map(|gap| gap.into_scalar().elem())
        .collect()
}

/// One test for every kernel, so that the device starts once; vocabulary and widths of 300 (more
/// than a cube's 256 units, not a power of two) and 8, logits up to ±40; attention in the calls
/// the model makes ([`attention_cases`]).
#[test]
fn the_kernels_equal_the_unfused_path_on_vulkan() {
    if !vulkan_requested() {
        return;
    }
    let device = Default::default();
    let logits =
        Tensor::<Wgpu, 3>::random([3, 7, 300], Distribution::Uniform(-40.0, 40.0), &device);
    let targets: Vec<i64> = (0..21).map(|i| (i * 97 + 13) % 300).collect();
    let targets = Tensor::<Wgpu, 2, Int>::from_data(TensorData::new(targets, [3, 7]), &device);
    let gaps = read(log_prob_deviation::<Autodiff<Wgpu>>(logits, targets));
    assert!(
        gaps.iter().all(|&gap| gap < 1e-4),
        "log-probs: values, gradients: {gaps:?}"
    );
    for width in [300, 8] {
        let x = Tensor::<Wgpu, 3>::random([3, 7, width], Distribution::Normal(0.5, 2.0), &device);
        let weight = Tensor::<Wgpu, 1>::random([width], Distribution::Uniform(0.5, 1.5), &device);
        let gaps = read(rms_norm_deviation::<Autodiff<Wgpu>>(x, weight, 1e-5));
        assert!(
            gaps.iter().all(|&gap| gap < 1e-4),
            "RMSNorm width {width}: values, x's and the weight's gradients: {gaps:?}"
        );
        let terms = [0.0, 1.0].map(|mean| {
            Tensor::<Wgpu, 3>::random([3, 7, width], Distribution::Normal(mean, 2.0), &device)
        });
        let weight = Tensor::<Wgpu, 1>::random([width], Distribution::Uniform(0.5, 1.5), &device);
        let gaps = read(add_rms_norm_deviation::<Autodiff<Wgpu>>(
            terms, weight, 1e-5,
        ));
        assert!(
            gaps.iter().all(|&gap| gap < 1e-4),
            "residual add + RMSNorm width {width}: the sum, the norm, the residual's, the \
             update's and the weight's gradients: {gaps:?}"
        );
    }
    for (case, (inputs, spans)) in attention_cases::<Wgpu>(&device).into_iter().enumerate() {
        let gaps = read(attention_deviation::<Autodiff<Wgpu>>(inputs, &spans));
        assert!(
            gaps.iter().all(|&gap| gap < 1e-4),
            "attention case {case}: values, q's, k's and v's gradients: {gaps:?}"
        );
    }
}
