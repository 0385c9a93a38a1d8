//! The real files the tests read (models, tokenizers, preference data, a corpus), each from its
//! public origin and pinned by its SHA-256: found in `$ALIGNLAB_DATA` or `../shared/data` beside
//! the checkout, else downloaded into the user's cache and checked (`alignlab test-data`, and the
//! tests themselves on first use).

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// One file: where the tests read it (relative to the data folder), where it comes from, and
/// the SHA-256 it must have.
#[derive(Debug, Clone, PartialEq)]
pub struct DataFile {
    pub path: String,
    pub url: String,
    pub sha256: String,
}

/// (path, origin, SHA-256) of every file the tests read; `../shared/data/README.md` says what
/// each is and its license.
const MANIFEST: &[(&str, &str, &str)] = &[
    (
        "stories260K/stories260K.gguf",
        "https://huggingface.co/ggml-org/models/resolve/499bc8821c6b12b4e53c5bffcb21ec206f212d81/tinyllamas/stories260K.gguf",
        "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d",
    ),
    (
        "stories260K/stories260K.bin",
        "https://huggingface.co/karpathy/tinyllamas/resolve/0bd21da7698eaf29a0d7de3992de8a46ef624add/stories260K/stories260K.bin",
        "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696",
    ),
    (
        "stories260K/tok512.bin",
        "https://huggingface.co/karpathy/tinyllamas/resolve/0bd21da7698eaf29a0d7de3992de8a46ef624add/stories260K/tok512.bin",
        "037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312",
    ),
    (
        "hh-rlhf/harmless-base-test.jsonl.gz",
        "https://raw.githubusercontent.com/anthropics/hh-rlhf/master/harmless-base/test.jsonl.gz",
        "ebfaaed21162a4de120ae85366075b34425e2a6303fac59b99555002f7016f03",
    ),
    (
        "dpo-demo/dpo_en_demo.json",
        "https://raw.githubusercontent.com/hiyouga/LLaMA-Factory/main/data/dpo_en_demo.json",
        "b949be2421cfa62744afcf1b479f95b299d643d1a4c1c97d1341b314a1aa5cb3",
    ),
    (
        "tinyshakespeare/input.txt",
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    ),
    (
        "gpt2-bpe/encoder.json",
        "https://openaipublic.blob.core.windows.net/gpt-2/models/124M/encoder.json",
        "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    ),
    (
        "gpt2-bpe/vocab.bpe",
        "https://openaipublic.blob.core.windows.net/gpt-2/models/124M/vocab.bpe",
        "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    ),
    (
        "tiny-random-gpt2/tokenizer.json",
        "https://huggingface.co/hf-internal-testing/tiny-random-gpt2/resolve/main/tokenizer.json",
        "6ae9913a534754cce72a58d05f96845ccc3f1c17a6e596066ae2897a5068f18f",
    ),
];

/// Largest file accepted from a server (the largest here is 1.6 MB).
const MAX_BYTES: u64 = 64 << 20;

/// Every file the tests read.
pub fn manifest() -> Vec<DataFile> {
    MANIFEST
        .iter()
        .map(|(path, url, sha256)| DataFile {
            path: path.to_string(),
            url: url.to_string(),
            sha256: sha256.to_string(),
        })
        .collect()
}

/// The folder downloads go to: `$XDG_CACHE_HOME/alignlab/data`, else `~/.cache/alignlab/data`.
pub fn cache_dir() -> Result<PathBuf> {
    crate::io::user_cache_dir()
        .map(|alignlab| alignlab.join("data"))
        .ok_or_else(|| {
            Error::Input("no cache folder: set XDG_CACHE_HOME, HOME or ALIGNLAB_DATA".into())
        })
}

/// The test data's folder: `$ALIGNLAB_DATA` as given (never downloaded into; a missing file is an
/// error naming it), else `beside`
/// (the checkout's `../shared/data`) when it holds every file, else the cache, with what is
/// missing or wrong there downloaded and checked. `report` hears each download.
pub fn locate(beside: &Path, report: impl FnMut(&str)) -> Result<PathBuf> {
    let files = manifest();
    if let Some(dir) = std::env::var_os("ALIGNLAB_DATA") {
        let dir = PathBuf::from(dir);
        if let Some(missing) = files.iter().find(|f| !dir.join(&f.path).is_file()) {
            return Err(Error::Input(format!(
                "ALIGNLAB_DATA={}: {} is missing (unset ALIGNLAB_DATA to download the test data into the cache)",
                dir.display(),
                missing.path
            )));
        }
        return Ok(dir);
    }
    if files.iter().all(|f| beside.join(&f.path).is_file()) {
        return Ok(beside.to_path_buf());
    }
    let cache = cache_dir()?;
    fetch(&files, &cache, report)?;
    Ok(cache)
}

/// Makes every file of `files` present in `dir` with its SHA-256: a file already there with the
/// right digest is kept (no request); one missing or different is downloaded, checked, and only
/// then put in place (written beside and renamed, so no half file is ever left under its name).
pub fn fetch(files: &[DataFile], dir: &Path, mut report: impl FnMut(&str)) -> Result<()> {
    for file in files {
        let target = dir.join(&file.path);
        if target.is_file() && sha256_hex(&crate::error::read_file(&target)?) == file.sha256 {
            continue;
        }
        report(&format!("downloading {} from {}", file.path, file.url));
        let bytes = download(&file.url)?;
        let digest = sha256_hex(&bytes);
        if digest != file.sha256 {
            return Err(Error::Download {
                url: file.url.clone(),
                message: format!(
                    "SHA-256 {digest} is not the {} pinned for {}; nothing was written",
                    file.sha256, file.path
                ),
            });
        }
        let parent = target.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let partial = target.with_extension(format!("partial-{}", std::process::id()));
        std::fs::write(&partial, &bytes).map_err(|e| Error::io(&partial, e))?;
        std::fs::rename(&partial, &target).map_err(|e| Error::io(&target, e))?;
    }
    Ok(())
}

fn download(url: &str) -> Result<Vec<u8>> {
    let failed = |message: String| Error::Download {
        url: url.to_string(),
        message,
    };
    let response = ureq::get(url).call().map_err(|e| failed(e.to_string()))?;
    let mut bytes = Vec::new();
    response
        .into_reader()
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| failed(format!("the download broke off: {e}")))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(failed(format!("larger than {MAX_BYTES} bytes")));
    }
    Ok(bytes)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A local HTTP server answering GET /good and /bad (bytes that do not match their pin),
    /// counting the requests it serves.
    fn serve() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut request_line = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                reader.read_line(&mut request_line).unwrap();
                // The rest of the request head, up to its blank line.
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 2 {
                    line.clear();
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let body: &[u8] = if request_line.starts_with("GET /good ") {
                    b"the real bytes"
                } else {
                    b"something else"
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(body).unwrap();
            }
        });
        (base, served)
    }

    fn file(path: &str, url: String) -> DataFile {
        DataFile {
            path: path.into(),
            url,
            sha256: sha256_hex(b"the real bytes"),
        }
    }

    #[test]
    fn downloads_are_checked_cached_and_replaced_when_wrong() {
        let (base, served) = serve();
        let dir = std::env::temp_dir().join(format!("alignlab-testdata-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let good = [file("a/good.bin", format!("{base}/good"))];
        let mut heard = Vec::new();
        fetch(&good, &dir, |m| heard.push(m.to_string())).unwrap();
        assert_eq!(
            std::fs::read(dir.join("a/good.bin")).unwrap(),
            b"the real bytes"
        );
        assert_eq!(served.load(Ordering::SeqCst), 1);
        assert!(heard[0].contains("a/good.bin"), "{heard:?}");
        // Cached: no second request.
        fetch(&good, &dir, |_| {}).unwrap();
        assert_eq!(served.load(Ordering::SeqCst), 1);
        // A cached file that no longer matches its pin is fetched again.
        std::fs::write(dir.join("a/good.bin"), b"damaged").unwrap();
        fetch(&good, &dir, |_| {}).unwrap();
        assert_eq!(served.load(Ordering::SeqCst), 2);
        assert_eq!(
            std::fs::read(dir.join("a/good.bin")).unwrap(),
            b"the real bytes"
        );
        // Bytes that do not match the pin are refused, named, and never written.
        let bad = [file("b/bad.bin", format!("{base}/bad"))];
        let message = fetch(&bad, &dir, |_| {}).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("{base}/bad: SHA-256 ")),
            "{message}"
        );
        assert!(message.contains("b/bad.bin"), "{message}");
        assert!(!dir.join("b/bad.bin").exists());
        // A server that is not there is named.
        let gone = [file("c/gone.bin", "http://127.0.0.1:9/gone".into())];
        let message = fetch(&gone, &dir, |_| {}).unwrap_err().to_string();
        assert!(
            message.starts_with("http://127.0.0.1:9/gone: "),
            "{message}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_pins_are_the_test_datas_digests() {
        let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
        let root = locate(&beside, |m| eprintln!("{m}")).unwrap();
        for f in manifest() {
            let bytes = crate::error::read_file(&root.join(&f.path)).unwrap();
            assert_eq!(sha256_hex(&bytes), f.sha256, "{}", f.path);
        }
    }

    #[test]
    fn the_manifest_pins_every_file_once() {
        let files = manifest();
        for f in &files {
            assert_eq!(f.sha256.len(), 64, "{}", f.path);
            assert!(f.url.starts_with("https://"), "{}", f.url);
            assert_eq!(files.iter().filter(|g| g.path == f.path).count(), 1);
        }
    }
}
