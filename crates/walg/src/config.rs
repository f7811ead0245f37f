//! Storage configuration from wal-g's own environment variables or from a storage URL.

use crate::codec::LibsodiumKey;
use crate::names::{valid_segment_size, DEFAULT_SEGMENT_SIZE};
use object_store::path::Path;
use object_store::ObjectStore;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::sync::Arc;

/// A configuration problem. Messages name the variable, never its secret value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no storage configured: set one of WALG_S3_PREFIX, WALG_GS_PREFIX, WALG_AZ_PREFIX or WALG_FILE_PREFIX")]
    NoStorage,
    #[error("{var}: {problem}")]
    Invalid { var: String, problem: String },
    #[error("{0} storage is not supported by this reader (S3, GCS, Azure and local files are)")]
    Unsupported(String),
    #[error("cannot open storage {url}: {source}")]
    Open {
        url: String,
        #[source]
        source: object_store::Error,
    },
}

/// Which backend and how to reach it.
#[derive(Debug, Clone)]
pub enum Backend {
    S3 {
        bucket: String,
        endpoint: Option<String>,
        region: Option<String>,
        force_path_style: bool,
        access_key_id: Option<String>,
        secret_access_key: Option<SecretString>,
        session_token: Option<SecretString>,
    },
    Gcs {
        bucket: String,
        service_account_path: Option<String>,
    },
    Azure {
        container: String,
        account: Option<String>,
        access_key: Option<SecretString>,
        sas_token: Option<SecretString>,
    },
    File {
        path: std::path::PathBuf,
    },
}

/// Fewer retries than object_store's default (10 over 3 minutes): an unreachable bucket should be reported
/// within seconds.
fn retry() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: Default::default(),
        max_retries: 3,
        retry_timeout: std::time::Duration::from_secs(20),
    }
}

/// Everything needed to read one wal-g storage root.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub backend: Backend,
    /// Path inside the bucket (or directory) of the wal-g root, without leading or trailing `/`.
    pub root: String,
    /// WAL segment size in bytes (`WALG_PG_WAL_SIZE` is in MiB).
    pub segment_size: u64,
    /// `WALG_LIBSODIUM_KEY` (+ transform), to open `.history` files.
    pub libsodium_key: Option<LibsodiumKey>,
    /// `WALG_UPLOAD_CONCURRENCY`: how many segments `wal-push` uploads at once, so how many of the newest may
    /// still be missing while they upload (default [`crate::timeline::UPLOAD_CONCURRENCY`]).
    pub upload_concurrency: u64,
}

fn get<'a>(env: &'a HashMap<String, String>, names: &[&str]) -> Option<(&'a str, String)> {
    names.iter().find_map(|n| {
        env.get_key_value(*n)
            .map(|(k, v)| (k.as_str(), v.trim().to_string()))
            .filter(|(_, v)| !v.is_empty())
    })
}

/// `WALG_UPLOAD_CONCURRENCY` (or `UPLOAD_CONCURRENCY`: wal-g reads its settings with or without the `WALG_`
/// prefix), default 16 (`internal/config/config.go`). Below 1 means nothing for an upload pool, so it is refused.
fn upload_concurrency(env: &HashMap<String, String>) -> Result<u64, ConfigError> {
    match get(env, &["WALG_UPLOAD_CONCURRENCY", "UPLOAD_CONCURRENCY"]) {
        None => Ok(crate::timeline::UPLOAD_CONCURRENCY),
        Some((var, value)) => match value.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(invalid(
                var,
                format!("'{value}' is not a number of parallel uploads (1 or more)"),
            )),
        },
    }
}

/// wal-g settings this reader cannot honour, refused with what they mean instead of a misleading report: with a
/// customer-provided server-side key wal-g needs the key even for plain sentinels (`pkg/storages/s3/folder.go`,
/// `pkg/storages/gcs/configure.go`), so every object would be unreadable; with failover storages, backups and WAL
/// in the other storages would look like gaps and missing backups.
fn refuse_unreadable_settings(
    scheme: &str,
    env: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    let scheme = scheme.to_ascii_lowercase();
    if scheme == "s3" {
        if let Some((var, _)) = get(env, &["S3_SSE_C"]) {
            return Err(invalid(
                var,
                "the bucket uses a customer-provided encryption key (SSE-C), which this reader cannot send yet; \
                 every object would be unreadable",
            ));
        }
    }
    if scheme == "gs" || scheme == "gcs" {
        if let Some((var, _)) = get(env, &["GCS_ENCRYPTION_KEY"]) {
            return Err(invalid(
                var,
                "the bucket uses a customer-supplied encryption key (CSEK), which this reader cannot send yet; \
                 every object would be unreadable",
            ));
        }
    }
    if let Some((var, _)) = get(env, &["WALG_FAILOVER_STORAGES"]) {
        return Err(invalid(
            var,
            "failover storages are not read: backups and WAL stored there would show up as gaps and missing \
             backups. Unset it to read the primary storage alone",
        ));
    }
    Ok(())
}

/// Like [`get`], but the value as set (only an empty value counts as unset): for secrets wal-g uses verbatim.
fn get_verbatim<'a>(env: &'a HashMap<String, String>, names: &[&str]) -> Option<(&'a str, String)> {
    names.iter().find_map(|n| {
        env.get_key_value(*n)
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.as_str(), v.clone()))
    })
}

fn invalid(var: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var: var.to_string(),
        problem: problem.into(),
    }
}

fn truthy(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on" | "t"
    )
}

/// Parses a pasted block of `KEY=value` lines (`export KEY=value`, quotes, comments and blank lines allowed).
pub fn parse_env_block(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        if let Some((k, v)) = line.split_once('=') {
            let k = k.trim();
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                continue;
            }
            let v = v.trim();
            let v = if v.len() >= 2
                && ((v.starts_with('"') && v.ends_with('"'))
                    || (v.starts_with('\'') && v.ends_with('\'')))
            {
                &v[1..v.len() - 1]
            } else {
                v
            };
            out.insert(k.to_string(), v.to_string());
        }
    }
    out
}

fn join_root(path: &str, storage_prefix: Option<&str>) -> String {
    let mut parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(p) = storage_prefix {
        parts.extend(p.split('/').filter(|s| !s.is_empty()));
    }
    parts.join("/")
}

impl StorageConfig {
    /// Configuration from wal-g's variables (a pasted env block or the process environment as a map).
    /// The first `*_PREFIX` in wal-g's order wins: S3, FILE, GS, AZ (OSS, Swift and SSH are refused).
    pub fn from_env_map(env: &HashMap<String, String>) -> Result<StorageConfig, ConfigError> {
        let order: [(&str, &[&str]); 7] = [
            ("OSS", &["WALG_OSS_PREFIX", "WALE_OSS_PREFIX", "OSS_PREFIX"]),
            ("S3", &["WALG_S3_PREFIX", "WALE_S3_PREFIX", "S3_PREFIX"]),
            (
                "FILE",
                &["WALG_FILE_PREFIX", "WALE_FILE_PREFIX", "FILE_PREFIX"],
            ),
            ("GS", &["WALG_GS_PREFIX", "WALE_GS_PREFIX", "GS_PREFIX"]),
            ("AZ", &["WALG_AZ_PREFIX", "WALE_AZ_PREFIX", "AZ_PREFIX"]),
            (
                "SWIFT",
                &["WALG_SWIFT_PREFIX", "WALE_SWIFT_PREFIX", "SWIFT_PREFIX"],
            ),
            ("SSH", &["WALG_SSH_PREFIX", "WALE_SSH_PREFIX", "SSH_PREFIX"]),
        ];
        for (kind, vars) in order {
            if let Some((var, value)) = get(env, vars) {
                return match kind {
                    "S3" | "GS" | "AZ" => Self::from_url_named(&value, var, env),
                    "FILE" => {
                        let v = if value.contains("://") {
                            value.clone()
                        } else {
                            format!("file://{value}")
                        };
                        Self::from_url_named(&v, var, env)
                    }
                    other => Err(ConfigError::Unsupported(other.to_string())),
                };
            }
        }
        Err(ConfigError::NoStorage)
    }

    /// Configuration from a storage URL (`s3://bucket/prefix`, `gs://bucket/prefix`, `azure://container/prefix`,
    /// `file:///path`, or a plain path); credentials and other settings still come from `env`.
    pub fn from_url(
        url: &str,
        env: &HashMap<String, String>,
    ) -> Result<StorageConfig, ConfigError> {
        let url = url.trim();
        if !url.contains("://") {
            let abs =
                std::path::absolute(url).map_err(|e| invalid("storage URL", e.to_string()))?;
            return Self::from_url_named(&format!("file://{}", abs.display()), "storage URL", env);
        }
        Self::from_url_named(url, "storage URL", env)
    }

    fn from_url_named(
        value: &str,
        var: &str,
        env: &HashMap<String, String>,
    ) -> Result<StorageConfig, ConfigError> {
        let (scheme, rest) = value
            .split_once("://")
            .ok_or_else(|| invalid(var, format!("'{value}' is not a URL like s3://bucket/path")))?;
        refuse_unreadable_settings(scheme, env)?;
        let storage_prefix = get(env, &["WALG_STORAGE_PREFIX", "STORAGE_PREFIX"]).map(|x| x.1);
        let segment_size = match get(env, &["WALG_PG_WAL_SIZE"]) {
            None => DEFAULT_SEGMENT_SIZE,
            Some((v, s)) => {
                let mib: u64 = s
                    .parse()
                    .map_err(|_| invalid(v, format!("'{s}' is not a number of MiB")))?;
                let bytes = mib.saturating_mul(1024 * 1024);
                if !valid_segment_size(bytes) {
                    return Err(invalid(v, format!("{mib} MiB is not a WAL segment size PostgreSQL allows (a power of 2 from 1 to 1024)")));
                }
                bytes
            }
        };
        let upload_concurrency = upload_concurrency(env)?;
        // wal-g uses an inline key verbatim (viper.GetString) and trims only a key file (strings.TrimSpace).
        let libsodium_key = match get_verbatim(env, &["WALG_LIBSODIUM_KEY", "LIBSODIUM_KEY"]) {
            Some((v, key)) => {
                let transform = get(
                    env,
                    &["WALG_LIBSODIUM_KEY_TRANSFORM", "LIBSODIUM_KEY_TRANSFORM"],
                )
                .map(|x| x.1);
                Some(
                    LibsodiumKey::from_setting(&key, transform.as_deref())
                        .map_err(|e| invalid(v, e.to_string()))?,
                )
            }
            None => match get(env, &["WALG_LIBSODIUM_KEY_PATH", "LIBSODIUM_KEY_PATH"]) {
                Some((v, path)) => {
                    let key = zeroize::Zeroizing::new(
                        std::fs::read_to_string(&path)
                            .map_err(|e| invalid(v, format!("cannot read {path}: {e}")))?,
                    );
                    let transform = get(
                        env,
                        &["WALG_LIBSODIUM_KEY_TRANSFORM", "LIBSODIUM_KEY_TRANSFORM"],
                    )
                    .map(|x| x.1);
                    Some(
                        LibsodiumKey::from_setting(key.trim(), transform.as_deref())
                            .map_err(|e| invalid(v, e.to_string()))?,
                    )
                }
                None => None,
            },
        };
        let (bucket, path) = match rest.split_once('/') {
            Some((b, p)) => (b.to_string(), p.to_string()),
            None => (rest.to_string(), String::new()),
        };
        let backend = match scheme.to_ascii_lowercase().as_str() {
            "s3" => {
                if bucket.is_empty() {
                    return Err(invalid(var, "the S3 URL has no bucket"));
                }
                Backend::S3 {
                    bucket: bucket.clone(),
                    endpoint: get(
                        env,
                        &[
                            "AWS_ENDPOINT",
                            "WALG_S3_ENDPOINT",
                            "AWS_ENDPOINT_URL_S3",
                            "AWS_ENDPOINT_URL",
                        ],
                    )
                    .map(|x| x.1),
                    region: get(env, &["AWS_REGION", "AWS_DEFAULT_REGION"]).map(|x| x.1),
                    force_path_style: get(env, &["AWS_S3_FORCE_PATH_STYLE"])
                        .map(|x| truthy(&x.1))
                        .unwrap_or(false),
                    access_key_id: get(env, &["AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY"]).map(|x| x.1),
                    secret_access_key: get(env, &["AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY"])
                        .map(|x| SecretString::from(x.1)),
                    session_token: get(env, &["AWS_SESSION_TOKEN"])
                        .map(|x| SecretString::from(x.1)),
                }
            }
            "gs" => {
                if bucket.is_empty() {
                    return Err(invalid(var, "the GCS URL has no bucket"));
                }
                Backend::Gcs {
                    bucket: bucket.clone(),
                    service_account_path: get(env, &["GOOGLE_APPLICATION_CREDENTIALS"])
                        .map(|x| x.1),
                }
            }
            "azure" | "az" => {
                if bucket.is_empty() {
                    return Err(invalid(var, "the Azure URL has no container"));
                }
                Backend::Azure {
                    container: bucket.clone(),
                    account: get(env, &["AZURE_STORAGE_ACCOUNT"]).map(|x| x.1),
                    access_key: get(env, &["AZURE_STORAGE_ACCESS_KEY", "AZURE_STORAGE_KEY"])
                        .map(|x| SecretString::from(x.1)),
                    sas_token: get(env, &["AZURE_STORAGE_SAS_TOKEN"])
                        .map(|x| SecretString::from(x.1)),
                }
            }
            "file" => {
                // file:///path, file://localhost/path (WAL-E) or file://relative
                let p = rest.strip_prefix("localhost").unwrap_or(rest);
                let p = if p.is_empty() { "/" } else { p };
                let path = std::path::PathBuf::from(p);
                let root = join_root("", storage_prefix.as_deref());
                return Ok(StorageConfig {
                    backend: Backend::File { path },
                    root,
                    segment_size,
                    libsodium_key,
                    upload_concurrency,
                });
            }
            "oss" | "swift" | "ssh" => {
                return Err(ConfigError::Unsupported(scheme.to_ascii_uppercase()))
            }
            other => return Err(invalid(var, format!("unknown storage scheme '{other}://'"))),
        };
        Ok(StorageConfig {
            backend,
            root: join_root(&path, storage_prefix.as_deref()),
            segment_size,
            libsodium_key,
            upload_concurrency,
        })
    }

    /// The storage location as a URL without credentials (for messages and logs).
    pub fn display_url(&self) -> String {
        let (scheme, bucket) = match &self.backend {
            Backend::S3 { bucket, .. } => ("s3", bucket.clone()),
            Backend::Gcs { bucket, .. } => ("gs", bucket.clone()),
            Backend::Azure { container, .. } => ("azure", container.clone()),
            Backend::File { path } => (
                "file",
                path.display().to_string().trim_end_matches('/').to_string(),
            ),
        };
        if self.root.is_empty() {
            format!("{scheme}://{bucket}")
        } else {
            format!("{scheme}://{bucket}/{}", self.root)
        }
    }

    /// The root as an object_store path.
    pub fn root_path(&self) -> Path {
        Path::from(self.root.as_str())
    }

    /// Whether the S3 region must be detected the way wal-g does (`pkg/storages/s3/session.go#detectAWSRegion`):
    /// no `AWS_REGION` and an empty endpoint or one ending in `.amazonaws.com`. Other S3-compatible endpoints
    /// (MinIO, Ceph, ...) use `us-east-1`, as wal-g does.
    pub fn needs_region_detection(&self) -> bool {
        match &self.backend {
            Backend::S3 {
                region: None,
                endpoint,
                ..
            } => endpoint.as_deref().is_none_or(|e| {
                e.trim_end_matches('/').ends_with(".amazonaws.com") || e.trim().is_empty()
            }),
            _ => false,
        }
    }

    /// Detects the AWS bucket's region when [`StorageConfig::needs_region_detection`], as wal-g does with
    /// GetBucketLocation (here S3's HeadBucket `x-amz-bucket-region`, via object_store); otherwise a no-op.
    /// Without it, a bucket outside `us-east-1` answers every request with a redirect the client does not follow.
    pub async fn detect_region(&mut self) -> Result<(), ConfigError> {
        if !self.needs_region_detection() {
            return Ok(());
        }
        let url = self.display_url();
        if let Backend::S3 { bucket, region, .. } = &mut self.backend {
            let options =
                object_store::ClientOptions::new().with_timeout(std::time::Duration::from_secs(20));
            let found = object_store::aws::resolve_bucket_region(bucket, &options)
                .await
                .map_err(|source| ConfigError::Open { url, source })?;
            *region = Some(found);
        }
        Ok(())
    }

    /// Builds the object store client (an S3 bucket without a region and without
    /// [`StorageConfig::detect_region`] is taken to be in `us-east-1`).
    pub fn build_store(&self) -> Result<Arc<dyn ObjectStore>, ConfigError> {
        let url = self.display_url();
        let open = |source| ConfigError::Open {
            url: url.clone(),
            source,
        };
        match &self.backend {
            Backend::File { path } => {
                let fs =
                    object_store::local::LocalFileSystem::new_with_prefix(path).map_err(open)?;
                Ok(Arc::new(fs))
            }
            Backend::S3 {
                bucket,
                endpoint,
                region,
                force_path_style,
                access_key_id,
                secret_access_key,
                session_token,
            } => {
                use object_store::aws::AmazonS3Builder;
                let mut b = AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(region.clone().unwrap_or_else(|| "us-east-1".to_string()))
                    .with_retry(retry());
                if let Some(ep) = endpoint {
                    let ep = if ep.contains("://") {
                        ep.clone()
                    } else {
                        format!("https://{ep}")
                    };
                    b = b.with_allow_http(ep.starts_with("http://"));
                    if *force_path_style {
                        b = b.with_endpoint(ep.trim_end_matches('/'));
                    } else {
                        // wal-g (AWS SDK) uses virtual-hosted style: https://<bucket>.<endpoint host>
                        let (scheme, host) = ep.split_once("://").unwrap_or(("https", ep.as_str()));
                        b = b
                            .with_endpoint(format!(
                                "{scheme}://{bucket}.{}",
                                host.trim_end_matches('/')
                            ))
                            .with_virtual_hosted_style_request(true);
                    }
                }
                if let Some(k) = access_key_id {
                    b = b.with_access_key_id(k);
                }
                if let Some(s) = secret_access_key {
                    b = b.with_secret_access_key(s.expose_secret());
                }
                if let Some(t) = session_token {
                    b = b.with_token(t.expose_secret());
                }
                Ok(Arc::new(b.build().map_err(open)?))
            }
            Backend::Gcs {
                bucket,
                service_account_path,
            } => {
                use object_store::gcp::GoogleCloudStorageBuilder;
                let mut b = GoogleCloudStorageBuilder::new()
                    .with_bucket_name(bucket)
                    .with_retry(retry());
                if let Some(p) = service_account_path {
                    b = b.with_service_account_path(p);
                }
                Ok(Arc::new(b.build().map_err(open)?))
            }
            Backend::Azure {
                container,
                account,
                access_key,
                sas_token,
            } => {
                use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
                let mut b = MicrosoftAzureBuilder::new()
                    .with_container_name(container)
                    .with_retry(retry());
                if let Some(a) = account {
                    b = b.with_account(a);
                }
                if let Some(k) = access_key {
                    b = b.with_access_key(k.expose_secret());
                }
                if let Some(s) = sas_token {
                    b = b.with_config(
                        AzureConfigKey::SasKey,
                        s.expose_secret().trim_start_matches('?'),
                    );
                }
                Ok(Arc::new(b.build().map_err(open)?))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn s3_from_env_block() {
        let e = parse_env_block(
            "# wal-g\nexport WALG_S3_PREFIX='s3://my-bucket/pg/cluster1/'\nAWS_ACCESS_KEY_ID=AKIA123\nAWS_SECRET_ACCESS_KEY=\"s3cr3t-value\"\nAWS_ENDPOINT=https://fly.storage.tigris.dev\nAWS_REGION=auto\nAWS_S3_FORCE_PATH_STYLE=true\nWALG_STORAGE_PREFIX=/extra\nWALG_PG_WAL_SIZE=64\n",
        );
        let c = StorageConfig::from_env_map(&e).unwrap();
        assert_eq!(c.root, "pg/cluster1/extra");
        assert_eq!(c.segment_size, 64 << 20);
        match &c.backend {
            Backend::S3 {
                bucket,
                endpoint,
                region,
                force_path_style,
                access_key_id,
                ..
            } => {
                assert_eq!(bucket, "my-bucket");
                assert_eq!(endpoint.as_deref(), Some("https://fly.storage.tigris.dev"));
                assert_eq!(region.as_deref(), Some("auto"));
                assert!(*force_path_style);
                assert_eq!(access_key_id.as_deref(), Some("AKIA123"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.display_url(), "s3://my-bucket/pg/cluster1/extra");
        assert!(!format!("{c:?}").contains("s3cr3t-value"));
        assert!(c.build_store().is_ok());
    }

    #[test]
    fn prefix_order_and_errors() {
        let e = env(&[
            ("WALG_GS_PREFIX", "gs://g/p"),
            ("WALG_S3_PREFIX", "s3://b/x"),
        ]);
        assert!(matches!(
            StorageConfig::from_env_map(&e).unwrap().backend,
            Backend::S3 { .. }
        ));
        assert!(matches!(
            StorageConfig::from_env_map(&env(&[])),
            Err(ConfigError::NoStorage)
        ));
        let e = env(&[("WALG_SSH_PREFIX", "ssh://h/p")]);
        assert!(matches!(
            StorageConfig::from_env_map(&e),
            Err(ConfigError::Unsupported(_))
        ));
        let e = env(&[("WALG_S3_PREFIX", "s3://b/x"), ("WALG_PG_WAL_SIZE", "15")]);
        let err = StorageConfig::from_env_map(&e).unwrap_err().to_string();
        assert!(err.contains("WALG_PG_WAL_SIZE"), "{err}");
        let e = env(&[
            ("WALG_S3_PREFIX", "s3://b/x"),
            ("WALG_LIBSODIUM_KEY", "tooshort-secret"),
        ]);
        let err = StorageConfig::from_env_map(&e).unwrap_err().to_string();
        assert!(
            err.contains("WALG_LIBSODIUM_KEY") && !err.contains("tooshort-secret"),
            "{err}"
        );
        let e = env(&[("WALG_S3_PREFIX", "bucket-without-scheme")]);
        assert!(StorageConfig::from_env_map(&e).is_err());
    }

    #[test]
    fn file_gcs_azure() {
        let e = env(&[("WALG_FILE_PREFIX", "file://localhost/tmp/walg")]);
        let c = StorageConfig::from_env_map(&e).unwrap();
        assert!(
            matches!(&c.backend, Backend::File { path } if path == std::path::Path::new("/tmp/walg"))
        );
        let c = StorageConfig::from_env_map(&env(&[("WALG_FILE_PREFIX", "/var/backups")])).unwrap();
        assert!(
            matches!(&c.backend, Backend::File { path } if path == std::path::Path::new("/var/backups"))
        );
        let c = StorageConfig::from_url("gs://bkt/a/b", &HashMap::new()).unwrap();
        assert!(matches!(&c.backend, Backend::Gcs { bucket, .. } if bucket == "bkt"));
        assert_eq!(c.root, "a/b");
        let c =
            StorageConfig::from_url("azure://cont/p", &env(&[("AZURE_STORAGE_ACCOUNT", "acct")]))
                .unwrap();
        assert!(matches!(&c.backend, Backend::Azure { container, .. } if container == "cont"));
        assert!(StorageConfig::from_url("ftp://x/y", &HashMap::new()).is_err());
    }

    #[test]
    fn missing_directory_is_a_clear_error() {
        let c =
            StorageConfig::from_url("file:///definitely/not/here/walg", &HashMap::new()).unwrap();
        let err = c
            .build_store()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("file:///definitely/not/here/walg"), "{err}");
    }

    /// `WALG_UPLOAD_CONCURRENCY` (or the unprefixed name wal-g also reads) sets how many of the newest segments
    /// may still be uploading; the reader hands it to the analysis.
    #[test]
    fn upload_concurrency_is_read_and_checked() {
        let base = ("WALG_FILE_PREFIX", "/tmp/walg");
        let read = |extra: &[(&str, &str)]| {
            let mut all = vec![base];
            all.extend_from_slice(extra);
            StorageConfig::from_env_map(&env(&all))
        };
        assert_eq!(
            read(&[]).unwrap().upload_concurrency,
            crate::timeline::UPLOAD_CONCURRENCY
        );
        assert_eq!(
            read(&[("WALG_UPLOAD_CONCURRENCY", "4")])
                .unwrap()
                .upload_concurrency,
            4
        );
        assert_eq!(
            read(&[("UPLOAD_CONCURRENCY", "2")])
                .unwrap()
                .upload_concurrency,
            2
        );
        for bad in ["0", "-3", "many"] {
            let err = read(&[("WALG_UPLOAD_CONCURRENCY", bad)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("WALG_UPLOAD_CONCURRENCY"), "{err}");
        }
        let dir = std::env::temp_dir();
        let mut config = read(&[("WALG_UPLOAD_CONCURRENCY", "3")]).unwrap();
        config.backend = Backend::File { path: dir };
        let reader = crate::Reader::new(&config).unwrap();
        assert_eq!(reader.timeline_options().upload_concurrency, 3);
    }

    /// wal-g uses `WALG_LIBSODIUM_KEY` verbatim (`configure_crypter_libsodium.go`: `viper.GetString`, then
    /// `keyTransform`) and trims a key file with `strings.TrimSpace` (`internal/crypto/libsodium/crypter.go`).
    #[test]
    fn libsodium_key_whitespace_is_handled_as_wal_g_does() {
        let opens = |config: &StorageConfig, sealed: &[u8]| {
            config
                .libsodium_key
                .as_ref()
                .is_some_and(|key| crate::codec::decrypt(sealed, key).is_ok())
        };
        // An inline key ending in a space: the space is part of the key bytes.
        let inline = "a key with a trailing space ";
        let written = LibsodiumKey::from_setting(inline, None).unwrap();
        let sealed =
            crate::codec::encrypt(b"1\t0/3000000\tno recovery target specified\n", &written)
                .unwrap();
        let config = StorageConfig::from_env_map(&env(&[
            ("WALG_S3_PREFIX", "s3://b/x"),
            ("WALG_LIBSODIUM_KEY", inline),
        ]))
        .unwrap();
        assert!(opens(&config, &sealed));
        // A key file with leading spaces and a trailing newline: trimmed to the key wal-g uses.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "   a key read from a file, padded\n").unwrap();
        let written = LibsodiumKey::from_setting("a key read from a file, padded", None).unwrap();
        let sealed = crate::codec::encrypt(b"history", &written).unwrap();
        let config = StorageConfig::from_env_map(&env(&[
            ("WALG_S3_PREFIX", "s3://b/x"),
            ("WALG_LIBSODIUM_KEY_PATH", path.to_str().unwrap()),
        ]))
        .unwrap();
        assert!(opens(&config, &sealed));
    }

    /// wal-g sends `S3_SSE_C` / `GCS_ENCRYPTION_KEY` with every read and also lists `WALG_FAILOVER_STORAGES`; this
    /// reader does neither, so it refuses them by name (never printing the key).
    #[test]
    fn server_side_customer_keys_and_failover_storages_are_refused_clearly() {
        for (prefix, var) in [
            (("WALG_S3_PREFIX", "s3://b/x"), "S3_SSE_C"),
            (("WALG_GS_PREFIX", "gs://b/x"), "GCS_ENCRYPTION_KEY"),
            (("WALG_FILE_PREFIX", "/tmp/walg"), "WALG_FAILOVER_STORAGES"),
        ] {
            let err =
                StorageConfig::from_env_map(&env(&[prefix, (var, "c2VjcmV0LWtleS12YWx1ZQ==")]))
                    .unwrap_err()
                    .to_string();
            assert!(err.starts_with(var), "{err}");
            assert!(!err.contains("c2VjcmV0"), "{err}");
        }
        // SSE-C is an S3 setting: a GCS bucket is not refused for it.
        assert!(StorageConfig::from_env_map(&env(&[
            ("WALG_GS_PREFIX", "gs://b/x"),
            ("S3_SSE_C", "k")
        ]))
        .is_ok());
    }

    /// wal-g detects the region only for AWS itself (`detectAWSRegion`: no region, and no endpoint or an
    /// `*.amazonaws.com` one); S3-compatible endpoints get `us-east-1`.
    #[test]
    fn region_detection_follows_wal_g() {
        let needs = |pairs: &[(&str, &str)]| {
            let mut all = vec![("WALG_S3_PREFIX", "s3://b/x")];
            all.extend_from_slice(pairs);
            StorageConfig::from_env_map(&env(&all))
                .unwrap()
                .needs_region_detection()
        };
        assert!(needs(&[]));
        assert!(needs(&[(
            "AWS_ENDPOINT",
            "https://s3.eu-west-1.amazonaws.com"
        )]));
        assert!(!needs(&[("AWS_REGION", "eu-west-1")]));
        assert!(!needs(&[("AWS_ENDPOINT", "http://127.0.0.1:9000")]));
        let file = StorageConfig::from_env_map(&env(&[("WALG_FILE_PREFIX", "/tmp/walg")])).unwrap();
        assert!(!file.needs_region_detection());
    }
}
