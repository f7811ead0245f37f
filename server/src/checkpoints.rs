//! Setting up signed audit checkpoints (security review H1): which key signs, which sink receives them.
//! The format, the writer and the verifier are in `walden_core::audit_checkpoints`; the worker that writes
//! them is in [`crate::jobs`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use walden_core::audit_checkpoints::{CheckpointKey, Checkpointer, Sink};
use walden_core::keyring::Keyring;

use crate::config::{CheckpointArgs, ServeArgs};

/// Where the signing key came from (logged at start-up, so an operator knows which public key to keep).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `WALDEN_AUDIT_SIGNING_KEY` or its file: a secret of its own (recommended).
    Configured,
    /// Derived from the master key (`walden/audit-checkpoint-signing-key/v1`); changes when it rotates.
    MasterKey,
    /// Demo mode without either: a key kept in `<data dir>/demo` (same disk; demonstration only).
    Demo,
}

impl KeySource {
    pub fn describe(self) -> &'static str {
        match self {
            KeySource::Configured => "WALDEN_AUDIT_SIGNING_KEY",
            KeySource::MasterKey => "derived from the master key",
            KeySource::Demo => "demo key in the data directory",
        }
    }
}

/// The default sink: a directory beside the database.
pub fn default_sink_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("audit-checkpoints")
}

fn demo_key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("demo").join("audit-signing.key")
}

/// Whether the demo key in `<data dir>/demo` may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DemoKey {
    /// Never (`walden serve` outside demo mode).
    No,
    /// If it exists (the CLI, checking a demo data directory).
    IfPresent,
    /// Use it, creating it on first start (`walden serve` in demo mode).
    Create,
}

/// The signing key: the configured one, else one derived from the master key, else the demo key as `demo`
/// allows. `None` when there is none.
pub fn signing_key(
    args: &CheckpointArgs,
    keyring: Option<&Keyring>,
    data_dir: &Path,
    demo: DemoKey,
) -> anyhow::Result<Option<(CheckpointKey, KeySource)>> {
    if let Some(secret) = &args.signing_key {
        let key = CheckpointKey::from_hex(secret).context("WALDEN_AUDIT_SIGNING_KEY")?;
        return Ok(Some((key, KeySource::Configured)));
    }
    if let Some(ring) = keyring {
        return Ok(Some((
            CheckpointKey::derived_from(ring)?,
            KeySource::MasterKey,
        )));
    }
    if demo == DemoKey::No {
        return Ok(None);
    }
    let file = demo_key_file(data_dir);
    if file.is_file() {
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(&file).with_context(|| {
            format!("cannot read the demo audit signing key {}", file.display())
        })?);
        let key = CheckpointKey::from_hex(&text.trim().to_owned().into())
            .with_context(|| format!("the demo audit signing key {}", file.display()))?;
        return Ok(Some((key, KeySource::Demo)));
    }
    if demo == DemoKey::Create {
        let secret = CheckpointKey::generate_hex()?;
        write_private(&file, secret.expose_secret())?;
        return Ok(Some((CheckpointKey::from_hex(&secret)?, KeySource::Demo)));
    }
    Ok(None)
}

/// Write a new key file readable by its owner only.
pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The configured sink, or the default directory. `Ok(None)` when none is configured and the default
/// directory does not exist (and `create_default` is false: the CLI only reads).
pub async fn sink(
    args: &CheckpointArgs,
    data_dir: &Path,
    create_default: bool,
) -> anyhow::Result<Option<Sink>> {
    let env: HashMap<String, String> = std::env::vars().collect();
    match &args.sink {
        Some(url) => Ok(Some(Sink::open(url, &env).await?)),
        None => {
            let dir = default_sink_dir(data_dir);
            if !create_default && !dir.is_dir() {
                return Ok(None);
            }
            Ok(Some(Sink::directory(&dir)?))
        }
    }
}

/// The writer for `walden serve`, or `None` (with a loud warning) when there is no key to sign with.
pub async fn for_serve(
    config: &ServeArgs,
    keyring: Option<&Keyring>,
    pool: sqlx::SqlitePool,
) -> anyhow::Result<Option<Arc<Checkpointer>>> {
    let data_dir = &config.data.data_dir;
    let demo = config.demo_mode();
    let demo_key = if demo { DemoKey::Create } else { DemoKey::No };
    let Some((key, source)) = signing_key(&config.checkpoints, keyring, data_dir, demo_key)? else {
        tracing::error!(
            "audit checkpoints are OFF: no signing key. Set WALDEN_AUDIT_SIGNING_KEY (or WALDEN_MASTER_KEY); \
             without checkpoints a rewritten, cut or wiped audit log cannot be detected"
        );
        return Ok(None);
    };
    let sink = sink(&config.checkpoints, data_dir, true)
        .await?
        .context("no audit checkpoint sink")?;
    if sink.local_dir().is_some() && !demo {
        tracing::warn!(
            sink = sink.display(),
            "audit checkpoints are written to a directory on this machine, beside the database: set \
             WALDEN_AUDIT_SINK to object storage (ideally with object lock) so that they prove the log off the box"
        );
    }
    tracing::info!(
        sink = sink.display(),
        key_id = key.id(),
        public_key = %key.public_key_hex(),
        key_source = source.describe(),
        "audit checkpoints on: keep this public key off the box to verify them"
    );
    Ok(Some(Arc::new(Checkpointer::new(
        pool,
        key,
        sink,
        Duration::from_secs(config.audit_checkpoint_secs),
        config.audit_checkpoint_rows,
    ))))
}
