//! Reading tensors back to the host. Async first — synchronous reads panic in the browser — with
//! blocking wrappers for native callers.

use crate::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};

use crate::error::{Error, Result};

fn device_error(e: impl std::fmt::Debug) -> Error {
    Error::Device(format!("reading a value from the device: {e:?}"))
}

/// A one-element tensor as f32.
pub async fn read_scalar<B: Backend>(tensor: Tensor<B, 1>) -> Result<f32> {
    tensor
        .into_scalar_async()
        .await
        .map(|v| v.elem::<f32>())
        .map_err(device_error)
}

/// All elements as f32, row-major.
pub async fn read_vec<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Result<Vec<f32>> {
    let data = tensor.into_data_async().await.map_err(device_error)?;
    data.convert::<f32>()
        .into_vec::<f32>()
        .map_err(device_error)
}

#[cfg(not(target_arch = "wasm32"))]
pub fn read_scalar_blocking<B: Backend>(tensor: Tensor<B, 1>) -> Result<f32> {
    pollster::block_on(read_scalar(tensor))
}

#[cfg(not(target_arch = "wasm32"))]
pub fn read_vec_blocking<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Result<Vec<f32>> {
    pollster::block_on(read_vec(tensor))
}
