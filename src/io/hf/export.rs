//! Writes a model as a Hugging Face folder that `transformers` loads with `from_pretrained`.
