//! The layers a decoder block is made of, each with the optional parts some families have
//! (a bias, LayerNorm's shift), so one block serves every family.

use crate::backend::Backend;
use burn::module::{Module, Param};
use burn::tensor::{Tensor, TensorData, TensorPrimitive};

use super::weights::HostTensor;
use crate::ops::reciprocal;

pub(super) fn tensor<B: Backend, const D: usize>(
    host: HostTensor,
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(host.data, host.shape), device)
}

/// `x @ w` for a batch of sequences, as one 2-D matmul.
pub(super) fn matmul<B: Backend>(x: Tensor<B, 3>, w: Tensor<B, 2>) -> Tensor<B, 3> {
    let [batch, seq, d_in] = x.dims();
    let d_out = w.dims()[1];
    x.reshape([batch * seq, d_in])
        .matmul(w)
        .reshape([batch, seq, d_out])
}

/// A projection `x @ W (+ b)`, W stored [in, out] (our matmul layout; checkpoints are [out, in]).
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    pub(super) weight: Param<Tensor<B, 2>>,
    pub(super) bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> Linear<B> {
    pub(super) fn new(weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Self {
        Self {
            weight: Param::from_tensor(weight),
            bias: bias.map(Param::from_tensor),
        }
    }

    pub(super) fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let y = matmul(x, self.weight.val());
        match &self.bias {
            Some(bias) => y + bias.val().unsqueeze::<3>(),
            None => y,
        }
    }
}

/// RMSNorm (Zhang & Sennrich 2019), or LayerNorm (Ba et al. 2016) when it has a bias, over the
/// last axis.
#[derive(Module, Debug)]
pub struct Norm<B: Backend> {
    pub(super) weight: Param<Tensor<B, 1>>,
    pub(super) bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> Norm<B> {
    pub(super) fn new(weight: Tensor<B, 1>, bias: Option<Tensor<B, 1>>) -> Self {
        Self {
            weight: Param::from_tensor(weight),
            bias: bias.map(Param::from_tensor),
        }
    }

    /// `residual + update` and the norm of it, as one kernel for RMSNorm on GPU backends.
    pub(super) fn add_and_forward(
        &self,
        residual: Tensor<B, 3>,
        update: Tensor<B, 3>,
        eps: f64,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        match &self.bias {
            None => add_rms_norm(residual, update, self.weight.val(), eps),
            Some(_) => {
                let sum = residual + update;
                (sum.clone(), self.forward(sum, eps))
            }
        }
    }

    pub(super) fn forward(&self, x: Tensor<B, 3>, eps: f64) -> Tensor<B, 3> {
        match &self.bias {
            None => rms_norm(x, self.weight.val(), eps),
            Some(bias) => {
                let centred = x.clone() - x.mean_dim(2);
                let inv_std = reciprocal(
                    centred
                        .clone()
                        .powi_scalar(2)
                        .mean_dim(2)
                        .add_scalar(eps)
                        .sqrt(),
                );
                centred * inv_std * self.weight.val().unsqueeze::<3>() + bias.val().unsqueeze::<3>()
            }
        }
    }
}

/// RMSNorm over the last axis: `x / √(mean(x²) + eps) · weight`, one kernel on GPU backends,
/// forward and backward ([`Kernels::rms_norm`](crate::backend::Kernels::rms_norm)).
pub fn rms_norm<B: Backend>(x: Tensor<B, 3>, weight: Tensor<B, 1>, eps: f64) -> Tensor<B, 3> {
    let normed = B::rms_norm(
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        eps,
    );
    Tensor::from_primitive(TensorPrimitive::Float(normed))
}

/// `residual + update` and its RMSNorm ([`rms_norm`]): (sum, normed), one kernel on GPU backends
/// ([`Kernels::add_rms_norm`](crate::backend::Kernels::add_rms_norm)).
pub fn add_rms_norm<B: Backend>(
    residual: Tensor<B, 3>,
    update: Tensor<B, 3>,
    weight: Tensor<B, 1>,
    eps: f64,
) -> (Tensor<B, 3>, Tensor<B, 3>) {
    let fused = B::add_rms_norm(
        residual.into_primitive().tensor(),
        update.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        eps,
    );
    let float = |tensor| Tensor::from_primitive(TensorPrimitive::Float(tensor));
    (float(fused.sum), float(fused.normed))
}

/// GELU with the tanh approximation, as GPT-2 was trained (`gelu_new` in transformers). The cube
/// is an integer power: WGSL's `pow` is undefined for a negative base.
pub(super) fn gelu_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let sqrt_2_over_pi = (2.0 / std::f64::consts::PI).sqrt();
    let inner = (x.clone() + x.clone().powi_scalar(3) * 0.044715) * sqrt_2_over_pi;
    x * (inner.tanh() + 1.0) * 0.5
}
