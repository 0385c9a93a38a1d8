//! The kernels under burn's autodiff: the forward pass runs the wrapped backend's kernel, and the
//! backward pass its backward kernel, so a trained model never records the unfused graph.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::tensor::ops::{FloatTensor, IntTensor};

use crate::{AttentionInput, AttentionOutput, Kernels, ResidualNorm};

impl<B: Kernels, C: CheckpointStrategy> Kernels for Autodiff<B, C> {
    fn log_softmax_gather(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> FloatTensor<Self> {
        match LogSoftmaxGatherBackward
            .prepare::<C>([logits.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                // The logits are kept (not the [.., V] softmax): the backward kernel recomputes
                // the softmax from them.
                let output = B::log_softmax_gather(logits.primitive.clone(), targets.clone());
                prep.finish((logits.primitive, targets), output)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::log_softmax_gather(logits.primitive, targets))
            }
        }
    }

    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        match RmsNormBackward
            .prepare::<C>([x.node.clone(), weight.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let output = B::rms_norm(x.primitive.clone(), weight.primitive.clone(), eps);
                prep.finish((x.primitive, weight.primitive, eps), output)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::rms_norm(x.primitive, weight.primitive, eps))
            }
        }
    }

    fn add_rms_norm(
        residual: FloatTensor<Self>,
        update: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
    ) -> ResidualNorm<Self> {
        let terms = [residual.node.clone(), update.node.clone()];
        let fused = B::add_rms_norm(
            residual.primitive,
            update.primitive,
            weight.primitive.clone(),
            eps,
        );
        // Two graph nodes from one kernel: the sum, whose gradient is what the norm sends back
        // plus what the stream's later uses send, and the norm of it.
        let sum: FloatTensor<Self> = ResidualAddBackward
            .prepare::<C>(terms)
            .compute_bound()
            .stateless(fused.sum);
        let normed = match RmsNormBackward
            .prepare::<C>([sum.node.clone(), weight.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                prep.finish((sum.primitive.clone(), weight.primitive, eps), fused.normed)
            }
            OpsKind::UnTracked(prep) => prep.finish(fused.normed),
        };
        ResidualNorm { sum, normed }
    }

    fn flash_attention(input: AttentionInput<Self>) -> FloatTensor<Self> {
        let nodes = [&input.query, &input.key, &input.value].map(|tensor| tensor.node.clone());
        let inner = AttentionInput::<B> {
            query: input.query.primitive,
            key: input.key.primitive,
            value: input.value.primitive,
            first_key: input.first_key,
            query_offset: input.query_offset,
        };
        match AttentionBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                // The inputs, the output and one log-sum-exp per query are kept; the [T, S]
                // attention weights are rebuilt from them in the backward kernels.
                let saved = B::flash_attention_forward(inner.clone());
                let output = saved.output.clone();
                prep.finish((inner, saved), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::flash_attention(inner)),
        }
    }
}

#[derive(Debug)]
struct LogSoftmaxGatherBackward;

impl<B: Kernels> Backward<B, 1> for LogSoftmaxGatherBackward {
    /// The logits and the targets.
    type State = (FloatTensor<B>, IntTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [logits_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = logits_node {
            let (logits, targets) = ops.state;
            let grad_logits = B::log_softmax_gather_backward(logits, targets, grad);
            grads.register::<B>(node.id, grad_logits);
        }
    }
}

#[derive(Debug)]
struct RmsNormBackward;

impl<B: Kernels> Backward<B, 2> for RmsNormBackward {
    /// x, the weight and eps.
    type State = (FloatTensor<B>, FloatTensor<B>, f64);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, weight_node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight, eps) = ops.state;
        let (grad_x, grad_weight) = B::rms_norm_backward(x, weight, grad, eps);
        if let Some(node) = x_node {
            grads.register::<B>(node.id, grad_x);
        }
        if let Some(node) = weight_node {
            grads.register::<B>(node.id, grad_weight);
        }
    }
}

/// The add of [`Kernels::add_rms_norm`]: both terms get the sum's gradient.
#[derive(Debug)]
struct ResidualAddBackward;

impl<B: Kernels> Backward<B, 2> for ResidualAddBackward {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        match ops.parents {
            [Some(residual), Some(update)] => {
                grads.register::<B>(residual.id, grad.clone());
                grads.register::<B>(update.id, grad);
            }
            [Some(term), None] | [None, Some(term)] => grads.register::<B>(term.id, grad),
            [None, None] => {}
        }
    }
}

#[derive(Debug)]
struct AttentionBackward;

impl<B: Kernels> Backward<B, 3> for AttentionBackward {
    /// The inputs and what the forward pass saved.
    type State = (AttentionInput<B>, AttentionOutput<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (input, saved) = ops.state;
        let input_grads = B::flash_attention_backward(input, saved, grad);
        let [query_node, key_node, value_node] = ops.parents;
        for (node, grad) in [
            (query_node, input_grads.query),
            (key_node, input_grads.key),
            (value_node, input_grads.value),
        ] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}
