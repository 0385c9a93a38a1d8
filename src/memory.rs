//! Whether a model fits the device, known before anything is allocated. A GPU refuses a buffer
//! larger than its limit (WebGPU's `maxStorageBufferBindingSize`, 128 MiB by default) and runs out
//! of memory when the working set outgrows it; either way the failure comes later, inside a
//! kernel launch, as a panic or a lost device. So the lab adds up what it will hold — weights,
//! gradients and optimiser state, the largest activations — from the model's shape, and refuses
//! a model that does not fit with an error naming the size asked for and the limit.

use std::fmt;

use crate::error::{Error, Result};
use crate::model::LlamaConfig;

const FLOAT_BYTES: u64 = 4;

/// What a device allows, in bytes; `None` where it does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceMemory {
    /// The device as a person knows it ("WebGPU", "CUDA device 0").
    pub name: String,
    /// The largest single buffer (one tensor).
    pub largest_buffer: Option<u64>,
    /// All memory the computation may hold at once.
    pub total: Option<u64>,
}

/// One piece of the working set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub what: String,
    pub bytes: u64,
}

/// Everything a computation will hold, and its largest single tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPlan {
    pub parts: Vec<Allocation>,
    pub largest_tensor: Allocation,
}

/// The batch the activations are sized for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchShape {
    pub sequences: usize,
    pub tokens: usize,
}

impl MemoryPlan {
    /// Training `trained` copies of the model (each with its gradients and AdamW's two moments)
    /// beside `frozen` inference copies, on batches of `batch`: the activations counted are the
    /// logits, the attention scores and the MLP's hidden layer of every layer (kept for the
    /// backward pass), with the largest one twice over (its gradient).
    pub fn training(
        config: &LlamaConfig,
        trained: usize,
        frozen: usize,
        batch: BatchShape,
    ) -> Self {
        let weights = config.num_params() as u64 * FLOAT_BYTES;
        let (rows, tokens) = (batch.sequences as u64, batch.tokens as u64);
        let embedding = Allocation {
            what: format!(
                "the token embedding ({} × {} floats)",
                config.vocab_size, config.dim
            ),
            bytes: (config.vocab_size * config.dim) as u64 * FLOAT_BYTES,
        };
        let logits = Allocation {
            what: format!(
                "the logits of {rows} sequences × {tokens} tokens × {} vocabulary",
                config.vocab_size
            ),
            bytes: rows * tokens * config.vocab_size as u64 * FLOAT_BYTES,
        };
        let scores = Allocation {
            what: format!(
                "one layer's attention scores ({rows} sequences × {} heads × {tokens}²)",
                config.n_heads
            ),
            bytes: rows * config.n_heads as u64 * tokens * tokens * FLOAT_BYTES,
        };
        let mlp = Allocation {
            what: format!(
                "one layer's MLP activations ({rows} sequences × {tokens} tokens × {})",
                config.hidden_dim
            ),
            bytes: rows * tokens * config.hidden_dim as u64 * FLOAT_BYTES,
        };
        let layers = config.n_layers as u64;
        let kept_for_backward = logits.bytes + layers * (scores.bytes + mlp.bytes);
        let largest_tensor = [embedding, logits, scores, mlp]
            .into_iter()
            .max_by_key(|t| t.bytes)
            .expect("four tensors");
        let parts = vec![
            Allocation {
                what: format!("{trained} trained model(s): weights, gradients, two AdamW moments"),
                bytes: 4 * trained as u64 * weights,
            },
            Allocation {
                what: format!("{frozen} frozen model(s)"),
                bytes: frozen as u64 * weights,
            },
            Allocation {
                what: "activations kept for the backward pass".into(),
                bytes: kept_for_backward,
            },
            Allocation {
                what: "the largest activation's gradient".into(),
                bytes: largest_tensor.bytes,
            },
        ];
        Self {
            parts,
            largest_tensor,
        }
    }

    pub fn total(&self) -> u64 {
        self.parts.iter().map(|p| p.bytes).sum()
    }

    /// An [`Error::OutOfMemory`] naming what does not fit, its size and the device's limit.
    pub fn check(&self, device: &DeviceMemory) -> Result<()> {
        if let Some(limit) = device.largest_buffer {
            if self.largest_tensor.bytes > limit {
                return Err(Error::OutOfMemory {
                    device: device.name.clone(),
                    what: self.largest_tensor.what.clone(),
                    asked: self.largest_tensor.bytes,
                    limit,
                    limit_of: "one buffer".into(),
                });
            }
        }
        if let Some(limit) = device.total {
            let total = self.total();
            if total > limit {
                let parts: Vec<String> = self
                    .parts
                    .iter()
                    .map(|p| format!("{} {}", p.what, Bytes(p.bytes)))
                    .collect();
                return Err(Error::OutOfMemory {
                    device: device.name.clone(),
                    what: format!("the working set ({})", parts.join("; ")),
                    asked: total,
                    limit,
                    limit_of: "all memory".into(),
                });
            }
        }
        Ok(())
    }
}

/// What a wgpu device allows (on WebGPU, the adapter's `maxStorageBufferBindingSize` per
/// buffer; natively on Vulkan CubeCL lifts that limit). WebGPU does not say how much memory the
/// GPU has in all.
pub fn wgpu_device_memory(device: &burn::backend::wgpu::WgpuDevice, name: &str) -> DeviceMemory {
    use cubecl_runtime::runtime::Runtime;
    let client = <burn::backend::wgpu::WgpuRuntime as Runtime>::client(device);
    let largest = client.properties().memory.max_page_size;
    DeviceMemory {
        name: name.into(),
        largest_buffer: (largest < u64::MAX).then_some(largest),
        total: None,
    }
}

/// A byte count for people: "154.4 MB (154,389,504 bytes)".
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.0.to_string();
        let mut grouped = String::new();
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        let (value, unit) = match self.0 {
            n if n >= 1_000_000_000 => (n as f64 / 1e9, "GB"),
            n if n >= 1_000_000 => (n as f64 / 1e6, "MB"),
            n => (n as f64 / 1e3, "kB"),
        };
        write!(f, "{value:.1} {unit} ({grouped} bytes)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpt2_small() -> LlamaConfig {
        LlamaConfig::random_shape("llama-124m").unwrap()
    }

    const BATCH: BatchShape = BatchShape {
        sequences: 32,
        tokens: 128,
    };

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(
            Bytes(154_389_504).to_string(),
            "154.4 MB (154,389,504 bytes)"
        );
        assert_eq!(Bytes(999).to_string(), "1.0 kB (999 bytes)");
        assert_eq!(
            Bytes(2_000_000_000).to_string(),
            "2.0 GB (2,000,000,000 bytes)"
        );
    }

    #[test]
    fn the_plan_adds_up_weights_state_and_activations() {
        let config = gpt2_small();
        let plan = MemoryPlan::training(&config, 1, 1, BATCH);
        let weights = 124_435_968 * 4;
        assert_eq!(plan.parts[0].bytes, 4 * weights);
        assert_eq!(plan.parts[1].bytes, weights);
        // The logits, 32 × 128 × 50,257 floats, are the largest tensor (823 MB).
        assert_eq!(plan.largest_tensor.bytes, 32 * 128 * 50_257 * 4);
        assert!(plan.largest_tensor.what.contains("logits"), "{plan:?}");
        assert!(plan.total() > 5 * weights + 2 * plan.largest_tensor.bytes);
    }

    #[test]
    fn a_tensor_over_the_buffer_limit_is_refused_naming_its_size_and_the_limit() {
        let plan = MemoryPlan::training(&gpt2_small(), 1, 1, BATCH);
        let webgpu = DeviceMemory {
            name: "WebGPU".into(),
            largest_buffer: Some(128 << 20),
            total: None,
        };
        let message = plan.check(&webgpu).unwrap_err().to_string();
        assert!(
            message.contains("823.4 MB (823,410,688 bytes)")
                && message.contains("134.2 MB (134,217,728 bytes)")
                && message.contains("logits")
                && message.contains("WebGPU"),
            "{message}"
        );
        let roomy = DeviceMemory {
            largest_buffer: Some(1 << 30),
            ..webgpu
        };
        assert!(plan.check(&roomy).is_ok());
    }

    #[test]
    fn a_working_set_over_the_memory_limit_is_refused() {
        let plan = MemoryPlan::training(&gpt2_small(), 1, 1, BATCH);
        let device = DeviceMemory {
            name: "CUDA device 0".into(),
            largest_buffer: None,
            total: Some(2_000_000_000),
        };
        let message = plan.check(&device).unwrap_err().to_string();
        assert!(
            message.contains(&Bytes(plan.total()).to_string())
                && message.contains("2.0 GB (2,000,000,000 bytes)")
                && message.contains("AdamW"),
            "{message}"
        );
        let small = MemoryPlan::training(&LlamaConfig::tiny(), 2, 1, BATCH);
        assert!(small.check(&device).is_ok());
    }
}
