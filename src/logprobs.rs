//! Per-token log-probabilities of completions given prompts: the primitive every alignment loss
//! is built on. Sequences are `prompt ++ completion`, right-padded; position t predicts token t+1.

use burn::tensor::{Int, Tensor, TensorData, TensorPrimitive};

use crate::backend::Backend;

use crate::error::{Error, Result};
use crate::model::Llama;
use crate::shapes::{round_up, LengthBlocks};

/// Token id used for padding. Padded positions are masked out of every loss and never attended
/// to by real tokens, so its value does not matter.
pub const PAD_ID: u32 = 0;

/// A batch of (prompt, completion) sequences of different lengths, right-padded.
#[derive(Debug, Clone)]
pub struct SequenceBatch<B: Backend> {
    /// [batch, seq]: prompt ++ completion ++ padding.
    pub tokens: Tensor<B, 2, Int>,
    /// [batch, seq − 1]: 1 where the *target* token (position t+1) belongs to the completion.
    pub completion_mask: Tensor<B, 2>,
    /// [batch]: index of each row's last real token (where a reward head reads).
    pub last_index: Tensor<B, 1, Int>,
    /// Real (unpadded) length of each row.
    pub lengths: Vec<usize>,
}

impl<B: Backend> SequenceBatch<B> {
    /// Builds the batch; every sequence must fit in `max_seq_len` and have at least 2 tokens.
    pub fn new(
        pairs: &[(Vec<u32>, Vec<u32>)],
        max_seq_len: usize,
        device: &B::Device,
    ) -> Result<Self> {
        let block = LengthBlocks::of::<B>(device).sequence;
        Self::padded_to_block(pairs, max_seq_len, block, device)
    }

    /// [`Self::new`] with the model's input padded to a multiple of `block` positions.
    pub(crate) fn padded_to_block(
        pairs: &[(Vec<u32>, Vec<u32>)],
        max_seq_len: usize,
        block: usize,
        device: &B::Device,
    ) -> Result<Self> {
        if pairs.is_empty() {
            return Err(Error::Input("empty batch".into()));
        }
        let lengths: Vec<usize> = pairs.iter().map(|(p, c)| p.len() + c.len()).collect();
        let longest = *lengths.iter().max().expect("non-empty");
        for (row, ((prompt, _), &len)) in pairs.iter().zip(&lengths).enumerate() {
            if len > max_seq_len {
                return Err(Error::Input(format!(
                    "sequence {row} has {len} tokens, longer than the model's context of {max_seq_len}"
                )));
            }
            if prompt.is_empty() || len < 2 {
                return Err(Error::Input(format!(
                    "sequence {row} needs a non-empty prompt and at least 2 tokens"
                )));
            }
        }
        let seq = padded_length(longest, max_seq_len, block);
        let batch = pairs.len();
        let mut tokens = vec![PAD_ID as i64; batch * seq];
        let mut mask = vec![0.0f32; batch * (seq - 1)];
        for (row, (prompt, completion)) in pairs.iter().enumerate() {
            for (t, &id) in prompt.iter().chain(completion).enumerate() {
                tokens[row * seq + t] = id as i64;
            }
            // Target index t−1 predicts token t; completion tokens sit at t ∈ [p, p + c).
            for t in prompt.len()..prompt.len() + completion.len() {
                mask[row * (seq - 1) + t - 1] = 1.0;
            }
        }
        let last: Vec<i64> = lengths.iter().map(|&l| l as i64 - 1).collect();
        Ok(Self {
            tokens: Tensor::from_data(TensorData::new(tokens, [batch, seq]), device),
            completion_mask: Tensor::from_data(TensorData::new(mask, [batch, seq - 1]), device),
            last_index: Tensor::from_data(TensorData::new(last, [batch]), device),
            lengths,
        })
    }

    pub fn batch_size(&self) -> usize {
        self.lengths.len()
    }

    /// Tokens fed to the model ([batch, seq − 1]) and the tokens they predict ([batch, seq − 1]).
    pub fn inputs_and_targets(&self) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
        let seq = self.tokens.dims()[1];
        (
            self.tokens.clone().narrow(1, 0, seq - 1),
            self.tokens.clone().narrow(1, 1, seq - 1),
        )
    }
}

/// The padded length of a batch whose longest sequence has `longest` tokens: the model's input
/// (`seq − 1` positions) is rounded up to `block`, within the context, so that a GPU backend
/// meets few shapes. Right padding changes no result: causal attention never lets a real token
/// see a later pad, and the masks drop the pads' targets. The caller has checked
/// `2 ≤ longest ≤ max_seq_len`, so the context bound never cuts below `longest`.
fn padded_length(longest: usize, max_seq_len: usize, block: usize) -> usize {
    round_up(longest - 1, block).min(max_seq_len - 1) + 1
}

/// log p(target) under `logits`: [batch, seq, vocab], [batch, seq] → [batch, seq]. One kernel
/// on GPU backends, forward and backward ([`Kernels::log_softmax_gather`](crate::backend::Kernels::log_softmax_gather)): the [batch, seq,
/// vocab] log-probs are never written.
pub fn gather_logprobs<B: Backend>(
    logits: Tensor<B, 3>,
    targets: Tensor<B, 2, Int>,
) -> Tensor<B, 2> {
    let logprobs =
        B::log_softmax_gather(logits.into_primitive().tensor(), targets.into_primitive());
    Tensor::from_primitive(TensorPrimitive::Float(logprobs))
}

/// Per-token log-probs of each sequence's next tokens, zero outside the completion:
/// [batch, seq − 1].
pub fn completion_logprobs<B: Backend>(model: &Llama<B>, batch: &SequenceBatch<B>) -> Tensor<B, 2> {
    let (inputs, targets) = batch.inputs_and_targets();
    gather_logprobs(model.forward(inputs), targets) * batch.completion_mask.clone()
}

/// Sums masked per-token values over each sequence: [batch, seq] → [batch].
pub fn sum_per_sequence<B: Backend>(per_token: Tensor<B, 2>) -> Tensor<B, 1> {
    per_token.sum_dim(1).squeeze_dim(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LlamaConfig;
    use burn::backend::Flex;

    #[test]
    fn right_padding_to_a_block_changes_no_log_prob() {
        let config = LlamaConfig::tiny();
        let device = Default::default();
        let model = Llama::<Flex>::init(&config, 3, &device).unwrap();
        let pairs = vec![(vec![1, 2], vec![3, 4, 5]), (vec![6], vec![7, 8])];
        let per_sequence = |block| {
            let batch = SequenceBatch::padded_to_block(&pairs, 16, block, &device).unwrap();
            let width = batch.tokens.dims()[1];
            let sums = sum_per_sequence(completion_logprobs(&model, &batch));
            (width, sums.into_data().to_vec::<f32>().unwrap())
        };
        let (exact_width, exact) = per_sequence(1);
        let (padded_width, padded) = per_sequence(8);
        assert_eq!((exact_width, padded_width), (5, 9));
        for (a, b) in exact.iter().zip(&padded) {
            assert!((a - b).abs() < 1e-5, "{exact:?} vs {padded:?}");
        }
    }

    #[test]
    fn pads_the_inputs_to_the_block_within_the_context() {
        assert_eq!(padded_length(15, 512, 1), 15);
        assert_eq!(padded_length(15, 512, 32), 33);
        assert_eq!(padded_length(33, 512, 32), 33);
        assert_eq!(padded_length(34, 512, 32), 65);
        // Never past the context: 500 tokens in a 512-token context give 511 inputs at most.
        assert_eq!(padded_length(500, 512, 32), 512);
        assert_eq!(padded_length(512, 512, 32), 512);
    }
}
