//! The functional forms Gao et al. 2023 ("Scaling Laws for Reward Model Overoptimization",
//! Eq. 1–2) fit to the gold reward as a function of d = √KL(π‖π_ref), relative to the reward at
//! d = 0: best-of-n R(d) = d(α − βd), RL R(d) = d(α − β·ln d). Both are linear in (α, β), so
//! least squares without intercept solves them exactly.
//!
//! A fit is computed for any 3 points, but it is only *drawn and quoted* when it holds: at least
//! [`MIN_POINTS`] points, R² of at least [`MIN_R_SQUARED`], and β > 0 (the forms' bend; with
//! β ≤ 0 the curve never peaks, which is not the shape Gao et al. describe). It is drawn, and a
//! peak quoted, only between the smallest and largest measured d: outside them the form is
//! extrapolation.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FitForm {
    /// d(α − βd).
    BestOfN,
    /// d(α − β ln d).
    Rl,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fit {
    pub form: FitForm,
    pub alpha: f64,
    pub beta: f64,
    /// Reward at d = 0 that the fit is relative to.
    pub base: f64,
    /// 1 − SS_res/SS_tot of the reward gains.
    pub r_squared: f64,
    pub points: usize,
    /// The measured range of d (> 0) the fit saw.
    #[serde(default)]
    pub d_min: f64,
    #[serde(default)]
    pub d_max: f64,
}

/// Fewest points (at d > 0) a two-parameter fit is quoted for: two left over to judge it.
pub const MIN_POINTS: usize = 4;
/// Smallest R² a fit is quoted for: two parameters on a handful of noisy points explain little
/// below it.
pub const MIN_R_SQUARED: f64 = 0.8;

impl FitForm {
    /// The two regressors: R − base = α·f₁(d) − β·f₂(d).
    fn features(self, d: f64) -> (f64, f64) {
        match self {
            Self::BestOfN => (d, d * d),
            Self::Rl => (d, if d > 0.0 { d * d.ln() } else { 0.0 }),
        }
    }
}

impl Fit {
    /// Least-squares α, β over points (d, reward); `None` with fewer than 3 points at d > 0 or a
    /// singular system.
    pub fn of(form: FitForm, base: f64, points: &[(f64, f64)]) -> Option<Self> {
        let usable: Vec<(f64, f64)> = points
            .iter()
            .copied()
            .filter(|(d, r)| *d > 0.0 && d.is_finite() && r.is_finite())
            .collect();
        if usable.len() < 3 {
            return None;
        }
        // Normal equations for y = a·x1 + b·x2 with x2 = −f₂.
        let (mut s11, mut s12, mut s22, mut s1y, mut s2y) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for &(d, r) in &usable {
            let (x1, f2) = form.features(d);
            let x2 = -f2;
            let y = r - base;
            s11 += x1 * x1;
            s12 += x1 * x2;
            s22 += x2 * x2;
            s1y += x1 * y;
            s2y += x2 * y;
        }
        let det = s11 * s22 - s12 * s12;
        if det.abs() < 1e-12 * (s11 * s22).max(1e-300) {
            return None;
        }
        let alpha = (s1y * s22 - s2y * s12) / det;
        let beta = (s11 * s2y - s12 * s1y) / det;
        let fit = Self {
            form,
            alpha,
            beta,
            base,
            r_squared: 0.0,
            points: usable.len(),
            d_min: usable.iter().map(|p| p.0).fold(f64::INFINITY, f64::min),
            d_max: usable.iter().map(|p| p.0).fold(0.0, f64::max),
        };
        let mean = usable.iter().map(|(_, r)| r - base).sum::<f64>() / usable.len() as f64;
        let (mut ss_res, mut ss_tot) = (0.0, 0.0);
        for &(d, r) in &usable {
            ss_res += (r - fit.predict(d)).powi(2);
            ss_tot += (r - base - mean).powi(2);
        }
        Some(Self {
            r_squared: if ss_tot > 0.0 {
                1.0 - ss_res / ss_tot
            } else {
                1.0
            },
            ..fit
        })
    }

    pub fn predict(&self, d: f64) -> f64 {
        let (x1, f2) = self.form.features(d);
        self.base + self.alpha * x1 - self.beta * f2
    }

    /// Where the fitted gold reward peaks: α/(2β) for best-of-n, e^{α/β − 1} for RL (β > 0).
    pub fn peak_d(&self) -> Option<f64> {
        (self.beta > 0.0).then(|| match self.form {
            FitForm::BestOfN => self.alpha / (2.0 * self.beta),
            FitForm::Rl => (self.alpha / self.beta - 1.0).exp(),
        })
    }

    /// Why the fit should not be drawn or quoted, or `None` when it holds.
    pub fn rejection(&self) -> Option<String> {
        if self.points < MIN_POINTS {
            Some(format!("{} points, fewer than {MIN_POINTS}", self.points))
        } else if self.r_squared.is_nan() || self.r_squared < MIN_R_SQUARED {
            Some(format!("R² {:.2} < {MIN_R_SQUARED}", self.r_squared))
        } else if self.beta <= 0.0 {
            Some(format!(
                "β {:.3} ≤ 0: the reward has not begun to bend",
                self.beta
            ))
        } else {
            None
        }
    }

    /// The peak, when it lies inside the measured range of d.
    pub fn peak_in_range(&self) -> Option<f64> {
        self.peak_d()
            .filter(|d| *d >= self.d_min && *d <= self.d_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_the_parameters_of_exact_curves() {
        for form in [FitForm::BestOfN, FitForm::Rl] {
            let truth = Fit {
                form,
                alpha: 2.0,
                beta: 0.5,
                base: 1.0,
                r_squared: 1.0,
                points: 0,
                d_min: 0.0,
                d_max: 0.0,
            };
            let points: Vec<(f64, f64)> = [0.3, 0.7, 1.2, 2.0, 3.1]
                .iter()
                .map(|&d| (d, truth.predict(d)))
                .collect();
            let fit = Fit::of(form, 1.0, &points).unwrap();
            assert!((fit.alpha - 2.0).abs() < 1e-9, "{fit:?}");
            assert!((fit.beta - 0.5).abs() < 1e-9, "{fit:?}");
            assert!((fit.r_squared - 1.0).abs() < 1e-9);
        }
        // Best-of-n peak at α/(2β) = 2; RL at e^{α/β − 1} = e³.
        let bon = Fit::of(FitForm::BestOfN, 0.0, &[(1.0, 1.5), (2.0, 2.0), (3.0, 1.5)]).unwrap();
        assert!((bon.peak_d().unwrap() - 2.0).abs() < 1e-9);
        assert!(Fit::of(FitForm::Rl, 0.0, &[(1.0, 1.0), (2.0, 2.0)]).is_none());
    }

    #[test]
    fn fits_are_quoted_only_where_they_hold() {
        let exact = |form: FitForm, beta: f64, ds: &[f64]| {
            let truth = Fit {
                form,
                alpha: 2.0,
                beta,
                base: 0.0,
                r_squared: 1.0,
                points: 0,
                d_min: 0.0,
                d_max: 0.0,
            };
            let points: Vec<(f64, f64)> = ds.iter().map(|&d| (d, truth.predict(d))).collect();
            Fit::of(form, 0.0, &points).unwrap()
        };
        // Four exact points bending down: holds; its peak α/(2β) = 2 lies in [0.5, 3].
        let good = exact(FitForm::BestOfN, 0.5, &[0.5, 1.0, 2.0, 3.0]);
        assert_eq!(good.rejection(), None);
        assert_eq!((good.d_min, good.d_max), (0.5, 3.0));
        assert!((good.peak_in_range().unwrap() - 2.0).abs() < 1e-9);
        // The same curve measured only up to d = 1.5: the peak is beyond the data.
        let short = exact(FitForm::BestOfN, 0.5, &[0.3, 0.6, 1.0, 1.5]);
        assert!(short.peak_d().is_some() && short.peak_in_range().is_none());
        // Three points: computed, not quoted.
        let few = exact(FitForm::Rl, 0.5, &[0.5, 1.0, 2.0]);
        assert!(few.rejection().unwrap().contains("fewer than 4"));
        // A curve that never peaks (β < 0) fits perfectly and is still not Gao et al.'s shape.
        let convex = exact(FitForm::BestOfN, -0.2, &[0.5, 1.0, 2.0, 3.0]);
        assert!(convex.r_squared > 0.999);
        assert!(convex.rejection().unwrap().contains("β"));
        // Noise with no trend: R² near or below 0.
        let noise = Fit::of(
            FitForm::Rl,
            0.0,
            &[(0.5, 1.0), (1.0, -1.0), (1.5, 1.0), (2.0, -1.0), (2.5, 1.0)],
        )
        .unwrap();
        assert!(noise.rejection().unwrap().contains("R²"), "{noise:?}");
    }
}
