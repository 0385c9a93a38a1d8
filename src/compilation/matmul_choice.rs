//! Which matmul kernel a wgpu process compiles. CubeCL's autotuner picks the fastest candidate
//! by run time alone; compile time is not measured. On wgpu every process compiles its kernels
//! again (CubeCL keeps no compiled pipelines for it), and one candidate, the unit matmul with the
//! smallest tiles, unrolls to ~9,400 lines of WGSL for the MLP's shapes on stories260K: Mesa's
//! lavapipe took ~3.8 s to compile each of the two a forward pass needs, in every process, for a
//! run time within 2% and 34% of the larger-tile candidate's (~1,450 lines). Scoring a sentence
//! took 8.1 s in a second process with those choices and 0.6 s without them.
//!
//! [`prefer_smaller_matmuls`] rewrites such choices in the wgpu autotune cache before the device
//! starts (CubeCL reads its cache once per key): where the small-tile kernel won and the
//! larger-tile kernel ran within [`SLOWER_AT_MOST`] of it, the larger-tile kernel becomes the
//! choice. CUDA's cache is left alone: CUDA keeps compiled kernels, so only run time matters.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The candidates, as burn-cubecl 0.21 names them.
const SMALL_TILES: &str = "matmul_simple_unit_min_tile_size";
const LARGE_TILES: &str = "matmul_simple_unit_max_tile_size";

/// How much slower (median run time) the larger-tile kernel may be and still be chosen: a few
/// tenths of a millisecond per call against seconds of compilation per process.
pub const SLOWER_AT_MOST: f64 = 1.5;

/// Rewrites the matmul choices of every wgpu device's autotune cache under `autotune_root`;
/// returns how many choices changed. A missing folder is no error (nothing tuned yet).
pub fn prefer_smaller_matmuls(autotune_root: &Path) -> std::io::Result<usize> {
    let mut changed = 0;
    for file in matmul_caches(autotune_root)? {
        changed += rewrite(&file)?;
    }
    Ok(changed)
}

/// The matmul autotune files of wgpu devices: `…/device-N-M-wgpu_…/…matmul…json.log`.
fn matmul_caches(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        for entry in entries {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("");
            if path.is_dir() {
                folders.push(path);
            } else if name.contains("matmul") && name.ends_with(".json.log") {
                let on_wgpu = path
                    .parent()
                    .and_then(|device| device.file_name())
                    .and_then(|device| device.to_str())
                    .is_some_and(|device| device.contains("wgpu"));
                if on_wgpu {
                    files.push(path);
                }
            }
        }
    }
    Ok(files)
}

/// Rewrites one cache file (one JSON entry per line) if a choice changes, through a temporary
/// file and a rename, so a failure leaves the old file whole.
fn rewrite(file: &Path) -> std::io::Result<usize> {
    let text = std::fs::read_to_string(file)?;
    let mut changed = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(mut entry) => match choose_larger_tiles(&mut entry) {
                true => {
                    changed += 1;
                    entry.to_string()
                }
                false => line.to_string(),
            },
            Err(_) => line.to_string(),
        })
        .collect();
    if changed > 0 {
        let temporary = file.with_extension("rewrite");
        std::fs::write(&temporary, lines.join("\n") + "\n")?;
        std::fs::rename(&temporary, file)?;
    }
    Ok(changed)
}

/// Makes the larger-tile kernel the entry's choice if the small-tile one won and the larger ran
/// within [`SLOWER_AT_MOST`] of it. Returns whether the entry changed.
fn choose_larger_tiles(entry: &mut Value) -> bool {
    let Some(value) = entry.get_mut("value") else {
        return false;
    };
    let candidates: Vec<(String, u64, f64)> = value["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|result| {
            let ok = result.get("outcome")?.get("Ok")?;
            let median = &ok["computation"]["median"];
            let seconds = median["secs"].as_f64()? + median["nanos"].as_f64()? * 1e-9;
            Some((
                ok["name"].as_str()?.to_string(),
                ok["index"].as_u64()?,
                seconds,
            ))
        })
        .collect();
    let find = |name: &str| candidates.iter().find(|candidate| candidate.0 == name);
    let (Some(small), Some(large)) = (find(SMALL_TILES), find(LARGE_TILES)) else {
        return false;
    };
    if value["fastest_index"].as_u64() != Some(small.1) || large.2 > small.2 * SLOWER_AT_MOST {
        return false;
    }
    value["fastest_index"] = large.1.into();
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One cache line as CubeCL 0.10 writes it, trimmed to the fields read here.
    fn entry(fastest: u64, small_micros: u64, large_micros: u64) -> String {
        let result = |name: &str, index: u64, micros: u64| {
            serde_json::json!({"outcome": {"Ok": {"name": name, "index": index,
                "computation": {"median": {"secs": 0, "nanos": micros * 1000}}}}})
        };
        serde_json::json!({
            "key": {"key": {"definition": {"m": 32, "n": 256, "k": 64}}, "checksum": "c"},
            "value": {"fastest_index": fastest, "results": [
                result(SMALL_TILES, 7, small_micros),
                result(LARGE_TILES, 5, large_micros),
                {"outcome": {"Err": {"Skip": {"name": "matmul_naive"}}}},
            ]}
        })
        .to_string()
    }

    fn fastest(line: &str) -> u64 {
        serde_json::from_str::<Value>(line).unwrap()["value"]["fastest_index"]
            .as_u64()
            .unwrap()
    }

    #[test]
    fn a_near_tie_goes_to_the_larger_tiles_on_wgpu_only() {
        let root = std::env::temp_dir().join(format!("alignlab-ties-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let device = |name: &str| {
            let folder = root.join("autotune/0.10.0").join(name);
            std::fs::create_dir_all(&folder).unwrap();
            folder.join("burn_cubecl-kernel-matmul-tune-base.json.log")
        };
        let (wgpu, cuda) = (device("device-4-0-wgpu_wgsl_"), device("device-0-0-cuda"));
        let lines = [
            entry(7, 348, 354), // a near tie: flipped
            entry(7, 214, 286), // 1.34× slower: flipped
            entry(7, 100, 200), // 2× slower: kept
            entry(5, 354, 348), // the larger tiles won already: kept
        ]
        .join("\n");
        for file in [&wgpu, &cuda] {
            std::fs::write(file, &lines).unwrap();
        }

        assert_eq!(prefer_smaller_matmuls(&root).unwrap(), 2);
        let rewritten = std::fs::read_to_string(&wgpu).unwrap();
        let choices: Vec<u64> = rewritten.lines().map(fastest).collect();
        assert_eq!(choices, [5, 5, 7, 5]);
        assert_eq!(std::fs::read_to_string(&cuda).unwrap(), lines);
        // A second start changes nothing.
        assert_eq!(prefer_smaller_matmuls(&root).unwrap(), 0);
        assert_eq!(prefer_smaller_matmuls(&root.join("absent")).unwrap(), 0);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
