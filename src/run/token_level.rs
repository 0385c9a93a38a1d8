//! The step of the token-level preference methods, SparsePO and AlignDistil. The sequence-level
//! losses read the reference's summed log-probs from a table made once; these need whole
//! next-token distributions at every completion position — the reference's, a teacher's — so the
//! frozen models run on every batch. SparsePO's learned masks are a head on the policy's hidden
//! states, trained by the same backward pass with an optimiser of its own.

use crate::backend::AutodiffBackend;
use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{Int, Tensor};

use crate::algo::align_distil::{adaptive_alpha, distillation_loss, teacher_logprobs, AlignDistil};
use crate::algo::preference::{PreferenceConfig, PreferenceLoss};
use crate::algo::sparse_po::{sparse_po_loss, Masks, SparsePo, TokenTerms};
use crate::dataset::{RankedSequences, Sequence};
use crate::distributed::Replica;
use crate::error::{Error, Result};
use crate::host::read_scalar;
use crate::logprobs::{sum_per_sequence, SequenceBatch};
use crate::metrics::{self, Metrics};
use crate::model::{Llama, ScalarHead};
use crate::train::Trainer;

/// A head's starting bias: masks begin near 1, where SparsePO is TDPO.
const MASK_BIAS: f32 = 1.0;

/// The frozen models and learned masks a token-level method trains with.
pub struct TokenLevel<B: AutodiffBackend> {
    reference: Llama<B::InnerBackend>,
    /// AlignDistil's DPO model, then optionally its reverse DPO model.
    teachers: Vec<Llama<B::InnerBackend>>,
    masks: Option<MaskHead<B>>,
}

struct MaskHead<B: AutodiffBackend> {
    head: ScalarHead<B>,
    trainer: Trainer<B, ScalarHead<B>>,
}

/// A batch of pairs as one batch of 2n sequences (chosen, rejected, chosen, …).
struct PairBatch<B: AutodiffBackend> {
    pairs: usize,
    inputs: Tensor<B, 2, Int>,
    targets: Tensor<B, 2, Int>,
    /// [2n, T]
    completion: Tensor<B, 2>,
}

impl<B: AutodiffBackend> PairBatch<B> {
    fn new(rows: &[&RankedSequences], context: usize, device: &B::Device) -> Result<Self> {
        let sequences: Vec<Sequence> = rows.iter().flat_map(|r| r.sequences()).collect();
        let batch = SequenceBatch::<B>::new(&sequences, context, device)?;
        let (inputs, targets) = batch.inputs_and_targets();
        Ok(Self {
            pairs: rows.len(),
            inputs,
            targets,
            completion: batch.completion_mask,
        })
    }

    /// Rows of one side of every pair: 0 chosen, 1 rejected ([2n, T] → [n, T]).
    fn side(&self, per_token: &Tensor<B, 2>, which: usize) -> Tensor<B, 2> {
        let t = per_token.dims()[1];
        per_token
            .clone()
            .reshape([self.pairs, 2, t])
            .narrow(1, which, 1)
            .reshape([self.pairs, t])
    }
}

impl<B: AutodiffBackend> TokenLevel<B>
where
    Llama<B>: AutodiffModule<B>,
{
    /// What `config.loss` needs, or `None` for a sequence-level method.
    pub fn new(
        config: &PreferenceConfig,
        reference: &Llama<B::InnerBackend>,
        replica: &Replica,
    ) -> Option<Self> {
        if !config.loss.is_token_level() {
            return None;
        }
        let masks = match config.loss {
            PreferenceLoss::SparsePo(SparsePo {
                masks: Masks::Learned { heads },
                ..
            }) => Some(MaskHead {
                head: ScalarHead::with_bias(
                    reference.config().dim,
                    heads,
                    MASK_BIAS,
                    config.seed,
                    &reference.device(),
                ),
                trainer: Trainer::new(config.optim.clone()).with_replica(replica.clone()),
            }),
            _ => None,
        };
        Some(Self {
            reference: reference.clone(),
            teachers: Vec::new(),
            masks,
        })
    }

    /// AlignDistil's teacher: the DPO model, and optionally the reverse DPO model after it.
    pub fn set_teachers(&mut self, teachers: Vec<Llama<B::InnerBackend>>) -> Result<()> {
        let vocab = self.reference.config().vocab_size;
        if teachers.is_empty() || teachers.len() > 2 {
            return Err(Error::Input(format!(
                "AlignDistil takes one DPO teacher, or a DPO and a reverse DPO teacher; got {}",
                teachers.len()
            )));
        }
        if let Some(t) = teachers.iter().find(|t| t.config().vocab_size != vocab) {
            return Err(Error::Input(format!(
                "a teacher's vocabulary has {} tokens, the policy's {vocab}: they must share a tokenizer",
                t.config().vocab_size
            )));
        }
        self.teachers = teachers;
        Ok(())
    }

    /// The loss per pair [n] of `rows` under `policy`, with the batch's metrics in `m`.
    pub async fn batch_loss(
        &self,
        policy: &Llama<B>,
        config: &PreferenceConfig,
        rows: &[&RankedSequences],
        m: &mut Metrics,
    ) -> Result<Tensor<B, 1>> {
        let batch = PairBatch::<B>::new(rows, policy.config().max_seq_len, &policy.device())?;
        let hidden = policy.forward_hidden(batch.inputs.clone());
        let policy_logits = policy.logits(hidden.clone());
        let reference = log_softmax(self.reference.forward(batch.inputs.clone().inner()), 2);
        match config.loss {
            PreferenceLoss::SparsePo(method) | PreferenceLoss::SparsePoRef(method) => {
                let terms = self.sparse_terms(&batch, &method, hidden, policy_logits, reference)?;
                let (chosen, rejected) = (terms.side(&batch, 0), terms.side(&batch, 1));
                log_masked_rewards(m, &chosen, &rejected, config.beta, &terms).await?;
                Ok(sparse_po_loss(
                    &chosen,
                    &rejected,
                    config.beta,
                    method.kl_weight,
                ))
            }
            PreferenceLoss::AlignDistil(method) => {
                let losses = self
                    .distil(&batch, &method, config.beta, policy_logits, reference, m)
                    .await?;
                Ok(losses.reshape([batch.pairs, 2]).sum_dim(1).squeeze_dim(1))
            }
            other => Err(Error::Input(format!(
                "{other} is a sequence-level method: it trains from the reference table"
            ))),
        }
    }

    /// SparsePO's per-token terms of every sequence [2n, T].
    fn sparse_terms(
        &self,
        batch: &PairBatch<B>,
        method: &SparsePo,
        hidden: Tensor<B, 3>,
        policy_logits: Tensor<B, 3>,
        reference: Tensor<B::InnerBackend, 3>,
    ) -> Result<AllTerms<B>> {
        let completion = batch.completion.clone();
        let policy = log_softmax(policy_logits, 2);
        let reference = Tensor::<B, 3>::from_inner(reference);
        let logratios =
            gather(policy.clone() - reference.clone(), &batch.targets) * completion.clone();
        let kls = (reference.clone().exp() * (reference - policy.clone()))
            .sum_dim(2)
            .squeeze_dim::<2>(2)
            * completion.clone();
        let logps = gather(policy, &batch.targets) * completion.clone();
        let (reward_mask, kl_mask) = match (method.masks, &self.masks) {
            (Masks::Learned { heads }, Some(masks)) => {
                let m = relu(masks.head.per_token(hidden));
                let reward = m.clone().narrow(2, 0, 1).squeeze_dim::<2>(2) * completion.clone();
                let kl = if heads == 2 {
                    m.narrow(2, 1, 1).squeeze_dim::<2>(2) * completion.clone()
                } else {
                    reward.clone()
                };
                (reward, kl)
            }
            (Masks::ReferenceActivations, _) => {
                let mask = self.activation_mask(batch);
                (mask.clone(), mask)
            }
            (Masks::Learned { .. }, None) => {
                return Err(Error::Input("sparsepo's mask head was not made".into()))
            }
        };
        Ok(AllTerms {
            logratios,
            kls,
            reward_mask,
            kl_mask,
            logps,
            completion,
        })
    }

    /// The reference's mean absolute activation per token, averaged over its layers, divided by
    /// the sequence's largest over its completion tokens: [2n, T] in [0, 1], zero outside the
    /// completion. Position t is the state that predicts token t+1, as for the log-probs.
    fn activation_mask(&self, batch: &PairBatch<B>) -> Tensor<B, 2> {
        let outputs = self.reference.block_outputs(batch.inputs.clone().inner());
        let layers = outputs.len() as f64;
        let mean = outputs
            .into_iter()
            .map(|h| h.abs().mean_dim(2).squeeze_dim::<2>(2))
            .reduce(|a, b| a + b)
            .expect("a model has at least one layer")
            .div_scalar(layers);
        let masked = mean * batch.completion.clone().inner();
        let largest = masked.clone().max_dim(1).clamp_min(1e-12);
        Tensor::from_inner(masked / largest)
    }

    /// AlignDistil's loss per sequence [2n], logging the teacher KL and mean α_t.
    async fn distil(
        &self,
        batch: &PairBatch<B>,
        method: &AlignDistil,
        beta: f64,
        policy_logits: Tensor<B, 3>,
        reference: Tensor<B::InnerBackend, 3>,
        m: &mut Metrics,
    ) -> Result<Tensor<B, 1>> {
        let Some(dpo) = self.teachers.first() else {
            return Err(Error::Input(
                "aligndistil distils from a DPO model: give it one with --teacher".into(),
            ));
        };
        let inputs = batch.inputs.clone().inner();
        let dpo = log_softmax(dpo.forward(inputs.clone()), 2);
        let reverse = self
            .teachers
            .get(1)
            .map(|model| log_softmax(model.forward(inputs.clone()), 2));
        let contrast = reverse.clone().unwrap_or_else(|| reference.clone());
        let alpha = adaptive_alpha(dpo.clone(), contrast, method.alpha(beta), method.tv_target);
        let completion = batch.completion.clone().inner();
        let tokens = read_scalar(completion.clone().sum()).await?.max(1.0) as f64;
        let alpha_mean =
            read_scalar((alpha.clone().squeeze_dim::<2>(2) * completion).sum()).await?;
        m.insert(metrics::DISTIL_ALPHA, alpha_mean as f64 / tokens);
        let teacher = teacher_logprobs(reference, dpo, reverse, alpha);
        let losses = distillation_loss(
            Tensor::from_inner(teacher),
            policy_logits,
            batch.completion.clone(),
        );
        m.insert(
            metrics::DISTIL_TEACHER_KL,
            read_scalar(losses.clone().detach().mean()).await? as f64,
        );
        Ok(losses)
    }

    /// One update from `loss`: the policy's alone, or the policy's and the mask head's from one
    /// backward pass.
    pub async fn step(
        &mut self,
        trainer: &mut Trainer<B, Llama<B>>,
        policy: Llama<B>,
        loss: Tensor<B, 1>,
        m: &mut Metrics,
    ) -> Result<Llama<B>> {
        let Some(masks) = &mut self.masks else {
            return trainer.step_logged(policy, loss, m).await;
        };
        let loss_value = trainer.read_loss(&loss, m).await?;
        if !loss_value.is_finite() {
            trainer.skip();
            masks.trainer.skip();
            Trainer::<B, Llama<B>>::log_output(None, m).await?;
            return Ok(policy);
        }
        let mut grads = loss.backward();
        let head_grads = GradientsParams::from_module(&mut grads, &masks.head);
        let policy_grads = GradientsParams::from_grads(grads, &policy);
        masks.head = masks.trainer.apply(masks.head.clone(), head_grads)?.0;
        let (policy, output) = trainer.apply(policy, policy_grads)?;
        Trainer::<B, Llama<B>>::log_output(Some(output), m).await?;
        Ok(policy)
    }
}

/// SparsePO's terms of every sequence of the batch [2n, T], with the policy's log-probs.
struct AllTerms<B: AutodiffBackend> {
    logratios: Tensor<B, 2>,
    kls: Tensor<B, 2>,
    reward_mask: Tensor<B, 2>,
    kl_mask: Tensor<B, 2>,
    logps: Tensor<B, 2>,
    completion: Tensor<B, 2>,
}

impl<B: AutodiffBackend> AllTerms<B> {
    fn side(&self, batch: &PairBatch<B>, which: usize) -> TokenTerms<B> {
        TokenTerms {
            logratios: batch.side(&self.logratios, which),
            kls: batch.side(&self.kls, which),
            reward_mask: batch.side(&self.reward_mask, which),
            kl_mask: batch.side(&self.kl_mask, which),
        }
    }
}

/// log p(target) [R, T] from log-probs [R, T, V].
fn gather<B: AutodiffBackend>(logprobs: Tensor<B, 3>, targets: &Tensor<B, 2, Int>) -> Tensor<B, 2> {
    logprobs
        .gather(2, targets.clone().unsqueeze_dim(2))
        .squeeze_dim(2)
}

/// TRL's reward metrics on the masked implicit rewards β·Σ m_u·ρ, the summed log-probs, and the
/// reward mask's sparsity (share of completion tokens at exactly 0) and mean.
async fn log_masked_rewards<B: AutodiffBackend>(
    m: &mut Metrics,
    chosen: &TokenTerms<B>,
    rejected: &TokenTerms<B>,
    beta: f64,
    terms: &AllTerms<B>,
) -> Result<()> {
    let mean = |t: Tensor<B, 1>| async move { read_scalar(t.detach().mean()).await.map(f64::from) };
    let chosen_reward = chosen.masked_logratio().mul_scalar(beta);
    let rejected_reward = rejected.masked_logratio().mul_scalar(beta);
    let right = chosen_reward
        .clone()
        .greater(rejected_reward.clone())
        .float();
    m.insert(metrics::REWARDS_CHOSEN, mean(chosen_reward.clone()).await?);
    m.insert(
        metrics::REWARDS_REJECTED,
        mean(rejected_reward.clone()).await?,
    );
    m.insert(
        metrics::REWARDS_MARGINS,
        mean(chosen_reward - rejected_reward).await?,
    );
    m.insert(metrics::REWARDS_ACCURACIES, mean(right).await?);
    let logps = sum_per_sequence(terms.logps.clone().detach());
    let pairs = logps.dims()[0] / 2;
    let logps = logps.reshape([pairs, 2]);
    m.insert(
        metrics::LOGPS_CHOSEN,
        mean(logps.clone().narrow(1, 0, 1).reshape([pairs])).await?,
    );
    m.insert(
        metrics::LOGPS_REJECTED,
        mean(logps.narrow(1, 1, 1).reshape([pairs])).await?,
    );
    let tokens = read_scalar(terms.completion.clone().sum()).await?.max(1.0) as f64;
    let mask = terms.reward_mask.clone().detach();
    let zeros = mask.clone().lower_equal_elem(0.0).float() * terms.completion.clone();
    m.insert(
        metrics::MASK_SPARSITY,
        read_scalar(zeros.sum()).await? as f64 / tokens,
    );
    m.insert(
        metrics::MASK_MEAN,
        read_scalar(mask.sum()).await? as f64 / tokens,
    );
    Ok(())
}
