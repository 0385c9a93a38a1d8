//! Generalised advantage estimation, Schulman et al. 2016, Eqs. 11–16:
//! δ_t = r_t + γ·V_{t+1} − V_t, Â_t = Σ_l (γλ)^l δ_{t+l}, returns R_t = Â_t + V_t (V after the
//! last token is 0: the episode ends); and whitening (zero mean, unit variance) over a batch.

/// Advantages and returns of one completion from per-token rewards and values.
pub fn gae(rewards: &[f32], values: &[f32], gamma: f64, lambda: f64) -> (Vec<f32>, Vec<f32>) {
    let n = rewards.len();
    let mut advantages = vec![0.0f32; n];
    let mut running = 0.0f64;
    for t in (0..n).rev() {
        let next_value = if t + 1 < n { values[t + 1] as f64 } else { 0.0 };
        let delta = rewards[t] as f64 + gamma * next_value - values[t] as f64;
        running = delta + gamma * lambda * running;
        advantages[t] = running as f32;
    }
    let returns = advantages.iter().zip(values).map(|(a, v)| a + v).collect();
    (advantages, returns)
}

/// Whitens every value of every row together; `shift_mean: false` keeps the mean (as TRL does
/// for rewards).
pub fn whiten(rows: &mut [Vec<f32>], shift_mean: bool) {
    let n = rows.iter().map(Vec::len).sum::<usize>();
    if n < 2 {
        return;
    }
    let mean = rows.iter().flatten().map(|&v| v as f64).sum::<f64>() / n as f64;
    let var = rows
        .iter()
        .flatten()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / (n - 1) as f64;
    let scale = 1.0 / (var.sqrt() + 1e-8);
    for v in rows.iter_mut().flatten() {
        let centred = *v as f64 - mean;
        *v = if shift_mean {
            centred * scale
        } else {
            centred * scale + mean
        } as f32;
    }
}

/// 1 − Var(returns − values)/Var(returns): how much of the return the value head explains.
pub fn explained_variance(values: &[f32], returns: &[f32]) -> f64 {
    let var = |x: &[f64]| {
        let m = x.iter().sum::<f64>() / x.len().max(1) as f64;
        x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / x.len().max(1) as f64
    };
    let r: Vec<f64> = returns.iter().map(|&v| v as f64).collect();
    let diff: Vec<f64> = returns
        .iter()
        .zip(values)
        .map(|(a, b)| (a - b) as f64)
        .collect();
    let vr = var(&r);
    if vr == 0.0 {
        return f64::NAN;
    }
    1.0 - var(&diff) / vr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gae_by_hand() {
        // γ = 1, λ = 0.5; rewards (0, 1), values (0.5, 0.25).
        // δ1 = 1 − 0.25 = 0.75; δ0 = 0 + 0.25 − 0.5 = −0.25; Â0 = −0.25 + 0.5·0.75 = 0.125.
        let (adv, ret) = gae(&[0.0, 1.0], &[0.5, 0.25], 1.0, 0.5);
        assert!(
            (adv[1] - 0.75).abs() < 1e-6 && (adv[0] - 0.125).abs() < 1e-6,
            "{adv:?}"
        );
        assert!((ret[0] - 0.625).abs() < 1e-6 && (ret[1] - 1.0).abs() < 1e-6);
        // λ = 1 gives Monte-Carlo returns: Σ future rewards.
        let (_, ret) = gae(&[1.0, 2.0, 3.0], &[9.0, -4.0, 0.5], 1.0, 1.0);
        assert_eq!(ret, vec![6.0, 5.0, 3.0]);
    }

    #[test]
    fn whitening_and_explained_variance() {
        let mut rows = vec![vec![1.0, 2.0], vec![3.0]];
        whiten(&mut rows, true);
        let all: Vec<f32> = rows.into_iter().flatten().collect();
        assert!((all.iter().sum::<f32>()).abs() < 1e-5);
        assert!((all[2] - 1.0).abs() < 1e-5, "{all:?}");
        assert!((explained_variance(&[1.0, 2.0], &[1.0, 2.0]) - 1.0).abs() < 1e-12);
        assert!(explained_variance(&[0.0, 0.0], &[1.0, 2.0]) < 1e-12);
    }
}
