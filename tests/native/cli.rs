//! The command-line tool as a user meets it: the method registry behind `--method`, flags that
//! override its defaults (and are refused by name where a method has no such setting), the
//! prompts file the README's RLOO example reads, and eval's JSON for pair files.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use crate::common::temp_path;

fn alignlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_alignlab"))
        .args(args)
        .output()
        .expect("the alignlab binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

#[test]
fn methods_lists_the_registry_that_train_reads() {
    let out = alignlab(&["methods", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let catalogue: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let names: Vec<&str> = catalogue["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 26);
    for name in ["sft", "rm", "dpo", "kto", "lipo", "grpo", "ppo", "raft"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }

    // An unknown method is refused with the registry's names; so is a setting the method
    // does not have, by its name.
    let out = alignlab(&["train", "--method", "dpoo", "--out", "x.safetensors"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown method `dpoo`: expected one of sft, rm, dpo"),
        "{}",
        stderr(&out)
    );
    let out = alignlab(&[
        "train",
        "--method",
        "dpo",
        "--gamma",
        "1",
        "--out",
        "x.safetensors",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("dpo has no setting `gamma`; its settings: beta, label_smoothing"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_preference_run_takes_the_registry_defaults_and_the_flags_override_them() {
    let dir = temp_path("cli-train");
    std::fs::create_dir_all(&dir).unwrap();
    let pairs = dir.join("pairs.jsonl");
    let rows: String = (0..6)
        .map(|i| {
            format!(
                "{{\"prompt\": \"Once upon a time, Tom\", \"chosen\": \" was happy {i}.\", \"rejected\": \" was sad {i}.\"}}\n"
            )
        })
        .collect();
    std::fs::write(&pairs, rows).unwrap();
    let model = dir.join("cdpo.safetensors");
    let out = alignlab(&[
        "train",
        "--method",
        "cdpo",
        "--data",
        path_arg(&pairs),
        "--steps",
        "2",
        "--out",
        path_arg(&model),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // Conservative DPO with its own default ε and the shared β, named as the registry names it.
    assert!(text.contains("read 6 pair rows"), "{text}");
    assert!(text.contains("cdpo with β = 0.1 on 6 rows"), "{text}");
    // Without a terminal the progress is a plain line, not silence.
    assert!(text.contains("step 2/2"), "{text}");
    assert!(model.exists());

    // eval on a pair file names its count `pairs`.
    let rm = dir.join("rm.safetensors");
    let out = alignlab(&[
        "train",
        "--method",
        "rm",
        "--data",
        path_arg(&pairs),
        "--steps",
        "1",
        "--out",
        path_arg(&rm),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("training a reward model (one reward) on 6 rows"),
        "{}",
        stdout(&out)
    );
    let out = alignlab(&[
        "eval",
        "--reward-model",
        path_arg(&rm),
        "--data",
        path_arg(&pairs),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json_line = stdout(&out)
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap()
        .to_string();
    let eval: serde_json::Value = serde_json::from_str(&json_line).unwrap();
    assert_eq!(eval["pairs"], 6, "{json_line}");
    assert!(eval.get("rankings").is_none());
}

#[test]
fn data_writes_the_prompt_file_online_methods_read() {
    let path = temp_path("story_prompts.jsonl");
    let out = alignlab(&[
        "data",
        "--kind",
        "prompts",
        "--prompts",
        "5",
        "--out",
        path_arg(&path),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&path).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r["prompt"].as_str().is_some()));
}

/// The README's "Bring your own model" commands, on the small Qwen2 fixture: DPO on
/// conversational pairs (rendered with the folder's chat template) written straight to a
/// Hugging Face folder, exported again, and chatted with.
#[test]
fn bring_your_own_model_runs_on_a_hugging_face_folder() {
    let model = common::data("hf/tiny-random-qwen2");
    let data = temp_path("conversational-pairs.jsonl");
    let row = r#"{"prompt": [{"role": "user", "content": "Tell me a story."}], "chosen": [{"role": "assistant", "content": "Once upon a time there was a cat."}], "rejected": [{"role": "assistant", "content": "No."}]}"#;
    std::fs::write(&data, format!("{row}\n{row}\n")).unwrap();
    let aligned = format!("{}/", temp_path("aligned").display());
    let out = alignlab(&[
        "train",
        "--method",
        "dpo",
        "--model",
        path_arg(&model),
        "--data",
        path_arg(&data),
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--out",
        &aligned,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(Path::new(&aligned).join(file).is_file(), "{file} missing");
    }
    let exported = temp_path("aligned-bf16");
    let out = alignlab(&[
        "export",
        "--model",
        &aligned,
        "--format",
        "hf",
        "--dtype",
        "bf16",
        "--out",
        path_arg(&exported),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = alignlab(&[
        "generate",
        "--model",
        path_arg(&exported),
        "--chat",
        "--prompt",
        "Tell me a story.",
        "--temperature",
        "0",
        "--max-tokens",
        "8",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A folder that is not a model says what it lacks.
    let out = alignlab(&[
        "score",
        "--model",
        path_arg(&exported.join("..")),
        "--text",
        "hi",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("config.json"), "{}", stderr(&out));
}

/// The weights of a policy file.
fn weights_of(path: &Path) -> alignlab::model::weights::NamedWeights {
    let (model, _) =
        alignlab::policy::load::<common::Cpu>(path_arg(path), None, &Default::default()).unwrap();
    pollster::block_on(model.to_weights()).unwrap()
}

fn largest_difference(
    a: &alignlab::model::weights::NamedWeights,
    b: &alignlab::model::weights::NamedWeights,
) -> f32 {
    let mut worst = 0.0f32;
    for (name, tensor) in &a.tensors {
        for (x, y) in tensor.data.iter().zip(&b.tensors[name].data) {
            worst = worst.max((x - y).abs());
        }
    }
    worst
}

#[test]
fn train_on_two_cpu_devices_gives_the_one_device_run() {
    let dir = temp_path("cli-devices");
    std::fs::create_dir_all(&dir).unwrap();
    let pairs = dir.join("pairs.jsonl");
    let rows: String = (0..12)
        .map(|i| {
            format!(
                "{{\"prompt\": \"Once upon a time, Tom\", \"chosen\": \" was happy {i}.\", \"rejected\": \" was sad {i}.\"}}\n"
            )
        })
        .collect();
    std::fs::write(&pairs, rows).unwrap();
    for (method, data) in [("dpo", Some(&pairs)), ("sft", None)] {
        let mut outputs = Vec::new();
        for devices in ["cpu:1", "cpu:2"] {
            let out_path = dir.join(format!("{method}-{devices}.safetensors").replace(':', ""));
            let mut args = vec![
                "train",
                "--method",
                method,
                "--steps",
                "3",
                "--batch-size",
                "6",
                "--lr",
                "1e-3",
                "--devices",
                devices,
                "--out",
            ];
            args.push(path_arg(&out_path));
            if let Some(data) = data {
                args.extend(["--data", path_arg(data)]);
            }
            let out = alignlab(&args);
            assert!(out.status.success(), "{method} {devices}: {}", stderr(&out));
            if devices == "cpu:2" {
                let text = stdout(&out);
                assert!(
                    text.contains("data parallel over 2 device(s) × 1 node(s)"),
                    "{text}"
                );
                assert!(text.contains("s of it in all-reduces"), "{text}");
                // One replica reports: one progress line per step.
                assert_eq!(text.matches("step 3/3").count(), 1, "{text}");
            }
            outputs.push(weights_of(&out_path));
        }
        let worst = largest_difference(&outputs[0], &outputs[1]);
        assert!(worst < 1e-5, "{method}: {worst}");
        let (base, _) =
            alignlab::policy::load::<common::Cpu>("builtin", None, &Default::default()).unwrap();
        let base = pollster::block_on(base.to_weights()).unwrap();
        assert!(
            largest_difference(&base, &outputs[0]) > 1e-4,
            "{method} trained nothing"
        );
    }
    // Flags that cannot work are refused before anything runs, saying why.
    for (args, why) in [
        (
            vec!["--devices", "cuda:0"],
            "the flex backend runs on `cpu` devices",
        ),
        (
            vec!["--devices", "cpu:2", "--batch-size", "1"],
            "a batch of 1 rows cannot be split over 2 devices",
        ),
        (
            vec!["--nodes", "2"],
            "name the orchestrator with --orchestrator HOST:PORT",
        ),
        (
            vec![
                "--nodes",
                "2",
                "--node-rank",
                "2",
                "--orchestrator",
                "127.0.0.1:29500",
            ],
            "--node-rank 2 is not below --nodes 2",
        ),
        (
            vec!["--nodes", "2", "--orchestrator", "127.0.0.1:29500"],
            "tracel-ai/burn#4549",
        ),
    ] {
        let out_path = dir.join("refused.safetensors");
        let mut all = vec![
            "train",
            "--method",
            "dpo",
            "--data",
            path_arg(&pairs),
            "--steps",
            "1",
            "--out",
        ];
        all.push(path_arg(&out_path));
        all.extend(args.iter().copied());
        let out = alignlab(&all);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
        assert!(!out_path.exists(), "{args:?} wrote a model");
    }
}

#[test]
fn lab_serves_the_built_page_and_names_what_is_missing() {
    use std::io::{BufRead, BufReader, Read};

    // A built page: index.html, a module, and the commit Trunk's hook says built it.
    let dist = temp_path("lab-dist");
    std::fs::create_dir_all(&dist).unwrap();
    std::fs::write(
        dist.join("index.html"),
        "<!doctype html><title>alignlab</title>",
    )
    .unwrap();
    std::fs::write(dist.join("alignlab_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(dist.join("build.json"), r#"{"commit": "0000000"}"#).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_alignlab"))
        .args(["lab", "--port", "0", "--dist", path_arg(&dist)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    let page = ureq::get(&url).call().unwrap().into_string().unwrap();
    let module = ureq::get(&format!("{url}alignlab_bg.wasm")).call().unwrap();
    let missing = ureq::get(&format!("{url}nothing.js")).call();
    server.kill().unwrap();
    server.wait().unwrap();
    let mut warnings = String::new();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut warnings)
        .unwrap();
    assert!(page.contains("<title>alignlab</title>"), "{page}");
    assert_eq!(module.content_type(), "application/wasm");
    assert!(matches!(missing, Err(ureq::Error::Status(404, _))));
    // A page from another commit is served, with a warning (when this binary knows its own).
    if !env!("ALIGNLAB_COMMIT").is_empty() {
        assert!(warnings.contains("built from commit 0000000"), "{warnings}");
    }

    // No built page: the folder is named, and how to build one.
    let empty = temp_path("lab-empty");
    std::fs::create_dir_all(&empty).unwrap();
    let output = alignlab(&["lab", "--port", "0", "--dist", path_arg(&empty)]);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(
        error.contains("index.html") && error.contains("trunk build --release"),
        "{error}"
    );
}

/// `alignlab generate` of three 12-token completions of one prompt at `seed`, with `extra` flags.
fn generate_three(seed: &str, extra: &[&str]) -> Output {
    let common = [
        "generate",
        "--prompt",
        "Once upon a time",
        "--seed",
        seed,
        "-n",
        "3",
        "--max-tokens",
        "12",
    ];
    alignlab(&[&common[..], extra].concat())
}

#[test]
fn generate_guided_by_args_at_weight_zero_samples_as_top_k_and_reports_its_costs() {
    let with = |extra: &[&str]| generate_three("3", extra);
    let plain = with(&["--top-k", "5"]);
    assert!(plain.status.success(), "{}", stderr(&plain));
    let guided = with(&[
        "--guide",
        "args",
        "--guide-weight",
        "0",
        "--guide-candidates",
        "5",
    ]);
    assert!(guided.status.success(), "{}", stderr(&guided));
    assert_eq!(stdout(&guided), stdout(&plain));
    let report = stderr(&guided);
    assert!(
        report.contains("KL to the model") && report.contains("tokens/s"),
        "{report}"
    );
    let steered = with(&["--guide", "args", "--guide-weight", "4"]);
    assert!(steered.status.success(), "{}", stderr(&steered));
    assert_ne!(stdout(&steered), stdout(&plain));
    for (flags, why) in [
        (
            &["--guide", "args", "--top-k", "5"][..],
            "--top-k and --top-p do not apply with --guide args",
        ),
        (
            &["--guide", "args", "--guide-horizon", "4"],
            "args has no setting `horizon`; its settings: weight, candidates",
        ),
        (
            &["--guide", "transfer-q"],
            "transfer-q decodes with one aligned model(s) besides the reference (--guide-model), got 0",
        ),
        (&["--guide", "argz"], "unknown decoding method `argz`"),
    ] {
        let refused = with(flags);
        assert!(!refused.status.success(), "{flags:?}");
        assert!(stderr(&refused).contains(why), "{}", stderr(&refused));
    }
}

#[test]
fn genarm_with_the_model_as_its_own_reward_model_is_the_model_cooled() {
    // π_ref · π_ref^(1/β) ∝ π_ref^((β + 1)/β): at 1/β = 1, the model at temperature 1/2.
    let with = |extra: &[&str]| generate_three("5", extra);
    let cooled = with(&["--temperature", "0.5"]);
    assert!(cooled.status.success(), "{}", stderr(&cooled));
    let guided = with(&[
        "--guide",
        "genarm",
        "--guide-model",
        "builtin",
        "--guide-weight",
        "1",
    ]);
    assert!(guided.status.success(), "{}", stderr(&guided));
    assert_eq!(stdout(&guided), stdout(&cooled));
    assert!(stderr(&guided).contains("tokens/s"), "{}", stderr(&guided));
}

/// RTO as the paper runs it: DPO on preference pairs, then PPO whose reward is the DPO policy's
/// implicit reward token by token plus the sequence reward at the end.
#[test]
fn rto_trains_on_a_dpo_policys_token_rewards_and_refuses_a_sequence_reward_alone() {
    let pairs = temp_path("rto-pairs.jsonl");
    let dpo = temp_path("rto-dpo.safetensors");
    let rto = temp_path("rto-policy.safetensors");
    let metrics = temp_path("rto-metrics.jsonl");
    let out = alignlab(&[
        "data",
        "--kind",
        "pairs",
        "--prompts",
        "24",
        "--seed",
        "3",
        "--out",
        path_arg(&pairs),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = alignlab(&[
        "train",
        "--method",
        "dpo",
        "--data",
        path_arg(&pairs),
        "--steps",
        "3",
        "--batch-size",
        "8",
        "--lr",
        "1e-3",
        "--out",
        path_arg(&dpo),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reward = format!("implicit:{},builtin,0.1+1*gold", path_arg(&dpo));
    let train = |reward: &str| {
        alignlab(&[
            "train",
            "--method",
            "rto",
            "--reward",
            reward,
            "--steps",
            "2",
            "--max-new-tokens",
            "12",
            "--out",
            path_arg(&rto),
            "--metrics",
            path_arg(&metrics),
        ])
    };
    let out = train(&reward);
    assert!(out.status.success(), "{}", stderr(&out));
    let steps: Vec<serde_json::Value> = std::fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(steps.len(), 2);
    assert!(Path::new(&rto).is_file());
    let refused = train("gold");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("rto needs a token-level reward: implicit:DPO,REFERENCE,BETA"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn ppo_optimises_an_infalign_transformed_reward_and_refuses_a_misspelt_transform() {
    let out_path = temp_path("infalign-policy.safetensors");
    let train = |transform: &str| {
        alignlab(&[
            "train",
            "--method",
            "ppo",
            "--reward",
            "gold",
            "--infalign",
            transform,
            "--calibration-samples",
            "8",
            "--steps",
            "1",
            "--max-new-tokens",
            "8",
            "--out",
            path_arg(&out_path),
        ])
    };
    let out = train("bon:4");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out_path.is_file());
    let refused = train("bon:four");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("transform `bon:four`: expected calibrate, bon:T or won:T"),
        "{}",
        stderr(&refused)
    );
}

/// The token-level offline methods from the command line: SparsePO reports its masks' sparsity;
/// AlignDistil distils from a DPO model and, given a second, the reverse DPO model trained with
/// `--reverse-pairs`; a teacher where none is taken is refused by name.
#[test]
fn sparsepo_and_aligndistil_train_from_the_command_line() {
    let pairs = temp_path("distil-pairs.jsonl");
    let out = alignlab(&[
        "data",
        "--kind",
        "pairs",
        "--prompts",
        "16",
        "--seed",
        "4",
        "--out",
        path_arg(&pairs),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let train = |method: &str, out_name: &str, extra: &[&str]| {
        let out_path = temp_path(out_name);
        let metrics = temp_path(&format!("{out_name}.jsonl"));
        let mut args = vec![
            "train",
            "--method",
            method,
            "--data",
            path_arg(&pairs),
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--out",
            path_arg(&out_path),
            "--metrics",
            path_arg(&metrics),
        ];
        args.extend_from_slice(extra);
        let out = alignlab(&args);
        let steps: Vec<serde_json::Value> = std::fs::read_to_string(&metrics)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (out, out_path, steps)
    };
    let (out, _, steps) = train("sparsepo", "sparsepo.safetensors", &["--mask-heads", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(steps.len(), 2);
    let sparsity = steps[1]["mask/sparsity"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&sparsity), "{:?}", steps[1]);

    let (out, dpo, _) = train("dpo", "distil-dpo.safetensors", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (out, reverse, _) = train("dpo", "distil-rdpo.safetensors", &["--reverse-pairs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (out, _, steps) = train(
        "aligndistil",
        "aligndistil.safetensors",
        &[
            "--teacher",
            path_arg(&dpo),
            "--teacher",
            path_arg(&reverse),
            "--tv-target",
            "0.1",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        steps[0]["distil/teacher_kl"].as_f64().unwrap() > 0.0,
        "{:?}",
        steps[0]
    );

    let (refused, _, _) = train("dpo", "refused.safetensors", &["--teacher", path_arg(&dpo)]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("dpo takes no teacher model"),
        "{}",
        stderr(&refused)
    );
}

/// `best-of-n --against`: InfAlign's win rate under best-of-n. A policy against itself, on the
/// same prompts and seeds, draws the same samples: every pair ties, the win rate is exactly ½.
#[test]
fn best_of_n_against_itself_wins_half_the_time() {
    let out = alignlab(&[
        "best-of-n",
        "--reward",
        "gold",
        "--prompt-count",
        "3",
        "--ns",
        "1,2",
        "--pool",
        "4",
        "--groups",
        "2",
        "--max-new-tokens",
        "8",
        "--against",
        "builtin",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("win rate vs builtin"), "{text}");
    for row in text.lines().skip(1) {
        let win = row.split('\t').next_back().unwrap();
        assert!(win.starts_with("0.500"), "{text}");
    }
}

/// `check-device` on the CPU (flex, against itself for the model): every check runs (the kernels against the unfused path, the model
/// against flex) and passes, one line each; the kernel lines carry their gaps.
#[test]
fn check_device_runs_every_check_and_passes_on_the_cpu() {
    let out = alignlab(&["check-device"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(lines.len(), 10, "{lines:#?}");
    assert!(
        lines.iter().all(|line| line.starts_with("ok   ")),
        "{lines:#?}"
    );
    assert!(
        lines[0].starts_with("ok   log-prob kernel") && lines[0].contains("largest gap"),
        "{}",
        lines[0]
    );
    assert!(
        lines[9].starts_with("ok   greedy decoding writes what the CPU writes"),
        "{}",
        lines[9]
    );
}
