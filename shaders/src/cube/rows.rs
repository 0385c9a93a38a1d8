//! What the row kernels share: one cube (workgroup) per row of a tensor [.., width], its units
//! striding over the row, and sums across the cube in shared memory.

use burn::tensor::TensorMetadata;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

/// Units per cube at most (a power of two, for the pairwise merge). WebGPU guarantees 256.
const MAX_UNITS: usize = 256;

/// The row this cube works on: cubes are laid out over two axes (a dispatch has at most 65,535
/// workgroups per axis).
#[cube]
pub(super) fn cube_row() -> usize {
    (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize
}

/// The sum of every unit's `partial`, known to every unit of the cube: pairwise in shared memory
/// (no subgroup operations, which the end-to-end test's WebGPU lacks).
#[cube]
pub(super) fn cube_sum<F: Float>(partial: F, #[comptime] units: usize) -> F {
    let unit = UNIT_POS_X as usize;
    let mut sums = SharedMemory::<F>::new(units);
    sums[unit] = partial;
    sync_cube();
    let mut half = CUBE_DIM_X as usize / 2;
    while half > 0 {
        if unit < half {
            sums[unit] = sums[unit] + sums[unit + half];
        }
        sync_cube();
        half /= 2;
    }
    sums[0]
}

/// Rows and width of a tensor [.., width].
pub(super) fn rows_and_width<R: CubeRuntime>(tensor: &CubeTensor<R>) -> (usize, usize) {
    let shape = tensor.shape();
    let width = shape[shape.num_dims() - 1];
    (shape.num_elements() / width, width)
}

/// Units per cube: the width rounded up to a power of two, at most [`MAX_UNITS`].
pub(super) fn units_for(width: usize) -> usize {
    width.next_power_of_two().min(MAX_UNITS)
}

/// Enough cubes for `rows`, within 65,535 per axis.
pub(super) fn cube_count(rows: usize) -> CubeCount {
    const PER_AXIS: usize = 65_535;
    let x = rows.clamp(1, PER_AXIS);
    CubeCount::Static(x as u32, rows.div_ceil(x) as u32, 1)
}
