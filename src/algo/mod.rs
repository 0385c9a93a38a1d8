//! One file per method: its pure loss over log-prob or reward tensors, citing the paper's
//! equation, its registry entry, and its tests. `preference` is the batch objective around the
//! offline losses, `online_method` what an online method tells the loop in `run/`.

pub mod align_distil;
pub mod arm;
pub mod bco;
pub mod best_of_n;
pub mod dpo;
pub mod gae;
pub mod grpo;
pub mod grpo_s;
pub mod ipo;
pub mod kl_controller;
pub mod kto;
pub mod lipo;
pub mod online_method;
pub mod orpo;
pub mod policy_gradient;
pub mod ppo;
pub mod preference;
pub mod preference_loss;
pub mod preference_method;
pub mod pro;
pub mod raft;
pub mod reinforce_pp;
pub mod reward_model;
pub mod rloo;
pub mod rpo;
pub mod rto;
pub mod salsa;
pub mod sft;
pub mod simpo;
pub mod slic;
pub mod sparse_po;
pub mod spec;
#[cfg(test)]
pub(crate) mod testing;
