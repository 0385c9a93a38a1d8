//! Does this device compute what the CPU computes? A GPU can be wrong without failing: a known
//! wgpu/Chrome issue makes shaders fail silently, an autotuned kernel can be miscompiled (see
//! DEVELOPERS.md), a driver can be buggy. The page (a button; its end-to-end test presses it on
//! WebGPU) and the CLI (`alignlab check-device --backend wgpu`) run these checks on the device in
//! use: alignlab's kernels against burn's unfused path on that device, in values and gradients,
//! then the built-in model's forward pass, three DPO steps and greedy decoding against the CPU
//! backend. Everything is read back asynchronously, as the browser requires.

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use serde::Serialize;

use crate::algo::preference::{PreferenceConfig, PreferenceData, PreferenceLoss};
use crate::backend::{AutodiffBackend, Backend};
use crate::dataset::RankedSequences;
use crate::host::read_vec;
use crate::io::Checkpoint;
use crate::kernel_checks::{
    add_rms_norm_deviation, attention_cases, attention_deviation, log_prob_deviation,
    rms_norm_deviation,
};
use crate::lab::{memory_plan, LabConfig};
use crate::memory::{Bytes, DeviceMemory};
use crate::metrics::TRAIN_LOSS;
use crate::model::{Llama, LlamaConfig};
use crate::rollout::sequence_token_logps;
use crate::run::preference;
use crate::sample::{generate, SamplingConfig};
use crate::shapes::LengthBlocks;
use crate::train::OptimConfig;
use crate::Result;

/// What the device is compared with: burn's CPU backend, the one the page falls back to.
type Cpu = Autodiff<Flex>;

/// How far a kernel may be from the unfused path, and the device's log-probs from the CPU's.
const KERNEL_TOLERANCE: f32 = 1e-4;
/// How far a DPO loss on the device may be from the CPU's after three steps of Adam.
const DPO_TOLERANCE: f64 = 1e-3;

/// One check's outcome, as the page and the CLI show it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// The numbers behind the verdict.
    pub detail: String,
}

impl Check {
    fn new(name: impl Into<String>, passed: bool, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            passed,
            detail: detail.into(),
        }
    }

    /// Passes when every gap is below `tolerance` (a NaN gap fails).
    fn gaps(name: impl Into<String>, gaps: &[f32], tolerance: f32) -> Self {
        let worst = match gaps.iter().any(|gap| gap.is_nan()) {
            true => f32::NAN,
            false => gaps.iter().copied().fold(0.0, f32::max),
        };
        let passed = gaps.iter().all(|&gap| gap < tolerance);
        let each: Vec<String> = gaps.iter().map(|gap| format!("{gap:.1e}")).collect();
        Self::new(
            name,
            passed,
            format!(
                "largest gap {worst:.1e} (tolerance {tolerance:.0e}); each: {}",
                each.join(", ")
            ),
        )
    }
}

/// Every check on `device`: the kernels, then the model (`checkpoint`, the built-in model).
pub async fn all<A: AutodiffBackend>(
    device: &A::Device,
    checkpoint: &Checkpoint,
) -> Result<Vec<Check>> {
    let mut checks = kernels::<A>(device).await?;
    checks.extend(model::<A>(device, checkpoint).await?);
    Ok(checks)
}

/// A backend that compiles kernels is burn's fused one, and pads shapes to the compiled length
/// blocks (so that a kernel is compiled once per block, not once per length).
pub fn fused_and_padded<B: Backend>(device: &B::Device) -> Check {
    let name = B::name(device);
    let blocks = LengthBlocks::of::<B>(device);
    Check::new(
        "the backend is burn's fused one, with shapes padded to length blocks",
        name.contains("fusion<") && blocks == LengthBlocks::COMPILED,
        format!("backend {name}; length blocks {blocks:?}"),
    )
}

/// The memory check on this device's own limits: the built-in model's lab fits, and GPT-2
/// small's shape with a vocabulary whose embedding alone passes the largest buffer is refused
/// before anything is allocated, the error naming the size asked for and the limit.
pub fn refuses_what_does_not_fit(memory: &DeviceMemory, checkpoint: &Checkpoint) -> Check {
    let name = "a model too big for the device is refused, naming its size and the limit";
    let Some(limit) = memory.largest_buffer else {
        return Check::new(name, true, format!("{} sets no buffer limit", memory.name));
    };
    let lab = LabConfig::default();
    if let Err(e) = memory_plan(&checkpoint.config, &lab).check(memory) {
        return Check::new(name, false, format!("the built-in model was refused: {e}"));
    }
    let mut big = LlamaConfig::random_shape("llama-124m").expect("a built-in shape");
    big.vocab_size = (limit / (4 * big.dim as u64)) as usize + 1;
    match memory_plan(&big, &lab).check(memory) {
        Ok(()) => Check::new(name, false, "a model past the buffer limit was accepted"),
        Err(e) => {
            let message = e.to_string();
            let names_both = message.starts_with(&format!("out of memory on {}", memory.name))
                && message.contains(&format!("allows {}", Bytes(limit)));
            Check::new(name, names_both, message)
        }
    }
}

/// alignlab's kernels against burn's unfused composition on the same device, values and
/// gradients: the log-prob primitive on a vocabulary of 300 (more than a cube's 256 units, not a
/// power of two) with logits up to ±40, RMSNorm alone and after a residual add on widths 300 and
/// 8, and attention in the calls the model makes ([`attention_cases`]).
pub async fn kernels<A: AutodiffBackend>(device: &A::Device) -> Result<Vec<Check>> {
    type Inner<A> = <A as burn::tensor::backend::AutodiffBackend>::InnerBackend;
    let mut checks = Vec::new();
    let logits =
        Tensor::<Inner<A>, 3>::random([3, 7, 300], Distribution::Uniform(-40.0, 40.0), device);
    let targets: Vec<i64> = (0..21).map(|i| (i * 97 + 13) % 300).collect();
    let targets = Tensor::<Inner<A>, 2, Int>::from_data(TensorData::new(targets, [3, 7]), device);
    checks.push(Check::gaps(
        "log-prob kernel: values, the logits' gradients",
        &read_gaps(log_prob_deviation::<A>(logits, targets)).await?,
        KERNEL_TOLERANCE,
    ));
    for width in [300, 8] {
        let x =
            Tensor::<Inner<A>, 3>::random([3, 7, width], Distribution::Normal(0.5, 2.0), device);
        let weight =
            Tensor::<Inner<A>, 1>::random([width], Distribution::Uniform(0.5, 1.5), device);
        checks.push(Check::gaps(
            format!("RMSNorm kernel, width {width}: values, x's and the weight's gradients"),
            &read_gaps(rms_norm_deviation::<A>(x, weight.clone(), 1e-5)).await?,
            KERNEL_TOLERANCE,
        ));
        let terms = [0.0, 1.0].map(|mean| {
            Tensor::<Inner<A>, 3>::random([3, 7, width], Distribution::Normal(mean, 2.0), device)
        });
        checks.push(Check::gaps(
            format!(
                "residual add + RMSNorm kernel, width {width}: the sum, the norm, the \
                 residual's, the update's and the weight's gradients"
            ),
            &read_gaps(add_rms_norm_deviation::<A>(terms, weight, 1e-5)).await?,
            KERNEL_TOLERANCE,
        ));
    }
    for (case, (inputs, spans)) in attention_cases::<Inner<A>>(device).into_iter().enumerate() {
        checks.push(Check::gaps(
            format!("attention kernel, case {case}: values, q's, k's and v's gradients"),
            &read_gaps(attention_deviation::<A>(inputs, &spans)).await?,
            KERNEL_TOLERANCE,
        ));
    }
    Ok(checks)
}

async fn read_gaps<B: Backend, const N: usize>(gaps: [Tensor<B, 1>; N]) -> Result<Vec<f32>> {
    let mut values = Vec::with_capacity(N);
    for gap in gaps {
        values.extend(read_vec(gap).await?);
    }
    Ok(values)
}

/// The model on the device against the CPU backend: each completion token's log-prob, three
/// DPO steps (the first loss ln 2, then falling, each as on the CPU), and 12 greedy tokens.
pub async fn model<A: AutodiffBackend>(
    device: &A::Device,
    checkpoint: &Checkpoint,
) -> Result<Vec<Check>> {
    let cpu = Default::default();
    let sequences = sequences(checkpoint)?;
    let mut checks = Vec::new();

    let (on_device, _) = checkpoint.clone().into_model::<A::InnerBackend>(device)?;
    let (on_cpu, _) = checkpoint.clone().into_model::<Flex>(&cpu)?;
    let device_logps = completion_logps(&on_device, &sequences).await?;
    let cpu_logps = completion_logps(&on_cpu, &sequences).await?;
    let gaps: Vec<f32> = device_logps
        .iter()
        .zip(&cpu_logps)
        .map(|(a, b)| (a - b).abs())
        .collect();
    let mut check = Check::gaps(
        "the model's log-probs equal the CPU's",
        &[gaps.iter().copied().fold(0.0, f32::max)],
        KERNEL_TOLERANCE,
    );
    if device_logps.len() != cpu_logps.len() || !cpu_logps.iter().any(|&v| v < -0.5) {
        check.passed = false;
        check.detail = format!(
            "{} log-probs on the device, {} on the CPU (some below −0.5 expected)",
            device_logps.len(),
            cpu_logps.len()
        );
    }
    checks.push(check);

    let on_device = dpo_losses::<A>(device, checkpoint, &sequences).await?;
    let on_cpu = dpo_losses::<Cpu>(&cpu, checkpoint, &sequences).await?;
    let starts_at_ln2 = on_device.len() == 3
        && on_cpu.len() == 3
        && (on_device[0] - std::f64::consts::LN_2).abs() < 1e-4;
    let falls = on_device.windows(2).all(|w| w[1] < w[0]);
    let as_on_cpu = on_device
        .iter()
        .zip(&on_cpu)
        .all(|(d, c)| (d - c).abs() < DPO_TOLERANCE);
    checks.push(Check::new(
        "three DPO steps: the loss starts at ln 2 and falls as on the CPU",
        starts_at_ln2 && falls && as_on_cpu,
        format!("losses on the device {on_device:.5?}, on the CPU {on_cpu:.5?}"),
    ));

    let (on_device, _) = checkpoint.clone().into_model::<A::InnerBackend>(device)?;
    let (on_cpu, _) = checkpoint.clone().into_model::<Flex>(&cpu)?;
    let tokenizer = &checkpoint.tokenizer;
    let prompts = vec![tokenizer.encode_with_bos("Once upon a time")?; 2];
    let config = SamplingConfig {
        max_new_tokens: 12,
        temperature: 0.0,
        ..Default::default()
    };
    let device_text = generate(&on_device, &prompts, tokenizer.eos_id(), &config).await?;
    let cpu_text = generate(&on_cpu, &prompts, tokenizer.eos_id(), &config).await?;
    checks.push(Check::new(
        "greedy decoding writes what the CPU writes",
        !device_text[0].is_empty() && device_text == cpu_text,
        format!(
            "device: {:?}; CPU: {:?}",
            tokenizer.decode(&device_text[0]),
            tokenizer.decode(&cpu_text[0])
        ),
    ));
    Ok(checks)
}

/// Three prompts with their completions, of different lengths.
fn sequences(checkpoint: &Checkpoint) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
    let tokenizer = &checkpoint.tokenizer;
    [
        ("Once upon a time", " there was a happy dog."),
        ("Tom went to the park.", " He was sad and the rain fell."),
        (
            "The cat",
            " liked to play with Lily in the sun all day long.",
        ),
    ]
    .iter()
    .map(|(prompt, completion)| {
        Ok((
            tokenizer.encode_with_bos(prompt)?,
            tokenizer.encode(completion)?,
        ))
    })
    .collect()
}

/// Each completion token's log-prob, row after row: on a GPU the batch is padded to a length
/// block and on the CPU not, so the rows' completions are compared, not the padded tensors.
async fn completion_logps<B: Backend>(
    model: &Llama<B>,
    sequences: &[(Vec<u32>, Vec<u32>)],
) -> Result<Vec<f32>> {
    Ok(sequence_token_logps(model, sequences, sequences.len())
        .await?
        .concat())
}

/// Three DPO steps (β 0.1, Adam at 2e-3) on the sequences, each completion preferred to itself
/// reversed; the loss of each step.
async fn dpo_losses<A: AutodiffBackend>(
    device: &A::Device,
    checkpoint: &Checkpoint,
    sequences: &[(Vec<u32>, Vec<u32>)],
) -> Result<Vec<f64>> {
    let (policy, _) = checkpoint.clone().into_model::<A>(device)?;
    let reference = policy.clone().valid();
    let rows = sequences
        .iter()
        .cloned()
        .enumerate()
        .map(|(index, (prompt, completion))| {
            let worse = completion.iter().rev().copied().collect();
            RankedSequences {
                index,
                prompt,
                completions: vec![completion, worse],
                scores: None,
            }
        })
        .collect();
    let config = PreferenceConfig {
        loss: PreferenceLoss::named("dpo").expect("DPO is registered"),
        beta: 0.1,
        optim: OptimConfig {
            lr: 2e-3,
            warmup_steps: 1,
            total_steps: 3,
            ..Default::default()
        },
        batch_size: sequences.len(),
        seed: 0,
    };
    let mut losses = Vec::new();
    preference::train(
        policy,
        &reference,
        &PreferenceData::Ranked(rows),
        &config,
        |metrics| losses.extend(metrics.get(TRAIN_LOSS)),
    )
    .await?;
    Ok(losses)
}
