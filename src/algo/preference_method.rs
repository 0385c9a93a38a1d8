//! What an offline preference method provides to the one trainer (`preference.rs`): its spec,
//! how it reads its settings, and its loss per row as a pure function of the log-prob tensors
//! the trainer gathers. Each method's file implements one of the two traits; the list in
//! `preference_loss.rs` names them all.

use crate::backend::Backend;
use burn::tensor::Tensor;

use super::spec::{MethodSpec, Settings};

/// A batch of rankings (pairs are rankings of two), best completion first.
pub struct RankedInputs<B: Backend> {
    /// ρ per completion [rows, k]: log π − log π_ref (log π for reference-free methods),
    /// divided by the completion's length for length-averaged methods.
    pub logratios: Tensor<B, 2>,
    /// Summed policy log-probs per completion [rows, k].
    pub logps: Tensor<B, 2>,
    /// Completion lengths in tokens [rows, k].
    pub lengths: Tensor<B, 2>,
    /// Graded scores per completion [rows, k] (higher is better), when the data has them.
    pub scores: Option<Tensor<B, 2>>,
    pub beta: f64,
}

impl<B: Backend> RankedInputs<B> {
    fn column(m: &Tensor<B, 2>, j: usize) -> Tensor<B, 1> {
        let rows = m.dims()[0];
        m.clone().narrow(1, j, 1).reshape([rows])
    }

    /// ρ of the best completion [rows].
    pub fn chosen(&self) -> Tensor<B, 1> {
        Self::column(&self.logratios, 0)
    }

    /// ρ of the second completion [rows] (the rejected one of a pair).
    pub fn rejected(&self) -> Tensor<B, 1> {
        let k = self.logratios.dims()[1];
        Self::column(&self.logratios, 1.min(k - 1))
    }

    pub fn chosen_logps(&self) -> Tensor<B, 1> {
        Self::column(&self.logps, 0)
    }

    pub fn chosen_lengths(&self) -> Tensor<B, 1> {
        Self::column(&self.lengths, 0)
    }
}

/// A batch of unpaired desirable/undesirable completions.
pub struct UnpairedInputs<B: Backend> {
    /// log π − log π_ref per completion [rows].
    pub logratios: Tensor<B, 1>,
    /// 1 for desirable, 0 for undesirable [rows].
    pub desirable: Tensor<B, 1>,
    pub beta: f64,
    /// The KL reference point [1] (KTO), when the method asks for it.
    pub kl_reference: Option<Tensor<B, 1>>,
    /// The running mean of β·ρ over the batches so far (BCO's δ), when the method asks for it.
    pub reward_shift: f64,
}

/// A loss over rankings (pairs included).
pub trait RankedMethod {
    /// Measured against the reference (false: reference-free, ρ = log π).
    const USES_REFERENCE: bool = true;
    /// ρ divided by the completion's length (TRL's IPO, SimPO, ORPO, PRO).
    const LENGTH_AVERAGED: bool = false;

    fn from_settings(spec: &MethodSpec, settings: &Settings) -> Self;

    /// The loss of each row [rows].
    fn losses<B: Backend>(&self, inputs: RankedInputs<B>) -> Tensor<B, 1>;
}

/// A loss over unpaired labels.
pub trait UnpairedMethod {
    /// Needs KTO's KL reference point: the policy's KL to the reference on mismatched pairs.
    const NEEDS_KL_REFERENCE: bool = false;
    /// Needs BCO's running reward shift δ.
    const NEEDS_REWARD_SHIFT: bool = false;

    fn from_settings(spec: &MethodSpec, settings: &Settings) -> Self;

    /// The loss of each row [rows].
    fn losses<B: Backend>(&self, inputs: UnpairedInputs<B>) -> Tensor<B, 1>;
}
