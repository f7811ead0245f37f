//! The bundle over HTTP: `walden assets compress` writes the copies, and `/pkg` serves the brotli one to a
//! browser that accepts it, else the gzip one, else the file as built, always with the file's own content type
//! (a wasm module must come as `application/wasm` for streaming compilation).

use std::io::Read;

use crate::helpers::spawn_app_with;

#[tokio::test]
async fn the_bundle_is_served_precompressed_as_the_browser_accepts() {
    let site = tempfile::tempdir().unwrap();
    let pkg = site.path().join("pkg");
    std::fs::create_dir(&pkg).unwrap();
    let module: Vec<u8> = b"\0asm\x01\0\0\0walden"
        .iter()
        .cycle()
        .take(64 * 1024)
        .copied()
        .collect();
    std::fs::write(pkg.join("walden.wasm"), &module).unwrap();
    walden::assets::compress_dir(&pkg).unwrap();
    let root = site.path().to_path_buf();
    let app = spawn_app_with(move |args| args.site_root = root).await;

    for (accepts, served) in [
        (Some("gzip, deflate, br, zstd"), Some("br")),
        (Some("gzip, deflate"), Some("gzip")),
        (None, None),
    ] {
        let mut request = app.client.get(app.url("/pkg/walden.wasm"));
        if let Some(accepts) = accepts {
            request = request.header("accept-encoding", accepts);
        }
        let res = request.send().await.unwrap();
        assert_eq!(res.status(), 200, "{accepts:?}");
        let header = |name: &str| {
            res.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(header("content-type").as_deref(), Some("application/wasm"));
        assert_eq!(header("content-encoding").as_deref(), served, "{accepts:?}");
        assert_eq!(header("vary").as_deref(), Some("accept-encoding"));
        let body = res.bytes().await.unwrap();
        let mut decoded = Vec::new();
        match served {
            Some("br") => {
                brotli::Decompressor::new(&body[..], 4096)
                    .read_to_end(&mut decoded)
                    .unwrap();
            }
            Some("gzip") => {
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut decoded)
                    .unwrap();
            }
            _ => decoded = body.to_vec(),
        }
        assert_eq!(decoded, module, "{accepts:?}: the module as built");
        if served.is_some() {
            assert!(body.len() < module.len() / 10, "{accepts:?}: compressed");
        }
    }
    app.stop().await;
}
