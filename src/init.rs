//! Seeded weight initialisation on the host, so a seed gives the same model on every backend.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// `count = shape.product()` samples of N(0, std²) from a ChaCha8 stream seeded with `seed`.
pub fn normal(shape: &[usize], std: f32, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, std).expect("finite std");
    (0..shape.iter().product::<usize>())
        .map(|_| normal.sample(&mut rng))
        .collect()
}
