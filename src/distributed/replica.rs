//! One replica of a data-parallel run: which share of every global batch it takes, and the
//! collective operations that keep the replicas equal (burn's `burn-collective`; no
//! communication layer of ours). A run on one device is the replica `Replica::SINGLE`, whose
//! operations return their input: the loops are written once, for any number of devices.
//!
//! Equality across device counts comes from three rules: every replica draws the same global
//! batch (same seeds); each one's loss is its shard's mean scaled by its share of the global
//! count (rows or tokens), so the sum over replicas is the global mean; the gradients, the loss
//! that is logged and every metric are summed over replicas before anything reads them.

use std::ops::Range;
use std::sync::Arc;

use crate::backend::{AutodiffBackend, Backend};
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use crate::error::{Error, Result};
use crate::host::read_scalar;
use crate::metrics::Metrics;

/// Sums host values over the replicas, on the backend the replicas registered with (the
/// launcher makes it): the loops' host-side sums need not name that backend.
pub type HostSum = dyn Fn(Vec<f32>) -> Result<Vec<f32>> + Send + Sync;

/// A replica's place in one collective session. burn's peer id and the watchdog's record are
/// per seat, not per rank: a replica left behind by an ended run (a peer failed, or it was
/// waited on too long) is then a stranger to the next run. burn refuses its calls instead of
/// counting them as the new replica of the same rank's, and it cannot clear the new replica's
/// record when it finally returns — both turned a failed test run into a hang.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Seat {
    pub rank: usize,
    pub world: usize,
    pub session: u64,
}

#[derive(Clone)]
pub struct Replica {
    /// This replica's place among all devices of all nodes, from 0.
    pub rank: usize,
    /// Devices in the run, all nodes together.
    pub world: usize,
    host_sum: Option<Arc<HostSum>>,
    /// This replica's place in its collective session: a replica of a run that has ended (one
    /// that was waited on too long) must not act in the next run's session.
    seat: Seat,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Replica {} of {}", self.rank, self.world)
    }
}

impl PartialEq for Replica {
    fn eq(&self, other: &Self) -> bool {
        (self.rank, self.world) == (other.rank, other.world)
    }
}

impl Default for Replica {
    fn default() -> Self {
        Self::SINGLE
    }
}

impl Replica {
    /// The whole run on one device.
    pub const SINGLE: Self = Self {
        rank: 0,
        world: 1,
        host_sum: None,
        seat: Seat {
            rank: 0,
            world: 1,
            session: 0,
        },
    };

    /// The replica in `seat`, its host sums done by `host_sum` (the launcher makes both; the
    /// browser has one device and no launcher).
    #[cfg(any(test, not(target_arch = "wasm32")))]
    pub(crate) fn new(seat: Seat, host_sum: Arc<HostSum>) -> Self {
        Self {
            rank: seat.rank,
            world: seat.world,
            host_sum: (seat.world > 1).then_some(host_sum),
            seat,
        }
    }

    pub fn is_single(&self) -> bool {
        self.world == 1
    }

    /// The replica that writes checkpoints, logs and reports (the others compute the same).
    pub fn is_leader(&self) -> bool {
        self.rank == 0
    }

    /// This replica's contiguous share of `0..len`, in rank order; shares differ by at most one
    /// item.
    pub fn shard_range(&self, len: usize) -> Range<usize> {
        let start = self.rank * len / self.world;
        let end = (self.rank + 1) * len / self.world;
        start..end
    }

    /// This replica's share of a global batch; an error when the batch has fewer rows than
    /// there are replicas (a replica would have nothing to compute).
    pub fn shard<'a, T>(&self, items: &'a [T]) -> Result<&'a [T]> {
        if items.len() < self.world {
            return Err(Error::Input(format!(
                "a batch of {} rows cannot be split over {} devices: set the batch size to at \
                 least the device count",
                items.len(),
                self.world
            )));
        }
        Ok(&items[self.shard_range(items.len())])
    }

    /// Host values summed over all replicas (every replica gets the sums).
    pub fn sum_values(&self, values: &[f32]) -> Result<Vec<f32>> {
        match &self.host_sum {
            None => Ok(values.to_vec()),
            Some(sum) => sum(values.to_vec()),
        }
    }

    /// This replica's share of a global count (of rows, or of tokens): local / Σ local. The
    /// weight its shard's mean loss takes so that the replicas' losses sum to the global mean.
    pub fn share(&self, local: f64) -> Result<f64> {
        if self.is_single() {
            return Ok(1.0);
        }
        let global = self.sum_values(&[local as f32])?[0] as f64;
        Ok(if global > 0.0 { local / global } else { 0.0 })
    }

    /// [`Self::share`] of the completion tokens `mask` covers ([batch, seq], 1 on completion
    /// tokens): the weight of a token-mean loss. One device reads nothing back.
    pub async fn token_share<B: Backend>(&self, mask: Tensor<B, 2>) -> Result<f64> {
        if self.is_single() {
            return Ok(1.0);
        }
        self.share(read_scalar(mask.sum()).await? as f64)
    }

    /// Every replica's rows, in rank order, on every replica (an all-gather built from sums:
    /// each replica fills its own slots of a zero buffer; adding zeros is exact).
    pub fn gather_rows(&self, rows: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>> {
        if self.is_single() {
            return Ok(rows);
        }
        let mut counts = vec![0.0f32; self.world];
        counts[self.rank] = rows.len() as f32;
        let counts = self.sum_values(&counts)?;
        let before: usize = counts[..self.rank].iter().map(|&c| c as usize).sum();
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        let mut lengths = vec![0.0f32; total];
        for (i, row) in rows.iter().enumerate() {
            lengths[before + i] = row.len() as f32;
        }
        let lengths: Vec<usize> = self
            .sum_values(&lengths)?
            .into_iter()
            .map(|l| l as usize)
            .collect();
        let offset: usize = lengths[..before].iter().sum();
        let mut flat = vec![0.0f32; lengths.iter().sum()];
        let mine: Vec<f32> = rows.into_iter().flatten().collect();
        flat[offset..offset + mine.len()].copy_from_slice(&mine);
        let flat = self.sum_values(&flat)?;
        let mut out = Vec::with_capacity(total);
        let mut at = 0;
        for length in lengths {
            out.push(flat[at..at + length].to_vec());
            at += length;
        }
        Ok(out)
    }

    /// `metrics` weighted by `weight` (this replica's share) and summed over replicas: means
    /// over a shard become means over the global batch. Every replica must report the same
    /// names (they run the same code).
    pub fn reduce_metrics(&self, metrics: &mut Metrics, weight: f64) -> Result<()> {
        if self.is_single() {
            return Ok(());
        }
        let weighted: Vec<f32> = metrics
            .values
            .values()
            .map(|&v| (v * weight) as f32)
            .collect();
        let summed = self.sum_values(&weighted)?;
        for (value, sum) in metrics.values.values_mut().zip(summed) {
            *value = sum as f64;
        }
        Ok(())
    }

    /// Checks that every replica computes the same run: each names the hashes of what must
    /// agree (model, data, settings); a replica whose hash differs from rank 0's is an error on
    /// every replica, naming the replica and what differs.
    pub fn agree(&self, hashes: &[(&str, u64)]) -> Result<()> {
        if self.is_single() {
            return Ok(());
        }
        // 16-bit pieces: exact in f32, and summed over zeros exactly.
        let pieces = |h: u64| (0..4).map(move |i| ((h >> (16 * i)) & 0xffff) as f32);
        let row: Vec<f32> = hashes.iter().flat_map(|&(_, h)| pieces(h)).collect();
        let rows = self.gather_rows(vec![row])?;
        let mut differences = Vec::new();
        for (rank, row) in rows.iter().enumerate().skip(1) {
            for (i, (name, _)) in hashes.iter().enumerate() {
                if row.get(4 * i..4 * i + 4) != rows[0].get(4 * i..4 * i + 4) {
                    differences.push(format!("replica {rank}'s {name}"));
                }
            }
        }
        if differences.is_empty() {
            return Ok(());
        }
        Err(Error::Distributed(format!(
            "the replicas disagree with replica 0 on: {} — start every node with the same model, \
             data and settings",
            differences.join(", ")
        )))
    }

    /// The gradients of `model` summed over replicas — in one collective call: every gradient
    /// flattened into one buffer in the module's own (deterministic) order, which is the same
    /// on every node, unlike parameter ids.
    pub fn sum_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        model: &M,
        mut grads: GradientsParams,
    ) -> Result<GradientsParams> {
        if self.is_single() {
            return Ok(grads);
        }
        let mut flatten = Flatten::<B> {
            grads: &mut grads,
            parts: Vec::new(),
            shapes: Vec::new(),
        };
        model.visit(&mut flatten);
        let Flatten { parts, shapes, .. } = flatten;
        if parts.is_empty() {
            return Ok(grads);
        }
        let summed = collective::sum(self.seat, Tensor::cat(parts, 0))?;
        let mut unflatten = Unflatten::<B> {
            grads: &mut grads,
            flat: summed,
            shapes: shapes.into_iter(),
            at: 0,
        };
        model.visit(&mut unflatten);
        Ok(grads)
    }
}

/// Takes every float gradient out, flattened, in visiting order.
struct Flatten<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    parts: Vec<Tensor<B::InnerBackend, 1>>,
    shapes: Vec<(burn::module::ParamId, Vec<usize>)>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Flatten<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.shapes.push((param.id, grad.dims().to_vec()));
            let n = grad.shape().num_elements();
            self.parts.push(grad.reshape([n]));
        }
    }
}

/// Puts the summed gradients back, in the same visiting order.
struct Unflatten<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    flat: Tensor<B::InnerBackend, 1>,
    shapes: std::vec::IntoIter<(burn::module::ParamId, Vec<usize>)>,
    at: usize,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Unflatten<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some((id, shape)) = self.shapes.as_slice().first().cloned() else {
            return;
        };
        if id != param.id {
            return;
        }
        self.shapes.next();
        let n: usize = shape.iter().product();
        let dims: [usize; D] = shape
            .try_into()
            .expect("a gradient has its parameter's rank");
        let grad = self.flat.clone().slice(self.at..self.at + n).reshape(dims);
        self.at += n;
        self.grads.register(id, grad);
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod collective {
    use crate::backend::Backend;
    use burn::tensor::{Tensor, TensorPrimitive};
    use burn_collective::ReduceOperation;

    use super::super::launch::ALL_REDUCE;
    use super::Seat;
    use crate::error::{Error, Result};

    pub fn sum<B: Backend, const D: usize>(
        seat: Seat,
        tensor: Tensor<B, D>,
    ) -> Result<Tensor<B, D>> {
        seat.check()?;
        let _wait = seat.wait(ALL_REDUCE);
        let primitive = tensor.into_primitive().tensor();
        let summed = burn_collective::all_reduce::<B>(seat.peer(), primitive, ReduceOperation::Sum)
            .map_err(|e| {
                Error::Distributed(format!("all-reduce on replica {}: {e:?}", seat.rank))
            })?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(summed)))
    }
}

/// In the browser there is one device: `Replica::SINGLE` never reaches a collective.
#[cfg(target_arch = "wasm32")]
pub(crate) mod collective {
    use crate::backend::Backend;
    use burn::tensor::Tensor;

    use super::Seat;
    use crate::error::{Error, Result};

    pub fn sum<B: Backend, const D: usize>(seat: Seat, _: Tensor<B, D>) -> Result<Tensor<B, D>> {
        Err(Error::Distributed(format!(
            "replica {}: the browser runs on one device",
            seat.rank
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_batch_once_in_order() {
        for len in 0..9 {
            for world in 1..4 {
                let ranges: Vec<Range<usize>> = (0..world)
                    .map(|rank| {
                        let seat = Seat {
                            rank,
                            world,
                            session: 1,
                        };
                        Replica::new(seat, Arc::new(Ok)).shard_range(len)
                    })
                    .collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges[world - 1].end, len);
                for pair in ranges.windows(2) {
                    assert_eq!(pair[0].end, pair[1].start);
                }
                let sizes: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(max - min <= 1, "{len} over {world}: {sizes:?}");
            }
        }
    }
}
