//! The policy network and its heads, generic over the burn backend.

mod attention;
mod cache;
mod config;
mod cpu_attention;
mod heads;
mod layers;
mod llama;
mod reward;
mod rope;
pub mod weights;

pub use cache::KvCache;
pub use config::{Architecture, Family, LlamaConfig, RopeScaling, MAX_CONTEXT, RANDOM_SHAPES};
pub use heads::ScalarHead;
pub use layers::{add_rms_norm, rms_norm};
pub use llama::{init_weights, parameter_shapes, Block, Llama};
pub use reward::{RewardEnsemble, RewardModel};
pub use weights::{HostTensor, NamedWeights};
