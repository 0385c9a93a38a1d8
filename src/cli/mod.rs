//! The command-line tool: thin clap commands over the library. `src/bin/alignlab` only calls
//! [`main`]. The commands live in the library so that their instantiations for each backend
//! (`run::<Autodiff<Flex>>` and the whole training stack under it) are compiled once, here, and
//! reused by the binary and by the integration tests, which use the same instances (rustc shares
//! generic instances across crates at our dev opt-level).

mod cluster;
mod data;
mod eval;
mod experiment;
mod export;
mod frontier;
mod guide;
mod lab;
mod online;
mod progress;
mod train;

use std::path::PathBuf;

use crate::backend::AutodiffBackend;
use crate::dataset::{tokenize_examples, Example};
use crate::host::read_vec_blocking;
use crate::logprobs::{gather_logprobs, SequenceBatch};
use crate::model::Llama;
use crate::sample::{generate, SamplingConfig};
use crate::{bench, policy, world, Error, Result};
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use clap::{Args, Parser, Subcommand, ValueEnum};

use train::{train_sft, TrainArgs};

#[derive(Parser)]
#[command(
    name = "alignlab",
    version,
    about = "An alignment lab for small language models"
)]
struct Cli {
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Flex, global = true)]
    backend: BackendKind,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BackendKind {
    /// burn's fastest CPU backend (SIMD, threads).
    Flex,
    /// burn's ndarray CPU backend.
    Ndarray,
    /// WebGPU/Vulkan/Metal through wgpu.
    Wgpu,
    /// NVIDIA GPUs (build with `--features cuda`).
    Cuda,
}

#[derive(Args, Clone)]
pub struct ModelArgs {
    /// `builtin`, a Hugging Face model folder, a .gguf, llama2.c .bin, or alignlab
    /// .safetensors file, or `random:llama-124m` / `random:stories260k` (that shape, random
    /// weights, the built-in tokenizer).
    #[arg(long, default_value = policy::BUILTIN)]
    pub model: String,
    /// llama2.c tokenizer.bin (default: tokenizer.bin or tok<vocab>.bin beside the model), or a
    /// tokenizer.json for a model folder without one.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Sample completions of a prompt.
    Generate {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, default_value = "")]
        prompt: String,
        #[arg(long, default_value_t = 64)]
        max_tokens: usize,
        /// 0 is greedy decoding.
        #[arg(long, default_value_t = 1.0)]
        temperature: f32,
        /// 0 keeps every token.
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// How many samples.
        #[arg(short = 'n', default_value_t = 1)]
        n: usize,
        /// Recompute the whole prefix at every step instead of using the KV cache.
        #[arg(long)]
        no_cache: bool,
        /// Send the prompt as a user message through the model's chat template.
        #[arg(long)]
        chat: bool,
        #[command(flatten)]
        guide: guide::GuideArgs,
    },
    /// Per-token log-probs of a text after the BOS token, as JSON.
    Score {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        text: String,
    },
    /// Describe a model file.
    Info {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Pretrain the built-in world's base model from scratch on generated stories.
    Pretrain {
        #[arg(long, default_value = "builtin.safetensors")]
        out: PathBuf,
        /// Stories generated for training.
        #[arg(long, default_value_t = 20_000)]
        stories: usize,
        #[command(flatten)]
        train: TrainArgs,
    },
    /// Write gold-labelled preference data for the built-in world, sampled from a policy.
    Data(data::DataCommand),
    /// Train with one method: sft, rm (reward model), or a preference method (dpo, ipo, kto…).
    Train(Box<train::TrainCommand>),
    /// Serve burn's global orchestrator, through which the nodes of a multi-machine run
    /// (`train --nodes N --node-rank I --orchestrator HOST:PORT`) find each other.
    Orchestrator {
        #[arg(long, default_value_t = 29500)]
        port: u16,
    },
    /// Serve the browser lab (the page `trunk build --release` wrote to dist/) and print its URL.
    Lab(lab::LabCommand),
    /// Evaluate a reward model on preference data, or a policy's gold reward on the world.
    Eval(eval::EvalCommand),
    /// Best-of-n sampling: measured KL against log n − (n−1)/n, and the rewards it buys.
    BestOfN(online::BestOfNCommand),
    /// The main job on the built-in world: gold-labelled pairs from the base model → proxy
    /// reward models → best-of-n, PPO, GRPO and DPO → the frontier report (the built-in sweep).
    Demo {
        /// Folder for frontier.json, frontier.csv and frontier.html.
        #[arg(long, default_value = "demo")]
        out: PathBuf,
    },
    /// Run an experiment file (TOML, as the page's "Export experiment" writes it): labels →
    /// reward model → runs on the policy → best-of-n, each policy measured; writes every step.
    Run(experiment::RunCommand),
    /// Write a model in a format other tools load (a Hugging Face folder).
    Export(export::ExportCommand),
    /// Sweep best-of-n, PPO, GRPO and DPO from a TOML config and write the KL–reward frontier
    /// report (JSON, CSV, HTML with charts and Gao et al. fits).
    Frontier(frontier::FrontierCommand),
    /// Every method `train --method` takes: what it trains on, its training defaults, and its
    /// own settings with their defaults (the sweep's TOML keys and the page use the same names).
    Methods {
        /// Print the registry and every metric name as JSON (what the page reads).
        #[arg(long)]
        json: bool,
    },
    /// Check the backend against the CPU: alignlab's kernels against burn's unfused path on the
    /// device, then the built-in model's log-probs, three DPO steps and greedy text against the
    /// CPU backend (flex). Fails when any check does.
    CheckDevice,
    /// Make the tests' data present: `$ALIGNLAB_DATA`, or `../shared/data` beside the checkout,
    /// else downloaded from its public origins into the user's cache, each file's SHA-256
    /// checked. Prints the folder.
    TestData,
    /// Measure generation, scoring, a DPO step and a PPO iteration, with the GPU kernels each
    /// compiled; with --vs-pytorch, the same in PyTorch in the same run, and each ratio.
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        /// Timed repetitions per figure (the best is reported).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// CPU threads for the CPU backends (and the twin); default: all cores.
        #[arg(long)]
        threads: Option<usize>,
        /// Only these kinds of figure (comma-separated); default: all.
        #[arg(long, value_delimiter = ',')]
        only: Vec<bench::Figure>,
        /// Then run benches/pytorch_twin.py on the same model and print alignlab/PyTorch.
        #[arg(long)]
        vs_pytorch: bool,
        /// The Python the twin runs with (torch and transformers installed).
        #[arg(long, default_value = "python3")]
        python: PathBuf,
        /// The twin's script.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/pytorch_twin.py"))]
        twin: PathBuf,
        /// The twin also times scoring and the DPO step under torch.compile.
        #[arg(long)]
        torch_compile: bool,
        /// The twin's PyTorch device: cpu or cuda.
        #[arg(long, default_value = "cpu")]
        twin_device: String,
        /// Write the measurements (and the comparison) as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

/// Parses the process's arguments and runs the command on the chosen backend; exits with status 1
/// and the error on standard error when it fails.
pub fn main() {
    let cli = Cli::parse();
    let backend = format!("{:?}", cli.backend).to_lowercase();
    if matches!(cli.backend, BackendKind::Wgpu | BackendKind::Cuda) {
        // Before the first device: kernel caches in the user's cache folder, compilations counted.
        crate::compilation::configure(crate::io::user_cache_dir().map(|dir| dir.join("cubecl")));
    }
    let result = match cli.backend {
        BackendKind::Flex => {
            run::<Autodiff<burn::backend::Flex>>(cli.command, Default::default(), &backend)
        }
        BackendKind::Ndarray => {
            run::<Autodiff<burn::backend::NdArray>>(cli.command, Default::default(), &backend)
        }
        BackendKind::Wgpu => {
            run::<Autodiff<burn::backend::Wgpu>>(cli.command, Default::default(), &backend)
        }
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => {
            run::<Autodiff<burn::backend::Cuda>>(cli.command, Default::default(), &backend)
        }
        #[cfg(not(feature = "cuda"))]
        BackendKind::Cuda => Err(Error::Input(
            "this binary was built without CUDA: rebuild with `--features cuda`".into(),
        )),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// `backend`: `--backend`'s name (the devices `train --devices` names must be its).
fn run<B: AutodiffBackend>(command: Command, device: B::Device, backend: &str) -> Result<()> {
    match command {
        Command::Generate {
            model,
            prompt,
            max_tokens,
            temperature,
            top_k,
            top_p,
            seed,
            n,
            no_cache,
            chat,
            guide,
        } => {
            let (policy, tokenizer) =
                policy::load::<B::InnerBackend>(&model.model, model.tokenizer.as_deref(), &device)?;
            let text = match chat {
                false => prompt.clone(),
                true => {
                    let template = tokenizer.chat_template()?.ok_or_else(|| {
                        Error::Input(format!("--chat: {} has no chat template", model.model))
                    })?;
                    let message = crate::io::chat::Message {
                        role: "user".into(),
                        content: prompt.clone(),
                    };
                    template.render(&[message], true).map_err(Error::Input)?
                }
            };
            let ids = tokenizer.encode_with_bos(&text)?;
            let config = SamplingConfig {
                max_new_tokens: max_tokens,
                temperature,
                top_k,
                top_p,
                seed,
                stop_at_eos: true,
                use_cache: !no_cache,
            };
            let completions = match guide.guide {
                None => {
                    let prompts = vec![ids; n];
                    pollster::block_on(generate(&policy, &prompts, tokenizer.eos_id(), &config))?
                }
                Some(_) => guide::generate(&policy, &tokenizer, &vec![text; n], &guide, &config)?,
            };
            for completion in completions {
                match chat {
                    false => println!("{prompt}{}", tokenizer.decode(&completion)),
                    true => println!("{}", tokenizer.decode(&completion)),
                }
            }
            Ok(())
        }
        Command::CheckDevice => check_device::<B>(&device, backend),
        Command::Score { model, text } => {
            let (policy, tokenizer) =
                policy::load::<B::InnerBackend>(&model.model, model.tokenizer.as_deref(), &device)?;
            // Each token after the first is scored: after BOS when the model has one (as
            // transformers feeds it), else after the text's own first token (GPT-2).
            let all = tokenizer.encode_with_bos(&text)?;
            if all.len() < 2 {
                return Err(Error::Input("--text gives fewer than two tokens".into()));
            }
            let (first, ids) = (all[0], all[1..].to_vec());
            let batch = SequenceBatch::<B::InnerBackend>::new(
                &[(vec![first], ids.clone())],
                policy.config().max_seq_len,
                &device,
            )?;
            let (inputs, targets) = batch.inputs_and_targets();
            let mut logprobs = read_vec_blocking(gather_logprobs(policy.forward(inputs), targets))?;
            // On a GPU the batch is padded to a length block: the text's tokens come first.
            logprobs.truncate(ids.len());
            let mut previous = Some(first);
            let tokens: Vec<String> = ids
                .iter()
                .map(|&t| {
                    let s = tokenizer.token_text(previous, t);
                    previous = Some(t);
                    s
                })
                .collect();
            let total: f64 = logprobs.iter().map(|&l| l as f64).sum();
            let out = serde_json::json!({"tokens": tokens, "token_ids": ids, "logprobs": logprobs, "total": total});
            println!("{out}");
            Ok(())
        }
        Command::Info { model } => {
            let checkpoint = policy::load_checkpoint(&model.model, model.tokenizer.as_deref())?;
            let c = &checkpoint.config;
            println!("model: {}", model.model);
            println!(
                "config: {}",
                serde_json::to_string_pretty(c).expect("serialises")
            );
            println!("parameters: {}", c.num_params());
            let id = |t: Option<u32>| t.map_or_else(|| "none".into(), |t| t.to_string());
            println!(
                "tokenizer: {:?} (bos {}, eos {})",
                checkpoint.tokenizer,
                id(checkpoint.tokenizer.bos_id()),
                id(checkpoint.tokenizer.eos_id())
            );
            Ok(())
        }
        Command::Pretrain {
            out,
            stories,
            train,
        } => {
            let tokenizer = world::tokenizer();
            let mut stories_world = world::World::new(train.seed);
            let examples: Vec<Example> = (0..stories)
                .map(|_| Example {
                    prompt: String::new(),
                    completion: stories_world.story(),
                })
                .collect();
            let pairs = tokenize_examples(&tokenizer, &examples)?;
            let config = world::model_config(tokenizer.vocab_size());
            let model = Llama::<B>::init(&config, train.seed, &device)?;
            println!(
                "pretraining {} parameters on {} stories ({} tokens)",
                config.num_params(),
                pairs.len(),
                pairs.iter().map(|(p, c)| p.len() + c.len()).sum::<usize>()
            );
            let model = train_sft(model, &pairs, &train, Default::default())?;
            pollster::block_on(policy::save(&model.valid(), &tokenizer, &out))?;
            println!("saved {}", out.display());
            Ok(())
        }
        Command::Data(command) => data::run::<B::InnerBackend>(command, &device),
        Command::Train(command) => train::run::<B>(*command, backend),
        Command::Lab(lab) => lab.run(),
        Command::Orchestrator { port } => {
            println!("orchestrator listening on port {port} (stop it with Ctrl-C)");
            crate::distributed::serve_orchestrator(port)
        }
        Command::Eval(command) => eval::run::<B::InnerBackend>(command, &device),
        Command::BestOfN(command) => online::best_of_n::<B::InnerBackend>(command, &device),
        Command::Demo { out } => {
            let command = frontier::FrontierCommand {
                config: None,
                out,
                render: None,
            };
            frontier::run::<B>(&command, &device)
        }
        Command::Frontier(command) => frontier::run::<B>(&command, &device),
        Command::Run(command) => experiment::run::<B>(&command, &device),
        Command::Export(command) => export::run::<B::InnerBackend>(&command, &device),
        Command::TestData => {
            let beside = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
            let dir = crate::testdata::locate(&beside, |m| println!("{m}"))?;
            println!("test data: {}", dir.display());
            Ok(())
        }
        Command::Methods { json } => {
            print_methods(json);
            Ok(())
        }
        Command::Bench {
            model,
            repeats,
            threads,
            only,
            vs_pytorch,
            python,
            twin,
            torch_compile,
            twin_device,
            json,
        } => {
            let (policy, tokenizer) =
                policy::load::<B>(&model.model, model.tokenizer.as_deref(), &device)?;
            let options = bench::BenchOptions {
                backend: backend.to_string(),
                repeats,
                threads,
                only,
                twin: vs_pytorch.then_some(bench::twin::TwinOptions {
                    python,
                    script: twin,
                    compile: torch_compile,
                    device: twin_device,
                }),
            };
            let report = bench::benchmark(policy, &tokenizer, &options)?;
            if let Some(path) = json {
                std::fs::write(
                    &path,
                    serde_json::to_string_pretty(&report).expect("serialises"),
                )
                .map_err(|e| Error::io(&path, e))?;
            }
            Ok(())
        }
    }
}

/// `alignlab methods`: the registry as a reader wants it, or as JSON.
fn print_methods(json: bool) {
    use crate::algo::spec::{DataShape, MethodKind};
    let catalogue = crate::methods::catalogue();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&catalogue).expect("serialises")
        );
        return;
    }
    for m in &catalogue.methods {
        let trains_on = match m.kind {
            MethodKind::Supervised => "policy, on {prompt, completion} rows",
            MethodKind::RewardModel => "reward model, on pairs, rankings or ratings",
            MethodKind::Preference(DataShape::Pairs) => "policy, on pairs",
            MethodKind::Preference(DataShape::Rankings) => "policy, on rankings",
            MethodKind::Preference(DataShape::Unpaired) => "policy, on unpaired labels (or pairs)",
            MethodKind::Online => "policy, on its own samples scored by --reward",
        };
        let t = &m.training;
        println!("{:<13} {}", m.name, m.summary);
        println!(
            "{:<13} trains the {trains_on}; lr {}, steps {}, batch size {}, warmup {} of the steps",
            "", t.lr, t.steps, t.batch_size, t.warmup_ratio
        );
        for s in m.settings {
            let flag = s.name.replace('_', "-");
            println!("{:<13}   --{flag} {} — {}", "", s.default, s.help);
        }
    }
    println!("\ndecoding-time methods (generate --guide NAME; no weights change):");
    for m in &catalogue.decoding {
        println!("{:<13} {}", m.name, m.summary);
        for s in m.settings {
            println!("{:<13}   --guide-{} {} — {}", "", s.name, s.default, s.help);
        }
    }
}

/// `alignlab check-device`: every check, one line each; an error when any failed.
fn check_device<B: AutodiffBackend>(device: &B::Device, backend: &str) -> Result<()> {
    let checkpoint = policy::builtin_checkpoint()?;
    let mut checks = Vec::new();
    if crate::shapes::compiles_kernels::<B>(device) {
        checks.push(crate::device_check::fused_and_padded::<B>(device));
    }
    checks.extend(pollster::block_on(crate::device_check::all::<B>(
        device,
        &checkpoint,
    ))?);
    for check in &checks {
        let verdict = if check.passed { "ok  " } else { "FAIL" };
        println!("{verdict} {}: {}", check.name, check.detail);
    }
    let failed = checks.iter().filter(|check| !check.passed).count();
    match failed {
        0 => Ok(()),
        _ => Err(Error::Device(format!(
            "{failed} of {} checks failed: --backend {backend} does not compute what the CPU does",
            checks.len()
        ))),
    }
}
