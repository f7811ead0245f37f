//! Request and response types. Field names follow the OpenAPI document
//! (`crates/openapi-contract/spec/fly-machines-openapi.yml`). Every response type tolerates unknown fields
//! and `null`s; types that are sent back to Fly after being read (`MachineConfig` and its parts)
//! keep unknown fields in `extra` so a full-config update never drops what this crate does not model.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Treat `null` as the default value (Go's `nil` slices and maps come back as `null`).
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

// ---------------------------------------------------------------- apps

/// `App` schema.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct App {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub internal_numeric_id: Option<i64>,
    #[serde(default)]
    pub machine_count: Option<i64>,
    #[serde(default)]
    pub volume_count: Option<i64>,
    #[serde(default)]
    pub organization: Option<AppOrganizationInfo>,
}

/// `AppOrganizationInfo` schema.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AppOrganizationInfo {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub internal_numeric_id: Option<i64>,
}

/// `ListAppsResponse` schema.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListAppsResponse {
    #[serde(default, deserialize_with = "null_default")]
    pub apps: Vec<App>,
    #[serde(default)]
    pub total_apps: Option<i64>,
}

/// `CreateAppRequest` schema, plus `app_role_id` which fly-go sends and flyctl uses
/// (`"postgres_cluster"`) although the document omits it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CreateAppRequest {
    pub name: String,
    pub org_slug: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_subdomains: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_role_id: Option<String>,
}

// ---------------------------------------------------------------- machines

/// `Machine` schema.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub state: String,
    #[serde(default, deserialize_with = "null_default")]
    pub region: String,
    #[serde(default)]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub private_ip: Option<String>,
    #[serde(default)]
    pub config: Option<MachineConfig>,
    #[serde(default)]
    pub incomplete_config: Option<MachineConfig>,
    #[serde(default)]
    pub image_ref: Option<ImageRef>,
    #[serde(default, deserialize_with = "null_default")]
    pub checks: Vec<CheckStatus>,
    #[serde(default, deserialize_with = "null_default")]
    pub events: Vec<MachineEvent>,
    #[serde(default)]
    pub host_status: Option<String>,
    #[serde(default)]
    pub cordoned: Option<bool>,
    #[serde(default)]
    pub lease: Option<StrippedLease>,
    /// Only on create with `lease_ttl`.
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

impl Machine {
    /// The check named `name`, if reported.
    pub fn check(&self, name: &str) -> Option<&CheckStatus> {
        self.checks.iter().find(|c| c.name.as_deref() == Some(name))
    }

    /// The configured image (`config.image`), or the image ref as `repository:tag`.
    pub fn image(&self) -> Option<String> {
        if let Some(img) = self.config.as_ref().and_then(|c| c.image.clone()) {
            return Some(img);
        }
        self.image_ref.as_ref().and_then(|r| {
            let repo = r.repository.as_deref()?;
            Some(match r.tag.as_deref() {
                Some(t) if !t.is_empty() => format!("{repo}:{t}"),
                _ => repo.to_string(),
            })
        })
    }

    /// True for the destroyed/terminal states.
    pub fn is_gone(&self) -> bool {
        matches!(
            self.state.as_str(),
            "destroyed" | "destroying" | "replaced" | "migrated"
        )
    }
}

/// `fly.MachineConfig` schema. Known fields are typed; everything else survives in `extra`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MachineConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<MachineInit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<MachineGuest>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub metadata: BTreeMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub mounts: Vec<MachineMount>,
    /// `fly.MachineService` objects, kept verbatim.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub services: Vec<Value>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub checks: BTreeMap<String, MachineCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<MachineRestart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_config: Option<StopConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_destroy: Option<bool>,
    /// Fields this crate does not model (metrics, files, processes, dns, …), sent back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `fly.MachineInit` schema.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MachineInit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `fly.MachineGuest` schema.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MachineGuest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<i64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `fly.MachineMount` schema.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MachineMount {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_gb: Option<i64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `fly.MachineCheck` schema.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MachineCheck {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `fly.MachineRestart` schema.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MachineRestart {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<i64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `fly.StopConfig` schema.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StopConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `ImageRef` schema.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ImageRef {
    #[serde(default)]
    pub registry: Option<String>,
    #[serde(default)]
    pub repository: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
}

/// `CheckStatus` schema.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CheckStatus {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub output: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// `MachineEvent` schema. `request` holds e.g. `exit_event` (top-level or nested under
/// `MonitorEvent`) and `restart_count`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MachineEvent {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, rename = "type")]
    pub event_type: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    /// Unix milliseconds.
    #[serde(default)]
    pub timestamp: Option<i64>,
    #[serde(default)]
    pub request: Option<Value>,
}

impl MachineEvent {
    /// The exit recorded by the event, when it records a process exit. Fly puts it in two places
    /// (fly-go `machine_types.go`: `MachineRequest{ExitEvent "exit_event", MonitorEvent
    /// "MonitorEvent"}`); like fly-go `MachineRequest.GetExitCode`, the one nested under
    /// `request.MonitorEvent.exit_event` wins over the top-level `request.exit_event`.
    pub fn exit_event(&self) -> Option<ExitEvent> {
        let request = self.request.as_ref()?;
        let nested = request
            .get("MonitorEvent")
            .and_then(|monitor| monitor.get("exit_event"));
        [nested, request.get("exit_event")]
            .into_iter()
            .flatten()
            .filter(|v| v.is_object())
            .find_map(|v| serde_json::from_value(v.clone()).ok())
    }
}

/// The exit of a machine event (fly-go `MachineExitEvent`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ExitEvent {
    #[serde(default)]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub guest_exit_code: Option<i64>,
    #[serde(default)]
    pub signal: Option<i64>,
    #[serde(default)]
    pub oom_killed: Option<bool>,
    #[serde(default)]
    pub requested_stop: Option<bool>,
    #[serde(default)]
    pub restarting: Option<bool>,
}

/// `CreateMachineRequest` schema.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CreateMachineRequest {
    pub config: MachineConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_ttl: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_secrets_version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_launch: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_secrets: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_service_registration: Option<bool>,
}

/// `UpdateMachineRequest` schema: always the FULL config (Fly has no partial updates).
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpdateMachineRequest {
    pub config: MachineConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_secrets_version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_launch: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_secrets: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
}

/// Filters for listing machines.
#[derive(Debug, Clone, Default)]
pub struct ListMachines {
    pub include_deleted: bool,
    pub region: Option<String>,
    /// States to keep (`created`, `started`, `stopped`, `suspended`), sent comma-separated.
    pub states: Vec<String>,
    pub summary: bool,
    /// `metadata.{key}={value}` filters (documented in Fly's docs, not in the OpenAPI document).
    pub metadata: BTreeMap<String, String>,
}

/// `StopRequest` schema.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StopRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Go duration string, e.g. `"30s"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// `WaitMachineResponse` schema.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct WaitMachineResponse {
    #[serde(default)]
    pub ok: Option<bool>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub event_id: Option<String>,
}

/// `MachineExecRequest` schema (the argv form; the deprecated `cmd` string is never sent).
/// `Debug` shows only the size of `stdin`: it carries secrets (the login proof sends a password
/// there so that it never appears in argv).
#[derive(Clone, Default, Serialize)]
pub struct ExecRequest {
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

impl fmt::Debug for ExecRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecRequest")
            .field("command", &self.command)
            .field("timeout", &self.timeout)
            .field(
                "stdin",
                &self.stdin.as_ref().map(|s| format!("[{} bytes]", s.len())),
            )
            .field("container", &self.container)
            .finish()
    }
}

impl ExecRequest {
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            command: argv.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    pub fn timeout(mut self, seconds: u64) -> Self {
        self.timeout = Some(seconds);
        self
    }
}

/// `flydv1.ExecResponse` schema. `exit_code` absent means 0 (Go `omitempty`).
/// `Debug` shows only the sizes of stdout/stderr: they may hold secrets (e.g. `printenv`).
#[derive(Clone, Default, Deserialize, PartialEq)]
pub struct ExecOutput {
    #[serde(default, deserialize_with = "null_default")]
    pub exit_code: i64,
    #[serde(default)]
    pub exit_signal: Option<i64>,
    #[serde(default, deserialize_with = "null_default")]
    pub stdout: String,
    #[serde(default, deserialize_with = "null_default")]
    pub stderr: String,
}

impl ExecOutput {
    /// Exit code 0 and no signal.
    pub fn success(&self) -> bool {
        self.exit_code == 0 && self.exit_signal.is_none_or(|s| s == 0)
    }
}

impl fmt::Debug for ExecOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecOutput")
            .field("exit_code", &self.exit_code)
            .field("exit_signal", &self.exit_signal)
            .field("stdout_bytes", &self.stdout.len())
            .field("stderr_bytes", &self.stderr.len())
            .finish()
    }
}

impl Drop for ExecOutput {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.stdout.zeroize();
        self.stderr.zeroize();
    }
}

// ---------------------------------------------------------------- leases

/// A lease as Fly sends it. The document's `Lease` is flat; the wire (docs examples, fly-go
/// `MachineLease`) wraps it: `{"status":"success","data":{nonce, expires_at, owner, description,
/// version}}`. Both are accepted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lease {
    pub nonce: Option<String>,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    pub owner: Option<String>,
    pub description: Option<String>,
    pub version: Option<String>,
}

#[derive(Deserialize)]
struct LeaseFields {
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    expires_at: Option<i64>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    version: Option<String>,
}

impl<'de> Deserialize<'de> for Lease {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let inner = match v.get("data") {
            Some(data) if data.is_object() => data.clone(),
            _ => v,
        };
        let f: LeaseFields = serde_json::from_value(inner).map_err(serde::de::Error::custom)?;
        Ok(Lease {
            nonce: f.nonce,
            expires_at: f.expires_at,
            owner: f.owner,
            description: f.description,
            version: f.version,
        })
    }
}

/// `CreateLeaseRequest` schema.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CreateLeaseRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
}

/// `StrippedLease` schema (the lease shown on a machine).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StrippedLease {
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub expires_at: Option<i64>,
}

// ---------------------------------------------------------------- volumes

/// `Volume` schema.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Volume {
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub size_gb: Option<i64>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub zone: Option<String>,
    #[serde(default)]
    pub encrypted: Option<bool>,
    #[serde(default)]
    pub attached_machine_id: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    /// Bytes in use on the volume's filesystem, as the Machines API's `Volume` schema reports them
    /// (`bytes_used`). superfly/fly-go's `Volume` (`volume_types.go`) does not decode these fields; the
    /// OpenAPI spec (crates/openapi-contract/spec/fly-machines-openapi.yml) does. `None` when the host did not say.
    #[serde(default)]
    pub bytes_used: Option<u64>,
    /// Size of the volume's filesystem in bytes (`bytes_total`).
    #[serde(default)]
    pub bytes_total: Option<u64>,
}

impl Volume {
    /// States fly-go treats as destroyed.
    pub fn is_destroyed(&self) -> bool {
        matches!(
            self.state.as_deref(),
            Some(
                "destroyed"
                    | "scheduling_destroy"
                    | "fork_cleanup"
                    | "waiting_for_detach"
                    | "pending_destroy"
                    | "destroying"
            )
        )
    }
}

/// `CreateVolumeRequest` schema.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CreateVolumeRequest {
    pub name: String,
    pub region: String,
    pub size_gb: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_unique_zone: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_volume_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_retention: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute: Option<MachineGuest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_image: Option<String>,
}

// ---------------------------------------------------------------- secrets

/// `AppSecret` schema. Values are only present with `show_secrets`, which only
/// `FlyClient::list_secrets_with_values` asks for (credential escrow's fallback).
#[derive(Clone, Default, Deserialize)]
pub struct AppSecret {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub value: Option<SecretString>,
}

impl fmt::Debug for AppSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppSecret")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("value", &self.value.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// `AppSecrets` schema.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AppSecrets {
    #[serde(default, deserialize_with = "null_default")]
    pub secrets: Vec<AppSecret>,
}

/// `AppSecretsUpdateResp` schema (`Version` is a legacy spelling of `version`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AppSecretsUpdateResp {
    #[serde(default)]
    pub version: Option<u64>,
    #[serde(default, rename = "Version")]
    pub legacy_version: Option<u64>,
    #[serde(default, deserialize_with = "null_default")]
    pub secrets: Vec<AppSecret>,
}

// ---------------------------------------------------------------- tokens

/// `CurrentTokenResponse` schema.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CurrentTokenResponse {
    #[serde(default, deserialize_with = "null_default")]
    pub tokens: Vec<TokenInfo>,
}

/// `main.tokenInfo` schema.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenInfo {
    #[serde(default, deserialize_with = "null_default")]
    pub apps: Vec<String>,
    #[serde(default)]
    pub org_slug: Option<String>,
    #[serde(default)]
    pub organization: Option<String>,
    #[serde(default)]
    pub restricted_to_machine: Option<String>,
    #[serde(default)]
    pub source_machine_id: Option<String>,
    #[serde(default)]
    pub token_id: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

// ---------------------------------------------------------------- metadata

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct MetadataValue {
    #[serde(default)]
    pub value: Option<String>,
}

// ---------------------------------------------------------------- logs

/// One log line from `api.fly.io/api/v1/apps/{app}/logs` (JSON:API `data[].attributes`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogEntry {
    pub id: Option<String>,
    pub timestamp: Option<String>,
    pub message: String,
    pub level: Option<String>,
    pub instance: Option<String>,
    pub region: Option<String>,
    pub meta: Option<Value>,
}

/// One page of logs plus the token for the next poll.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogsPage {
    pub entries: Vec<LogEntry>,
    pub next_token: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct LogsWire {
    #[serde(default, deserialize_with = "null_default")]
    data: Vec<LogsWireEntry>,
    #[serde(default)]
    meta: Option<LogsWireMeta>,
}

#[derive(Deserialize)]
struct LogsWireEntry {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    attributes: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct LogsWireMeta {
    #[serde(default)]
    next_token: Option<Value>,
}

impl From<LogsWire> for LogsPage {
    fn from(w: LogsWire) -> Self {
        // fly-go decodes attribute keys case-insensitively.
        let get = |m: &Map<String, Value>, k: &str| -> Option<Value> {
            m.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        let as_string = |v: Option<Value>| -> Option<String> {
            match v? {
                Value::String(s) => Some(s),
                Value::Null => None,
                other => Some(other.to_string()),
            }
        };
        let entries = w
            .data
            .into_iter()
            .map(|e| {
                let attrs = e.attributes.unwrap_or_default();
                LogEntry {
                    id: e.id,
                    timestamp: as_string(get(&attrs, "timestamp")),
                    message: as_string(get(&attrs, "message")).unwrap_or_default(),
                    level: as_string(get(&attrs, "level")),
                    instance: as_string(get(&attrs, "instance")),
                    region: as_string(get(&attrs, "region")),
                    meta: get(&attrs, "meta"),
                }
            })
            .collect();
        let next_token = w
            .meta
            .and_then(|m| as_string(m.next_token))
            .filter(|t| !t.is_empty());
        LogsPage {
            entries,
            next_token,
        }
    }
}

// ---------------------------------------------------------------- errors

/// `ErrorResponse` schema (plus fly-go's `message`).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub error: Option<Value>,
    #[serde(default)]
    pub message: Option<Value>,
    #[serde(default)]
    pub status: Option<Value>,
}
