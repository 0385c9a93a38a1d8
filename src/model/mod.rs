//! The policy network and its heads, generic over the burn backend.

mod cache;
mod config;
mod heads;
mod llama;
mod reward;
pub mod weights;

pub use cache::KvCache;
pub use config::LlamaConfig;
pub use heads::ScalarHead;
pub use llama::{Block, Llama};
pub use reward::{RewardEnsemble, RewardModel};
pub use weights::{HostTensor, NamedWeights};
