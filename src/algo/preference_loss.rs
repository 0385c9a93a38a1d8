//! The offline preference methods, one line each: the list below makes [`PreferenceLoss`] (one
//! variant per method, matched exhaustively) and [`PREFERENCE_SPECS`] (what the registry lists).
//! Adding a method is its own file (spec, settings, loss through [`RankedMethod`] or
//! [`UnpairedMethod`], or for the token-level methods a `from_settings` and their terms in
//! `run::token_level`) and one line here.

use crate::backend::Backend;
use burn::tensor::Tensor;

use super::align_distil::{AlignDistil, ALIGNDISTIL};
use super::arm::{Arm, ARM};
use super::bco::{Bco, BCO};
use super::dpo::{Dpo, RobustDpo, CDPO, DPO, ROBUST_DPO};
use super::ipo::{Ipo, IPO};
use super::kto::{Kto, KTO};
use super::lipo::{Lipo, LIPO};
use super::orpo::{Orpo, ORPO};
use super::preference_method::{RankedInputs, RankedMethod, UnpairedInputs, UnpairedMethod};
use super::pro::{Pro, PRO};
use super::rpo::{Rpo, RPO};
use super::simpo::{Simpo, SIMPO};
use super::slic::{Hinge, HINGE};
use super::sparse_po::{SparsePo, SPARSEPO, SPARSEPO_REF};
use super::spec::{DataShape, MethodKind, MethodSpec, Settings};
use crate::error::Result;

macro_rules! preference_losses {
    (
        ranked { $($ranked:ident($ranked_type:ty) = $ranked_spec:expr,)* }
        unpaired { $($unpaired:ident($unpaired_type:ty) = $unpaired_spec:expr,)* }
        token_level { $($token:ident($token_type:ty) = $token_spec:expr,)* }
    ) => {
        /// An offline preference method with its settings.
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub enum PreferenceLoss {
            $($ranked($ranked_type),)*
            $($unpaired($unpaired_type),)*
            $($token($token_type),)*
        }

        /// Every offline preference method's spec, in the registry's order.
        pub const PREFERENCE_SPECS: &[MethodSpec] =
            &[$($ranked_spec,)* $($unpaired_spec,)* $($token_spec,)*];

        impl PreferenceLoss {
            /// The method named `spec.name`, its settings read from `settings` over the spec's
            /// defaults; `None` when `spec` is no preference method.
            pub fn from_spec(spec: &MethodSpec, settings: &Settings) -> Option<Result<Self>> {
                $(if spec.name == $ranked_spec.name {
                    return Some(settings.check(spec).map(|()| {
                        Self::$ranked(<$ranked_type as RankedMethod>::from_settings(spec, settings))
                    }));
                })*
                $(if spec.name == $unpaired_spec.name {
                    return Some(settings.check(spec).map(|()| {
                        Self::$unpaired(<$unpaired_type as UnpairedMethod>::from_settings(
                            spec, settings,
                        ))
                    }));
                })*
                $(if spec.name == $token_spec.name {
                    return Some(settings.check(spec).map(|()| {
                        Self::$token(<$token_type>::from_settings(spec, settings))
                    }));
                })*
                None
            }

            /// Its spec: the name, data shape and settings it was made from.
            pub fn spec(&self) -> &'static MethodSpec {
                match self {
                    $(Self::$ranked(_) => &$ranked_spec,)*
                    $(Self::$unpaired(_) => &$unpaired_spec,)*
                    $(Self::$token(_) => &$token_spec,)*
                }
            }

            /// Trained on per-token terms, with the reference (and any teacher) run at every
            /// step, by `run::token_level`; its loss is none of the two below.
            pub fn is_token_level(&self) -> bool {
                match self {
                    $(Self::$token(_) => true,)*
                    _ => false,
                }
            }

            pub fn uses_reference(&self) -> bool {
                match self {
                    $(Self::$ranked(_) => <$ranked_type as RankedMethod>::USES_REFERENCE,)*
                    $(Self::$unpaired(_) => true,)*
                    $(Self::$token(_) => true,)*
                }
            }

            /// ρ divided by the completion's length.
            pub fn length_averaged(&self) -> bool {
                match self {
                    $(Self::$ranked(_) => <$ranked_type as RankedMethod>::LENGTH_AVERAGED,)*
                    $(Self::$unpaired(_) => false,)*
                    $(Self::$token(_) => false,)*
                }
            }

            pub fn needs_kl_reference(&self) -> bool {
                match self {
                    $(Self::$ranked(_) => false,)*
                    $(Self::$unpaired(_) => <$unpaired_type as UnpairedMethod>::NEEDS_KL_REFERENCE,)*
                    $(Self::$token(_) => false,)*
                }
            }

            pub fn needs_reward_shift(&self) -> bool {
                match self {
                    $(Self::$ranked(_) => false,)*
                    $(Self::$unpaired(_) => <$unpaired_type as UnpairedMethod>::NEEDS_REWARD_SHIFT,)*
                    $(Self::$token(_) => false,)*
                }
            }

            /// The loss of each ranking, or `None` for a method on unpaired labels.
            pub fn ranked_losses<B: Backend>(&self, inputs: RankedInputs<B>) -> Option<Tensor<B, 1>> {
                match self {
                    $(Self::$ranked(method) => Some(method.losses(inputs)),)*
                    $(Self::$unpaired(_) => None,)*
                    $(Self::$token(_) => None,)*
                }
            }

            /// The loss of each unpaired example, or `None` for a method on rankings.
            pub fn unpaired_losses<B: Backend>(
                &self,
                inputs: UnpairedInputs<B>,
            ) -> Option<Tensor<B, 1>> {
                match self {
                    $(Self::$ranked(_) => None,)*
                    $(Self::$unpaired(method) => Some(method.losses(inputs)),)*
                    $(Self::$token(_) => None,)*
                }
            }
        }
    };
}

preference_losses! {
    ranked {
        Dpo(Dpo) = DPO,
        ConservativeDpo(Dpo) = CDPO,
        RobustDpo(RobustDpo) = ROBUST_DPO,
        Ipo(Ipo) = IPO,
        Hinge(Hinge) = HINGE,
        Rpo(Rpo) = RPO,
        Simpo(Simpo) = SIMPO,
        Orpo(Orpo) = ORPO,
        Pro(Pro) = PRO,
        Lipo(Lipo) = LIPO,
        Arm(Arm) = ARM,
    }
    unpaired {
        Kto(Kto) = KTO,
        Bco(Bco) = BCO,
    }
    token_level {
        SparsePo(SparsePo) = SPARSEPO,
        SparsePoRef(SparsePo) = SPARSEPO_REF,
        AlignDistil(AlignDistil) = ALIGNDISTIL,
    }
}

impl PreferenceLoss {
    /// The method by its name, with its default settings.
    pub fn named(name: &str) -> Option<Self> {
        let spec = PREFERENCE_SPECS.iter().find(|s| s.name == name)?;
        Self::from_spec(spec, &Settings::new()).and_then(Result::ok)
    }

    pub fn name(&self) -> &'static str {
        self.spec().name
    }

    pub fn data_shape(&self) -> DataShape {
        match self.spec().kind {
            MethodKind::Preference(shape) => shape,
            _ => unreachable!("the list holds preference methods only"),
        }
    }
}

impl std::fmt::Display for PreferenceLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_method_is_made_from_its_spec_and_named_back() {
        for spec in PREFERENCE_SPECS {
            let loss = PreferenceLoss::named(spec.name).unwrap();
            assert_eq!(loss.name(), spec.name);
            assert!(matches!(spec.kind, MethodKind::Preference(_)));
        }
        // Conservative DPO is DPO's loss with its own default.
        assert_eq!(
            PreferenceLoss::named("cdpo"),
            Some(PreferenceLoss::ConservativeDpo(Dpo {
                label_smoothing: 0.1
            }))
        );
        let given = Settings::new().with("label_smoothing", 0.2);
        assert_eq!(
            PreferenceLoss::from_spec(&DPO, &given).unwrap().unwrap(),
            PreferenceLoss::Dpo(Dpo {
                label_smoothing: 0.2
            })
        );
        let wrong = Settings::new().with("gamma", 1.0);
        let error = PreferenceLoss::from_spec(&DPO, &wrong)
            .unwrap()
            .unwrap_err();
        assert!(
            error.to_string().contains("dpo has no setting `gamma`"),
            "{error}"
        );
        assert_eq!(
            PreferenceLoss::named("kto").unwrap().data_shape(),
            DataShape::Unpaired
        );
        assert_eq!(
            PreferenceLoss::named("lipo").unwrap().data_shape(),
            DataShape::Rankings
        );
        assert!(PreferenceLoss::named("ppo").is_none());
    }
}
