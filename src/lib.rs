//! alignlab: reward models, preference optimisation and RL from feedback on small language
//! models — one core, generic over burn's backend, for the browser (WebGPU) and native runs.

pub mod algo;
pub mod backend;
pub mod batches;
#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
#[cfg(feature = "cli")]
pub mod cli;
pub mod compilation;
pub mod dataset;
pub mod decoding;
pub mod device_check;
pub mod distributed;
pub mod error;
pub mod frontier;
pub mod host;
pub mod init;
pub mod io;
pub mod kernel_checks;
pub mod kl;
pub mod lab;
pub mod logprobs;
pub mod memory;
pub mod methods;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod policy;
pub mod prompts;
pub mod reward;
pub mod rollout;
pub mod run;
pub mod sample;
pub mod shapes;
#[cfg(not(target_arch = "wasm32"))]
pub mod testdata;
pub mod throughput;
pub mod train;
#[cfg(target_arch = "wasm32")]
pub mod web;
pub mod world;

pub use error::{Error, Result};
