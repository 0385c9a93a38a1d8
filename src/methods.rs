//! The method registry: every method alignlab trains with, each declared once in its own file
//! (`algo/*.rs`: name, what it trains on, its training defaults, its settings with defaults and
//! help). The CLI's `--method`, the sweep's TOML, the page and the page's JavaScript (through
//! `web.rs`) all read this list; the offline preference losses come from their own one-line list
//! in `algo/preference_loss.rs`, the online methods from the one below.

use serde::{Deserialize, Serialize};

use crate::algo::online_method::OnlineMethod;
use crate::algo::preference_loss::PREFERENCE_SPECS;
use crate::algo::reward_model::REWARD_MODEL;
use crate::algo::sft::SFT;
use crate::algo::spec::MethodSpec;
use crate::decoding::{DecodingSpec, DECODING_METHODS};
use crate::error::{Error, Result};
use crate::metrics;

/// The methods that are neither offline preference losses nor online: supervised fine-tuning
/// and reward models.
const TRAINERS: [MethodSpec; 2] = [SFT, REWARD_MODEL];

/// Declares `OnlineAlgorithm` from one line per online method: the variant it is named by (its
/// kebab-case form is the name checkpoints store, and equals the registry name), and the
/// `OnlineMethod` its file declares.
macro_rules! online_methods {
    ($($variant:ident => $method:path,)+) => {
        /// An online method (each a loop of `run::OnlineRun`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum OnlineAlgorithm {
            $($variant,)+
        }

        impl OnlineAlgorithm {
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// What its file declares: its registry entry, loss aggregation, where its KL goes,
            /// and its update.
            pub fn method(self) -> &'static OnlineMethod {
                match self {
                    $(Self::$variant => &$method,)+
                }
            }
        }
    };
}

online_methods! {
    Grpo => crate::algo::grpo::GRPO_METHOD,
    DrGrpo => crate::algo::grpo::DR_GRPO_METHOD,
    GrpoS => crate::algo::grpo_s::GRPO_S_METHOD,
    Rloo => crate::algo::rloo::RLOO_METHOD,
    ReinforcePp => crate::algo::reinforce_pp::REINFORCE_PP_METHOD,
    Ppo => crate::algo::ppo::PPO_METHOD,
    Rto => crate::algo::rto::RTO_METHOD,
    Raft => crate::algo::raft::RAFT_METHOD,
}

impl OnlineAlgorithm {
    /// Its entry in the registry (name, settings and their defaults).
    pub fn spec(self) -> &'static MethodSpec {
        &self.method().spec
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The online method called `name`, or `None` (it may be another kind of method).
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.name() == name)
    }

    pub fn parse(name: &str) -> Result<Self> {
        Self::named(name).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|a| a.name()).collect();
            Error::Input(format!(
                "unknown online method `{name}`: expected one of {}",
                names.join(", ")
            ))
        })
    }
}

/// Every method, in the order help texts list them.
pub fn all() -> impl Iterator<Item = &'static MethodSpec> {
    TRAINERS
        .iter()
        .chain(PREFERENCE_SPECS.iter())
        .chain(OnlineAlgorithm::ALL.iter().map(|a| a.spec()))
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
    /// The decoding-time methods (`generate --guide`): no training, settings of their own.
    pub decoding: Vec<DecodingSpec>,
    /// (name, meaning) of every metric a step can report.
    pub metrics: Vec<(&'static str, &'static str)>,
}

pub fn catalogue() -> Catalogue {
    Catalogue {
        methods: all().copied().collect(),
        decoding: DECODING_METHODS.to_vec(),
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
        assert_eq!(names.len(), 26, "{names:?}");
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
    fn an_online_methods_stored_name_is_its_registry_name() {
        for &algorithm in OnlineAlgorithm::ALL {
            let stored = serde_json::to_value(algorithm).unwrap();
            assert_eq!(stored, algorithm.name());
            assert_eq!(OnlineAlgorithm::parse(algorithm.name()).unwrap(), algorithm);
            assert_eq!(algorithm.spec().kind, MethodKind::Online);
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
