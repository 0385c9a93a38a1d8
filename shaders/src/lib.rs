//! alignlab's own kernels, in a crate of their own so that they are compiled optimised in every
//! profile (the root crate is at opt-level 1 in `cargo build` and `cargo test`, where the host
//! loops ran 2–3× slower).
//!
//! - [`Kernels`]: the operations alignlab fuses, as a backend trait (burn's pattern for custom
//!   kernels): every backend alignlab runs on implements it, CubeCL backends (wgpu, CUDA, the
//!   page's WebGPU) with kernels written once in CubeCL ([`cube`]), the fusion and autodiff
//!   wrappers by passing through to the backend they wrap (with the kernels' own backward pass),
//!   CPU backends with the unfused composition ([`reference`]), which is also the definition the
//!   kernels are tested against, but for attention, which they run on the host ([`cpu_flash`]).
//! - [`cpu_attention`]: attention for inference on CPU backends, on the host.

mod autodiff;
mod cpu;
pub mod cpu_attention;
pub mod cpu_flash;
pub mod cube;
mod fusion;
mod kernels;
pub mod reference;

pub use kernels::{AttentionGrads, AttentionInput, AttentionOutput, Kernels, ResidualNorm};
