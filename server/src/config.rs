//! Configuration: every setting is an environment variable with a matching flag and an embedded default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use secrecy::SecretString;

/// Where the site assets (`pkg/walden.{js,wasm,css}`) live. cargo-leptos sets `LEPTOS_SITE_ROOT` at build time.
pub const DEFAULT_SITE_ROOT: &str = match option_env!("LEPTOS_SITE_ROOT") {
    Some(root) => root,
    None => "target/site",
};

/// The data directory, shared by every command that touches the database.
#[derive(Debug, Clone, Args)]
pub struct DataDirArgs {
    /// Directory holding Walden's SQLite database (created if missing).
    #[arg(
        long,
        env = "WALDEN_DATA_DIR",
        default_value = "./data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
}

/// `walden serve`.
#[derive(Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataDirArgs,

    /// Address and port to listen on (use 0.0.0.0:8080 on Fly).
    #[arg(
        long,
        env = "WALDEN_BIND",
        default_value = "127.0.0.1:3000",
        value_name = "IP:PORT"
    )]
    pub bind: SocketAddr,

    /// Where to serve Prometheus metrics (`/metrics`); off when unset. Keep it off the public port.
    #[arg(long, env = "WALDEN_METRICS_BIND", value_name = "IP:PORT")]
    pub metrics_bind: Option<SocketAddr>,

    /// Directory with the built site assets (the `pkg/` bundle and static files).
    #[arg(long, env = "WALDEN_SITE_ROOT", default_value = DEFAULT_SITE_ROOT, value_name = "DIR")]
    pub site_root: PathBuf,

    /// Fly API token. Without one Walden runs in demo mode against its built-in Fly emulator.
    #[arg(long, env = "FLY_API_TOKEN", hide_env_values = true, value_parser = parse_secret, value_name = "TOKEN")]
    pub fly_api_token: Option<SecretString>,

    /// Fly organisation whose Postgres clusters Walden watches (ignored in demo mode).
    #[arg(
        long,
        env = "WALDEN_FLY_ORG",
        default_value = "personal",
        value_name = "SLUG"
    )]
    pub fly_org: String,

    /// Machines API base URL (flyctl's variable; default https://api.machines.dev).
    #[arg(long, env = "FLY_FLAPS_BASE_URL", value_name = "URL")]
    pub fly_machines_url: Option<String>,

    /// api.fly.io base URL, for logs (flyctl's variable; default https://api.fly.io).
    #[arg(long, env = "FLY_API_HOSTNAME", value_name = "URL")]
    pub fly_api_url: Option<String>,

    /// How long in-flight requests and background work may take to finish after SIGTERM/SIGINT.
    #[arg(
        long,
        env = "WALDEN_SHUTDOWN_GRACE_SECS",
        default_value_t = 20,
        value_name = "SECONDS"
    )]
    pub shutdown_grace_secs: u64,

    /// Mark the session cookie `Secure` (sent over HTTPS only). Turn off only for plain-HTTP use that is not
    /// on localhost.
    #[arg(long, env = "WALDEN_SECURE_COOKIES", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub secure_cookies: bool,

    /// Sign a user out after this long without a request (30 minutes: ASVS 3.3.2 and NIST 800-63B AAL2).
    #[arg(
        long,
        env = "WALDEN_SESSION_IDLE_SECS",
        default_value_t = 1800,
        value_name = "SECONDS"
    )]
    pub session_idle_secs: u64,

    /// Sign a user out this long after signing in, however active.
    #[arg(
        long,
        env = "WALDEN_SESSION_MAX_SECS",
        default_value_t = 43_200,
        value_name = "SECONDS"
    )]
    pub session_max_secs: u64,

    /// Take the client's IP address (audit rows, credential throttling) from this request header instead of the
    /// TCP peer: `Fly-Client-IP` on Fly. Set it only behind a proxy that always overwrites the header.
    #[arg(long, env = "WALDEN_CLIENT_IP_HEADER", value_name = "HEADER", value_parser = parse_header_name)]
    pub client_ip_header: Option<axum::http::HeaderName>,

    /// The master key: 64 hex characters (32 bytes) sealing secrets at rest (TOTP secrets); two-factor sign-in
    /// is unavailable without it. Never a flag (a flag's value is readable by every process on the machine in
    /// /proc/*/cmdline): it comes from the environment, `WALDEN_MASTER_KEY`, or from a file
    /// (`--master-key-file`); see [`ServeArgs::load_master_key`].
    #[arg(skip)]
    pub master_key: Option<SecretString>,

    /// A file holding the master key (64 hex characters; surrounding whitespace ignored), instead of the
    /// `WALDEN_MASTER_KEY` environment variable. Generate one with `openssl rand -hex 32`.
    #[arg(long, env = "WALDEN_MASTER_KEY_FILE", value_name = "PATH")]
    pub master_key_file: Option<PathBuf>,

    /// Retired master keys, which open values sealed before a rotation but never seal (see `walden keys`):
    /// from `WALDEN_RETIRED_MASTER_KEYS` or `--retired-master-keys-file`, never a flag's value.
    #[arg(skip)]
    pub retired_master_keys: Vec<SecretString>,

    /// A file holding retired master keys (64 hex characters each, separated by commas, spaces or lines).
    #[arg(long, env = "WALDEN_RETIRED_MASTER_KEYS_FILE", value_name = "PATH")]
    pub retired_master_keys_file: Option<PathBuf>,
    /// Host names (with an optional `:port`) the console answers to, comma-separated; any other `Host` is
    /// refused, so a DNS-rebinding page cannot talk to a console on localhost. Default: the bind address,
    /// `localhost`, `127.0.0.1` and `[::1]`. On Fly, the app's host name (`<app>.fly.dev`) and any custom domain.
    #[arg(
        long,
        env = "WALDEN_ALLOWED_HOSTS",
        value_name = "HOST[:PORT],...",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,

    /// The token that opens web setup of the first admin while no user exists. Never a flag (see
    /// `master_key`): from `WALDEN_SETUP_TOKEN` or `--setup-token-file`; when neither is set, a random one is
    /// printed at start-up as a link. See [`ServeArgs::load_setup_token`].
    #[arg(skip)]
    pub setup_token: Option<SecretString>,

    /// A file holding the setup token, instead of `WALDEN_SETUP_TOKEN`.
    #[arg(long, env = "WALDEN_SETUP_TOKEN_FILE", value_name = "PATH")]
    pub setup_token_file: Option<PathBuf>,

    /// Where alerts are POSTed (a Slack-compatible incoming webhook; see `crate::alerts`). Never a flag: its URL
    /// carries a token. From `WALDEN_ALERT_WEBHOOK` or `--alert-webhook-file`; none: alerts show in the
    /// console only.
    #[arg(skip)]
    pub alert_webhook: Option<SecretString>,

    /// A file holding the alert webhook's URL, instead of `WALDEN_ALERT_WEBHOOK`.
    #[arg(long, env = "WALDEN_ALERT_WEBHOOK_FILE", value_name = "PATH")]
    pub alert_webhook_file: Option<PathBuf>,

    /// argon2id cost for passwords; OWASP's parameters unless a test makes them cheaper.
    #[arg(skip)]
    pub password_hash: walden_core::users::HashParams,

    #[command(flatten)]
    pub checkpoints: CheckpointArgs,

    /// Write a signed audit checkpoint at least this often, even when no row was added (a heartbeat, so that
    /// a missing interval shows).
    #[arg(long, env = "WALDEN_AUDIT_CHECKPOINT_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..), value_name = "SECONDS")]
    pub audit_checkpoint_secs: u64,

    /// Also write one as soon as this many audit rows were added since the last.
    #[arg(long, env = "WALDEN_AUDIT_CHECKPOINT_ROWS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..), value_name = "ROWS")]
    pub audit_checkpoint_rows: u64,

    /// Capture (and prove) the credentials of every tracked cluster this often: a new escrow version is
    /// recorded only when a value changed. Default: daily.
    #[arg(long, env = "WALDEN_ESCROW_CAPTURE_SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(60..), value_name = "SECONDS")]
    pub escrow_capture_secs: u64,

    /// Read the wal-g storage of every tracked cluster this often (its index is refreshed incrementally), so
    /// the clusters page and the metrics stay current. Default: every minute.
    #[arg(long, env = "WALDEN_MONITOR_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(5..), value_name = "SECONDS")]
    pub monitor_secs: u64,

    /// How often a long restore step (the keeper check, the PITR, the first base backup) polls Fly.
    #[arg(long, env = "WALDEN_RESTORE_POLL_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..), value_name = "SECONDS")]
    pub restore_poll_secs: u64,

    /// How long a restore run's lease lasts without a refresh: a console killed in the middle of a run has
    /// it taken over by the next one this long after it died.
    #[arg(long, env = "WALDEN_RESTORE_LEASE_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(2..), value_name = "SECONDS")]
    pub restore_lease_secs: u64,

    /// Password hashes computed at once (19 MiB each); sign-ins beyond them queue for up to 10 s, then get
    /// 503. The VM's memory must hold the console plus this many hashes (see fly.toml).
    #[arg(
        long,
        env = "WALDEN_HASH_PERMITS",
        default_value_t = 2,
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(1..=64)
    )]
    pub hash_permits: u16,
}

/// Signed audit checkpoints (security review H1; `walden_core::audit_checkpoints`): where they are written
/// and read, and the key that signs them. Shared by `walden serve` and `walden audit verify`.
#[derive(Clone, Default, Args)]
pub struct CheckpointArgs {
    /// Where signed audit checkpoints go: s3://bucket/prefix, gs://bucket/prefix, azure://container/prefix
    /// (credentials from the AWS_*, GOOGLE_* and AZURE_* variables, as for wal-g storage) or a directory.
    /// Default: <data dir>/audit-checkpoints, on the same disk as the database (demo and tests only).
    #[arg(
        long = "audit-sink",
        visible_alias = "checkpoints",
        env = "WALDEN_AUDIT_SINK",
        value_name = "URL|DIR"
    )]
    pub sink: Option<String>,

    /// A file holding the checkpoint signing key (64 hex characters: an Ed25519 seed), instead of the
    /// `WALDEN_AUDIT_SIGNING_KEY` environment variable. Never a flag itself, like the master key.
    #[arg(
        long = "audit-signing-key-file",
        env = "WALDEN_AUDIT_SIGNING_KEY_FILE",
        value_name = "PATH"
    )]
    pub signing_key_file: Option<PathBuf>,

    /// The signing key, from `WALDEN_AUDIT_SIGNING_KEY` or the file ([`CheckpointArgs::load_signing_key`]).
    #[arg(skip)]
    pub signing_key: Option<SecretString>,
}

impl CheckpointArgs {
    /// Fill [`CheckpointArgs::signing_key`] from `WALDEN_AUDIT_SIGNING_KEY` (the value of `env_key`) or from
    /// `--audit-signing-key-file`, never both.
    pub fn load_signing_key(&mut self, env_key: Option<String>) -> Result<(), SecretError> {
        if let Some(key) = SIGNING_KEY.load(env_key, self.signing_key_file.as_deref())? {
            self.signing_key = Some(key);
        }
        Ok(())
    }
}

impl std::fmt::Debug for CheckpointArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointArgs")
            .field("sink", &self.sink)
            .field("signing_key_file", &self.signing_key_file)
            .field(
                "signing_key",
                &self.signing_key.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

impl ServeArgs {
    /// Settings for a test or an embedded run: defaults, with the given data dir and bind address.
    pub fn new(data_dir: PathBuf, bind: SocketAddr) -> Self {
        ServeArgs {
            data: DataDirArgs { data_dir },
            bind,
            metrics_bind: None,
            site_root: PathBuf::from(DEFAULT_SITE_ROOT),
            fly_api_token: None,
            fly_org: "personal".into(),
            fly_machines_url: None,
            fly_api_url: None,
            shutdown_grace_secs: 20,
            secure_cookies: true,
            session_idle_secs: 1800,
            session_max_secs: 43_200,
            client_ip_header: None,
            master_key: None,
            master_key_file: None,
            retired_master_keys: Vec::new(),
            retired_master_keys_file: None,
            allowed_hosts: Vec::new(),
            setup_token: None,
            setup_token_file: None,
            alert_webhook: None,
            alert_webhook_file: None,
            password_hash: walden_core::users::HashParams::OWASP,
            checkpoints: CheckpointArgs::default(),
            audit_checkpoint_secs: 300,
            audit_checkpoint_rows: 100,
            escrow_capture_secs: 86_400,
            monitor_secs: 60,
            restore_poll_secs: 10,
            restore_lease_secs: 60,
            hash_permits: 2,
        }
    }

    /// The restore engine's options: the configured poll interval and lease, the rest its defaults.
    pub fn restore_engine(&self) -> walden_core::restore::engine::EngineOptions {
        walden_core::restore::engine::EngineOptions {
            poll_interval: Duration::from_secs(self.restore_poll_secs),
            lease: Duration::from_secs(self.restore_lease_secs),
            ..walden_core::restore::engine::EngineOptions::default()
        }
    }

    /// Fill [`ServeArgs::master_key`] from `WALDEN_MASTER_KEY` (the value of `env_key`) or from
    /// `--master-key-file`, never both. Its format is checked where the keyring is made.
    pub fn load_master_key(&mut self, env_key: Option<String>) -> Result<(), SecretError> {
        if let Some(key) = MASTER_KEY.load(env_key, self.master_key_file.as_deref())? {
            self.master_key = Some(key);
        }
        Ok(())
    }

    /// Fill [`ServeArgs::retired_master_keys`] from `WALDEN_RETIRED_MASTER_KEYS` (the value of `env_keys`) or
    /// from `--retired-master-keys-file`, never both.
    pub fn load_retired_keys(&mut self, env_keys: Option<String>) -> Result<(), SecretError> {
        let keys = retired_keys(env_keys, self.retired_master_keys_file.as_deref())?;
        if !keys.is_empty() {
            self.retired_master_keys = keys;
        }
        Ok(())
    }

    /// Fill [`ServeArgs::setup_token`] from `WALDEN_SETUP_TOKEN` (the value of `env_token`) or from
    /// `--setup-token-file`, never both.
    pub fn load_setup_token(&mut self, env_token: Option<String>) -> Result<(), SecretError> {
        if let Some(token) = SETUP_TOKEN.load(env_token, self.setup_token_file.as_deref())? {
            self.setup_token = Some(token);
        }
        Ok(())
    }

    /// Fill [`ServeArgs::alert_webhook`] from `WALDEN_ALERT_WEBHOOK` (the value of `env_url`) or from
    /// `--alert-webhook-file`, never both.
    pub fn load_alert_webhook(&mut self, env_url: Option<String>) -> Result<(), SecretError> {
        if let Some(url) = ALERT_WEBHOOK.load(env_url, self.alert_webhook_file.as_deref())? {
            self.alert_webhook = Some(url);
        }
        Ok(())
    }

    pub fn demo_mode(&self) -> bool {
        self.fly_api_token.is_none()
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

// Written by hand so that no secret can ever reach a log line through `{:?}`.
impl std::fmt::Debug for ServeArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeArgs")
            .field("data_dir", &self.data.data_dir)
            .field("bind", &self.bind)
            .field("metrics_bind", &self.metrics_bind)
            .field("site_root", &self.site_root)
            .field(
                "fly_api_token",
                &self.fly_api_token.as_ref().map(|_| "[redacted]"),
            )
            .field("fly_org", &self.fly_org)
            .field("fly_machines_url", &self.fly_machines_url)
            .field("fly_api_url", &self.fly_api_url)
            .field("shutdown_grace_secs", &self.shutdown_grace_secs)
            .field("secure_cookies", &self.secure_cookies)
            .field("session_idle_secs", &self.session_idle_secs)
            .field("session_max_secs", &self.session_max_secs)
            .field("client_ip_header", &self.client_ip_header)
            .field(
                "master_key",
                &self.master_key.as_ref().map(|_| "[redacted]"),
            )
            .field("retired_master_keys", &self.retired_master_keys.len())
            .field("allowed_hosts", &self.allowed_hosts)
            .field(
                "setup_token",
                &self.setup_token.as_ref().map(|_| "[redacted]"),
            )
            .field("checkpoints", &self.checkpoints)
            .field("audit_checkpoint_secs", &self.audit_checkpoint_secs)
            .field("audit_checkpoint_rows", &self.audit_checkpoint_rows)
            .field("escrow_capture_secs", &self.escrow_capture_secs)
            .field("monitor_secs", &self.monitor_secs)
            .field("restore_poll_secs", &self.restore_poll_secs)
            .field("restore_lease_secs", &self.restore_lease_secs)
            .finish()
    }
}

fn parse_header_name(value: &str) -> Result<axum::http::HeaderName, String> {
    axum::http::HeaderName::from_bytes(value.trim().as_bytes())
        .map_err(|_| format!("{value:?} is not an HTTP header name"))
}

/// A secret setting: read from its environment variable or from the file its flag names, never both (so a
/// stale file cannot silently win over the environment, or the other way round). Secrets are never flags
/// themselves: argv is visible to every process on the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretSetting {
    /// What it is, for people: "master key".
    pub what: &'static str,
    pub env: &'static str,
    pub flag: &'static str,
}

pub const MASTER_KEY: SecretSetting = SecretSetting {
    what: "master key",
    env: "WALDEN_MASTER_KEY",
    flag: "--master-key-file",
};
pub const RETIRED_MASTER_KEYS: SecretSetting = SecretSetting {
    what: "retired master keys",
    env: "WALDEN_RETIRED_MASTER_KEYS",
    flag: "--retired-master-keys-file",
};
pub const SETUP_TOKEN: SecretSetting = SecretSetting {
    what: "setup token",
    env: "WALDEN_SETUP_TOKEN",
    flag: "--setup-token-file",
};
pub const ALERT_WEBHOOK: SecretSetting = SecretSetting {
    what: "alert webhook URL",
    env: "WALDEN_ALERT_WEBHOOK",
    flag: "--alert-webhook-file",
};
pub const SIGNING_KEY: SecretSetting = SecretSetting {
    what: "audit signing key",
    env: "WALDEN_AUDIT_SIGNING_KEY",
    flag: "--audit-signing-key-file",
};

/// Why a secret setting could not be loaded; the text names the setting, never its value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("set the {} either in {} or with {}, not both", .0.what, .0.env, .0.flag)]
    Both(SecretSetting),
    #[error("cannot read the {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the {what} file {path} is empty")]
    Empty { what: &'static str, path: String },
}

impl SecretSetting {
    /// The secret from the environment's value (`env_value`, the value of [`SecretSetting::env`]) or from
    /// `file`, trimmed; `None` when neither is set (a blank variable counts as unset). Its format is checked
    /// where it is used.
    pub fn load(
        self,
        env_value: Option<String>,
        file: Option<&std::path::Path>,
    ) -> Result<Option<SecretString>, SecretError> {
        let env_value = env_value.map(zeroize::Zeroizing::new);
        let env_value = env_value
            .as_deref()
            .map(|v| v.trim())
            .filter(|v| !v.is_empty());
        match (env_value, file) {
            (Some(_), Some(_)) => Err(SecretError::Both(self)),
            (Some(value), None) => Ok(Some(SecretString::from(value.to_owned()))),
            (None, Some(path)) => self.read_file(path).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// [`SecretSetting::load`] with this process's environment variable.
    pub fn from_env(
        self,
        file: Option<&std::path::Path>,
    ) -> Result<Option<SecretString>, SecretError> {
        self.load(std::env::var(self.env).ok(), file)
    }

    fn read_file(self, path: &std::path::Path) -> Result<SecretString, SecretError> {
        let shown = path.display().to_string();
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            SecretError::Read {
                what: self.what,
                path: shown.clone(),
                source,
            }
        })?);
        let value = text.trim();
        if value.is_empty() {
            return Err(SecretError::Empty {
                what: self.what,
                path: shown,
            });
        }
        Ok(SecretString::from(value.to_owned()))
    }
}

/// Retired master keys from the environment's value or a file, never both: 64 hex characters each,
/// separated by commas or white space. Their format is checked where the keyring is made.
pub fn retired_keys(
    env_keys: Option<String>,
    file: Option<&std::path::Path>,
) -> Result<Vec<SecretString>, SecretError> {
    let Some(keys) = RETIRED_MASTER_KEYS.load(env_keys, file)? else {
        return Ok(Vec::new());
    };
    Ok(secrecy::ExposeSecret::expose_secret(&keys)
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|k| !k.is_empty())
        .map(|k| SecretString::from(k.to_owned()))
        .collect())
}

/// The keyring of a CLI command that opens sealed records: the master key and the retired keys from the
/// environment or their files. Without a master key, the demo key of `data_dir` when a demo console made one
/// (so `walden escrow` and `walden org` work on a demo console's data, as the console does); else `None`.
pub fn cli_keyring(
    data_dir: &std::path::Path,
    master_file: Option<&std::path::Path>,
    retired_file: Option<&std::path::Path>,
) -> anyhow::Result<Option<walden_core::keyring::Keyring>> {
    let mut master = MASTER_KEY.from_env(master_file)?;
    let retired = retired_keys(std::env::var(RETIRED_MASTER_KEYS.env).ok(), retired_file)?;
    if master.is_none() && retired.is_empty() && demo_key_path(data_dir).is_file() {
        master = Some(demo_master_key(data_dir)?.0);
    }
    keyring(master.as_ref(), &retired)
}

fn demo_key_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("demo").join("master.key")
}

/// The keyring: the master key seals, the retired keys only open. `None` without a master key; retired keys
/// without one are refused (they could open, but nothing could seal).
pub fn keyring(
    master: Option<&SecretString>,
    retired: &[SecretString],
) -> anyhow::Result<Option<walden_core::keyring::Keyring>> {
    use anyhow::Context;
    use walden_core::keyring::{Keyring, SealKey};
    let Some(master) = master else {
        if retired.is_empty() {
            return Ok(None);
        }
        anyhow::bail!("retired master keys are set but no master key: set WALDEN_MASTER_KEY (or --master-key-file) to the new key");
    };
    let mut ring = Keyring::from_master_hex(master).context("WALDEN_MASTER_KEY")?;
    for (n, key) in retired.iter().enumerate() {
        let key = SealKey::from_hex(key).with_context(|| {
            format!(
                "WALDEN_RETIRED_MASTER_KEYS: key {} of {}",
                n + 1,
                retired.len()
            )
        })?;
        ring = ring.with_retired(key);
    }
    Ok(Some(ring))
}

/// The demo master key: `<data dir>/demo/master.key`, made on first use (32 random bytes as 64 hex
/// characters, the format of `WALDEN_MASTER_KEY`; owner-only, 0600). Only for demo mode without a configured
/// key, so that the demo can add organisations and escrow credentials out of the box; outside demo mode a
/// missing key keeps refusing what needs it. Returns the key and the file it is kept in.
pub fn demo_master_key(
    data_dir: &std::path::Path,
) -> anyhow::Result<(SecretString, std::path::PathBuf)> {
    use anyhow::Context;
    let path = demo_key_path(data_dir);
    if path.is_file() {
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(&path) {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    key_file = %path.display(),
                    "the demo master key file is readable by others; make it owner-only (chmod 600)"
                );
            }
        }
        let key = MASTER_KEY.read_file(&path)?;
        walden_core::keyring::SealKey::from_hex(&key).with_context(|| {
            format!(
                "the demo master key {} is not 64 hex characters",
                path.display()
            )
        })?;
        return Ok((key, path));
    }
    // A random 32-byte key as hex; the checkpoint key generator makes exactly that.
    let key = walden_core::audit_checkpoints::CheckpointKey::generate_hex()
        .context("cannot generate the demo master key")?;
    crate::checkpoints::write_private(&path, secrecy::ExposeSecret::expose_secret(&key))?;
    Ok((key, path))
}

fn parse_secret(value: &str) -> Result<SecretString, String> {
    if value.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(SecretString::from(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn debug_output_never_shows_the_token() {
        let mut args = ServeArgs::new("d".into(), "127.0.0.1:0".parse().unwrap());
        args.fly_api_token = Some(parse_secret("fm2_very-secret").unwrap());
        let shown = format!("{args:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("[redacted]"));
        assert_eq!(
            args.fly_api_token.unwrap().expose_secret(),
            "fm2_very-secret"
        );
    }

    fn args() -> ServeArgs {
        ServeArgs::new("d".into(), "127.0.0.1:0".parse().unwrap())
    }

    #[test]
    fn the_master_key_comes_from_the_environment_or_a_file_never_both() {
        let mut from_env = args();
        from_env.load_master_key(Some(" ab12 \n".into())).unwrap();
        assert_eq!(from_env.master_key.unwrap().expose_secret(), "ab12");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "cd34\n").unwrap();
        let mut from_file = args();
        from_file.master_key_file = Some(file.clone());
        from_file.load_master_key(None).unwrap();
        assert_eq!(from_file.master_key.unwrap().expose_secret(), "cd34");

        let mut both = args();
        both.master_key_file = Some(file);
        assert!(matches!(
            both.load_master_key(Some("ab12".into())),
            Err(SecretError::Both(MASTER_KEY))
        ));

        let mut missing = args();
        missing.master_key_file = Some(dir.path().join("nope"));
        let err = missing.load_master_key(None).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");

        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n").unwrap();
        let mut blank = args();
        blank.master_key_file = Some(empty);
        assert!(matches!(
            blank.load_master_key(None),
            Err(SecretError::Empty { .. })
        ));

        let mut neither = args();
        neither.load_master_key(Some("   ".into())).unwrap();
        assert!(neither.master_key.is_none());
    }

    #[test]
    fn retired_keys_come_from_the_environment_or_a_file_and_need_a_master_key() {
        let a = "11".repeat(32);
        let b = "22".repeat(32);
        let c = "33".repeat(32);
        let mut from_env = args();
        from_env
            .load_retired_keys(Some(format!(" {a}, {b}\n")))
            .unwrap();
        let shown: Vec<&str> = from_env
            .retired_master_keys
            .iter()
            .map(|k| k.expose_secret())
            .collect();
        assert_eq!(shown, [a.as_str(), b.as_str()]);
        assert!(!format!("{from_env:?}").contains(&a));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("retired");
        std::fs::write(&file, format!("{a}\n{b}\n")).unwrap();
        let mut from_file = args();
        from_file.retired_master_keys_file = Some(file.clone());
        from_file.load_retired_keys(None).unwrap();
        assert_eq!(from_file.retired_master_keys.len(), 2);
        let mut both = args();
        both.retired_master_keys_file = Some(file);
        assert!(matches!(
            both.load_retired_keys(Some(a.clone())),
            Err(SecretError::Both(RETIRED_MASTER_KEYS))
        ));

        let master = SecretString::from(c.clone());
        let ring = keyring(Some(&master), &from_env.retired_master_keys)
            .unwrap()
            .unwrap();
        assert_eq!(ring.retired_ids().len(), 2);
        assert!(keyring(None, &[]).unwrap().is_none());
        let err = keyring(None, &from_env.retired_master_keys)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no master key"), "{err}");
        let bad = [SecretString::from(a.clone()), SecretString::from("zz")];
        let err = format!("{:#}", keyring(Some(&master), &bad).unwrap_err());
        assert!(err.contains("key 2 of 2"), "{err}");
        assert!(!err.contains(&a), "{err}");
    }

    #[test]
    fn the_setup_token_comes_from_the_environment_or_a_file_never_both() {
        let mut from_env = args();
        from_env
            .load_setup_token(Some(" a setup token \n".into()))
            .unwrap();
        assert_eq!(
            from_env.setup_token.unwrap().expose_secret(),
            "a setup token"
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from a file\n").unwrap();
        let mut from_file = args();
        from_file.setup_token_file = Some(file.clone());
        from_file.load_setup_token(None).unwrap();
        assert_eq!(
            from_file.setup_token.unwrap().expose_secret(),
            "from a file"
        );

        let mut both = args();
        both.setup_token_file = Some(file);
        assert!(both.load_setup_token(Some("x".into())).is_err());

        let mut missing = args();
        missing.setup_token_file = Some(dir.path().join("nope"));
        let err = missing.load_setup_token(None).unwrap_err().to_string();
        assert!(err.contains("setup token") && err.contains("nope"), "{err}");

        let mut neither = args();
        neither.load_setup_token(Some("  ".into())).unwrap();
        assert!(neither.setup_token.is_none());
        let mut logged = args();
        logged
            .load_setup_token(Some("very-secret-token".into()))
            .unwrap();
        let shown = format!("{logged:?}");
        assert!(!shown.contains("very-secret-token"), "{shown}");
    }

    #[test]
    fn the_audit_signing_key_comes_from_the_environment_or_a_file_never_both_and_is_never_shown() {
        let mut from_env = CheckpointArgs::default();
        from_env.load_signing_key(Some(" ab12 \n".into())).unwrap();
        assert_eq!(
            from_env.signing_key.as_ref().unwrap().expose_secret(),
            "ab12"
        );
        assert!(!format!("{from_env:?}").contains("ab12"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "cd34\n").unwrap();
        let mut from_file = CheckpointArgs {
            signing_key_file: Some(file),
            ..CheckpointArgs::default()
        };
        from_file.load_signing_key(None).unwrap();
        assert_eq!(
            from_file.signing_key.as_ref().unwrap().expose_secret(),
            "cd34"
        );
        let err = from_file.load_signing_key(Some("ab12".into())).unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
    }

    #[test]
    fn a_cli_command_uses_the_demo_key_only_when_a_demo_console_made_one() {
        // (The test process has no WALDEN_MASTER_KEY or WALDEN_RETIRED_MASTER_KEYS set.)
        let dir = tempfile::tempdir().unwrap();
        assert!(cli_keyring(dir.path(), None, None).unwrap().is_none());
        let (_, path) = demo_master_key(dir.path()).unwrap();
        assert!(path.is_file());
        let ring = cli_keyring(dir.path(), None, None).unwrap().unwrap();
        let (demo, _) = demo_master_key(dir.path()).unwrap();
        let same = walden_core::keyring::Keyring::from_master_hex(&demo).unwrap();
        assert_eq!(ring.primary_id(), same.primary_id());

        // A configured key wins over the demo key.
        let file = dir.path().join("key");
        std::fs::write(&file, "44".repeat(32)).unwrap();
        let ring = cli_keyring(dir.path(), Some(&file), None).unwrap().unwrap();
        assert_ne!(ring.primary_id(), same.primary_id());
    }

    #[test]
    fn hash_permits_are_a_small_positive_number() {
        #[derive(clap::Parser)]
        struct Serve {
            #[command(flatten)]
            args: ServeArgs,
        }
        use clap::Parser;
        let parse = |n: &str| Serve::try_parse_from(["serve", "--hash-permits", n]);
        assert_eq!(parse("4").unwrap().args.hash_permits, 4);
        assert!(
            parse("0").is_err(),
            "no hashing at all would refuse every sign-in"
        );
        assert!(parse("65").is_err());
        assert_eq!(args().hash_permits, 2);
    }

    #[test]
    fn demo_mode_is_on_without_a_token() {
        let args = ServeArgs::new("d".into(), "127.0.0.1:0".parse().unwrap());
        assert!(args.demo_mode());
    }
}
