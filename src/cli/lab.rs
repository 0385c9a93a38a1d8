//! `alignlab lab`: serves the built page (`dist/`, from `trunk build --release`) on localhost,
//! so a teacher opens the lab with one command. The page is found, not embedded: the binary is
//! built before the page (the page's module is compiled from the same crate), so it serves the
//! folder and says which commit built it when that is not the binary's own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::{Error, Result};
use clap::Args;
use tower_http::services::ServeDir;

#[derive(Args)]
pub struct LabCommand {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to listen on: 0.0.0.0 lets the other machines of a classroom's network in.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The built page [default: ./dist, else the dist/ of the checkout this binary was built in].
    #[arg(long)]
    dist: Option<PathBuf>,
}

/// The commit this binary was built from (see build.rs); empty outside a git checkout.
const COMMIT: &str = env!("ALIGNLAB_COMMIT");

/// The file Trunk's post-build hook writes beside the page: `{"commit": "<sha>"}`.
const BUILD_INFO: &str = "build.json";

impl LabCommand {
    pub fn run(self) -> Result<()> {
        let dist = self.dist.unwrap_or_else(find_dist);
        let index = dist.join("index.html");
        if !index.is_file() {
            return Err(Error::Io {
                path: index.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no built page here: build it with `trunk build --release` (README, \"The browser lab\"), or name its folder with --dist",
                ),
            });
        }
        if let Some(warning) = commit_mismatch(&dist) {
            eprintln!("warning: {warning}");
        }
        let address = format!("{}:{}", self.host, self.port);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                path: "the web server's runtime".into(),
                source,
            })?;
        runtime.block_on(serve(&dist, &address))
    }
}

async fn serve(dist: &Path, address: &str) -> Result<()> {
    let io_error = |source| Error::Io {
        path: address.to_string(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(io_error)?;
    let bound: SocketAddr = listener.local_addr().map_err(io_error)?;
    let shown_host = if bound.ip().is_unspecified() {
        "localhost".to_string()
    } else {
        bound.ip().to_string()
    };
    println!(
        "alignlab lab: serving {} at http://{shown_host}:{}/ (stop with Ctrl-C)",
        dist.display(),
        bound.port()
    );
    let app = axum::Router::new().fallback_service(ServeDir::new(dist));
    axum::serve(listener, app).await.map_err(io_error)
}

/// `./dist` when the current folder holds a built page, else the `dist/` of the checkout the
/// binary sits in (`target/<profile>/alignlab` → `dist/`).
fn find_dist() -> PathBuf {
    let here = PathBuf::from("dist");
    if here.join("index.html").is_file() {
        return here;
    }
    let beside_binary = std::env::current_exe().ok().and_then(|exe| {
        exe.ancestors()
            .skip(1)
            .map(|folder| folder.join("dist"))
            .find(|dist| dist.join("index.html").is_file())
    });
    beside_binary.unwrap_or(here)
}

/// A page built from another commit than the binary may call the core differently: said, not
/// refused (a page built from a dirty tree or outside git has no commit to compare).
fn commit_mismatch(dist: &Path) -> Option<String> {
    let file = dist.join(BUILD_INFO);
    let text = std::fs::read_to_string(&file).ok()?;
    let built: serde_json::Value = serde_json::from_str(&text).ok()?;
    let page = built.get("commit")?.as_str()?.trim();
    if page.is_empty() || COMMIT.is_empty() || page == COMMIT {
        return None;
    }
    Some(format!(
        "{} says the page was built from commit {page}, this binary from {COMMIT}: rebuild the page (trunk build --release) or the binary",
        file.display()
    ))
}
