//! Checkpoints of an online run: a folder per step holding the policy and the reference as
//! ordinary model files, the exact burn records of the policy, PPO's critic and both AdamW
//! states, and `run.json` (config, step, β, skipped steps). Resuming from one continues the run
//! as if it had never stopped: on the CPU backends the metrics match bit for bit.

use std::path::{Path, PathBuf};

use crate::backend::AutodiffBackend;
use burn::module::{AutodiffModule, Module};
use serde::{Deserialize, Serialize};

use super::{Critic, OnlineRun, OnlineRunConfig};
use crate::algo::kl_controller::KlController;
use crate::error::{Error, Result};
use crate::io::{record, Tokenizer};
use crate::model::{Llama, RewardModel};
use crate::policy;
use crate::train::Trainer;

const FORMAT: &str = "alignlab-online-run/1";
const RUN_FILE: &str = "run.json";
const POLICY_FILE: &str = "policy.safetensors";
const REFERENCE_FILE: &str = "reference.safetensors";
const POLICY_RECORD: &str = "policy.mpk";
const POLICY_OPTIMIZER: &str = "policy-optimizer.mpk";
const VALUE_RECORD: &str = "value.mpk";
const VALUE_OPTIMIZER: &str = "value-optimizer.mpk";

#[derive(Serialize, Deserialize)]
struct TrainerState {
    step: usize,
    skipped: Vec<usize>,
}

#[derive(Serialize, Deserialize)]
struct RunFile {
    format: String,
    config: OnlineRunConfig,
    step: usize,
    kl: KlController,
    policy_trainer: TrainerState,
    value_trainer: Option<TrainerState>,
}

fn trainer_state<B: AutodiffBackend, M: AutodiffModule<B>>(t: &Trainer<B, M>) -> TrainerState {
    TrainerState {
        step: t.step,
        skipped: t.skipped.clone(),
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

impl<B: AutodiffBackend> OnlineRun<B>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
    RewardModel<B>: AutodiffModule<B, InnerModule = RewardModel<B::InnerBackend>>,
{
    /// Writes `dir/step-NNNNNN` (into a `.partial` folder first, renamed when complete: a crash
    /// mid-save leaves the earlier checkpoints as they were) and returns its path.
    pub async fn save_checkpoint(
        &self,
        reference: &Llama<B::InnerBackend>,
        tokenizer: &Tokenizer,
        dir: &Path,
    ) -> Result<PathBuf> {
        let target = dir.join(format!("step-{:06}", self.step));
        let partial = dir.join(format!("step-{:06}.partial", self.step));
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
        }
        std::fs::create_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
        let policy = self.policy();
        policy::save(&policy.valid(), tokenizer, &partial.join(POLICY_FILE)).await?;
        policy::save(reference, tokenizer, &partial.join(REFERENCE_FILE)).await?;
        write(
            &partial.join(POLICY_RECORD),
            &record::to_bytes::<B, _>(policy.clone().into_record())?,
        )?;
        write(
            &partial.join(POLICY_OPTIMIZER),
            &self.trainer.optimizer_bytes()?,
        )?;
        if let Some(critic) = &self.critic {
            write(
                &partial.join(VALUE_RECORD),
                &record::to_bytes::<B, _>(critic.value_model.clone().into_record())?,
            )?;
            write(
                &partial.join(VALUE_OPTIMIZER),
                &critic.trainer.optimizer_bytes()?,
            )?;
        }
        let run = RunFile {
            format: FORMAT.into(),
            config: self.config.clone(),
            step: self.step,
            kl: self.kl,
            policy_trainer: trainer_state(&self.trainer),
            value_trainer: self.critic.as_ref().map(|c| trainer_state(&c.trainer)),
        };
        write(
            &partial.join(RUN_FILE),
            serde_json::to_string_pretty(&run)
                .expect("serialises")
                .as_bytes(),
        )?;
        if target.exists() {
            std::fs::remove_dir_all(&target).map_err(|e| Error::io(&target, e))?;
        }
        std::fs::rename(&partial, &target).map_err(|e| Error::io(&target, e))?;
        Ok(target)
    }
}

/// `dir` itself when it is a checkpoint, else its latest complete `step-*` checkpoint.
pub fn latest(dir: &Path) -> Result<PathBuf> {
    if dir.join(RUN_FILE).is_file() {
        return Ok(dir.to_path_buf());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut steps: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("step-") && !n.ends_with(".partial"))
                && p.join(RUN_FILE).is_file()
        })
        .collect();
    steps.sort();
    steps.pop().ok_or_else(|| {
        Error::Input(format!(
            "{}: no checkpoint here (expected {RUN_FILE} or step-* folders)",
            dir.display()
        ))
    })
}

/// What [`resume`] restores.
pub struct Resumed<B: AutodiffBackend> {
    pub run: OnlineRun<B>,
    pub reference: Llama<B::InnerBackend>,
    pub tokenizer: Tokenizer,
    /// The checkpoint folder used.
    pub checkpoint: PathBuf,
}

/// A resumed run with its reference model and tokenizer, from `dir` (a checkpoint or a folder
/// of them: the latest is taken).
pub fn resume<B: AutodiffBackend>(dir: &Path, device: &B::Device) -> Result<Resumed<B>>
where
    Llama<B>: AutodiffModule<B, InnerModule = Llama<B::InnerBackend>>,
    RewardModel<B>: AutodiffModule<B, InnerModule = RewardModel<B::InnerBackend>>,
{
    let at = latest(dir)?;
    let run_path = at.join(RUN_FILE);
    let run: RunFile = serde_json::from_slice(&read(&run_path)?)
        .map_err(|e| Error::Input(format!("{}: {e}", run_path.display())))?;
    if run.format != FORMAT {
        return Err(Error::Input(format!(
            "{}: format `{}`, expected `{FORMAT}`",
            run_path.display(),
            run.format
        )));
    }
    let path_str = |name: &str| at.join(name).display().to_string();
    let (policy, tokenizer) = policy::load::<B>(&path_str(POLICY_FILE), None, device)?;
    let policy = policy.load_record(record::from_bytes::<B, _>(
        read(&at.join(POLICY_RECORD))?,
        &path_str(POLICY_RECORD),
        device,
    )?);
    let (reference, _) = policy::load::<B::InnerBackend>(&path_str(REFERENCE_FILE), None, device)?;
    let mut resumed = OnlineRun::new(policy, run.config);
    resumed.step = run.step;
    resumed.kl = run.kl;
    resumed.trainer.step = run.policy_trainer.step;
    resumed.trainer.skipped = run.policy_trainer.skipped;
    resumed.trainer.load_optimizer_bytes(
        read(&at.join(POLICY_OPTIMIZER))?,
        &path_str(POLICY_OPTIMIZER),
        device,
    )?;
    if let Some(critic) = resumed.critic.take() {
        let state = run.value_trainer.ok_or_else(|| {
            Error::Input(format!(
                "{}: a PPO run without its value trainer",
                run_path.display()
            ))
        })?;
        let value_model = critic.value_model.load_record(record::from_bytes::<B, _>(
            read(&at.join(VALUE_RECORD))?,
            &path_str(VALUE_RECORD),
            device,
        )?);
        let mut trainer = critic.trainer;
        trainer.step = state.step;
        trainer.skipped = state.skipped;
        trainer.load_optimizer_bytes(
            read(&at.join(VALUE_OPTIMIZER))?,
            &path_str(VALUE_OPTIMIZER),
            device,
        )?;
        resumed.critic = Some(Critic {
            value_model,
            trainer,
        });
    }
    Ok(Resumed {
        run: resumed,
        reference,
        tokenizer,
        checkpoint: at,
    })
}
