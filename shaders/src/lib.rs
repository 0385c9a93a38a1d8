//! Kernels alignlab runs outside burn's own ops, in a crate of their own so that they are
//! compiled optimised in every profile (the root crate is at opt-level 1 in `cargo build` and
//! `cargo test`, where these loops ran 2–3× slower).

pub mod cpu_attention;
