//! Alignment at decoding time: samplers that steer the reference model with a reward as they
//! decode, no weights changed. Each knows the per-token distribution it samples from, so the
//! KL of its samples to the reference is measured exactly, as for a trained policy.

pub mod args;
