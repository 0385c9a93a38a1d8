//! CPU backends (flex; ndarray natively): [`Kernels`]' unfused defaults, but for attention,
//! which runs on host memory ([`cpu_flash`]): a copy each way, against a decomposition that
//! stores the [T, S] weights and differentiates through them.

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Int, Tensor, TensorData, TensorPrimitive};

use crate::cpu_attention::Dims;
use crate::cpu_flash::{self, Inputs, Saved, Spans};
use crate::{AttentionGrads, AttentionInput, AttentionOutput, Kernels};

/// Attention on the host; the rest the defaults.
macro_rules! host_attention_kernels {
    ($backend:ty) => {
        impl Kernels for $backend {
            fn flash_attention_forward(input: AttentionInput<Self>) -> AttentionOutput<Self> {
                host_forward::<Self>(input)
            }

            fn flash_attention_backward(
                input: AttentionInput<Self>,
                saved: AttentionOutput<Self>,
                grad: FloatTensor<Self>,
            ) -> AttentionGrads<Self> {
                host_backward::<Self>(input, saved, grad)
            }
        }
    };
}

host_attention_kernels!(burn::backend::Flex);
#[cfg(not(target_arch = "wasm32"))]
host_attention_kernels!(burn::backend::NdArray);

/// An attention call's tensors on the host.
struct HostInput<B: Backend> {
    dims: Dims,
    first_key: Vec<usize>,
    query_offset: usize,
    query: Vec<f32>,
    key: Vec<f32>,
    value: Vec<f32>,
    device: B::Device,
}

impl<B: Backend> HostInput<B> {
    fn new(input: AttentionInput<B>) -> Self {
        let query = float::<B, 4>(input.query);
        let key = float::<B, 4>(input.key);
        let [batch, heads, queries, head_dim] = query.dims();
        let [_, kv_heads, keys, _] = key.dims();
        let first_key = Tensor::<B, 1, Int>::from_primitive(input.first_key)
            .into_data()
            .iter::<i64>()
            .map(|first| first as usize)
            .collect();
        Self {
            dims: Dims {
                batch,
                heads,
                kv_heads,
                queries,
                keys,
                head_dim,
            },
            first_key,
            query_offset: input.query_offset,
            device: query.device(),
            query: host(query),
            key: host(key),
            value: host(float::<B, 4>(input.value)),
        }
    }

    fn inputs(&self) -> Inputs<'_> {
        Inputs {
            dims: self.dims,
            spans: Spans {
                first_key: &self.first_key,
                query_offset: self.query_offset,
            },
            query: &self.query,
            key: &self.key,
            value: &self.value,
        }
    }

    fn tensor<const D: usize>(&self, values: Vec<f32>, shape: [usize; D]) -> FloatTensor<B> {
        Tensor::<B, D>::from_data(TensorData::new(values, shape), &self.device)
            .into_primitive()
            .tensor()
    }
}

fn host_forward<B: Backend>(input: AttentionInput<B>) -> AttentionOutput<B> {
    let host_input = HostInput::<B>::new(input);
    let forward = cpu_flash::forward(host_input.inputs());
    let Dims {
        batch,
        heads,
        queries,
        head_dim,
        ..
    } = host_input.dims;
    AttentionOutput {
        output: host_input.tensor(forward.output, [batch, heads, queries, head_dim]),
        log_sum_exp: host_input.tensor(forward.log_sum_exp, [batch, heads, queries]),
    }
}

fn host_backward<B: Backend>(
    input: AttentionInput<B>,
    saved: AttentionOutput<B>,
    grad: FloatTensor<B>,
) -> AttentionGrads<B> {
    let host_input = HostInput::<B>::new(input);
    let (output, log_sum_exp, grad) = (
        host(float::<B, 4>(saved.output)),
        host(float::<B, 3>(saved.log_sum_exp)),
        host(float::<B, 4>(grad)),
    );
    let grads = cpu_flash::backward(
        host_input.inputs(),
        Saved {
            output: &output,
            log_sum_exp: &log_sum_exp,
            grad: &grad,
        },
    );
    let d = host_input.dims;
    AttentionGrads {
        query: host_input.tensor(grads.query, [d.batch, d.heads, d.queries, d.head_dim]),
        key: host_input.tensor(grads.key, [d.batch, d.kv_heads, d.keys, d.head_dim]),
        value: host_input.tensor(grads.value, [d.batch, d.kv_heads, d.keys, d.head_dim]),
    }
}

fn float<B: Backend, const D: usize>(primitive: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

/// A CPU tensor's values, in row-major order (a strided view is copied into it).
fn host<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    tensor
        .into_data()
        .into_vec()
        .expect("a CPU backend's float tensor reads back as f32")
}
