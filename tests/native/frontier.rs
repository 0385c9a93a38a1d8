//! `alignlab frontier` end to end on a small sweep: every method runs, every policy is
//! measured on the same prompts, and the JSON, CSV and HTML report agree with the sweep.

use crate::common::{temp_path, Cpu};
use alignlab::frontier::{self, report, FrontierConfig, FrontierReport};
use burn::backend::Autodiff;

const SMALL: &str = r#"
seed = 4
[eval]
prompts = 8
samples_per_prompt = 2
max_new_tokens = 16
[preferences]
prompts = 120
max_new_tokens = 16
[[proxy]]
name = "rm"
steps = 8
warmup = 2
[[proxy]]
name = "ensemble"
members = 2
aggregation = "mean_minus_std"
steps = 8
warmup = 2
[best_of_n]
ns = [1, 2, 4]
pool = 16
groups = 2
[ppo]
kl_coefs = [0.1]
steps = 2
eval_every = 1
prompts_per_step = 4
infalign = ["bon:4"]
calibration_samples = 4
[grpo]
kl_coefs = [0.1]
proxies = ["ensemble"]
steps = 2
eval_every = 2
prompts_per_step = 2
group_size = 4
[grpo_s]
kl_coefs = [0.1]
steps = 2
eval_every = 2
prompts_per_step = 2
group_size = 4
[dpo]
betas = [0.1, 1.0]
methods = ["dpo", "sparsepo", "aligndistil"]
steps = 3
eval_every = 2
batch_size = 8
[rto]
kl_coefs = [0.1]
steps = 2
eval_every = 2
prompts_per_step = 4
[decoding]
methods = ["args", "transfer-q", "genarm"]
weights = [0, 4]
candidates = 4
rollouts = 1
horizon = 2
arm_steps = 3
"#;

#[test]
fn a_small_sweep_measures_every_method_and_writes_the_report() {
    let config = FrontierConfig::parse(SMALL, "small").unwrap();
    let mut lines = Vec::new();
    let mut log = |l: &str| lines.push(l.to_string());
    let report = pollster::block_on(frontier::run::<Autodiff<Cpu>>(
        &config,
        &Default::default(),
        &mut log,
    ))
    .unwrap();
    assert!(
        lines.iter().any(|l| l.contains("ppo β=0.1 rm")),
        "{lines:?}"
    );

    // The base policy is its own reference: KL exactly 0.
    assert_eq!(report.base.kl.mean, 0.0);
    assert_eq!(report.base.gold.n, 16);
    assert_eq!(report.proxies.len(), 2);
    assert!(report.preference_pairs > 50);
    let bon = report.best_of_n.as_ref().unwrap();
    assert_eq!(
        bon.points.iter().map(|p| p.n).collect::<Vec<_>>(),
        [1, 2, 4]
    );
    assert_eq!(bon.points[0].kl.mean, 0.0);
    // Best-of-n is measured on the base's prompts: n = 1 is the base again, on all 8 prompts
    // (2 groups each).
    assert_eq!(bon.points[0].monitor_reward.unwrap().n, 16);

    let names: Vec<&str> = report.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ppo β=0.1 rm",
            "ppo β=0.1 rm infalign bon:4",
            "grpo β=0.1 ensemble",
            "grpo-s β=0.1 rm",
            "dpo β=0.1 rm",
            "dpo β=1 rm",
            "sparsepo β=0.1 rm",
            "sparsepo β=1 rm",
            "aligndistil β=0.1 rm",
            "aligndistil β=1 rm",
            "rto β=0.1 rm",
            "args rm",
            "transfer-q rm",
            "genarm arm"
        ]
    );
    // A decoding method is a run through its weights, each point with what it cost.
    assert_eq!(
        report.runs[10]
            .points
            .iter()
            .map(|p| p.step)
            .collect::<Vec<_>>(),
        [0, 2]
    );
    for run in &report.runs[11..] {
        assert_eq!(run.coef, None);
        let weights: Vec<Option<f64>> = run.points.iter().map(|p| p.weight).collect();
        assert_eq!(weights, [Some(0.0), Some(4.0)], "{}", run.name);
        assert!(run
            .points
            .iter()
            .all(|p| p.tokens_per_second.unwrap() > 0.0));
        assert_eq!(run.points[0].gold.n, 16);
    }
    // Each offline method and β is a run of its own, measured in step order from the base.
    for (run, beta) in report.runs[4..10].iter().zip([0.1, 1.0].repeat(3)) {
        assert_eq!(run.coef, Some(beta));
        assert_eq!(
            run.points.iter().map(|p| p.step).collect::<Vec<_>>(),
            [0, 2, 3]
        );
    }
    let ppo = &report.runs[0];
    assert_eq!(
        ppo.points.iter().map(|p| p.step).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(report.runs[2].points.len(), 2);
    assert_eq!(report.runs[3].points.len(), 2);
    // InfAlign's run is PPO's again on the calibrated, transformed proxy, measured the same way.
    assert_eq!(report.runs[1].points.len(), report.runs[0].points.len());
    assert_eq!(report.runs[1].proxy, "rm");
    for run in &report.runs {
        let last = run.points.last().unwrap();
        assert!(last.kl.mean > 0.0, "{} did not move: {last:?}", run.name);
        assert!(last.kl.ci95.is_finite());
        assert!(last.proxies.contains_key("rm") && last.proxies.contains_key("ensemble"));
        assert!((last.sqrt_kl - last.kl.mean.sqrt()).abs() < 1e-12);
    }

    let dir = temp_path("frontier-report");
    let _ = std::fs::remove_dir_all(&dir);
    let paths = report::write(&report, &dir).unwrap();
    assert_eq!(paths.len(), 3);
    let json = std::fs::read_to_string(dir.join("frontier.json")).unwrap();
    let back: FrontierReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back.runs.len(), 14);
    let csv = std::fs::read_to_string(dir.join("frontier.csv")).unwrap();
    let rows = 3 + report.runs.iter().map(|r| r.points.len()).sum::<usize>();
    assert_eq!(csv.lines().count(), 1 + rows, "{csv}");
    // One KL per row: a best-of-n row's kl and sqrt_kl are both the measured KL; the analytic
    // bound has its own column.
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let bon_row: Vec<&str> = csv.lines().nth(3).unwrap().split(',').collect();
    let value = |name: &str| bon_row[column(name)].parse::<f64>().unwrap();
    assert_eq!(value("step_or_n"), 4.0);
    assert_eq!(value("kl"), bon.points[2].kl.mean);
    assert!((value("sqrt_kl") - bon.points[2].kl.mean.max(0.0).sqrt()).abs() < 1e-12);
    assert!((value("analytic_kl") - (4f64.ln() - 0.75)).abs() < 1e-12);
    let html = std::fs::read_to_string(dir.join("frontier.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 4);
    assert!(html.contains("Gold reward against √KL") && html.contains("ppo β=0.1 rm"));
    assert!(html.contains("Decoding-time methods") && html.contains("Lowest KL to a gold reward"));
    // The base's own gold reward is reached at no KL (by best-of-n's n = 1 and each trained
    // run's step 0, which are the base); the list is cheapest first.
    let cheapest = report.cheapest_to(report.base.gold.mean);
    assert_eq!(cheapest[0].kl, 0.0, "{cheapest:?}");
    assert!(cheapest.windows(2).all(|w| w[0].kl <= w[1].kl));
}
