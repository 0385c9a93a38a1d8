//! Heads on the decoder's hidden states: a scalar (or multi-objective) head read at the last real
//! token for reward models, or at every token for value functions.

use crate::backend::Backend;
use burn::module::{Module, Param};
use burn::tensor::{Int, Tensor, TensorData};

use super::weights::{HostTensor, NamedWeights};
use crate::error::Result;
use crate::host::read_vec;

#[derive(Module, Debug)]
pub struct ScalarHead<B: Backend> {
    /// [dim, outputs]
    weight: Param<Tensor<B, 2>>,
    /// [outputs]
    bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> ScalarHead<B> {
    /// A head with `outputs` scalars per position (one for a reward or value, several for
    /// multi-objective rewards), initialised small so a fresh head starts near zero.
    pub fn new(dim: usize, outputs: usize, seed: u64, device: &B::Device) -> Self {
        let weight = crate::init::normal(&[dim, outputs], 1.0 / (dim as f32 + 1.0), seed);
        Self {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(weight, [dim, outputs]),
                device,
            )),
            bias: Param::from_tensor(Tensor::zeros([outputs], device)),
        }
    }

    /// [`Self::new`] with every output's bias at `bias` (a mask head that starts near 1).
    pub fn with_bias(dim: usize, outputs: usize, bias: f32, seed: u64, device: &B::Device) -> Self {
        let head = Self::new(dim, outputs, seed, device);
        Self {
            bias: Param::from_tensor(Tensor::full([outputs], bias, device)),
            ..head
        }
    }

    pub fn outputs(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Adds the head to `weights` as `{name}.weight` [outputs, dim] (Hugging Face's layout for
    /// `LlamaForSequenceClassification.score`) and `{name}.bias` [outputs].
    pub async fn write_weights(&self, name: &str, weights: &mut NamedWeights) -> Result<()> {
        let [dim, outputs] = self.weight.dims();
        let w = read_vec(self.weight.val()).await?;
        let mut transposed = vec![0.0; dim * outputs];
        for i in 0..dim {
            for o in 0..outputs {
                transposed[o * dim + i] = w[i * outputs + o];
            }
        }
        weights.insert(
            format!("{name}.weight"),
            HostTensor::new(vec![outputs, dim], transposed),
        );
        weights.insert(
            format!("{name}.bias"),
            HostTensor::new(vec![outputs], read_vec(self.bias.val()).await?),
        );
        Ok(())
    }

    /// The head written by [`Self::write_weights`].
    pub fn from_weights(
        name: &str,
        dim: usize,
        outputs: usize,
        weights: &mut NamedWeights,
        device: &B::Device,
    ) -> Result<Self> {
        let w = weights.take(&format!("{name}.weight"), &[outputs, dim])?;
        let bias = weights.take(&format!("{name}.bias"), &[outputs])?;
        let mut data = vec![0.0; dim * outputs];
        for o in 0..outputs {
            for i in 0..dim {
                data[i * outputs + o] = w.data[o * dim + i];
            }
        }
        Ok(Self {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(data, [dim, outputs]),
                device,
            )),
            bias: Param::from_tensor(Tensor::from_data(
                TensorData::new(bias.data, [outputs]),
                device,
            )),
        })
    }

    /// Per-token values: [batch, seq, dim] → [batch, seq, outputs].
    pub fn per_token(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, seq, dim] = hidden.dims();
        let outputs = self.weight.dims()[1];
        (hidden.reshape([batch * seq, dim]).matmul(self.weight.val())
            + self.bias.val().unsqueeze::<2>())
        .reshape([batch, seq, outputs])
    }

    /// Values at each row's last real token: hidden [batch, seq, dim], `last_index` [batch]
    /// → [batch, outputs].
    pub fn at_last_token(
        &self,
        hidden: Tensor<B, 3>,
        last_index: Tensor<B, 1, Int>,
    ) -> Tensor<B, 2> {
        let [batch, _, dim] = hidden.dims();
        let index = last_index.reshape([batch, 1, 1]).expand([batch, 1, dim]);
        let last = hidden.gather(1, index).reshape([batch, dim]); // [B, dim]
        last.matmul(self.weight.val()) + self.bias.val().unsqueeze::<2>()
    }
}
