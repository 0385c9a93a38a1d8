//! One file per method: its config, its pure loss over log-prob tensors, its tests.

pub mod sft;
