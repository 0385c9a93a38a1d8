//! The native integration tests, in one binary: each file below was its own test crate, and each
//! crate compiled and linked the whole training stack again (about 20 s apiece here); one binary
//! also lets `cargo test` run the slow tests of one file beside the quick ones of another.
//! Run one file's tests with `cargo test --test native cli::`.

mod common;

mod bad_input;
mod builtin_world;
mod cli;
mod decoding;
mod experiment;
mod frontier;
mod gguf_export;
mod heads_and_training;
mod hf_checkpoints;
mod infalign;
mod lab;
mod offline_preference;
mod online;
mod preference_data;
mod resume;
mod reward_model_training;
mod reward_models;
mod stories260k;
mod token_level;
mod tokenizers_hf;
mod vulkan;
