//! The method registry: every method alignlab trains with, each declared once in its own file
//! (`algo/*.rs`: name, what it trains on, its training defaults, its settings with defaults and
//! help). The CLI's `--method`, the sweep's TOML, the page and the page's JavaScript (through
//! `web.rs`) all read this list; the offline preference losses come from their own one-line list
//! in `algo/preference_loss.rs`.

use serde::Serialize;

use crate::algo::grpo::{DR_GRPO, GRPO};
use crate::algo::ppo::PPO;
use crate::algo::preference_loss::PREFERENCE_SPECS;
use crate::algo::raft::RAFT;
use crate::algo::reinforce_pp::REINFORCE_PP;
use crate::algo::reward_model::REWARD_MODEL;
use crate::algo::rloo::RLOO;
use crate::algo::sft::SFT;
use crate::algo::spec::MethodSpec;
use crate::error::{Error, Result};
use crate::metrics;

/// The methods that are neither offline preference losses nor online: supervised fine-tuning
/// and reward models.
const TRAINERS: [MethodSpec; 2] = [SFT, REWARD_MODEL];

/// The online methods (each a loop of `run::OnlineRun`).
pub const ONLINE_SPECS: [MethodSpec; 6] = [GRPO, DR_GRPO, RLOO, REINFORCE_PP, PPO, RAFT];

/// Every method, in the order help texts list them.
pub fn all() -> impl Iterator<Item = &'static MethodSpec> {
    TRAINERS
        .iter()
        .chain(PREFERENCE_SPECS.iter())
        .chain(ONLINE_SPECS.iter())
}

/// The method called `name`; the error lists every name.
pub fn find(name: &str) -> Result<&'static MethodSpec> {
    all().find(|m| m.name == name).ok_or_else(|| {
        let names: Vec<&str> = all().map(|m| m.name).collect();
        Error::Input(format!(
            "unknown method `{name}`: expected one of {}",
            names.join(", ")
        ))
    })
}

/// What the page (and `alignlab methods --json`) is told: every method and every metric name.
#[derive(Debug, Clone, Serialize)]
pub struct Catalogue {
    pub methods: Vec<MethodSpec>,
    /// (name, meaning) of every metric a step can report.
    pub metrics: Vec<(&'static str, &'static str)>,
}

pub fn catalogue() -> Catalogue {
    Catalogue {
        methods: all().copied().collect(),
        metrics: metrics::ALL.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::preference_loss::PreferenceLoss;
    use crate::algo::spec::MethodKind;

    #[test]
    fn every_method_is_listed_once_and_found_by_name() {
        let names: Vec<&str> = all().map(|m| m.name).collect();
        assert_eq!(names.len(), 20, "{names:?}");
        for (i, name) in names.iter().enumerate() {
            assert!(!names[..i].contains(name), "{name} is listed twice");
            assert_eq!(find(name).unwrap().name, *name);
        }
        let error = find("dpoo").unwrap_err().to_string();
        assert!(error.starts_with("unknown method `dpoo`: expected one of sft, rm, dpo"));
        // A preference method is made from its spec, named back the same.
        for spec in all().filter(|m| matches!(m.kind, MethodKind::Preference(_))) {
            assert_eq!(PreferenceLoss::named(spec.name).unwrap().name(), spec.name);
        }
    }

    #[test]
    fn every_setting_has_help_and_a_finite_default() {
        for m in all() {
            assert!(!m.summary.is_empty());
            assert!(m.training.lr > 0.0 && m.training.steps > 0 && m.training.batch_size > 0);
            for s in m.settings {
                assert!(
                    s.default.is_finite() && !s.help.is_empty(),
                    "{}.{}",
                    m.name,
                    s.name
                );
                assert!(
                    s.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                    "{}: setting names are snake_case, the same in TOML and the page",
                    s.name
                );
            }
        }
        let json = serde_json::to_value(catalogue()).unwrap();
        assert_eq!(json["methods"][2]["name"], "dpo");
        assert_eq!(json["methods"][2]["kind"]["data"], "pairs");
        assert_eq!(json["methods"][2]["settings"][1]["name"], "label_smoothing");
        assert!(json["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m[0] == "rewards/margins"));
    }
}
