//! The key/value cache for incremental decoding: an explicit struct passed `&mut` to a model that
//! stays `&self`. Rows are left-padded so that every row's next token lands in the same slot.
//! A step attends over the filled slots rounded up to the backend's cache block
//! ([`LengthBlocks::cache`]), the empty ones masked: on a GPU every step of a generation then has
//! the same shape, and its kernels are compiled once.

use crate::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use super::attention::VisibleSlots;
use super::config::LlamaConfig;
use crate::shapes::{round_up, LengthBlocks};

pub struct KvCache<B: Backend> {
    /// Per layer, [batch, n_kv_heads, capacity, head_dim]; `None` only while being updated.
    keys: Vec<Option<Tensor<B, 4>>>,
    values: Vec<Option<Tensor<B, 4>>>,
    /// Slots filled, the same for every row.
    len: usize,
    capacity: usize,
    /// Left padding of each row: slots `0..pad[row]` hold no token.
    pad: Vec<usize>,
    /// Steps attend over a multiple of this many slots.
    block: usize,
    device: B::Device,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for rows with the given left padding, holding at least `capacity` slots
    /// (rounded up to the backend's cache block).
    pub fn new(config: &LlamaConfig, pad: Vec<usize>, capacity: usize, device: &B::Device) -> Self {
        let block = LengthBlocks::of::<B>(device).cache;
        Self::with_block(config, pad, capacity, block, device)
    }

    /// [`Self::new`] with steps attending over a multiple of `block` slots.
    pub(crate) fn with_block(
        config: &LlamaConfig,
        pad: Vec<usize>,
        capacity: usize,
        block: usize,
        device: &B::Device,
    ) -> Self {
        let capacity = round_up(capacity, block);
        let shape = [pad.len(), config.n_kv_heads, capacity, config.head_dim()];
        let empty = || Some(Tensor::zeros(shape, device));
        Self {
            keys: (0..config.n_layers).map(|_| empty()).collect(),
            values: (0..config.n_layers).map(|_| empty()).collect(),
            len: 0,
            capacity,
            pad,
            block,
            device: device.clone(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Rotary positions of the next `new` slots of each row (pads sit at position 0): [B, new].
    pub(super) fn positions(&self, new: usize) -> Tensor<B, 2, Int> {
        let data: Vec<i64> = self
            .pad
            .iter()
            .flat_map(|&pad| {
                (self.len..self.len + new).map(move |slot| slot.saturating_sub(pad) as i64)
            })
            .collect();
        Tensor::from_data(TensorData::new(data, [self.pad.len(), new]), &self.device)
    }

    /// Slots a step that adds `new` attends over: the filled ones, rounded up to the block.
    fn visible(&self, new: usize) -> usize {
        round_up(self.len + new, self.block).min(self.capacity)
    }

    /// The key slots each query of a step that adds `new` sees: those of its own row's tokens,
    /// up to its own slot (not a pad, the future, or a slot not yet filled).
    pub(super) fn visible_slots(&self, new: usize) -> VisibleSlots<B> {
        let keys = self.visible(new);
        let hidden: Vec<bool> = self
            .pad
            .iter()
            .flat_map(|&pad| {
                (0..new).flat_map(move |q| (0..keys).map(move |k| k < pad || k > self.len + q))
            })
            .collect();
        let first_key: Vec<i64> = self.pad.iter().map(|&pad| pad as i64).collect();
        let batch = self.pad.len();
        VisibleSlots {
            hidden: Tensor::from_data(TensorData::new(hidden, [batch, 1, new, keys]), &self.device),
            first_key: Tensor::from_data(TensorData::new(first_key, [batch]), &self.device),
            query_offset: self.len,
        }
    }

    /// Writes a layer's new keys/values ([B, KV, new, hd]) after the filled slots and returns the
    /// visible slots (the filled ones, new ones included, then empty ones up to the block).
    pub(super) fn append(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let new = k.dims()[2];
        let end = self.len + new;
        let visible = self.visible(new);
        assert!(
            end <= self.capacity,
            "KV cache overflow: {end} slots needed, capacity {}",
            self.capacity
        );
        let write = |slot: &mut Option<Tensor<B, 4>>, update: Tensor<B, 4>| {
            // Taking the tensor out leaves it uniquely owned, so the backend can write in place.
            let whole = slot.take().expect("cache slot present");
            let whole = whole.slice_assign(
                [0..update.dims()[0], 0..update.dims()[1], self.len..end],
                update,
            );
            let filled = whole.clone().narrow(2, 0, visible);
            *slot = Some(whole);
            filled
        };
        let keys = write(&mut self.keys[layer], k);
        let values = write(&mut self.values[layer], v);
        (keys, values)
    }

    pub(super) fn advance(&mut self, new: usize) {
        self.len += new;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Llama;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    /// Hidden states of a prefill and four decoding steps, with the cache attending in blocks.
    fn decode(model: &Llama<Flex>, block: usize) -> Vec<Vec<f32>> {
        let device = Default::default();
        // Two rows: a 2-token prompt left-padded by one slot, and a 3-token prompt.
        let mut cache = KvCache::with_block(model.config(), vec![1, 0], 3 + 4, block, &device);
        let mut tokens = Tensor::<Flex, 2, Int>::from_data(
            TensorData::new(vec![0i64, 3, 5, 7, 2, 9], [2, 3]),
            &device,
        );
        let mut out = Vec::new();
        for step in 0..5 {
            let hidden = model.forward_cached(tokens, &mut cache);
            let new = hidden.dims()[1];
            out.push(hidden.narrow(1, new - 1, 1).into_data().to_vec().unwrap());
            let next = vec![(step % 5) as i64 + 1, (step % 3) as i64 + 4];
            tokens = Tensor::from_data(TensorData::new(next, [2, 1]), &device);
        }
        out
    }

    #[test]
    fn attending_over_masked_empty_slots_changes_nothing() {
        let config = LlamaConfig::tiny();
        let model = Llama::<Flex>::init(&config, 7, &Default::default()).unwrap();
        let exact = decode(&model, 1);
        // A block of 4 rounds the 7 slots to 8; one of 64 makes the cache longer than the context.
        for block in [4, 64] {
            for (step, (a, b)) in exact.iter().zip(decode(&model, block)).enumerate() {
                let worst = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f32::max);
                assert!(
                    worst < 1e-5,
                    "block {block}, step {step}: differs by {worst}"
                );
            }
        }
    }
}
