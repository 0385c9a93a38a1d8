//! How fast the backend in use runs a step: wall time, and the token positions the model computed
//! in it. [`Llama`](crate::model::Llama)'s forward passes count their positions (batch × length,
//! padding included: the backend computed them) on the calling thread; a [`Stopwatch`] reads the
//! count and the clock around a step. The count is per thread, so tests running side by side and
//! the replicas of a multi-device run each see only their own model's work; the page's lab lives
//! on the worker's one thread.
//!
//! Backward passes are not counted: a training step's tokens/s is its forward positions
//! (policy, reference, reward and value models, rollout decoding) over the step's whole time.

use std::cell::Cell;

use serde::Serialize;
use web_time::Instant;

thread_local! {
    static POSITIONS: Cell<u64> = const { Cell::new(0) };
}

/// Adds `positions` forward positions to this thread's count.
pub(crate) fn count_positions(positions: usize) {
    POSITIONS.with(|count| count.set(count.get() + positions as u64));
}

/// Forward positions the model computed so far on this thread.
pub fn positions_computed() -> u64 {
    POSITIONS.with(Cell::get)
}

/// What one step cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepSpeed {
    pub seconds: f64,
    /// Forward token positions computed in the step.
    pub tokens: u64,
    pub tokens_per_second: f64,
}

/// Started before a step, read after it.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch {
    started: Instant,
    positions: u64,
}

impl Stopwatch {
    pub fn start() -> Self {
        Self {
            started: Instant::now(),
            positions: positions_computed(),
        }
    }

    /// Time and positions since [`Stopwatch::start`].
    pub fn read(&self) -> StepSpeed {
        let seconds = self.started.elapsed().as_secs_f64();
        let tokens = positions_computed() - self.positions;
        StepSpeed {
            seconds,
            tokens,
            tokens_per_second: tokens as f64 / seconds.max(1e-9),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopwatch_reads_the_positions_counted_on_its_thread_only() {
        let watch = Stopwatch::start();
        count_positions(96);
        std::thread::spawn(|| count_positions(1_000))
            .join()
            .unwrap();
        let speed = watch.read();
        assert_eq!(speed.tokens, 96);
        assert!(
            speed.seconds > 0.0 && speed.tokens_per_second > 0.0,
            "{speed:?}"
        );
    }

    #[test]
    fn the_model_counts_every_forward_position_whole_and_cached() {
        use crate::model::{KvCache, Llama, LlamaConfig};
        use burn::backend::Flex;
        use burn::tensor::{Int, Tensor};

        let config = LlamaConfig::tiny();
        let device = Default::default();
        let model = Llama::<Flex>::init(&config, 7, &device).unwrap();
        let tokens = |batch: usize, len: usize| Tensor::<Flex, 2, Int>::ones([batch, len], &device);
        let watch = Stopwatch::start();
        let _ = model.forward(tokens(2, 5));
        assert_eq!(watch.read().tokens, 10);
        let mut cache = KvCache::new(&config, vec![0, 0], 8, &device);
        let _ = model.forward_cached(tokens(2, 3), &mut cache);
        let _ = model.forward_cached(tokens(2, 1), &mut cache);
        let _ = model.block_outputs(tokens(3, 4));
        assert_eq!(watch.read().tokens, 10 + 6 + 2 + 12);
    }
}
