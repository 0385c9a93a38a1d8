//! The KL coefficient β of PPO's reward penalty: fixed, or adaptive as in Ziegler et al. 2019
//! ("Fine-Tuning Language Models from Human Preferences"), Eq. 2:
//! e = clip((KL − target)/target, −0.2, 0.2), β ← β·(1 + K_β·e) with K_β = n_steps / horizon.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KlController {
    Fixed {
        kl_coef: f64,
    },
    Adaptive {
        kl_coef: f64,
        target: f64,
        horizon: f64,
    },
}

impl KlController {
    pub fn value(&self) -> f64 {
        match self {
            Self::Fixed { kl_coef } | Self::Adaptive { kl_coef, .. } => *kl_coef,
        }
    }

    /// Updates β after a batch of `n_steps` samples whose mean KL was `kl`.
    pub fn update(&mut self, kl: f64, n_steps: usize) {
        if let Self::Adaptive {
            kl_coef,
            target,
            horizon,
        } = self
        {
            let error = ((kl - *target) / *target).clamp(-0.2, 0.2);
            *kl_coef *= 1.0 + error * n_steps as f64 / *horizon;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_beta_moves_towards_the_target_and_is_clipped() {
        let mut c = KlController::Adaptive {
            kl_coef: 0.1,
            target: 6.0,
            horizon: 10_000.0,
        };
        c.update(12.0, 100); // error clipped to 0.2: β·(1 + 0.2·0.01)
        assert!((c.value() - 0.1 * 1.002).abs() < 1e-12);
        c.update(3.0, 100); // error −0.5 → −0.2
        assert!((c.value() - 0.1 * 1.002 * 0.998).abs() < 1e-12);
        let mut f = KlController::Fixed { kl_coef: 0.2 };
        f.update(100.0, 100);
        assert_eq!(f.value(), 0.2);
    }
}
