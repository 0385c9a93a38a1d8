//! GPU kernel compilation, counted and kept. CubeCL (the compiler under burn's wgpu and CUDA
//! backends) compiles a kernel the first time it meets an operation and shape, and autotunes
//! matmuls and reductions by running every candidate kernel; on Vulkan's CPU driver (lavapipe)
//! a kernel takes about a second to compile, on CUDA a fraction of one. [`configure`] points
//! CubeCL's persistent caches (autotune results; compiled kernels where the runtime keeps them:
//! CUDA, and Vulkan's SPIR-V) at the user's cache folder, and routes its compilation and
//! autotune logs to a counter, so `alignlab bench` can say what each phase compiled.
//!
//! It must run before the first GPU device is made: CubeCL reads its configuration once.

mod matmul_choice;

pub use matmul_choice::{prefer_smaller_matmuls, SLOWER_AT_MOST};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use cubecl_common::config::logger::LogCrateLevel;
use cubecl_runtime::config::autotune::AutotuneLogLevel;
use cubecl_runtime::config::compilation::CompilationLogLevel;
use cubecl_runtime::config::{CubeClRuntimeConfig, RuntimeConfig};

/// Kernels compiled and autotune runs finished so far in this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CompileCounts {
    pub kernels: usize,
    pub autotunes: usize,
}

impl std::ops::Sub for CompileCounts {
    type Output = Self;
    fn sub(self, earlier: Self) -> Self {
        Self {
            kernels: self.kernels - earlier.kernels,
            autotunes: self.autotunes - earlier.autotunes,
        }
    }
}

/// Counts CubeCL's compilation and autotune log lines (it sends them through the `log` crate
/// once [`configure`] asks it to); every other log record is dropped, as before.
struct CompileCounter {
    kernels: AtomicUsize,
    autotunes: AtomicUsize,
}

impl CompileCounter {
    fn record(&self, message: &str) {
        // Basic and full compilation logs start with one of these; an autotune ends with the
        // "Fastest result" line.
        if message.starts_with("[Compiling kernel]")
            || message.starts_with("[START_KERNEL_COMPILATION]")
        {
            self.kernels.fetch_add(1, Ordering::Relaxed);
        } else if message.starts_with("Fastest result") {
            self.autotunes.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counts(&self) -> CompileCounts {
        CompileCounts {
            kernels: self.kernels.load(Ordering::Relaxed),
            autotunes: self.autotunes.load(Ordering::Relaxed),
        }
    }
}

impl log::Log for CompileCounter {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Info && metadata.target().starts_with("cubecl")
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            self.record(&record.args().to_string());
        }
    }

    fn flush(&self) {}
}

static COUNTER: CompileCounter = CompileCounter {
    kernels: AtomicUsize::new(0),
    autotunes: AtomicUsize::new(0),
};

/// Whether [`configure`] took effect (`false`: CubeCL's configuration was already read, or another
/// `log` logger is installed; the backends then run as before, uncounted).
static CONFIGURED: OnceLock<bool> = OnceLock::new();

/// Sets CubeCL's configuration for this process (once; later calls do nothing): the settings of
/// a `cubecl.toml` or `CUBECL_*` variables are kept, the caches moved to `cache_root` when given,
/// and compilations and autotunes counted. Returns whether counting is on.
pub fn configure(cache_root: Option<std::path::PathBuf>) -> bool {
    *CONFIGURED.get_or_init(|| {
        if log::set_logger(&COUNTER).is_err() {
            return false;
        }
        log::set_max_level(log::LevelFilter::Info);
        let mut config = base_config();
        config.compilation.logger.log = Some(LogCrateLevel::Info);
        if matches!(
            config.compilation.logger.level,
            CompilationLogLevel::Disabled
        ) {
            config.compilation.logger.level = CompilationLogLevel::Basic;
        }
        config.autotune.logger.log = Some(LogCrateLevel::Info);
        if matches!(config.autotune.logger.level, AutotuneLogLevel::Disabled) {
            config.autotune.logger.level = AutotuneLogLevel::Minimal;
        }
        set_cache(&mut config, cache_root);
        // A device made before this call has read the configuration already (and `set` would
        // panic): counting is then off, and nothing else changes.
        if CubeClRuntimeConfig::storage().lock().is_some() {
            return false;
        }
        CubeClRuntimeConfig::set(config);
        true
    })
}

#[cfg(not(target_arch = "wasm32"))]
fn base_config() -> CubeClRuntimeConfig {
    CubeClRuntimeConfig::from_current_dir().override_from_env()
}

#[cfg(target_arch = "wasm32")]
fn base_config() -> CubeClRuntimeConfig {
    CubeClRuntimeConfig::default()
}

#[cfg(not(target_arch = "wasm32"))]
fn set_cache(config: &mut CubeClRuntimeConfig, cache_root: Option<std::path::PathBuf>) {
    use cubecl_runtime::config::cache::CacheConfig;
    if let Some(root) = cache_root {
        if let Err(error) = prefer_smaller_matmuls(&root.join("autotune")) {
            // Only speed is at stake: the cache is read as it is.
            eprintln!(
                "note: could not revise the matmul choices in {}: {error}",
                root.join("autotune").display()
            );
        }
        config.autotune.cache = CacheConfig::File(root.join("autotune"));
        config.compilation.cache = Some(CacheConfig::File(root.join("kernels")));
    }
}

#[cfg(target_arch = "wasm32")]
fn set_cache(_config: &mut CubeClRuntimeConfig, _cache_root: Option<std::path::PathBuf>) {}

/// The counts so far: zero when [`configure`] did not take effect.
pub fn counts() -> CompileCounts {
    if CONFIGURED.get() != Some(&true) {
        return CompileCounts::default();
    }
    settled_counts()
}

/// CubeCL logs from a thread of its own, so the counts are read once they have stopped moving
/// (a few milliseconds after the work that compiled has been read back).
#[cfg(not(target_arch = "wasm32"))]
fn settled_counts() -> CompileCounts {
    let mut last = COUNTER.counts();
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        let now = COUNTER.counts();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// The browser has no sleeping (and its logger runs on the page's own task queue): the counts
/// are read as they stand.
#[cfg(target_arch = "wasm32")]
fn settled_counts() -> CompileCounts {
    COUNTER.counts()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_compilations_and_autotunes_from_cubecl_log_lines() {
        let counter = CompileCounter {
            kernels: AtomicUsize::new(0),
            autotunes: AtomicUsize::new(0),
        };
        counter.record("[Compiling kernel] MatmulEntry");
        counter.record("[START_KERNEL_COMPILATION]\nname: ElemwiseFuse");
        counter.record("Fastest result matmul_simple_unit-MatmulAutotuneKey …");
        counter.record("Autotune[7] name matmul_simple_unit => BenchmarkComputations");
        counter.record("Loaded 12 autotune cached entries");
        assert_eq!(
            counter.counts(),
            CompileCounts {
                kernels: 2,
                autotunes: 1
            }
        );
        let later = CompileCounts {
            kernels: 5,
            autotunes: 3,
        };
        assert_eq!(
            later - counter.counts(),
            CompileCounts {
                kernels: 3,
                autotunes: 2
            }
        );
    }
}
