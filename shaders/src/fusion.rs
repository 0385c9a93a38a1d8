//! The kernels in burn's fusion stream: each call is registered as a custom operation (fusion
//! does not fuse into it) that runs the wrapped backend's kernel on the inner tensors.

use std::marker::PhantomData;

use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Shape, TensorMetadata};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionBackend, FusionRuntime};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};

use crate::Kernels;

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
        let shape: Shape = logits.shape();
        let out = TensorIr::uninit(client.create_empty_handle(), shape, logits.dtype);
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
