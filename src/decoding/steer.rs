//! The loop every decoding-time method shares: at each step the method scores the next tokens
//! it considers, one is drawn (or the best taken, at temperature 0) from the softmax of those
//! scores, and the log-ratio of that draw's probability to the reference's is added to the
//! sample's KL. Only the scores differ between methods.

use crate::backend::Backend;

use crate::error::Result;
use crate::io::Tokenizer;
use crate::model::Llama;
use crate::sample::{row_rng, sample_token, Decoding, SamplingConfig};

/// One completion and what it cost in KL.
#[derive(Debug, Clone, PartialEq)]
pub struct GuidedSample {
    pub tokens: Vec<u32>,
    /// Σ over the chosen tokens of log π_dec(y_t | ·) − log π_ref(y_t | ·): this sample's
    /// estimate of KL(π_dec ‖ π_ref), each term exact because π_dec is known.
    pub log_ratio: f64,
}

/// A token a method considers and its score: a log-probability up to one constant per row,
/// before the temperature.
pub type Scored = (u32, f32);

/// What a decoding-time method decides at each step.
pub(crate) trait Steering<B: Backend> {
    /// For each of `rows` (those still decoding), the tokens it may choose next and their
    /// scores. `logits` are the reference's, [rows · vocab] for the whole batch. Candidates
    /// listed best first by the reference (as a top-k sampler orders them) draw exactly what
    /// that sampler draws when the scores are the logits.
    async fn score(
        &mut self,
        decoding: &Decoding<'_, B>,
        logits: &[f32],
        rows: &[usize],
    ) -> Result<Vec<Vec<Scored>>>;

    /// The tokens just chosen (`None` for rows that had ended), for a method that decodes a
    /// model of its own alongside.
    fn chose(&mut self, _tokens: &[Option<u32>]) {}
}

/// Completions of `prompts` from `reference` as `steering` chooses them.
pub(crate) async fn steer<B: Backend>(
    reference: &Llama<B>,
    tokenizer: &Tokenizer,
    prompts: &[Vec<u32>],
    sampling: &SamplingConfig,
    steering: &mut impl Steering<B>,
) -> Result<Vec<GuidedSample>> {
    let mut decoding = Decoding::start(reference, prompts, tokenizer.eos_id(), sampling)?;
    let mut rngs: Vec<_> = (0..prompts.len())
        .map(|row| row_rng(sampling.seed, row))
        .collect();
    // The choice among a method's candidates: no further truncation.
    let choice = SamplingConfig {
        top_k: 0,
        top_p: 1.0,
        ..sampling.clone()
    };
    let vocab = reference.config().vocab_size;
    let mut log_ratios = vec![0.0f64; prompts.len()];
    while let Some(logits) = decoding.next_logits().await? {
        let rows: Vec<usize> = (0..prompts.len())
            .filter(|&row| !decoding.is_finished(row))
            .collect();
        let scored = steering.score(&decoding, &logits, &rows).await?;
        let mut tokens = vec![None; prompts.len()];
        for (&row, candidates) in rows.iter().zip(scored) {
            let scores: Vec<f32> = candidates.iter().map(|c| c.1).collect();
            let chosen = sample_token(&scores, &choice, &mut rngs[row]) as usize;
            let token = candidates[chosen].0;
            let reference_logits = &logits[row * vocab..(row + 1) * vocab];
            log_ratios[row] += log_prob(&scores, chosen, choice.temperature)
                - log_prob(reference_logits, token as usize, 1.0);
            tokens[row] = Some(token);
        }
        steering.chose(&tokens);
        decoding.push(tokens);
    }
    Ok(decoding
        .into_completions()
        .into_iter()
        .zip(log_ratios)
        .map(|(tokens, log_ratio)| GuidedSample { tokens, log_ratio })
        .collect())
}

/// The `k` highest-scoring token ids, best first, ties in id order (the order `sample_token`
/// gives a top-k). A partial selection: only the k are sorted, not the vocabulary. `k = 0` or
/// `k` past the vocabulary keeps every token.
pub(crate) fn top_k(logits: &[f32], k: usize) -> Vec<u32> {
    let order = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    if k == 0 || k >= ids.len() {
        // Every token, in id order: what the plain sampler draws from.
        return ids;
    }
    ids.select_nth_unstable_by(k, order);
    ids.truncate(k);
    ids.sort_by(order);
    ids
}

/// log softmax(scores / temperature)[index]; a greedy choice (temperature 0) has probability 1.
pub(crate) fn log_prob(scores: &[f32], index: usize, temperature: f32) -> f64 {
    if temperature == 0.0 {
        return 0.0;
    }
    let scaled = |s: f32| f64::from(s) / f64::from(temperature);
    let max = scores
        .iter()
        .map(|&s| scaled(s))
        .fold(f64::NEG_INFINITY, f64::max);
    let log_sum = scores
        .iter()
        .map(|&s| (scaled(s) - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    scaled(scores[index]) - log_sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_is_best_first_with_ties_in_id_order() {
        let logits = [0.5, 2.0, 0.5, -1.0, 2.0];
        assert_eq!(top_k(&logits, 3), vec![1, 4, 0]);
        assert_eq!(top_k(&logits, 0), vec![0, 1, 2, 3, 4]);
        assert_eq!(top_k(&logits, 9), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn log_prob_is_a_log_softmax_at_the_temperature() {
        let scores = [1.0, 2.0, 3.0];
        let total: f64 = (0..3).map(|i| log_prob(&scores, i, 0.5).exp()).sum();
        assert!((total - 1.0).abs() < 1e-12);
        let expected = 2.0 - (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        assert!((log_prob(&scores, 1, 1.0) - expected).abs() < 1e-12);
        assert_eq!(log_prob(&scores, 0, 0.0), 0.0);
    }
}
