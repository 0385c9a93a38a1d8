//! Test helpers shared by the loss files: small tensors, hand-value checks and a finite-difference
//! gradient check.

use crate::backend::Backend;
use burn::backend::{Autodiff, NdArray};
use burn::tensor::Tensor;

pub type Grad = Autodiff<NdArray>;

pub fn t<B: Backend>(values: &[f32]) -> Tensor<B, 1> {
    Tensor::from_floats(values, &Default::default())
}

/// The loss of a one-element batch equals `expected` to 1e-5.
pub fn value(loss: Tensor<NdArray, 1>, expected: f64) {
    let got = loss.into_scalar() as f64;
    assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
}

/// The autodiff gradient of Σ loss(x) with respect to each scalar input matches a central
/// finite difference.
pub fn assert_gradients_match(
    inputs: &[f32],
    loss: impl Fn(&[Tensor<Grad, 1>]) -> Tensor<Grad, 1>,
) {
    let params: Vec<Tensor<Grad, 1>> = inputs
        .iter()
        .map(|&x| t::<Grad>(&[x]).require_grad())
        .collect();
    let grads = loss(&params).sum().backward();
    let eval = |x: &[f32]| -> f64 {
        let tensors: Vec<Tensor<Grad, 1>> = x.iter().map(|&v| t(&[v])).collect();
        loss(&tensors).sum().into_scalar() as f64
    };
    for (i, param) in params.iter().enumerate() {
        let analytic = param
            .grad(&grads)
            .expect("input has a gradient")
            .into_scalar() as f64;
        // f32 central differences: a step of 1e-2 keeps rounding error far below the tolerance.
        let step = 1e-2f32;
        let (mut up, mut down) = (inputs.to_vec(), inputs.to_vec());
        up[i] += step;
        down[i] -= step;
        let numeric = (eval(&up) - eval(&down)) / (2.0 * step as f64);
        assert!(
            (analytic - numeric).abs() < 2e-3 * analytic.abs().max(1.0),
            "input {i}: autodiff {analytic} vs finite difference {numeric}"
        );
    }
}
