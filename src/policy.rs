//! Where a policy comes from: a file the user names, or the built-in world's pretrained model
//! (inside the native library, so the CLI starts with no download; beside the page's wasm
//! module, fetched and cached by the browser, so the module stays small).

use std::path::Path;

use crate::backend::Backend;

use crate::error::{Error, Result};
use crate::io::{checkpoint, Checkpoint, Tokenizer};
use crate::model::{init_weights, Llama, LlamaConfig, RANDOM_SHAPES};

/// The checkpoint `alignlab pretrain` produced for the built-in world, embedded at build time.
#[cfg(not(target_arch = "wasm32"))]
pub static BUILTIN_CHECKPOINT: &[u8] = include_bytes!("../assets/builtin.safetensors");

pub const BUILTIN: &str = "builtin";

#[cfg(not(target_arch = "wasm32"))]
pub fn builtin_checkpoint() -> Result<Checkpoint> {
    if BUILTIN_CHECKPOINT.is_empty() {
        return Err(Error::Input(
            "this build has no built-in model: run `alignlab pretrain --out assets/builtin.safetensors` and rebuild".into(),
        ));
    }
    builtin_from_bytes(BUILTIN_CHECKPOINT)
}

/// The page's module does not carry the built-in model (~0.8 MB gzipped): it is fetched from
/// beside the module (`builtin.safetensors` in `dist/`).
#[cfg(target_arch = "wasm32")]
pub fn builtin_checkpoint() -> Result<Checkpoint> {
    Err(Error::Input(
        "in the browser the built-in model is fetched beside the module (builtin.safetensors) and passed in as bytes".into(),
    ))
}

/// The built-in model from the bytes of `assets/builtin.safetensors`.
pub fn builtin_from_bytes(bytes: &[u8]) -> Result<Checkpoint> {
    Checkpoint::from_bytes(bytes, BUILTIN, None)
}

/// Names a model of one of [`RANDOM_SHAPES`] with random weights: `random:llama-124m`.
pub const RANDOM_PREFIX: &str = "random:";

/// `builtin`, `random:SHAPE`, a Hugging Face model folder, or a path to a GGUF, llama2.c `.bin`
/// or alignlab safetensors file.
pub fn load_checkpoint(model: &str, tokenizer: Option<&Path>) -> Result<Checkpoint> {
    if model == BUILTIN {
        builtin_checkpoint()
    } else if let Some(shape) = model.strip_prefix(RANDOM_PREFIX) {
        random_checkpoint(shape, tokenizer)
    } else {
        Checkpoint::load(Path::new(model), tokenizer)
    }
}

/// A model of a named shape with [`init_weights`]' weights (seed 0), and the built-in
/// model's tokenizer unless `tokenizer` names another (a `tokenizer.json`): its ids fit any vocabulary of at least
/// 512, and what random weights write means nothing in any.
fn random_checkpoint(shape: &str, tokenizer: Option<&Path>) -> Result<Checkpoint> {
    let config = LlamaConfig::random_shape(shape).ok_or_else(|| {
        Error::Input(format!(
            "{RANDOM_PREFIX}{shape}: no such shape; there are {}",
            RANDOM_SHAPES.join(", ")
        ))
    })?;
    let tokenizer = match tokenizer {
        Some(path) => Tokenizer::from_hf_file(path)?,
        None => builtin_checkpoint()?.tokenizer,
    };
    Ok(Checkpoint {
        weights: init_weights(&config, 0),
        config,
        tokenizer,
    })
}

pub fn load<B: Backend>(
    model: &str,
    tokenizer: Option<&Path>,
    device: &B::Device,
) -> Result<(Llama<B>, Tokenizer)> {
    load_checkpoint(model, tokenizer)?.into_model(device)
}

/// Whether an output path names a folder (ends in `/` or is one): a Hugging Face model is
/// written there rather than an alignlab checkpoint file.
pub fn is_folder(path: &Path) -> bool {
    path.is_dir() || path.as_os_str().to_string_lossy().ends_with('/')
}

/// Writes the model and its tokenizer: a Hugging Face folder when `path` is a folder, else an
/// alignlab checkpoint.
pub async fn save<B: Backend>(model: &Llama<B>, tokenizer: &Tokenizer, path: &Path) -> Result<()> {
    let weights = model.to_weights().await?;
    #[cfg(not(target_arch = "wasm32"))]
    if is_folder(path) {
        use crate::io::hf::{export, Head};
        let export = export::Export {
            config: model.config(),
            weights,
            tokenizer,
            head: Head::CausalLm,
            dtype: export::StoreAs::F32,
        };
        return export::write(export, path);
    }
    let bytes = checkpoint::to_bytes(model.config(), &weights, tokenizer);
    // Write beside, then rename: an interrupted save never destroys the previous checkpoint.
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes).map_err(|e| Error::io(&partial, e))?;
    std::fs::rename(&partial, path).map_err(|e| Error::io(path, e))
}
