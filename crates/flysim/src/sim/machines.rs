//! Machines: create and update (config rules, volume attach, region inference, name uniqueness, ids, IPs,
//! leases on create, secrets snapshots), get and list.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{ApiError, ApiResult, Sim};
use crate::clock::ms;
use crate::model::*;

/// flysim's bound on lease TTLs (Fly documents none; a year keeps the arithmetic safe).
pub(crate) const MAX_LEASE_TTL: i64 = 365 * 86_400;

/// The `config` keys Fly keeps; unknown ones are dropped as Go's encoding/json drops them.
const CONFIG_KEYS: &[&str] = &[
    "auto_destroy",
    "cache_drive",
    "checks",
    "containers",
    "disable_machine_autostart",
    "dns",
    "env",
    "files",
    "guest",
    "image",
    "init",
    "metadata",
    "metrics",
    "mounts",
    "processes",
    "restart",
    "rootfs",
    "schedule",
    "services",
    "size",
    "spot",
    "standbys",
    "statics",
    "stop_config",
];

/// A create or update body. `skip_service_registration` is accepted and has no effect: flysim emulates no
/// proxy, so there is no service to register.
#[derive(serde::Deserialize, Default)]
pub(crate) struct MachineRequest {
    pub config: Option<Value>,
    pub name: Option<String>,
    pub region: Option<String>,
    pub lease_ttl: Option<u64>,
    pub min_secrets_version: Option<u64>,
    pub skip_launch: Option<bool>,
    pub skip_secrets: Option<bool>,
    pub current_version: Option<String>,
}

/// A Machine as the API shows it: the record, its health checks, and the lease when asked for.
pub(crate) struct MachineView {
    pub machine: Machine,
    pub checks: Vec<Value>,
    /// The active lease, when the caller asked to see it.
    pub lease: Option<Lease>,
    /// The nonce of a lease taken by `lease_ttl` on create.
    pub nonce: Option<String>,
}

/// The `GET /machines` query.
#[derive(Default)]
pub(crate) struct MachineFilter {
    pub include_deleted: bool,
    pub region: Option<String>,
    pub states: Vec<String>,
    pub metadata: Vec<(String, String)>,
    pub with_lease: bool,
}

impl MachineFilter {
    fn matches(&self, machine: &Machine) -> bool {
        (self.include_deleted || !machine.destroyed)
            && self.region.as_ref().is_none_or(|r| *r == machine.region)
            && (self.states.is_empty() || self.states.iter().any(|s| s == machine.state.as_str()))
            && self.metadata.iter().all(|(key, value)| {
                machine
                    .config
                    .pointer(&format!("/metadata/{key}"))
                    .and_then(|x| x.as_str())
                    == Some(value.as_str())
            })
    }
}

pub(crate) fn view(app: &App, machine: &Machine, now: i64, with_lease: bool) -> MachineView {
    // A running Machine shows its checks' last run (up to 15 s old); one that is not running, what they say
    // of a Machine that is not running (not verified against Fly, which documents neither).
    let checks = match &machine.checks_run {
        Some(run) if machine.state == MachineState::Started => run.checks.clone(),
        _ if machine.state == MachineState::Started => Vec::new(),
        _ => crate::image::checks(app, machine, now),
    };
    MachineView {
        machine: machine.clone(),
        checks,
        lease: machine
            .lease
            .clone()
            .filter(|lease| with_lease && lease.expires_s * 1000 > now),
        nonce: None,
    }
}

/// Keep the known config keys and check the ones flysim relies on.
fn clean_config(config: Option<Value>) -> ApiResult<Value> {
    let config = config.ok_or_else(|| ApiError::bad("config is required"))?;
    let Value::Object(mut map) = config else {
        return Err(ApiError::bad("invalid config: must be an object"));
    };
    map.retain(|key, _| CONFIG_KEYS.contains(&key.as_str()));
    let image = map.get("image").and_then(|v| v.as_str()).unwrap_or("");
    if image.trim().is_empty() {
        return Err(ApiError::bad("invalid config.image: image is required"));
    }
    for (key, what) in [("env", "config.env"), ("metadata", "config.metadata")] {
        if let Some(values) = map.get(key) {
            let all_strings = values
                .as_object()
                .is_some_and(|o| o.values().all(|v| v.is_string()));
            if !all_strings {
                return Err(ApiError::bad(format!(
                    "invalid {what}: values must be strings"
                )));
            }
        }
    }
    Ok(Value::Object(map))
}

/// The volume a config mounts (at most one).
fn mounted_volume(config: &Value) -> ApiResult<Option<String>> {
    let Some(mounts) = config.get("mounts") else {
        return Ok(None);
    };
    let Some(mounts) = mounts.as_array() else {
        return Err(ApiError::bad("invalid config.mounts: must be an array"));
    };
    match mounts.as_slice() {
        [] => Ok(None),
        [mount] => {
            let volume = mount.get("volume").and_then(|v| v.as_str()).unwrap_or("");
            let path = mount.get("path").and_then(|v| v.as_str()).unwrap_or("");
            if volume.is_empty() || path.is_empty() {
                return Err(ApiError::bad(
                    "invalid config.mounts[0]: volume and path are required",
                ));
            }
            Ok(Some(volume.to_string()))
        }
        _ => Err(ApiError::bad(
            "invalid config.mounts: only one volume can be mounted",
        )),
    }
}

/// The secrets a Machine boots with (and their version); `min_secrets_version` newer than the app's is 400.
pub(crate) fn snapshot_secrets(
    app: &App,
    min_version: Option<u64>,
    skip: bool,
) -> ApiResult<(BTreeMap<String, String>, u64)> {
    if let Some(min_version) = min_version {
        if min_version > app.secrets_version {
            return Err(ApiError::bad(format!(
                "min_secrets_version {min_version} is newer than app {}'s secrets version {}",
                app.name, app.secrets_version
            )));
        }
    }
    if skip {
        return Ok((BTreeMap::new(), 0));
    }
    // flyctl `internal/appsecrets/minvers.go` passes the version its own write returned: the Machine
    // gets exactly that version's secrets, not whatever is newest.
    let requested =
        min_version.and_then(|version| Some((version, app.secrets_history.get(&version)?)));
    if let Some((version, values)) = requested {
        return Ok((values.clone(), version));
    }
    Ok((app.secret_values(), app.secrets_version))
}

impl State {
    /// A Fly-style generated Machine name (`icy-wave-1234`).
    fn generated_name(&mut self) -> String {
        const FIRST: [&str; 8] = [
            "icy", "late", "bold", "dawn", "calm", "wild", "aged", "misty",
        ];
        const SECOND: [&str; 8] = [
            "wave", "sun", "leaf", "moon", "pine", "snow", "fire", "lake",
        ];
        let random = self.rand();
        format!(
            "{}-{}-{}",
            FIRST[(random % 8) as usize],
            SECOND[((random >> 8) % 8) as usize],
            (random >> 16) % 9000 + 1000
        )
    }

    /// A private IPv6 address in the app's 6PN range.
    fn private_ip(&mut self) -> String {
        let (first, second) = (self.rand(), self.rand());
        format!(
            "fdaa:0:1a2b:a7b:{:x}:{:x}:{:x}:2",
            0x100 + first % 0xeff,
            first >> 48,
            second >> 48
        )
    }

    /// A fresh lease nonce.
    pub(crate) fn lease_nonce(&mut self) -> String {
        format!("{:012x}", self.rand() >> 16)
    }

    /// The region a new Machine lands in: the volume's (which must match a requested one), else the
    /// requested one, else `iad`. The volume must exist and be free.
    fn placement(
        &self,
        app: &App,
        region: Option<String>,
        volume: Option<&String>,
    ) -> ApiResult<String> {
        let region = region.filter(|r| !r.is_empty());
        let Some(volume_id) = volume else {
            return Ok(region.unwrap_or_else(|| "iad".into()));
        };
        let volume = app
            .volumes
            .get(volume_id)
            .ok_or_else(|| ApiError::not_found(format!("volume not found: {volume_id}")))?;
        if let Some(machine) = &volume.attached_machine_id {
            return Err(ApiError::new(
                412,
                format!(
                    "failed_precondition: volume {volume_id} is already attached to machine {machine}"
                ),
            ));
        }
        match region {
            Some(r) if r != volume.region => Err(ApiError::bad(format!(
                "volume {volume_id} is in region {}, not {r}",
                volume.region
            ))),
            _ => Ok(volume.region.clone()),
        }
    }

    /// The requested name if no live Machine has it (409 otherwise), or a generated one.
    fn unique_name(&mut self, app: &str, requested: Option<String>) -> ApiResult<String> {
        match requested.filter(|n| !n.is_empty()) {
            Some(name) => {
                let taken = self
                    .app(app)?
                    .machines
                    .values()
                    .any(|m| !m.destroyed && m.name == name);
                if taken {
                    return Err(ApiError::new(
                        409,
                        format!("already_exists: a machine named {name} already exists"),
                    ));
                }
                Ok(name)
            }
            None => Ok(self.generated_name()),
        }
    }

    /// A live Machine's view.
    fn machine_view(&self, app: &str, id: &str, now: i64) -> ApiResult<MachineView> {
        let found = self.app(app)?;
        let machine = found
            .machines
            .get(id)
            .ok_or_else(|| ApiError::not_found("machine vanished"))?;
        Ok(view(found, machine, now, true))
    }
}

impl Sim {
    /// Create a Machine (and launch it unless `skip_launch`); the 408-after-success fault may follow.
    pub(crate) fn create_machine(
        &self,
        caller: &Token,
        app: &str,
        request: MachineRequest,
    ) -> ApiResult<MachineView> {
        if request
            .lease_ttl
            .is_some_and(|ttl| ttl == 0 || ttl > MAX_LEASE_TTL as u64)
        {
            return Err(ApiError::bad(format!(
                "invalid_argument: lease_ttl must be between 1 and {MAX_LEASE_TTL} seconds"
            )));
        }
        let config = clean_config(request.config.clone())?;
        let volume = mounted_volume(&config)?;
        let now = ms(self.now());
        let start = self.timing().start;
        let owner = caller.user.clone().unwrap_or_else(|| "flysim".into());
        let created = self.with_visible_app(caller, app, |state| {
            let found = state.app(app)?;
            let skip_secrets = request.skip_secrets.unwrap_or(false);
            let (secrets, secrets_version) =
                snapshot_secrets(found, request.min_secrets_version, skip_secrets)?;
            let region = state.placement(found, request.region.clone(), volume.as_ref())?;
            let name = state.unique_name(app, request.name.clone())?;
            let id = state.next_id("", 14);
            let instance_id = state.ulid(now);
            let private_ip = state.private_ip();
            let lease = request.lease_ttl.map(|ttl| Lease {
                nonce: state.lease_nonce(),
                owner,
                description: String::new(),
                expires_s: now / 1000 + ttl as i64,
                version: instance_id.clone(),
            });
            let machine = Machine {
                id: id.clone(),
                name,
                state: MachineState::Created,
                region,
                instance_id,
                private_ip,
                config,
                created_ms: now,
                updated_ms: now,
                events: Default::default(),
                lease: lease.clone(),
                cordoned: false,
                secrets_env: secrets,
                secrets_version,
                gen: 0,
                restart_count: 0,
                ready_ms: None,
                crash_reason: None,
                volume: volume.clone(),
                destroyed: false,
                checks_run: None,
                checks_loop: 0,
            };
            let owner_app = state.app_mut(app)?;
            if let Some(attached) = volume.as_ref().and_then(|v| owner_app.volumes.get_mut(v)) {
                attached.attached_machine_id = Some(id.clone());
            }
            owner_app.machines.insert(id.clone(), machine);
            state.push_event(app, &id, "launch", "created", "user", now, json!({}));
            if !request.skip_launch.unwrap_or(false) {
                state.transition(
                    app,
                    &id,
                    MachineState::Created,
                    MachineState::Started,
                    now,
                    start,
                )?;
            }
            let mut created = state.machine_view(app, &id, now)?;
            created.nonce = lease.map(|l| l.nonce);
            Ok(created)
        })?;
        self.after_create()?;
        Ok(created)
    }

    /// Replace a Machine's config (new version; volume and region stay), relaunching it.
    pub(crate) fn update_machine(
        &self,
        caller: &Token,
        app: &str,
        id: &str,
        lease_nonce: Option<&str>,
        request: MachineRequest,
    ) -> ApiResult<MachineView> {
        let config = clean_config(request.config.clone())?;
        let volume = mounted_volume(&config)?;
        let now = ms(self.now());
        let start = self.timing().start;
        self.with_visible_app(caller, app, |state| {
            let found = state.app(app)?;
            let machine = found
                .machines
                .get(id)
                .filter(|m| !m.destroyed)
                .ok_or_else(|| ApiError::not_found(format!("machine not found: {id}")))?;
            check_lease(machine, lease_nonce, now)?;
            check_update(machine, &request, volume.as_ref())?;
            let skip_secrets = request.skip_secrets.unwrap_or(false);
            let (secrets, secrets_version) =
                snapshot_secrets(found, request.min_secrets_version, skip_secrets)?;
            let was = machine.state;
            let instance_id = state.ulid(now);
            let machine = state.machine_mut(app, id)?;
            machine.config = config;
            machine.instance_id = instance_id;
            machine.secrets_env = secrets;
            machine.secrets_version = secrets_version;
            machine.updated_ms = now;
            machine.crash_reason = None;
            if let Some(lease) = machine.lease.as_mut() {
                lease.version = machine.instance_id.clone();
            }
            state.push_event(app, id, "update", "replacing", "user", now, json!({}));
            if launches_after_update(was, request.skip_launch.unwrap_or(false)) {
                crate::image::halted(state, app, id, now);
                state.transition(
                    app,
                    id,
                    MachineState::Replacing,
                    MachineState::Started,
                    now,
                    start,
                )?;
            }
            state.machine_view(app, id, now)
        })
    }

    pub(crate) fn get_machine(
        &self,
        caller: &Token,
        app: &str,
        id: &str,
    ) -> ApiResult<MachineView> {
        let now = ms(self.now());
        let state = self.lock();
        let found = state.visible_app(caller, app)?;
        let machine = found
            .machines
            .get(id)
            .ok_or_else(|| ApiError::not_found(format!("machine not found: {id}")))?;
        Ok(view(found, machine, now, true))
    }

    pub(crate) fn list_machines(
        &self,
        caller: &Token,
        app: &str,
        filter: &MachineFilter,
    ) -> ApiResult<Vec<MachineView>> {
        let now = ms(self.now());
        let state = self.lock();
        let found = state.visible_app(caller, app)?;
        Ok(found
            .machines
            .values()
            .filter(|machine| filter.matches(machine))
            .map(|machine| view(found, machine, now, filter.with_lease))
            .collect())
    }
}

/// An update may not change the version it was based on, the volume or the region.
fn check_update(
    machine: &Machine,
    request: &MachineRequest,
    volume: Option<&String>,
) -> ApiResult<()> {
    if let Some(version) = &request.current_version {
        if *version != machine.instance_id {
            return Err(ApiError::new(
                412,
                format!(
                    "failed_precondition: current_version {version} does not match machine version {}",
                    machine.instance_id
                ),
            ));
        }
    }
    if volume != machine.volume.as_ref() {
        return Err(ApiError::bad(
            "invalid config.mounts: a machine's volume cannot be changed by an update",
        ));
    }
    if let Some(region) = request.region.as_ref().filter(|r| !r.is_empty()) {
        if *region != machine.region {
            return Err(ApiError::bad(format!(
                "region cannot be changed by an update ({} → {region})",
                machine.region
            )));
        }
    }
    Ok(())
}

/// A mutating call on a leased Machine needs the lease's nonce.
pub(crate) fn check_lease(machine: &Machine, given: Option<&str>, now: i64) -> ApiResult<()> {
    let Some(lease) = machine.lease.as_ref().filter(|l| l.expires_s * 1000 > now) else {
        return Ok(());
    };
    let until = crate::clock::rfc3339(lease.expires_s * 1000);
    match given {
        Some(nonce) if nonce == lease.nonce => Ok(()),
        Some(_) => Err(ApiError::new(
            409,
            format!(
                "lease nonce mismatch: machine {} is leased by {} until {until}",
                machine.id, lease.owner
            ),
        )),
        None => Err(ApiError::new(
            409,
            format!(
                "machine {} is leased by {} until {until}; send fly-machine-lease-nonce",
                machine.id, lease.owner
            ),
        )),
    }
}

/// Whether an update relaunches the Machine: a started one always; a starting, restarting, replacing or
/// failed one unless `skip_launch`; a stopped, suspended or created one never ("machine was in a
/// non-started state prior to the update so leaving the new version stopped", a Fly log line). fly-go
/// sends `skip_launch` with `omitempty`, so Fly cannot tell `false` from absent; flyctl
/// `internal/command/deploy/machines_launchinput.go::shouldSkipLaunch` relaunches started, starting and
/// failed Machines only.
fn launches_after_update(was: MachineState, skip_launch: bool) -> bool {
    use MachineState::*;
    match was {
        Started => true,
        Starting | Restarting | Replacing | Failed => !skip_launch,
        _ => false,
    }
}
