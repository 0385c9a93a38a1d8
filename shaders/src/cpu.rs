//! CPU backends run the unfused composition: [`Kernels`]' defaults.

use crate::Kernels;

impl Kernels for burn::backend::Flex {}

#[cfg(not(target_arch = "wasm32"))]
impl Kernels for burn::backend::NdArray {}
