//! The key/value cache for incremental decoding: an explicit struct passed `&mut` to a model that
//! stays `&self`. Rows are left-padded so that every row's next token lands in the same slot.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};

use super::config::LlamaConfig;

pub struct KvCache<B: Backend> {
    /// Per layer, [batch, n_kv_heads, capacity, head_dim]; `None` only while being updated.
    keys: Vec<Option<Tensor<B, 4>>>,
    values: Vec<Option<Tensor<B, 4>>>,
    /// Slots filled, the same for every row.
    len: usize,
    capacity: usize,
    /// Left padding of each row: slots `0..pad[row]` hold no token.
    pad: Vec<usize>,
    device: B::Device,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for rows with the given left padding, holding up to `capacity` slots.
    pub fn new(config: &LlamaConfig, pad: Vec<usize>, capacity: usize, device: &B::Device) -> Self {
        let shape = [pad.len(), config.n_kv_heads, capacity, config.head_dim()];
        let empty = || Some(Tensor::zeros(shape, device));
        Self {
            keys: (0..config.n_layers).map(|_| empty()).collect(),
            values: (0..config.n_layers).map(|_| empty()).collect(),
            len: 0,
            capacity,
            pad,
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

    /// `true` where query `q` (slot len+q) may not see key slot `k`: a pad, or the future.
    /// Shape [B, 1, new, len + new].
    pub(super) fn attention_mask(&self, new: usize) -> Tensor<B, 4, Bool> {
        let keys = self.len + new;
        let data: Vec<bool> = self
            .pad
            .iter()
            .flat_map(|&pad| {
                (0..new).flat_map(move |q| (0..keys).map(move |k| k < pad || k > self.len + q))
            })
            .collect();
        Tensor::from_data(
            TensorData::new(data, [self.pad.len(), 1, new, keys]),
            &self.device,
        )
    }

    /// Writes a layer's new keys/values ([B, KV, new, hd]) after the filled slots and returns all
    /// filled slots, new ones included.
    pub(super) fn append(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let new = k.dims()[2];
        let end = self.len + new;
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
            let filled = whole.clone().narrow(2, 0, end);
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
