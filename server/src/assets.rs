//! The built site's scripts, wasm modules and stylesheets, compressed once at build time and served
//! precompressed.
//!
//! A first visit downloads the main module and a page's chunks (about 1.2 MB raw for the largest page). The
//! router serves `pkg/` with [`ServeDir`]'s precompressed lookup (`NAME.br`, else `NAME.gz`, else `NAME`, as
//! the request's `Accept-Encoding` allows), so what a browser downloads is the brotli copy: compressing once at
//! build time (`walden assets compress`, run by walden.sh and the Dockerfile) costs nothing per request, and
//! brotli at quality 11 is out of reach for on-the-fly compression. Without the copies (`cargo leptos watch`)
//! the files are served as they are.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use axum::http::header::VARY;
use axum::http::HeaderValue;
use tower::Layer;
use tower_http::services::ServeDir;
use tower_http::set_header::{SetResponseHeader, SetResponseHeaderLayer};

/// The file kinds a browser downloads for the app (images and fonts are compressed already).
const COMPRESSIBLE: [&str; 3] = ["wasm", "js", "css"];
/// Brotli's densest setting; a build compresses the whole site in a few seconds.
const BROTLI_QUALITY: u32 = 11;
/// A 4 MiB window: larger than any file of the site, so a file is compressed as one stream.
const BROTLI_WINDOW_BITS: u32 = 22;

/// What [`compress_dir`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Compressed {
    /// Files compressed now.
    pub written: usize,
    /// Files whose copies were already newer than the file.
    pub up_to_date: usize,
    pub bytes: u64,
    pub brotli_bytes: u64,
    pub gzip_bytes: u64,
}

/// The service for `/pkg`: the precompressed copy the request accepts, brotli first, marked
/// `Vary: Accept-Encoding` so no cache hands one browser's encoding to another.
pub fn serve_pkg(pkg: impl AsRef<Path>) -> SetResponseHeader<ServeDir, HeaderValue> {
    SetResponseHeaderLayer::appending(VARY, HeaderValue::from_static("accept-encoding")).layer(
        ServeDir::new(pkg.as_ref())
            .precompressed_br()
            .precompressed_gzip(),
    )
}

/// Write `NAME.br` and `NAME.gz` beside every script, wasm module and stylesheet directly in `dir` whose copies
/// are missing or older than it. Each copy is written to a temporary name and renamed, so a server reading the
/// directory never serves half a file.
pub fn compress_dir(dir: &Path) -> io::Result<Compressed> {
    let mut done = Compressed::default();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !is_compressible(&path) {
            continue;
        }
        if copies_are_fresh(&path)? {
            done.up_to_date += 1;
            continue;
        }
        let raw = std::fs::read(&path)?;
        let brotli = brotli(&raw)?;
        let gzip = gzip(&raw)?;
        write_beside(&path, "br", &brotli)?;
        write_beside(&path, "gz", &gzip)?;
        done.written += 1;
        done.bytes += raw.len() as u64;
        done.brotli_bytes += brotli.len() as u64;
        done.gzip_bytes += gzip.len() as u64;
    }
    Ok(done)
}

fn is_compressible(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| COMPRESSIBLE.contains(&e))
}

fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Both copies exist and neither is older than the file.
fn copies_are_fresh(path: &Path) -> io::Result<bool> {
    let modified = std::fs::metadata(path)?.modified()?;
    for suffix in ["br", "gz"] {
        match std::fs::metadata(beside(path, suffix)) {
            Ok(copy) if copy.modified()? >= modified => {}
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn brotli(raw: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len() / 3);
    {
        let mut writer =
            brotli::CompressorWriter::new(&mut out, 64 * 1024, BROTLI_QUALITY, BROTLI_WINDOW_BITS);
        writer.write_all(raw)?;
        writer.flush()?;
    }
    Ok(out)
}

fn gzip(raw: &[u8]) -> io::Result<Vec<u8>> {
    let mut writer = flate2::write::GzEncoder::new(
        Vec::with_capacity(raw.len() / 3),
        flate2::Compression::best(),
    );
    writer.write_all(raw)?;
    writer.finish()
}

fn write_beside(path: &Path, suffix: &str, bytes: &[u8]) -> io::Result<()> {
    let target = beside(path, suffix);
    let partial = beside(path, &format!("{suffix}.partial"));
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, &target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn site() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let text = "export function hydrate() { return 'walden'; }\n".repeat(200);
        std::fs::write(dir.path().join("walden.js"), &text).unwrap();
        std::fs::write(dir.path().join("walden.wasm"), text.as_bytes()).unwrap();
        std::fs::write(dir.path().join("favicon.ico"), b"\0\x01\x02").unwrap();
        dir
    }

    #[test]
    fn each_script_and_module_gets_a_brotli_and_a_gzip_copy_that_decode_to_it() {
        let dir = site();
        let done = compress_dir(dir.path()).unwrap();
        assert_eq!(done.written, 2);
        assert!(done.brotli_bytes < done.bytes / 10, "{done:?}");
        for name in ["walden.js", "walden.wasm"] {
            let raw = std::fs::read(dir.path().join(name)).unwrap();
            let br = std::fs::read(dir.path().join(format!("{name}.br"))).unwrap();
            let mut decoded = Vec::new();
            brotli::Decompressor::new(&br[..], 4096)
                .read_to_end(&mut decoded)
                .unwrap();
            assert_eq!(decoded, raw, "{name}.br");
            let gz = std::fs::read(dir.path().join(format!("{name}.gz"))).unwrap();
            let mut decoded = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut decoded)
                .unwrap();
            assert_eq!(decoded, raw, "{name}.gz");
        }
        assert!(!dir.path().join("favicon.ico.br").exists());
        assert!(
            !std::fs::read_dir(dir.path()).unwrap().any(|e| e
                .unwrap()
                .path()
                .to_string_lossy()
                .ends_with(".partial")),
            "no temporary file is left"
        );
    }

    #[test]
    fn fresh_copies_are_kept_and_a_changed_file_is_compressed_again() {
        let dir = site();
        compress_dir(dir.path()).unwrap();
        let again = compress_dir(dir.path()).unwrap();
        assert_eq!((again.written, again.up_to_date), (0, 2));

        // A rebuild writes the module anew (later than its copies).
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.path().join("walden.wasm"), b"a new build").unwrap();
        let after = compress_dir(dir.path()).unwrap();
        assert_eq!((after.written, after.up_to_date), (1, 1));
        let br = std::fs::read(dir.path().join("walden.wasm.br")).unwrap();
        let mut decoded = Vec::new();
        brotli::Decompressor::new(&br[..], 4096)
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, b"a new build");
    }
}
