//! One file per method: its config, its pure loss over log-prob or reward tensors, its tests.

pub mod dpo;
pub mod reward_model;
pub mod sft;
