//! Starting the replicas of this process (one thread per device, each registered with burn's
//! collective), the global orchestrator, and the watchdog that turns a node that stopped
//! answering into an error instead of a hang.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use burn_collective::{CollectiveConfig, PeerId};

use super::replica::{collective, HostSum, Seat};
use super::{Cluster, Replica};
use crate::error::{Error, Result};
use crate::host::read_vec_blocking;

/// One collective session per process at a time (burn keeps one per backend type).
static SESSION: Mutex<()> = Mutex::new(());
/// The session now under way: a replica left behind by an ended run (it was waited on too
/// long, or a peer failed) finds another number here and stops instead of acting in the next
/// run's session.
static SESSION_NUMBER: AtomicU64 = AtomicU64::new(0);

/// burn's peer id and the watchdog's record are per [`Seat`], not per rank: see there.
impl Seat {
    /// burn's id for this seat: the rank in the first session, distinct in every later one.
    pub(crate) fn peer(self) -> PeerId {
        let id = self.session.saturating_sub(1) * self.world as u64 + self.rank as u64;
        PeerId::from(id as u32)
    }

    /// An error when this seat's run has ended: the replica stops instead of acting in the
    /// next run's session.
    pub(crate) fn check(self) -> Result<()> {
        if SESSION_NUMBER.load(Ordering::SeqCst) == self.session {
            Ok(())
        } else {
            Err(Error::Distributed(format!(
                "replica {}: its run has already ended",
                self.rank
            )))
        }
    }

    /// Marks this seat as waiting in collective operation `what` until the guard drops.
    pub(crate) fn wait(self, what: &'static str) -> Waiting {
        if let Ok(mut map) = pending().lock() {
            map.insert(self, (Instant::now(), what));
        }
        Waiting(self)
    }
}

/// Seats now inside a collective operation, and since when.
fn pending() -> &'static Mutex<HashMap<Seat, (Instant, &'static str)>> {
    static PENDING: OnceLock<Mutex<HashMap<Seat, (Instant, &'static str)>>> = OnceLock::new();
    PENDING.get_or_init(Default::default)
}

/// A seat waiting in a collective operation (see [`Seat::wait`]).
pub(crate) struct Waiting(Seat);

impl Drop for Waiting {
    fn drop(&mut self) {
        let Ok(mut map) = pending().lock() else {
            return;
        };
        if let Some((since, what)) = map.remove(&self.0) {
            if what == ALL_REDUCE && self.0.check().is_ok() {
                if let Ok(mut totals) = all_reduce_totals().lock() {
                    *totals.entry(self.0.rank).or_default() += since.elapsed();
                }
            }
        }
    }
}

/// What [`Waiting`] calls a sum over replicas.
pub(crate) const ALL_REDUCE: &str = "an all-reduce";

fn all_reduce_totals() -> &'static Mutex<HashMap<usize, Duration>> {
    static TOTALS: OnceLock<Mutex<HashMap<usize, Duration>>> = OnceLock::new();
    TOTALS.get_or_init(Default::default)
}

/// The time replica `rank` has spent in all-reduces (waiting for the others included) since
/// its run started.
pub fn all_reduce_time(rank: usize) -> Duration {
    all_reduce_totals()
        .lock()
        .ok()
        .and_then(|totals| totals.get(&rank).copied())
        .unwrap_or_default()
}

/// The longest wait now under way in `session`: (rank, operation, how long).
fn longest_wait(session: u64) -> Option<(usize, &'static str, Duration)> {
    let map = pending().lock().ok()?;
    map.iter()
        .filter(|(seat, _)| seat.session == session)
        .map(|(seat, &(since, what))| (seat.rank, what, since.elapsed()))
        .max_by_key(|&(_, _, waited)| waited)
}

fn collective_config(cluster: &Cluster) -> Result<CollectiveConfig> {
    let mut config = CollectiveConfig::default().with_num_devices(cluster.devices.len());
    if let Some(nodes) = &cluster.nodes {
        // burn's websocket layer logs every connection and transfer at INFO; it installs its
        // subscriber only if none is installed: warnings and errors only.
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
            .with_writer(std::io::stderr)
            .try_init();
        let address = |text: String| {
            text.parse()
                .map_err(|e: String| Error::Input(format!("address `{text}`: {e}")))
        };
        config = config
            .with_num_nodes(nodes.count as u32)
            .with_global_address(address(format!("ws://{}", nodes.orchestrator))?)
            .with_node_address(address(format!("ws://{}:{}", nodes.host, nodes.data_port))?)
            .with_data_service_port(nodes.data_port);
    }
    Ok(config)
}

/// Runs `body` once per device of this process, each on its own thread with its own
/// [`Replica`], and returns the leader's result (rank 0's; on other nodes, this node's first
/// replica's). A replica that fails (or panics) fails the run at once, naming its rank; a
/// collective operation that waits longer than `cluster.timeout` (a node died or cannot be
/// reached) fails it too. One device and one node: `body` runs here, with no collective.
pub fn run_replicas<B, T, F>(cluster: &Cluster, body: F) -> Result<T>
where
    B: Backend,
    T: Send + 'static,
    F: Fn(Replica, B::Device) -> Result<T> + Send + Sync + 'static,
{
    cluster.check()?;
    let devices: Vec<B::Device> = cluster.devices.devices();
    if cluster.is_single() {
        return body(Replica::SINGLE, devices[0].clone());
    }
    let _session = SESSION.lock().unwrap_or_else(|e| e.into_inner());
    let session = SESSION_NUMBER.fetch_add(1, Ordering::SeqCst) + 1;
    if let Ok(mut totals) = all_reduce_totals().lock() {
        totals.clear();
    }
    let config = collective_config(cluster)?;
    let body = Arc::new(body);
    let (sender, results) = mpsc::channel();
    let ranks = cluster.ranks();
    let first = ranks.start;
    let world = cluster.world();
    for (rank, device) in ranks.clone().zip(devices) {
        let seat = Seat {
            rank,
            world,
            session,
        };
        let replica = Replica::new(seat, host_sum::<B>(device.clone(), seat));
        let body = body.clone();
        let config = config.clone();
        let sender = sender.clone();
        std::thread::spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(|| {
                {
                    seat.check()?;
                    let _wait = seat.wait("registering with the other nodes");
                    burn_collective::register::<B>(seat.peer(), device.clone(), config).map_err(
                        |e| Error::Distributed(format!("registering replica {}: {e:?}", rank)),
                    )?;
                }
                let result = body(replica, device);
                if result.is_ok() && seat.check().is_ok() {
                    let _wait = seat.wait("finishing");
                    burn_collective::finish_collective::<B>(seat.peer()).map_err(|e| {
                        Error::Distributed(format!("finishing replica {}: {e:?}", rank))
                    })?;
                }
                result
            }))
            .unwrap_or_else(|panic| {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Err(Error::Distributed(format!(
                    "replica {} panicked: {message}",
                    rank
                )))
            });
            let _ = sender.send((rank, result));
        });
    }
    drop(sender);
    let mut leader = None;
    let mut done = 0;
    while done < ranks.len() {
        match results.recv_timeout(Duration::from_millis(500)) {
            Ok((rank, Ok(value))) => {
                done += 1;
                if rank == first {
                    leader = Some(value);
                }
            }
            Ok((rank, Err(error))) => {
                burn_collective::reset_collective::<B>();
                return Err(Error::Distributed(format!("replica {rank}: {error}")));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some((rank, what, waited)) = longest_wait(session) {
                    if waited > cluster.timeout {
                        burn_collective::reset_collective::<B>();
                        return Err(Error::Distributed(no_answer(cluster, rank, what, waited)));
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    burn_collective::reset_collective::<B>();
    leader.ok_or_else(|| Error::Distributed("the leading replica returned nothing".into()))
}

/// Host values summed over the replicas through `device`'s backend (the one registered).
/// burn's ring all-reduce across nodes cuts a tensor into one slice per node, so short inputs
/// are padded with zeros to `world` values.
fn host_sum<B: Backend>(device: B::Device, seat: Seat) -> Arc<HostSum> {
    Arc::new(move |mut values: Vec<f32>| {
        let n = values.len();
        values.resize(n.max(seat.world), 0.0);
        let padded = values.len();
        let tensor = Tensor::<B, 1>::from_data(TensorData::new(values, [padded]), &device);
        let mut sums = read_vec_blocking(collective::sum(seat, tensor)?)?;
        sums.truncate(n);
        Ok(sums)
    })
}

fn no_answer(cluster: &Cluster, rank: usize, what: &str, waited: Duration) -> String {
    let peers = match &cluster.nodes {
        Some(nodes) => format!(
            "the other nodes of {} (this is node {}; orchestrator {})",
            nodes.count, nodes.rank, nodes.orchestrator
        ),
        None => "the other replicas of this process".to_string(),
    };
    format!(
        "replica {rank} waited {} s ({what}) without an answer from {peers}: a node stopped or \
         cannot be reached (the limit is --node-timeout {} s). Checkpoints written so far are \
         intact: `--resume` continues from the last one.",
        waited.as_secs(),
        cluster.timeout.as_secs()
    )
}

/// Serves burn's global orchestrator on `port` until the process is stopped: the nodes of a run
/// register with it and learn each other's addresses.
pub fn serve_orchestrator(port: u16) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Distributed(format!("starting the orchestrator's runtime: {e}")))?;
    runtime.block_on(burn_collective::start_global_orchestrator(port));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributed::DeviceList;
    use burn::backend::NdArray;

    fn two_cpu(timeout_secs: u64) -> Cluster {
        Cluster {
            devices: DeviceList::Cpu { count: 2 },
            nodes: None,
            timeout: Duration::from_secs(timeout_secs),
        }
    }

    #[test]
    fn replicas_sum_gather_and_check_that_they_agree() {
        let out = run_replicas::<NdArray, _, _>(&two_cpu(30), |replica, _| {
            let sums = replica.sum_values(&[replica.rank as f32 + 1.0, 10.0])?;
            assert_eq!(sums, vec![3.0, 20.0]);
            let rows = replica.gather_rows(vec![vec![replica.rank as f32; replica.rank + 1]])?;
            assert_eq!(rows, vec![vec![0.0], vec![1.0, 1.0]]);
            assert!(
                (replica.share(1.0 + replica.rank as f64)? - (1.0 + replica.rank as f64) / 3.0)
                    .abs()
                    < 1e-9
            );
            replica.agree(&[("model", 7), ("data", 9)])?;
            Ok(replica.rank)
        })
        .unwrap();
        assert_eq!(out, 0, "the leader's result");
        let error = run_replicas::<NdArray, _, _>(&two_cpu(30), |replica, _| {
            replica.agree(&[("model", 7), ("data", 9 + replica.rank as u64)])
        })
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("disagree with replica 0 on: replica 1's data —"),
            "{error}"
        );
    }

    #[test]
    fn a_failed_replica_stops_the_run_at_once_and_a_silent_one_after_the_timeout() {
        // Replica 1 fails while replica 0 waits for it in a sum: the run ends with replica 1's
        // error, not a hang. Again and again: each run leaves a replica 0 behind that may reach
        // burn's server after the next run has registered; it must not join that run's sums
        // (nor clear its replica 0's wait from the watchdog).
        for _ in 0..20 {
            let started = Instant::now();
            let error = run_replicas::<NdArray, _, _>(&two_cpu(30), |replica, _| {
                if replica.rank == 1 {
                    return Err(Error::Input("data file broken at line 3".into()));
                }
                replica.sum_values(&[1.0])?;
                Ok(())
            })
            .unwrap_err()
            .to_string();
            assert!(
                error.contains("replica 1: data file broken at line 3"),
                "{error}"
            );
            assert!(started.elapsed() < Duration::from_secs(10));
        }
        // Replica 1 never joins the sum (a node that stopped answering): after the timeout.
        let started = Instant::now();
        let error = run_replicas::<NdArray, _, _>(&two_cpu(2), |replica, _| {
            if replica.rank == 1 {
                std::thread::sleep(Duration::from_secs(8));
                return Ok(());
            }
            replica.sum_values(&[1.0])?;
            Ok(())
        })
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("replica 0 waited 2 s (an all-reduce)"),
            "{error}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{:?}",
            started.elapsed()
        );
    }
}
