//! Tensor operations written to give the same numbers on every backend.

use crate::backend::Backend;
use burn::tensor::Tensor;

/// 1/x, exactly (IEEE division). burn-ndarray 0.21's `recip` on f32 uses the CPU's approximate
/// reciprocal instruction (`rcpps`, ~12 bits) on the 32-byte-aligned middle of the buffer and an
/// exact division on its unaligned ends, so which elements are approximate — up to 4e-4 off —
/// depends on where the allocator put the tensor: runs, and two calls in one run, differ.
pub fn reciprocal<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    x.ones_like() / x
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::Distribution;

    #[test]
    fn the_reciprocal_is_exact_wherever_the_tensor_lies() {
        let device = Default::default();
        let x = Tensor::<NdArray, 1>::random([1000], Distribution::Uniform(0.5, 2.0), &device);
        let values: Vec<f32> = x.to_data().to_vec().unwrap();
        // Offsets 0..8 floats move the buffer's alignment through every case.
        for offset in 0..8 {
            let shifted = x.clone().narrow(0, offset, 992) * 1.0;
            let out: Vec<f32> = reciprocal(shifted).into_data().to_vec().unwrap();
            for (i, v) in out.iter().enumerate() {
                assert_eq!(
                    v.to_bits(),
                    (1.0 / values[offset + i]).to_bits(),
                    "offset {offset}, {i}"
                );
            }
        }
    }
}
