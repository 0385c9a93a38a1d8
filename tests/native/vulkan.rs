//! The CubeCL kernels natively: `--backend wgpu` on Vulkan, the path the CLI takes on a GPU
//! (here Mesa's lavapipe, Vulkan on the CPU), against the unfused path on the same device, values
//! and gradients. Opt-in with `ALIGNLAB_TEST_VULKAN=1` (CI sets it after installing
//! `mesa-vulkan-drivers`): a machine without a Vulkan driver has no adapter, and wgpu then panics
//! on another thread; the README's test command must pass on a fresh machine without one.

use alignlab::device_check;
use burn::backend::{Autodiff, Wgpu};

fn vulkan_requested() -> bool {
    let requested = std::env::var("ALIGNLAB_TEST_VULKAN").is_ok_and(|value| value == "1");
    if !requested {
        eprintln!("skipped: set ALIGNLAB_TEST_VULKAN=1 on a machine with a Vulkan driver");
    }
    requested
}

/// The page's and `check-device`'s kernel checks ([`device_check::kernels`]) in one test, so that
/// the device starts once: vocabulary and widths of 300 (more than a cube's 256 units, not a power
/// of two) and 8, logits up to ±40, attention in the calls the model makes. (The model's checks
/// against the CPU run in the browser, by the end-to-end test; on lavapipe their kernels would
/// take minutes to compile.)
#[test]
fn the_kernels_equal_the_unfused_path_on_vulkan() {
    if !vulkan_requested() {
        return;
    }
    let checks = pollster::block_on(device_check::kernels::<Autodiff<Wgpu>>(&Default::default()))
        .expect("the kernels run on Vulkan");
    assert_eq!(checks.len(), 7);
    let failed: Vec<_> = checks.iter().filter(|check| !check.passed).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}
