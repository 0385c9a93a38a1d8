//! The KL–reward frontier: a sweep of best-of-n, PPO and GRPO at several KL coefficients and
//! DPO at several β from one base policy, each policy measured on the same held-out prompts —
//! KL(π‖π_ref) with a confidence interval, every proxy reward, and the gold reward — with Gao et
//! al.'s functional forms fitted to the gold reward. `report` renders it as JSON, CSV and HTML.

pub mod config;
pub mod fit;
pub mod measure;
#[cfg(not(target_arch = "wasm32"))]
pub mod report;
mod sweep;

use serde::{Deserialize, Serialize};

pub use config::FrontierConfig;
use fit::{Fit, FitForm};
pub use measure::{Evaluation, Example, FrontierPoint};
pub use sweep::run;

use crate::algo::best_of_n::BestOfNPoint;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxySummary {
    pub name: String,
    pub members: usize,
    pub aggregation: String,
    /// Pairs it was trained on (0 for a file).
    pub training_pairs: usize,
    /// Accuracy on held-out gold-labelled pairs (none without pairs).
    pub held_out_accuracy: Option<f64>,
    /// Each member's own held-out accuracy (ensembles).
    #[serde(default)]
    pub member_accuracy: Vec<f64>,
    pub held_out_pairs: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BestOfNResult {
    pub proxy: String,
    pub points: Vec<BestOfNPoint>,
    /// d(α − βd) fitted to the gold (and proxy) reward against d = √(analytic KL).
    pub gold_fit: Option<Fit>,
    pub proxy_fit: Option<Fit>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrontierRun {
    /// e.g. `ppo β=0.01 rm`.
    pub name: String,
    pub method: String,
    /// The KL coefficient (PPO, GRPO) or β (DPO).
    pub coef: Option<f64>,
    /// The proxy optimised (RL) or used to measure (DPO).
    pub proxy: String,
    /// From the base policy (step 0) on.
    pub points: Vec<FrontierPoint>,
    /// d(α − β ln d) fitted to the gold and proxy rewards against d = √KL.
    pub gold_fit: Option<Fit>,
    pub proxy_fit: Option<Fit>,
}

impl BestOfNResult {
    /// Fits d(α − βd) to the gold and proxy rewards against d = √(measured KL), where the
    /// points are drawn, relative to n = 1.
    pub fn refit(&mut self) {
        let points = &self.points;
        let base_of = |f: &dyn Fn(&BestOfNPoint) -> f64| {
            points.iter().find(|p| p.n == 1).map(f).unwrap_or(0.0)
        };
        let curve = |f: &dyn Fn(&BestOfNPoint) -> f64| -> Vec<(f64, f64)> {
            points.iter().map(|p| (p.sqrt_kl(), f(p))).collect()
        };
        let gold = |p: &BestOfNPoint| p.monitor_reward.map(|m| m.mean).unwrap_or(f64::NAN);
        let proxy = |p: &BestOfNPoint| p.reward.mean;
        self.gold_fit = Fit::of(FitForm::BestOfN, base_of(&gold), &curve(&gold));
        self.proxy_fit = Fit::of(FitForm::BestOfN, base_of(&proxy), &curve(&proxy));
    }
}

impl FrontierRun {
    /// Fits d(α − β ln d) to the gold and proxy rewards against d = √KL, relative to the base.
    pub fn refit(&mut self) {
        let points = &self.points;
        let curve = |f: &dyn Fn(&FrontierPoint) -> f64| -> Vec<(f64, f64)> {
            points.iter().map(|p| (p.sqrt_kl, f(p))).collect()
        };
        let gold = |p: &FrontierPoint| p.gold.mean;
        let proxy = |p: &FrontierPoint| {
            p.proxies
                .get(&self.proxy)
                .map(|m| m.mean)
                .unwrap_or(f64::NAN)
        };
        self.gold_fit = Fit::of(FitForm::Rl, gold(&points[0]), &curve(&gold));
        self.proxy_fit = Fit::of(FitForm::Rl, proxy(&points[0]), &curve(&proxy));
    }

    /// The highest mean gold reward along the run and the last: their difference is the drop
    /// over-optimisation causes.
    pub fn gold_peak_and_final(&self) -> (f64, f64) {
        let peak = self
            .points
            .iter()
            .map(|p| p.gold.mean)
            .fold(f64::NEG_INFINITY, f64::max);
        (
            peak,
            self.points.last().map(|p| p.gold.mean).unwrap_or(f64::NAN),
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrontierReport {
    pub config: FrontierConfig,
    pub preference_pairs: usize,
    pub proxies: Vec<ProxySummary>,
    pub base: FrontierPoint,
    pub best_of_n: Option<BestOfNResult>,
    /// PPO and GRPO runs (one per KL coefficient and proxy), then DPO (one per β).
    pub runs: Vec<FrontierRun>,
}

impl FrontierReport {
    /// Every fit again from the measured points (a report read from an older frontier.json
    /// gets today's fits).
    pub fn refit(&mut self) {
        if let Some(bon) = &mut self.best_of_n {
            bon.refit();
        }
        for run in &mut self.runs {
            run.refit();
        }
    }

    /// The base policy, then each run's last policy, by name.
    pub fn final_points(&self) -> impl Iterator<Item = (&str, &FrontierPoint)> {
        std::iter::once(("base", &self.base)).chain(
            self.runs
                .iter()
                .map(|r| (r.name.as_str(), r.points.last().expect("runs have points"))),
        )
    }
}

/// The cheapest way to a gold reward: for one method (a run, or best-of-n), the lowest measured
/// KL among its points whose mean gold reward reaches the target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cheapest {
    pub name: String,
    pub kl: f64,
    pub gold: f64,
}

impl FrontierReport {
    /// Every run (and best-of-n) that reaches a mean gold reward of `target`, the lowest KL at
    /// which it does, cheapest first.
    pub fn cheapest_to(&self, target: f64) -> Vec<Cheapest> {
        let mut reached: Vec<Cheapest> = Vec::new();
        let mut consider = |name: &str, kl: f64, gold: f64| {
            if gold < target {
                return;
            }
            match reached.iter_mut().find(|c| c.name == name) {
                Some(c) if kl < c.kl => {
                    *c = Cheapest {
                        name: name.into(),
                        kl,
                        gold,
                    }
                }
                Some(_) => {}
                None => reached.push(Cheapest {
                    name: name.into(),
                    kl,
                    gold,
                }),
            }
        };
        if let Some(bon) = &self.best_of_n {
            for p in &bon.points {
                if let Some(gold) = p.monitor_reward {
                    consider("best-of-n", p.kl.mean, gold.mean);
                }
            }
        }
        for run in &self.runs {
            for p in &run.points {
                consider(&run.name, p.kl.mean, p.gold.mean);
            }
        }
        reached.sort_by(|a, b| a.kl.total_cmp(&b.kl));
        reached
    }

    /// Gold-reward targets worth asking `cheapest_to` about: the base's mean gold plus a
    /// quarter, a half and three quarters of the way to the best mean gold any point reached.
    pub fn gold_targets(&self) -> Vec<f64> {
        let base = self.base.gold.mean;
        let best = self
            .runs
            .iter()
            .flat_map(|r| r.points.iter().map(|p| p.gold.mean))
            .chain(self.best_of_n.iter().flat_map(|b| {
                b.points
                    .iter()
                    .filter_map(|p| p.monitor_reward.map(|m| m.mean))
            }))
            .fold(base, f64::max);
        [0.25, 0.5, 0.75]
            .iter()
            .map(|f| base + f * (best - base))
            .collect()
    }
}

/// What the sweep reports as it goes.
pub trait Log {
    fn line(&mut self, text: &str);
}

impl<F: FnMut(&str)> Log for F {
    fn line(&mut self, text: &str) {
        self(text)
    }
}
