//! The one batcher every loop uses: shuffled row indices, reshuffled at each epoch, so the
//! same run draws the same batches on the command line, in a sweep and in the page.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Streams minibatches of row indices `0..len`: a shuffled order, reshuffled when it runs out.
#[derive(Debug, Clone)]
pub struct BatchOrder {
    order: Vec<usize>,
    cursor: usize,
    rng: ChaCha8Rng,
}

impl BatchOrder {
    pub fn new(len: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..len).collect();
        order.shuffle(&mut rng);
        Self {
            order,
            cursor: 0,
            rng,
        }
    }

    /// The next `size` row indices (all rows when there are fewer); a batch may straddle two
    /// epochs.
    pub fn next_batch(&mut self, size: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(size);
        while out.len() < size.min(self.order.len()) {
            if self.cursor == self.order.len() {
                self.order.shuffle(&mut self.rng);
                self.cursor = 0;
            }
            out.push(self.order[self.cursor]);
            self.cursor += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_once_per_epoch_and_the_same_order_for_the_same_seed() {
        let mut a = BatchOrder::new(10, 3);
        let mut b = BatchOrder::new(10, 3);
        let first: Vec<usize> = (0..5).flat_map(|_| a.next_batch(2)).collect();
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_eq!(
            first,
            (0..5).flat_map(|_| b.next_batch(2)).collect::<Vec<_>>()
        );
        // A batch larger than the data is the data.
        assert_eq!(BatchOrder::new(3, 0).next_batch(8).len(), 3);
        assert!(BatchOrder::new(0, 0).next_batch(4).is_empty());
    }
}
