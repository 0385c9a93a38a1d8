//! `train`'s data-parallel flags (`--devices`, and torchrun-like `--nodes`, `--node-rank`,
//! `--orchestrator`), and the hashes by which the nodes check that they run the same thing.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use crate::backend::Backend;
use crate::distributed::{Cluster, DeviceList, Nodes, DEFAULT_TIMEOUT_SECS};
use crate::model::Llama;
use crate::{Error, Result};
use clap::Args;

#[derive(Args, Clone, Debug)]
pub struct ClusterArgs {
    /// Train data parallel on these devices: `cpu:2` (two CPU replicas), `cuda:0,cuda:1`. Batch
    /// sizes, prompts per step and group sizes are global: the run is the same on any number
    /// of devices (up to float rounding).
    #[arg(long)]
    pub devices: Option<String>,
    /// Processes in the run (one per machine, each with the same --devices count), joined
    /// through `alignlab orchestrator`.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// This process's place among the nodes, from 0; node 0 writes the outputs.
    #[arg(long, default_value_t = 0)]
    pub node_rank: usize,
    /// HOST:PORT of `alignlab orchestrator --port PORT` (needed with --nodes > 1).
    #[arg(long)]
    pub orchestrator: Option<String>,
    /// The address the other nodes reach this one at.
    #[arg(long, default_value = "127.0.0.1")]
    pub node_host: String,
    /// The port this node serves its tensors on [default: the orchestrator's port + 1 + node
    /// rank].
    #[arg(long)]
    pub node_port: Option<u16>,
    /// Seconds a collective operation may wait for the other nodes before the run stops with
    /// an error (a node died or cannot be reached).
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_SECS)]
    pub node_timeout: u64,
}

impl ClusterArgs {
    /// The cluster the flags describe; `backend` is `--backend`, whose devices `--devices` must
    /// name.
    pub fn cluster(&self, backend: &str) -> Result<Cluster> {
        let devices = match &self.devices {
            Some(text) => DeviceList::parse(text)?,
            None => DeviceList::default(),
        };
        let expected = match backend {
            "flex" | "ndarray" => "cpu",
            other => other,
        };
        if self.devices.is_some() && devices.kind() != expected {
            return Err(Error::Input(format!(
                "--devices {}: the {backend} backend runs on `{expected}` devices",
                self.devices.as_deref().unwrap_or_default()
            )));
        }
        let nodes = match (self.nodes, &self.orchestrator) {
            (1, None) => None,
            (count, Some(orchestrator)) => {
                let port: u16 = orchestrator
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse().ok())
                    .ok_or_else(|| {
                        Error::Input(format!(
                            "--orchestrator `{orchestrator}`: expected HOST:PORT"
                        ))
                    })?;
                Some(Nodes {
                    count,
                    rank: self.node_rank,
                    orchestrator: orchestrator.clone(),
                    data_port: self
                        .node_port
                        .unwrap_or(port.wrapping_add(1 + self.node_rank as u16)),
                    host: self.node_host.clone(),
                })
            }
            (count, None) => {
                return Err(Error::Input(format!(
                    "--nodes {count}: name the orchestrator with --orchestrator HOST:PORT \
                     (start it with `alignlab orchestrator --port PORT`)"
                )))
            }
        };
        let cluster = Cluster {
            devices,
            nodes,
            timeout: Duration::from_secs(self.node_timeout.max(1)),
        };
        cluster.check()?;
        Ok(cluster)
    }
}

/// A hash of anything printable with `{:?}` — the same on every node for the same value.
pub fn hash_debug(value: &impl std::fmt::Debug) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    format!("{value:?}").hash(&mut hasher);
    hasher.finish()
}

/// A hash of a model's weights (names, shapes and values).
pub fn hash_model<B: Backend>(model: &Llama<B>) -> Result<u64> {
    let weights = pollster::block_on(model.to_weights())?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (name, tensor) in &weights.tensors {
        name.hash(&mut hasher);
        tensor.shape.hash(&mut hasher);
        for value in &tensor.data {
            value.to_bits().hash(&mut hasher);
        }
    }
    Ok(hasher.finish())
}

thread_local! {
    /// Set on the threads of replicas other than the leader: what the run prints is printed once.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this thread as a replica that prints nothing (every replica but rank 0).
pub fn set_quiet(quiet: bool) {
    QUIET.with(|q| q.set(quiet));
}

pub fn is_quiet() -> bool {
    QUIET.with(|q| q.get())
}
