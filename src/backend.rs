//! The backends alignlab runs on: burn's, with alignlab's own kernels ([`Kernels`]). Code in the
//! core is generic over these two traits instead of burn's, so that every model, loss and run can
//! call the kernels; every backend alignlab is built with implements them (CPU backends with the
//! unfused composition, CubeCL backends with kernels in `shaders/`).

pub use alignlab_shaders::{
    AttentionGrads, AttentionInput, AttentionOutput, Kernels, ResidualNorm,
};

/// A burn backend with alignlab's kernels.
pub trait Backend: burn::tensor::backend::Backend + Kernels {}

impl<B: burn::tensor::backend::Backend + Kernels> Backend for B {}

/// A burn autodiff backend whose kernels — its own and those of the backend it wraps, which
/// trained models' frozen copies run on — are alignlab's.
pub trait AutodiffBackend:
    Backend + burn::tensor::backend::AutodiffBackend<InnerBackend: Backend>
{
}

impl<B> AutodiffBackend for B
where
    B: Backend + burn::tensor::backend::AutodiffBackend,
    B::InnerBackend: Backend,
{
}
