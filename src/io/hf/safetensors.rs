//! The weights of a Hugging Face folder: `model.safetensors`, or the shards that
//! `model.safetensors.index.json` names. Each file is mapped, not read, and converted to f32
//! tensor by tensor, so loading a half-precision checkpoint never holds two copies of it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Component, Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::model::HostTensor;

pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

#[derive(Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

/// The safetensors files of a model folder, in a stable order.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index_path = dir.join(INDEX_FILE);
    if index_path.is_file() {
        let source = index_path.display().to_string();
        let bytes = crate::error::read_file(&index_path)?;
        let index: Index = serde_json::from_slice(&bytes)
            .map_err(|e| Error::format(&source, format!("not a safetensors index: {e}")))?;
        let mut files = BTreeSet::new();
        for (tensor, file) in &index.weight_map {
            let mut parts = Path::new(file).components();
            let plain =
                matches!(parts.next(), Some(Component::Normal(_))) && parts.next().is_none();
            if !plain {
                return Err(Error::format(
                    &source,
                    format!(
                        "weight_map.{tensor} names `{file}`, which is not a file in this folder"
                    ),
                ));
            }
            files.insert(file.clone());
        }
        return files
            .into_iter()
            .map(|file| {
                let path = dir.join(&file);
                match path.is_file() {
                    true => Ok(path),
                    false => Err(Error::format(
                        &source,
                        format!(
                            "names shard `{file}`, which is missing from {}",
                            dir.display()
                        ),
                    )),
                }
            })
            .collect();
    }
    let single = dir.join(SINGLE_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::format(
            dir.display().to_string(),
            format!("no {SINGLE_FILE}, {INDEX_FILE} or *.safetensors in this folder"),
        ));
    }
    Ok(files)
}

/// One mapped safetensors file.
pub struct MappedFile {
    path: String,
    map: Mmap,
}

impl MappedFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the mapping is read-only and private to this process; a file truncated under
        // us while loading is the one hazard, as with any mapped read (as in candle, safetensors).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.display().to_string(),
            map,
        })
    }

    /// Every tensor in the file converted to f32, handed to `each` one at a time. The header is
    /// checked against the file's length before any tensor is touched.
    pub fn for_each_tensor(
        &self,
        mut each: impl FnMut(String, HostTensor) -> Result<()>,
    ) -> Result<()> {
        let tensors = SafeTensors::deserialize(&self.map)
            .map_err(|e| Error::format(&self.path, format!("not a valid safetensors file: {e}")))?;
        let mut names: Vec<&str> = tensors.names().into_iter().collect();
        names.sort_unstable();
        for name in names {
            let view = tensors.tensor(name).expect("listed by the header");
            let data = to_f32(view.data(), view.dtype()).map_err(|message| {
                Error::format(&self.path, format!("tensor `{name}`: {message}"))
            })?;
            self.release(view.data());
            each(
                name.to_string(),
                HostTensor::new(view.shape().to_vec(), data),
            )?;
        }
        Ok(())
    }

    /// Drops the converted bytes' pages from memory (they are re-read from the file if touched
    /// again), so the f32 copy and the file's pages are not both resident.
    fn release(&self, bytes: &[u8]) {
        #[cfg(unix)]
        {
            let page = 4096;
            let offset = bytes.as_ptr() as usize - self.map.as_ptr() as usize;
            let start = offset.div_ceil(page) * page;
            let end = (offset + bytes.len()) / page * page;
            if end > start {
                // SAFETY: a private read-only file mapping: dropped pages are re-read from the
                // file, never zero-filled, and no reference to them outlives this call's caller
                // needing them (the data is already converted).
                let _ = unsafe {
                    self.map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        start,
                        end - start,
                    )
                };
            }
        }
        #[cfg(not(unix))]
        let _ = bytes;
    }
}

/// Little-endian F32, F16 or BF16 bytes → f32 values.
fn to_f32(bytes: &[u8], dtype: Dtype) -> std::result::Result<Vec<f32>, String> {
    let halves = |convert: fn(u16) -> f32| {
        bytes
            .chunks_exact(2)
            .map(|b| convert(u16::from_le_bytes([b[0], b[1]])))
            .collect()
    };
    match dtype {
        Dtype::F32 => Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()),
        Dtype::F16 => Ok(halves(|bits| half::f16::from_bits(bits).to_f32())),
        Dtype::BF16 => Ok(halves(|bits| half::bf16::from_bits(bits).to_f32())),
        other => Err(format!(
            "dtype {other:?} is not supported; supported: F32, F16, BF16"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precisions_convert_exactly() {
        let values = [1.0f32, -2.5, 0.000_122_070_31, 65504.0];
        let f16: Vec<u8> = values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes())
            .collect();
        assert_eq!(to_f32(&f16, Dtype::F16).unwrap(), values);
        let bf16: Vec<u8> = [1.0f32, -2.5, 3.0e38]
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_bits().to_le_bytes())
            .collect();
        let back = to_f32(&bf16, Dtype::BF16).unwrap();
        assert_eq!(&back[..2], &[1.0, -2.5]);
        assert!((back[2] / 3.0e38 - 1.0).abs() < 1e-2);
        let message = to_f32(&[0; 4], Dtype::I32).unwrap_err();
        assert!(
            message.contains("I32") && message.contains("BF16"),
            "{message}"
        );
    }
}
