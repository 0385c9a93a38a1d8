//! Data-parallel training across the devices of one process and across processes on several
//! machines, on burn's collective operations: `--devices` names this process's devices, and
//! `--nodes N --node-rank I --orchestrator HOST:PORT` joins N processes through burn's global
//! orchestrator (`alignlab orchestrator`), as torchrun's `--nnodes/--node-rank/--master-addr`.
//!
//! Every replica runs the same loop (`replica.rs` says how they stay equal); the leader, rank 0,
//! writes what the run writes.

pub mod replica;

#[cfg(not(target_arch = "wasm32"))]
mod launch;
#[cfg(not(target_arch = "wasm32"))]
pub use launch::{all_reduce_time, run_replicas, serve_orchestrator};

pub use replica::Replica;

use crate::error::{Error, Result};

/// The devices a process trains on: `cpu:2` (two replicas on the CPU backend's device — for
/// tests and for machines without GPUs), or accelerators by index, `cuda:0,cuda:1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceList {
    Cpu { count: usize },
    Indexed { kind: String, indices: Vec<usize> },
}

impl Default for DeviceList {
    fn default() -> Self {
        Self::Cpu { count: 1 }
    }
}

impl DeviceList {
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: String| {
            Error::Input(format!(
                "--devices `{text}`: {why} (write `cpu:2` for two CPU devices, or `cuda:0,cuda:1`)"
            ))
        };
        let mut cpu = None;
        let mut indexed: Option<(String, Vec<usize>)> = None;
        for item in text.split(',').map(str::trim) {
            let (kind, number) = item
                .split_once(':')
                .ok_or_else(|| bad(format!("`{item}` is not KIND:NUMBER")))?;
            let number: usize = number
                .parse()
                .map_err(|_| bad(format!("`{number}` in `{item}` is not a number")))?;
            match kind {
                "cpu" if cpu.is_none() && indexed.is_none() => {
                    if number == 0 {
                        return Err(bad(
                            "`cpu:0` is no device: the number after cpu: is a count".into(),
                        ));
                    }
                    cpu = Some(number)
                }
                "cpu" => return Err(bad("`cpu:N` stands alone: N is the count".into())),
                "cuda" | "wgpu" | "rocm" if cpu.is_none() => {
                    let (k, indices) =
                        indexed.get_or_insert_with(|| (kind.to_string(), Vec::new()));
                    if k != kind {
                        return Err(bad(format!("`{k}` and `{kind}` devices cannot be mixed")));
                    }
                    if indices.contains(&number) {
                        return Err(bad(format!("`{item}` is listed twice")));
                    }
                    indices.push(number);
                }
                "cuda" | "wgpu" | "rocm" => {
                    return Err(bad("cpu and accelerator devices cannot be mixed".into()))
                }
                other => return Err(bad(format!("unknown device kind `{other}`"))),
            }
        }
        match (cpu, indexed) {
            (Some(count), None) => Ok(Self::Cpu { count }),
            (None, Some((kind, indices))) => Ok(Self::Indexed { kind, indices }),
            _ => Err(bad("no device".into())),
        }
    }

    /// Devices in this process.
    pub fn len(&self) -> usize {
        match self {
            Self::Cpu { count } => *count,
            Self::Indexed { indices, .. } => indices.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The device kind, as `--backend` names the backends that run on it.
    pub fn kind(&self) -> &str {
        match self {
            Self::Cpu { .. } => "cpu",
            Self::Indexed { kind, .. } => kind,
        }
    }

    /// burn's devices: the CPU backends have one device, shared by the CPU replicas; an
    /// accelerator's index is its burn device index.
    pub fn devices<D: burn::tensor::backend::DeviceOps>(&self) -> Vec<D> {
        match self {
            Self::Cpu { count } => vec![D::default(); *count],
            Self::Indexed { indices, .. } => indices
                .iter()
                .map(|&i| D::from_id(burn::tensor::backend::DeviceId::new(0, i as u16)))
                .collect(),
        }
    }
}

/// Where this process stands in a run: its devices, and for a run over several processes the
/// node count, its rank and the orchestrator's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub devices: DeviceList,
    pub nodes: Option<Nodes>,
    /// How long a collective operation may wait for the others before the run stops with an
    /// error (a node died or cannot be reached).
    pub timeout: std::time::Duration,
}

/// Set to try a run over several processes despite burn 0.21's bug (see [`Cluster::check`]).
pub const MULTI_NODE_OVERRIDE: &str = "ALIGNLAB_TRY_MULTI_NODE";

/// The default of `--node-timeout`: long enough for a slow step's compute imbalance, short
/// enough that a dead node is noticed within a minute.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

impl Default for Cluster {
    fn default() -> Self {
        Self {
            devices: DeviceList::default(),
            nodes: None,
            timeout: std::time::Duration::from_secs(DEFAULT_TIMEOUT_SECS),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes {
    pub count: usize,
    pub rank: usize,
    /// `HOST:PORT` of `alignlab orchestrator`.
    pub orchestrator: String,
    /// The port this node serves tensors to the others on; its host is the address the others
    /// reach it at.
    pub data_port: u16,
    pub host: String,
}

impl Cluster {
    /// Devices in the run, all nodes together (every node has as many as this one).
    pub fn world(&self) -> usize {
        self.devices.len() * self.nodes.as_ref().map_or(1, |n| n.count)
    }

    /// The global ranks of this process's replicas: `node_rank · devices + i`.
    pub fn ranks(&self) -> std::ops::Range<usize> {
        let local = self.devices.len();
        let first = self.nodes.as_ref().map_or(0, |n| n.rank) * local;
        first..first + local
    }

    pub fn is_single(&self) -> bool {
        self.world() == 1
    }

    pub fn check(&self) -> Result<()> {
        if let Some(nodes) = &self.nodes {
            if nodes.count == 0 || nodes.rank >= nodes.count {
                return Err(Error::Input(format!(
                    "--node-rank {} is not below --nodes {}",
                    nodes.rank, nodes.count
                )));
            }
            if nodes.count > 1 && std::env::var_os(MULTI_NODE_OVERRIDE).is_none() {
                return Err(Error::Distributed(format!(
                    "--nodes {}: burn 0.21's all-reduce across processes completes its first \
                     call and then waits forever (its node sync never clears the peers that \
                     synced, and every call reuses transfer ids 0, 1, …: tracel-ai/burn#4549), \
                     so a run over several processes cannot take a step. Use --devices on one \
                     machine; docs/scaling.md says more. ({MULTI_NODE_OVERRIDE}=1 tries anyway, \
                     for checking a fixed burn.)",
                    nodes.count
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_lists_parse_or_say_what_is_wrong() {
        assert_eq!(
            DeviceList::parse("cpu:2").unwrap(),
            DeviceList::Cpu { count: 2 }
        );
        assert_eq!(
            DeviceList::parse("cuda:0, cuda:3").unwrap(),
            DeviceList::Indexed {
                kind: "cuda".into(),
                indices: vec![0, 3]
            }
        );
        for (text, why) in [
            ("cpu", "is not KIND:NUMBER"),
            ("cpu:x", "`x` in `cpu:x` is not a number"),
            ("cpu:0", "is no device"),
            ("cpu:1,cpu:1", "stands alone"),
            ("cuda:0,cuda:0", "listed twice"),
            ("cuda:0,wgpu:1", "cannot be mixed"),
            ("tpu:0", "unknown device kind `tpu`"),
        ] {
            let error = DeviceList::parse(text).unwrap_err().to_string();
            assert!(
                error.contains(why) && error.contains(text),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn ranks_run_across_nodes() {
        let cluster = Cluster {
            devices: DeviceList::Cpu { count: 2 },
            nodes: Some(Nodes {
                count: 3,
                rank: 1,
                orchestrator: "127.0.0.1:1".into(),
                data_port: 2,
                host: "127.0.0.1".into(),
            }),
            ..Default::default()
        };
        assert_eq!(cluster.world(), 6);
        assert_eq!(cluster.ranks(), 2..4);
    }
}
