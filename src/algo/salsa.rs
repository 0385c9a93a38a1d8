//! SALSA, Chegini et al. 2024 ("SALSA: Soup-based Alignment Learning for Stronger Adaptation in
//! RLHF"), §3: the reference model of the KL penalty is the weight average (a "model soup") of
//! two SFT models fine-tuned from the same base with different seeds or data, θ_ref = α·θ₁ +
//! (1−α)·θ₂, which lets the policy move further at the same KL and reach higher reward.

use crate::backend::Backend;

use crate::error::{Error, Result};
use crate::model::{HostTensor, Llama, NamedWeights};

/// α·a + (1−α)·b, parameter by parameter; the models must share a config.
pub async fn soup<B: Backend>(a: &Llama<B>, b: &Llama<B>, alpha: f32) -> Result<Llama<B>> {
    if a.config() != b.config() {
        return Err(Error::Input(
            "a soup needs two models of the same shape".into(),
        ));
    }
    let (wa, wb) = (a.to_weights().await?, b.to_weights().await?);
    let mut mixed = NamedWeights::new("soup");
    for (name, ta) in wa.tensors {
        let tb = wb.tensors.get(&name).ok_or_else(|| {
            Error::Input(format!("tensor `{name}` is missing from the second model"))
        })?;
        let data = ta
            .data
            .iter()
            .zip(&tb.data)
            .map(|(x, y)| alpha * x + (1.0 - alpha) * y)
            .collect();
        mixed.insert(name, HostTensor::new(ta.shape, data));
    }
    Llama::from_weights(a.config(), mixed, &a.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn the_soup_is_the_parameter_average() {
        let config = crate::model::LlamaConfig::tiny();
        let device = Default::default();
        let a = Llama::<NdArray>::init(&config, 1, &device).unwrap();
        let b = Llama::<NdArray>::init(&config, 2, &device).unwrap();
        let s = pollster::block_on(soup(&a, &b, 0.25)).unwrap();
        let (wa, wb, ws) = pollster::block_on(async {
            (
                a.to_weights().await.unwrap(),
                b.to_weights().await.unwrap(),
                s.to_weights().await.unwrap(),
            )
        });
        for (name, t) in &ws.tensors {
            for i in 0..t.data.len() {
                let expected = 0.25 * wa.tensors[name].data[i] + 0.75 * wb.tensors[name].data[i];
                assert!((t.data[i] - expected).abs() < 1e-6, "{name}[{i}]");
            }
        }
        assert_eq!(
            pollster::block_on(soup(&a, &a, 0.5)).unwrap().config(),
            a.config()
        );
    }
}
