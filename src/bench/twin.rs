//! `alignlab bench --vs-pytorch`: the benchmarked model written as a Hugging Face folder, the
//! same figures measured on it by `benches/pytorch_twin.py` (transformers on PyTorch, eager and
//! optionally under `torch.compile`) in the same invocation, and alignlab's ratio to each.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::Measurement;
use crate::error::{Error, Result};

/// How to run the twin.
#[derive(Debug, Clone)]
pub struct TwinOptions {
    /// A Python with torch and transformers (the script's docstring says how to install them).
    pub python: PathBuf,
    pub script: PathBuf,
    /// Also time scoring and the DPO step under `torch.compile`.
    pub compile: bool,
    /// PyTorch's device: `cpu` or `cuda`.
    pub device: String,
}

/// What the twin wrote (`--json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TwinReport {
    pub torch: String,
    pub transformers: String,
    pub threads: usize,
    #[serde(default)]
    pub device: Option<String>,
    /// The GPU's name when the device is `cuda`.
    #[serde(default)]
    pub gpu: Option<String>,
    pub measurements: Vec<TwinMeasurement>,
    /// Modes that could not run (`compile` where torch.compile fails), with why.
    #[serde(default)]
    pub errors: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TwinMeasurement {
    pub name: String,
    /// `eager` or `compile`.
    pub mode: String,
    pub tokens: usize,
    pub seconds: f64,
    pub tokens_per_second: f64,
}

/// One figure, alignlab's speed over PyTorch's (above 1: alignlab is faster).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ratio {
    pub name: String,
    pub alignlab_tokens_per_second: f64,
    pub eager_tokens_per_second: Option<f64>,
    pub vs_eager: Option<f64>,
    pub compiled_tokens_per_second: Option<f64>,
    pub vs_compiled: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub pytorch: TwinReport,
    pub ratios: Vec<Ratio>,
}

/// Runs the twin on the Hugging Face folder `model` with `threads` threads and `repeats` timed
/// calls per figure, generation starting from `bos`, the figures of the kinds in `only` (all
/// when empty).
pub fn run(
    options: &TwinOptions,
    model: &Path,
    threads: usize,
    repeats: usize,
    bos: u32,
    only: &[&str],
) -> Result<TwinReport> {
    let program = options.python.display().to_string();
    let external = |message: String| Error::External {
        program: format!("{program} {}", options.script.display()),
        message,
    };
    let json = model.join("pytorch_twin.json");
    let mut command = Command::new(&options.python);
    command
        .arg(&options.script)
        .arg("--model")
        .arg(model)
        .args(["--threads", &threads.to_string()])
        .args(["--repeats", &repeats.to_string()])
        .args(["--bos", &bos.to_string()])
        .args(["--device", &options.device])
        .arg("--json")
        .arg(&json);
    if options.compile {
        command.arg("--compile");
    }
    if !only.is_empty() {
        command.args(["--only", &only.join(",")]);
    }
    // The twin's lines go straight to the terminal, interleaved with nothing: it runs alone.
    let status = command
        .status()
        .map_err(|e| external(format!("could not start: {e}")))?;
    if !status.success() {
        return Err(external(format!(
            "exited with {status} (is torch and transformers installed for this Python? \
             see benches/pytorch_twin.py)"
        )));
    }
    let text = std::fs::read_to_string(&json).map_err(|e| Error::io(&json, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::format(json.display().to_string(), e.to_string()))
}

/// Each of alignlab's figures against the twin's of the same name.
pub fn compare(ours: &[Measurement], pytorch: TwinReport) -> Comparison {
    let speed = |name: &str, mode: &str| {
        pytorch
            .measurements
            .iter()
            .find(|m| m.name == name && m.mode == mode)
            .map(|m| m.tokens_per_second)
    };
    let ratios = ours
        .iter()
        .map(|m| {
            let (eager, compiled) = (speed(&m.name, "eager"), speed(&m.name, "compile"));
            Ratio {
                name: m.name.clone(),
                alignlab_tokens_per_second: m.tokens_per_second,
                eager_tokens_per_second: eager,
                vs_eager: eager.map(|e| m.tokens_per_second / e),
                compiled_tokens_per_second: compiled,
                vs_compiled: compiled.map(|c| m.tokens_per_second / c),
            }
        })
        .collect();
    Comparison { pytorch, ratios }
}

impl Comparison {
    /// The table `--vs-pytorch` prints: tokens/s of each, and alignlab's ratio.
    pub fn table(&self) -> String {
        let cell = |v: Option<f64>, width: usize, digits: usize| match v {
            Some(v) => format!("{v:>width$.digits$}"),
            None => format!("{:>width$}", "—"),
        };
        let mut out = format!(
            "{:<44} {:>10} {:>10} {:>7} {:>10} {:>7}\n",
            "figure (tokens/s)", "alignlab", "eager", "ratio", "compiled", "ratio"
        );
        for r in &self.ratios {
            out += &format!(
                "{:<44} {:>10.1} {} {} {} {}\n",
                r.name,
                r.alignlab_tokens_per_second,
                cell(r.eager_tokens_per_second, 10, 1),
                cell(r.vs_eager, 7, 2),
                cell(r.compiled_tokens_per_second, 10, 1),
                cell(r.vs_compiled, 7, 2),
            );
        }
        let p = &self.pytorch;
        let device = p.gpu.as_deref().or(p.device.as_deref()).unwrap_or("cpu");
        out += &format!(
            "PyTorch {} on {device}, transformers {}, {} threads",
            p.torch, p.transformers, p.threads
        );
        for (mode, why) in &self.pytorch.errors {
            out += &format!("\n{mode}: {why}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compilation::CompileCounts;

    fn ours(name: &str, tokens_per_second: f64) -> Measurement {
        Measurement {
            name: name.into(),
            tokens: 100,
            seconds: 100.0 / tokens_per_second,
            tokens_per_second,
            compiled_in_warmup: CompileCounts::default(),
            compiled_after_warmup: CompileCounts::default(),
            model_flops_per_second: None,
        }
    }

    #[test]
    fn each_figure_is_divided_by_the_twins_of_the_same_name_and_mode() {
        let twin: TwinReport = serde_json::from_str(
            r#"{"torch": "2.9", "transformers": "5.2", "threads": 2, "measurements": [
                {"name": "score 32x256", "mode": "eager", "tokens": 8192, "seconds": 2.0, "tokens_per_second": 4096.0},
                {"name": "score 32x256", "mode": "compile", "tokens": 8192, "seconds": 1.0, "tokens_per_second": 8192.0},
                {"name": "dpo step 8 pairs x 256", "mode": "eager", "tokens": 4096, "seconds": 1.0, "tokens_per_second": 4096.0}
            ], "errors": {}}"#,
        )
        .unwrap();
        let c = compare(
            &[ours("score 32x256", 2048.0), ours("ppo iteration", 10.0)],
            twin,
        );
        assert_eq!(c.ratios[0].vs_eager, Some(0.5));
        assert_eq!(c.ratios[0].vs_compiled, Some(0.25));
        assert_eq!(c.ratios[1].vs_eager, None);
        let table = c.table();
        assert!(table.contains("0.50") && table.contains("0.25"), "{table}");
    }
}
