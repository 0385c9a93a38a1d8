//! Which tensor shapes a batch takes. A CubeCL backend (wgpu, CUDA) compiles — and autotunes — a
//! kernel the first time it meets a shape, so sequences padded to the exact longest row and a KV
//! cache that grows a slot per token meant a compilation at almost every step (a 30-token greedy
//! generation on Vulkan compiled 113 kernels). On those backends lengths are rounded up to a few
//! blocks, so a run meets a handful of shapes and compiles them once. CPU backends run any shape
//! at no cost and pad nothing: padding would only add work there.

use crate::backend::Backend;

/// How lengths are rounded up on one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthBlocks {
    /// Token positions a scored or trained sequence is padded to a multiple of.
    pub sequence: usize,
    /// KV-cache slots a decoding step attends over: a multiple of this (masked past the filled
    /// ones), so every step of a generation has the same shape.
    pub cache: usize,
}

impl LengthBlocks {
    /// Exact lengths: what CPU backends use.
    pub const EXACT: Self = Self {
        sequence: 1,
        cache: 1,
    };
    /// Lengths for backends that compile a kernel per shape.
    pub const COMPILED: Self = Self {
        sequence: 32,
        cache: 64,
    };

    /// The blocks for backend `B`: [`Self::COMPILED`] when it [compiles kernels](compiles_kernels).
    pub fn of<B: Backend>(device: &B::Device) -> Self {
        if compiles_kernels::<B>(device) {
            Self::COMPILED
        } else {
            Self::EXACT
        }
    }
}

/// Whether `B` is a CubeCL backend (wgpu, CUDA, the page's WebGPU), which compiles a kernel per
/// shape: its name, as burn builds it, holds `cubecl<…>` under any `autodiff<…>`/`fusion<…>`
/// wrapper.
pub fn compiles_kernels<B: Backend>(device: &B::Device) -> bool {
    B::name(device).contains("cubecl<")
}

/// `len` rounded up to a multiple of `block`.
pub fn round_up(len: usize, block: usize) -> usize {
    len.div_ceil(block) * block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_up_to_the_block() {
        assert_eq!(round_up(0, 32), 0);
        assert_eq!(round_up(1, 32), 32);
        assert_eq!(round_up(32, 32), 32);
        assert_eq!(round_up(33, 32), 64);
        assert_eq!(round_up(7, 1), 7);
    }

    #[test]
    fn the_native_gpu_backend_fuses_kernels() {
        // `--backend wgpu` runs burn's `Wgpu`: with burn-wgpu's `fusion` feature it is
        // `Fusion<CubeBackend<…>>` (the page's device check tests its build the same way).
        let name = std::any::type_name::<burn::backend::Wgpu>();
        assert!(name.starts_with("burn_fusion::"), "{name}");
    }

    #[test]
    fn cpu_backends_pad_nothing() {
        type Cpu = burn::backend::Autodiff<burn::backend::Flex>;
        assert_eq!(
            LengthBlocks::of::<Cpu>(&Default::default()),
            LengthBlocks::EXACT
        );
        assert_eq!(
            LengthBlocks::of::<burn::backend::NdArray>(&Default::default()),
            LengthBlocks::EXACT
        );
    }
}
