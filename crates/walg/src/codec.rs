//! Decompression for every extension wal-g writes or reads, and libsodium decryption.
//!
//! wal-g's pipeline is `data → compress → encrypt → storage`, so reading is decrypt, then decompress.

use crate::names::Compression;
use std::io::{Read, Write};
use zeroize::{Zeroize, Zeroizing};

/// Output limit for one decompressed object (history and backup-history files are tiny; this stops bombs).
pub const MAX_DECOMPRESSED: u64 = 256 * 1024 * 1024;

/// libsodium secretstream chunk size used by wal-g (plaintext bytes per chunk).
pub const SODIUM_CHUNK: usize = 8192;
const HEADER_BYTES: usize = 24;
const ABYTES: usize = 17;
const KEY_BYTES: usize = 32;
const MIN_KEY_LEN_NONE: usize = 25;

/// A decoding failure. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("{0} decompression failed: {1}")]
    Decompress(&'static str, String),
    #[error("{0} objects cannot be decompressed by this reader")]
    Unsupported(&'static str),
    #[error("decompressed size exceeds {MAX_DECOMPRESSED} bytes")]
    TooLarge,
    #[error("decryption failed: {0}")]
    Decrypt(&'static str),
    #[error("invalid libsodium key: {0}")]
    Key(String),
}

fn name(c: Compression) -> &'static str {
    match c {
        Compression::Lz4 => "lz4",
        Compression::Lzma => "lzma",
        Compression::Zstd => "zstd",
        Compression::Brotli => "brotli",
        Compression::Gzip => "gzip",
        Compression::Lzo => "lzo",
        Compression::None | Compression::LegacyDot => "none",
    }
}

fn read_limited(r: impl Read, c: Compression) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    r.take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)
        .map_err(|e| CodecError::Decompress(name(c), e.to_string()))?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(CodecError::TooLarge);
    }
    Ok(out)
}

/// Decompresses `data` according to the compression its name showed. A panic inside a third-party decoder on
/// hostile input is turned into an error.
pub fn decompress(data: &[u8], c: Compression) -> Result<Vec<u8>, CodecError> {
    std::panic::catch_unwind(|| decompress_inner(data, c)).unwrap_or_else(|_| {
        Err(CodecError::Decompress(
            name(c),
            "the decoder failed on malformed input".into(),
        ))
    })
}

fn decompress_inner(data: &[u8], c: Compression) -> Result<Vec<u8>, CodecError> {
    match c {
        Compression::None | Compression::LegacyDot => Ok(data.to_vec()),
        Compression::Lz4 => read_limited(lz4_flex::frame::FrameDecoder::new(data), c),
        Compression::Zstd => {
            let dec = zstd::stream::read::Decoder::new(data)
                .map_err(|e| CodecError::Decompress("zstd", e.to_string()))?;
            read_limited(dec, c)
        }
        Compression::Brotli => read_limited(brotli::Decompressor::new(data, 4096), c),
        Compression::Gzip => read_limited(flate2::read::MultiGzDecoder::new(data), c),
        Compression::Lzma => {
            let mut out = Vec::new();
            let mut input = std::io::BufReader::new(data);
            let opts = lzma_rs::decompress::Options {
                memlimit: Some(MAX_DECOMPRESSED as usize),
                ..Default::default()
            };
            lzma_rs::lzma_decompress_with_options(&mut input, &mut out, &opts)
                .map_err(|e| CodecError::Decompress("lzma", e.to_string()))?;
            if out.len() as u64 > MAX_DECOMPRESSED {
                return Err(CodecError::TooLarge);
            }
            Ok(out)
        }
        Compression::Lzo => Err(CodecError::Unsupported("lzo")),
    }
}

/// Compresses `data` the way wal-g would (used by the test kit and by tools that write sample buckets).
pub fn compress(data: &[u8], c: Compression) -> Result<Vec<u8>, CodecError> {
    let err = |e: std::io::Error| CodecError::Decompress(name(c), e.to_string());
    match c {
        Compression::None | Compression::LegacyDot => Ok(data.to_vec()),
        Compression::Lz4 => {
            let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
            enc.write_all(data).map_err(err)?;
            enc.finish()
                .map_err(|e| CodecError::Decompress("lz4", e.to_string()))
        }
        Compression::Zstd => zstd::stream::encode_all(data, 3).map_err(err),
        Compression::Brotli => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 3, 22);
                w.write_all(data).map_err(err)?;
                w.flush().map_err(err)?;
            }
            Ok(out)
        }
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(data).map_err(err)?;
            enc.finish().map_err(err)
        }
        Compression::Lzma => {
            let mut out = Vec::new();
            lzma_rs::lzma_compress(&mut std::io::BufReader::new(data), &mut out).map_err(err)?;
            Ok(out)
        }
        Compression::Lzo => Err(CodecError::Unsupported("lzo")),
    }
}

/// A 32-byte libsodium key, zeroed on drop and never printed.
#[derive(Clone)]
pub struct LibsodiumKey(Zeroizing<[u8; KEY_BYTES]>);

impl std::fmt::Debug for LibsodiumKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LibsodiumKey(<redacted>)")
    }
}

impl LibsodiumKey {
    /// Builds the key the way wal-g does from `WALG_LIBSODIUM_KEY` and `WALG_LIBSODIUM_KEY_TRANSFORM`
    /// (`none` (default): the string's bytes, at least 25, truncated or zero-padded to 32; `hex`; `base64`).
    /// The value is used verbatim, whitespace included, as wal-g's `keyTransform` does
    /// (`internal/crypto/libsodium/keytransform.go`); a key file is trimmed by the caller (wal-g's
    /// `strings.TrimSpace` in `crypter.go`).
    pub fn from_setting(value: &str, transform: Option<&str>) -> Result<LibsodiumKey, CodecError> {
        let mut bytes: Zeroizing<Vec<u8>> = match transform.unwrap_or("none").trim() {
            "" | "none" => {
                if value.len() < MIN_KEY_LEN_NONE {
                    return Err(CodecError::Key(format!(
                        "key is too short ({} bytes, at least {MIN_KEY_LEN_NONE} needed)",
                        value.len()
                    )));
                }
                let mut b = value.as_bytes().to_vec();
                b.resize(KEY_BYTES, 0);
                Zeroizing::new(b)
            }
            "hex" => Zeroizing::new(
                decode_hex(value)
                    .ok_or_else(|| CodecError::Key("WALG_LIBSODIUM_KEY is not valid hex".into()))?,
            ),
            "base64" => {
                use base64::Engine;
                Zeroizing::new(
                    base64::engine::general_purpose::STANDARD
                        .decode(value)
                        .map_err(|_| {
                            CodecError::Key("WALG_LIBSODIUM_KEY is not valid base64".into())
                        })?,
                )
            }
            other => {
                return Err(CodecError::Key(format!(
                    "unknown WALG_LIBSODIUM_KEY_TRANSFORM '{other}' (must be base64, hex or none)"
                )))
            }
        };
        if bytes.len() != KEY_BYTES {
            let n = bytes.len();
            bytes.zeroize();
            return Err(CodecError::Key(format!(
                "key must be exactly 32 bytes (got {n})"
            )));
        }
        let mut k = Zeroizing::new([0u8; KEY_BYTES]);
        k.copy_from_slice(&bytes);
        Ok(LibsodiumKey(k))
    }

    /// A key from raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> LibsodiumKey {
        LibsodiumKey(Zeroizing::new(bytes))
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Decrypts a wal-g libsodium stream (`crypto_secretstream_xchacha20poly1305`: 24-byte header, then chunks of
/// up to 8192 plaintext bytes + 17, the last tagged FINAL).
pub fn decrypt(data: &[u8], key: &LibsodiumKey) -> Result<Vec<u8>, CodecError> {
    use dryoc::dryocstream::{DryocStream, Tag};
    if data.len() < HEADER_BYTES + ABYTES {
        return Err(CodecError::Decrypt(
            "object is too short to be libsodium-encrypted",
        ));
    }
    let mut header = [0u8; HEADER_BYTES];
    header.copy_from_slice(&data[..HEADER_BYTES]);
    let mut stream = DryocStream::init_pull(&*key.0, &header);
    let mut out = Vec::with_capacity(data.len());
    let mut rest = &data[HEADER_BYTES..];
    let mut finished = false;
    while !rest.is_empty() {
        if finished {
            return Err(CodecError::Decrypt("data after the final chunk"));
        }
        let n = rest.len().min(SODIUM_CHUNK + ABYTES);
        if n < ABYTES {
            return Err(CodecError::Decrypt("truncated chunk"));
        }
        let (chunk, r) = rest.split_at(n);
        rest = r;
        let (plain, tag): (Vec<u8>, Tag) = stream.pull_to_vec(&chunk, None).map_err(|_| {
            CodecError::Decrypt("authentication failed (wrong key or corrupt object)")
        })?;
        out.extend_from_slice(&plain);
        if tag == Tag::FINAL {
            finished = true;
        }
    }
    if !finished {
        return Err(CodecError::Decrypt(
            "stream ended without its final chunk (truncated)",
        ));
    }
    Ok(out)
}

/// Encrypts like wal-g's libsodium writer (for the test kit).
pub fn encrypt(data: &[u8], key: &LibsodiumKey) -> Result<Vec<u8>, CodecError> {
    use dryoc::dryocstream::{DryocStream, Tag};
    let (mut stream, header): (_, [u8; HEADER_BYTES]) = DryocStream::init_push(&*key.0);
    let mut out = header.to_vec();
    let chunks: Vec<&[u8]> = data.chunks(SODIUM_CHUNK).collect();
    // wal-g pushes full chunks as MESSAGE and the remainder (possibly empty) as FINAL on close.
    let full = if data.len().is_multiple_of(SODIUM_CHUNK) {
        chunks.len()
    } else {
        chunks.len().saturating_sub(1)
    };
    for c in &chunks[..full] {
        let ct = stream
            .push_to_vec(c, None, Tag::MESSAGE)
            .map_err(|_| CodecError::Decrypt("encryption failed"))?;
        out.extend_from_slice(&ct);
    }
    let last: &[u8] = if full < chunks.len() {
        chunks[full]
    } else {
        &[]
    };
    let ct = stream
        .push_to_vec(&last, None, Tag::FINAL)
        .map_err(|_| CodecError::Decrypt("encryption failed"))?;
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Decrypt (when a key is given), then decompress.
pub fn decode(
    data: &[u8],
    c: Compression,
    key: Option<&LibsodiumKey>,
) -> Result<Vec<u8>, CodecError> {
    match key {
        Some(k) => decompress(&decrypt(data, k)?, c),
        None => decompress(data, c),
    }
}

/// Compress, then encrypt (when a key is given).
pub fn encode(
    data: &[u8],
    c: Compression,
    key: Option<&LibsodiumKey>,
) -> Result<Vec<u8>, CodecError> {
    let z = compress(data, c)?;
    match key {
        Some(k) => encrypt(&z, k),
        None => Ok(z),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 7] = [
        Compression::Lz4,
        Compression::Lzma,
        Compression::Zstd,
        Compression::Brotli,
        Compression::Gzip,
        Compression::None,
        Compression::LegacyDot,
    ];

    fn key() -> LibsodiumKey {
        LibsodiumKey::from_setting("this is a long enough passphrase", None).unwrap()
    }

    #[test]
    fn every_compression_round_trips() {
        let data = b"1\t0/90400000\tbefore 2000-01-01 05:00:00+05\n\n".repeat(50);
        for c in ALL {
            let z = compress(&data, c).unwrap();
            assert_eq!(decompress(&z, c).unwrap(), data, "{c:?}");
        }
        assert!(matches!(
            decompress(b"x", Compression::Lzo),
            Err(CodecError::Unsupported(_))
        ));
    }

    #[test]
    fn known_formats_are_the_real_ones() {
        // lz4 frame magic, zstd magic, gzip magic, lzma-alone props byte 0x5D.
        assert_eq!(
            &compress(b"x", Compression::Lz4).unwrap()[..4],
            &[0x04, 0x22, 0x4D, 0x18]
        );
        assert_eq!(
            &compress(b"x", Compression::Zstd).unwrap()[..4],
            &[0x28, 0xB5, 0x2F, 0xFD]
        );
        assert_eq!(
            &compress(b"x", Compression::Gzip).unwrap()[..2],
            &[0x1F, 0x8B]
        );
        assert_eq!(compress(b"x", Compression::Lzma).unwrap()[0], 0x5D);
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        for c in ALL {
            if matches!(c, Compression::None | Compression::LegacyDot) {
                continue;
            }
            let mut z = compress(b"hello hello hello hello", c).unwrap();
            z.truncate(z.len() / 2);
            let _ = decompress(&z, c); // must not panic; brotli/lz4 may detect truncation late
            assert!(decompress(b"\x00\x01garbage garbage", c).is_err(), "{c:?}");
        }
    }

    #[test]
    fn libsodium_round_trip_and_chunking() {
        let k = key();
        for len in [0usize, 1, 8191, 8192, 8193, 20000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let e = encrypt(&data, &k).unwrap();
            let chunks = len / SODIUM_CHUNK + 1;
            assert_eq!(e.len(), HEADER_BYTES + len + chunks * ABYTES, "len {len}");
            assert_eq!(decrypt(&e, &k).unwrap(), data);
        }
    }

    #[test]
    fn libsodium_wrong_key_and_truncation() {
        let e = encrypt(&vec![7u8; 20000], &key()).unwrap();
        let other = LibsodiumKey::from_setting("another key that is long enough", None).unwrap();
        assert!(matches!(decrypt(&e, &other), Err(CodecError::Decrypt(_))));
        assert!(decrypt(&e[..e.len() - 1], &key()).is_err());
        assert!(decrypt(&e[..HEADER_BYTES + SODIUM_CHUNK + ABYTES], &key()).is_err());
        assert!(decrypt(&e[..10], &key()).is_err());
        assert!(decrypt(b"", &key()).is_err());
    }

    #[test]
    fn key_transforms() {
        assert!(LibsodiumKey::from_setting("short", None).is_err());
        let hex = "00".repeat(32);
        assert!(LibsodiumKey::from_setting(&hex, Some("hex")).is_ok());
        assert!(LibsodiumKey::from_setting("0011", Some("hex")).is_err());
        let b64 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        assert!(LibsodiumKey::from_setting(b64, Some("base64")).is_ok());
        let err =
            LibsodiumKey::from_setting("secret-value-123456789012345", Some("rot13")).unwrap_err();
        assert!(!err.to_string().contains("secret-value"));
        // truncation to 32 bytes: two keys sharing the first 32 bytes are equal
        let a = LibsodiumKey::from_setting(&"k".repeat(40), None).unwrap();
        let b = LibsodiumKey::from_setting(&"k".repeat(33), None).unwrap();
        let e = encrypt(b"x", &a).unwrap();
        assert_eq!(decrypt(&e, &b).unwrap(), b"x");
        assert_eq!(format!("{a:?}"), "LibsodiumKey(<redacted>)");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            for c in ALL {
                let _ = decompress(&data, c);
            }
            let _ = decrypt(&data, &key());
        }
    }

    #[test]
    fn decode_is_decrypt_then_decompress() {
        let data = b"2\tB/10000000\tno recovery target specified\n";
        let e = encode(data, Compression::Zstd, Some(&key())).unwrap();
        assert_eq!(decode(&e, Compression::Zstd, Some(&key())).unwrap(), data);
        assert!(decode(&e, Compression::Zstd, None).is_err());
    }
}
