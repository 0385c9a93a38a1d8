//! The kernels in burn's fusion stream: each call is registered as a custom operation (fusion
//! does not fuse into it) that runs the wrapped backend's kernel on the inner tensors.

use std::marker::PhantomData;

use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Shape, TensorMetadata};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionBackend, FusionRuntime};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};

use crate::{AttentionGrads, AttentionInput, AttentionOutput, Kernels, ResidualNorm};

type Handles<B> =
    HandleContainer<<<B as FusionBackend>::FusionRuntime as FusionRuntime>::FusionHandle>;

impl<B: FusionBackend + Kernels> Kernels for Fusion<B> {
    fn log_softmax_gather(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        let client = logits.client.clone();
        let streams = OperationStreams::with_inputs([&logits, &targets]);
        let out = TensorIr::uninit(client.create_empty_handle(), targets.shape(), logits.dtype);
        let desc = CustomOpIr::new(
            "alignlab_log_softmax_gather",
            &[logits.into_ir(), targets.into_ir()],
            &[out],
        );
        let operation = LogSoftmaxGather::<B> {
            desc: desc.clone(),
            backend: PhantomData,
        };
        client
            .register(streams, OperationIr::Custom(desc), operation)
            .output()
    }

    fn log_softmax_gather_backward(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let client = logits.client.clone();
        let streams = OperationStreams::with_inputs([&logits, &targets, &grad]);
        let out = TensorIr::uninit(client.create_empty_handle(), logits.shape(), logits.dtype);
        let desc = CustomOpIr::new(
            "alignlab_log_softmax_gather_backward",
            &[logits.into_ir(), targets.into_ir(), grad.into_ir()],
            &[out],
        );
        let operation = LogSoftmaxGatherBackward::<B> {
            desc: desc.clone(),
            backend: PhantomData,
        };
        client
            .register(streams, OperationIr::Custom(desc), operation)
            .output()
    }

    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        let client = x.client.clone();
        let streams = OperationStreams::with_inputs([&x, &weight]);
        let out = TensorIr::uninit(client.create_empty_handle(), x.shape(), x.dtype);
        let desc = CustomOpIr::new(
            "alignlab_rms_norm",
            &[x.into_ir(), weight.into_ir()],
            &[out],
        );
        let operation = RmsNorm::<B> {
            desc: desc.clone(),
            eps,
            backend: PhantomData,
        };
        client
            .register(streams, OperationIr::Custom(desc), operation)
            .output()
    }

    fn rms_norm_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let client = x.client.clone();
        let streams = OperationStreams::with_inputs([&x, &weight, &grad]);
        let grad_x = TensorIr::uninit(client.create_empty_handle(), x.shape(), x.dtype);
        let grad_weight = TensorIr::uninit(client.create_empty_handle(), weight.shape(), x.dtype);
        let desc = CustomOpIr::new(
            "alignlab_rms_norm_backward",
            &[x.into_ir(), weight.into_ir(), grad.into_ir()],
            &[grad_x, grad_weight],
        );
        let operation = RmsNormBackward::<B> {
            desc: desc.clone(),
            eps,
            backend: PhantomData,
        };
        let [grad_x, grad_weight] = client
            .register(streams, OperationIr::Custom(desc), operation)
            .try_into()
            .expect("two outputs");
        (grad_x, grad_weight)
    }

    fn add_rms_norm(
        residual: FloatTensor<Self>,
        update: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
    ) -> ResidualNorm<Self> {
        let client = residual.client.clone();
        let streams = OperationStreams::with_inputs([&residual, &update, &weight]);
        let empty = || {
            TensorIr::uninit(
                client.create_empty_handle(),
                residual.shape(),
                residual.dtype,
            )
        };
        let outputs = [empty(), empty()];
        let desc = CustomOpIr::new(
            "alignlab_add_rms_norm",
            &[residual.into_ir(), update.into_ir(), weight.into_ir()],
            &outputs,
        );
        let operation = AddRmsNorm::<B> {
            desc: desc.clone(),
            eps,
            backend: PhantomData,
        };
        let [sum, normed] = client
            .register(streams, OperationIr::Custom(desc), operation)
            .try_into()
            .expect("two outputs");
        ResidualNorm { sum, normed }
    }

    fn flash_attention_forward(input: AttentionInput<Self>) -> AttentionOutput<Self> {
        let client = input.query.client.clone();
        let dtype = input.query.dtype;
        let streams = OperationStreams::with_inputs([
            &input.query,
            &input.key,
            &input.value,
            &input.first_key,
        ]);
        let query_shape: Shape = input.query.shape();
        let per_query = Shape::new([query_shape[0], query_shape[1], query_shape[2]]);
        let output = TensorIr::uninit(client.create_empty_handle(), query_shape, dtype);
        let log_sum_exp = TensorIr::uninit(client.create_empty_handle(), per_query, dtype);
        let desc = CustomOpIr::new(
            "alignlab_attention",
            &[
                input.query.into_ir(),
                input.key.into_ir(),
                input.value.into_ir(),
                input.first_key.into_ir(),
            ],
            &[output, log_sum_exp],
        );
        let operation = Attention::<B> {
            desc: desc.clone(),
            query_offset: input.query_offset,
            backend: PhantomData,
        };
        let [output, log_sum_exp] = client
            .register(streams, OperationIr::Custom(desc), operation)
            .try_into()
            .expect("two outputs");
        AttentionOutput {
            output,
            log_sum_exp,
        }
    }

    fn flash_attention_backward(
        input: AttentionInput<Self>,
        saved: AttentionOutput<Self>,
        grad: FloatTensor<Self>,
    ) -> AttentionGrads<Self> {
        let client = input.query.client.clone();
        let dtype = input.query.dtype;
        let streams = OperationStreams::with_inputs([
            &input.query,
            &input.key,
            &input.value,
            &input.first_key,
            &saved.output,
            &saved.log_sum_exp,
            &grad,
        ]);
        let grad_of = |tensor: &FloatTensor<Self>| {
            TensorIr::uninit(client.create_empty_handle(), tensor.shape(), dtype)
        };
        let grads = [
            grad_of(&input.query),
            grad_of(&input.key),
            grad_of(&input.value),
        ];
        let desc = CustomOpIr::new(
            "alignlab_attention_backward",
            &[
                input.query.into_ir(),
                input.key.into_ir(),
                input.value.into_ir(),
                input.first_key.into_ir(),
                saved.output.into_ir(),
                saved.log_sum_exp.into_ir(),
                grad.into_ir(),
            ],
            &grads,
        );
        let operation = AttentionBackward::<B> {
            desc: desc.clone(),
            query_offset: input.query_offset,
            backend: PhantomData,
        };
        let [query, key, value] = client
            .register(streams, OperationIr::Custom(desc), operation)
            .try_into()
            .expect("three outputs");
        AttentionGrads { query, key, value }
    }
}

#[derive(Debug)]
struct LogSoftmaxGather<B> {
    desc: CustomOpIr,
    backend: PhantomData<B>,
}

impl<B: FusionBackend + Kernels> Operation<B::FusionRuntime> for LogSoftmaxGather<B> {
    fn execute(&self, handles: &mut Handles<B>) {
        let ([logits, targets], [out]) = self.desc.as_fixed();
        let output = B::log_softmax_gather(
            handles.get_float_tensor::<B>(logits),
            handles.get_int_tensor::<B>(targets),
        );
        handles.register_float_tensor::<B>(&out.id, output);
    }
}

#[derive(Debug)]
struct LogSoftmaxGatherBackward<B> {
    desc: CustomOpIr,
    backend: PhantomData<B>,
}

impl<B: FusionBackend + Kernels> Operation<B::FusionRuntime> for LogSoftmaxGatherBackward<B> {
    fn execute(&self, handles: &mut Handles<B>) {
        let ([logits, targets, grad], [out]) = self.desc.as_fixed();
        let output = B::log_softmax_gather_backward(
            handles.get_float_tensor::<B>(logits),
            handles.get_int_tensor::<B>(targets),
            handles.get_float_tensor::<B>(grad),
        );
        handles.register_float_tensor::<B>(&out.id, output);
    }
}

#[derive(Debug)]
struct RmsNorm<B> {
    desc: CustomOpIr,
    eps: f64,
    backend: PhantomData<B>,
}

impl<B: FusionBackend + Kernels> Operation<B::FusionRuntime> for RmsNorm<B> {
    fn execute(&self, handles: &mut Handles<B>) {
        let ([x, weight], [out]) = self.desc.as_fixed();
        let output = B::rms_norm(
            handles.get_float_tensor::<B>(x),
            handles.get_float_tensor::<B>(weight),
            self.eps,
        );
        handles.register_float_tensor::<B>(&out.id, output);
    }
}

#[derive(Debug)]
struct RmsNormBackward<B> {
    desc: CustomOpIr,
    eps: f64,
    backend: PhantomData<B>,
}

impl<B: FusionBackend + Kernels> Operation<B::FusionRuntime> for RmsNormBackward<B> {
    fn execute(&self, handles: &mut Handles<B>) {
        let ([x, weight, grad], [grad_x, grad_weight]) = self.desc.as_fixed();
        let (x_out, weight_out) = B::rms_norm_backward(
            handles.get_float_tensor::<B>(x),
            handles.get_float_tensor::<B>(weight),
            handles.get_float_tensor::<B>(grad),
            self.eps,
        );
        handles.register_float_tensor::<B>(&grad_x.id, x_out);
        handles.register_float_tensor::<B>(&grad_weight.id, weight_out);
    }
}

#[derive(Debug)]
struct AddRmsNorm<B> {
    desc: CustomOpIr,
    eps: f64,
    backend: PhantomData<B>,
}

impl<B: FusionBackend + Kernels> Operation<B::FusionRuntime> for AddRmsNorm<B> {
    fn execute(&self, handles: &mut Handles<B>) {
        let ([residual, update, weight], [sum, normed]) = self.desc.as_fixed();
        let output = B::add_rms_norm(
            handles.get_float_tensor::<B>(residual),
            handles.get_float_tensor::<B>(update),
            handles.get_float_tensor::<B>(weight),
            self.eps,
        );
        handles.register_float_tensor::<B>(&sum.id, output.sum);
        handles.register_float_tensor::<B>(&normed.id, output.normed);
    }
}

#[derive(Debug)]
struct Attention<B> {
    desc: CustomOpIr,
    query_offset: usize,
    backend: PhantomData<B>,
}

impl<B: FusionBackend + Kernels> Operation<B::FusionRuntime> for Attention<B> {
    fn execute(&self, handles: &mut Handles<B>) {
        let ([query, key, value, first_key], [output, log_sum_exp]) = self.desc.as_fixed();
        let saved = B::flash_attention_forward(AttentionInput {
            query: handles.get_float_tensor::<B>(query),
            key: handles.get_float_tensor::<B>(key),
            value: handles.get_float_tensor::<B>(value),
            first_key: handles.get_int_tensor::<B>(first_key),
            query_offset: self.query_offset,
        });
        handles.register_float_tensor::<B>(&output.id, saved.output);
        handles.register_float_tensor::<B>(&log_sum_exp.id, saved.log_sum_exp);
    }
}

#[derive(Debug)]
struct AttentionBackward<B> {
    desc: CustomOpIr,
    query_offset: usize,
    backend: PhantomData<B>,
}

impl<B: FusionBackend + Kernels> Operation<B::FusionRuntime> for AttentionBackward<B> {
    fn execute(&self, handles: &mut Handles<B>) {
        let (
            [query, key, value, first_key, output, log_sum_exp, grad],
            [query_out, key_out, value_out],
        ) = self.desc.as_fixed();
        let input = AttentionInput {
            query: handles.get_float_tensor::<B>(query),
            key: handles.get_float_tensor::<B>(key),
            value: handles.get_float_tensor::<B>(value),
            first_key: handles.get_int_tensor::<B>(first_key),
            query_offset: self.query_offset,
        };
        let saved = AttentionOutput {
            output: handles.get_float_tensor::<B>(output),
            log_sum_exp: handles.get_float_tensor::<B>(log_sum_exp),
        };
        let grads = B::flash_attention_backward(input, saved, handles.get_float_tensor::<B>(grad));
        handles.register_float_tensor::<B>(&query_out.id, grads.query);
        handles.register_float_tensor::<B>(&key_out.id, grads.key);
        handles.register_float_tensor::<B>(&value_out.id, grads.value);
    }
}
