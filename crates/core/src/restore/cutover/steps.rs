//! One executor per step of a cutover or rollback. Each looks before it changes and keeps what it did in its
//! step's `produced` as it goes (volume and machine ids, secrets versions, the machines it stopped or rolled
//! out), so an attempt after a crash, a lost answer or a retry carries on instead of doing anything twice.
//! Values of secrets are read into `SecretString`s, sealed before they are replaced, and never written anywhere
//! else.

use std::collections::BTreeMap;
use std::time::Duration;

use fly::{
    CreateMachineRequest, CreateVolumeRequest, FlyClient, ListMachines, Machine, StopRequest,
    UpdateMachineRequest, WaitFor,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use crate::keyring::Keyring;

use super::super::engine::RUN_METADATA;
use super::checklist;
use super::store::{self, CutoverRow, Held};
use super::{url, CutoverError, CutoverOptions, CutoverStepView, DATABASE_URL, ENABLE_WALG};

pub(super) const STOP_ARCHIVING: &str = "stop_archiving";
pub(super) const CLONE_REPLICAS: &str = "clone_replicas";
pub(super) const POINT_APP: &str = "point_app";
pub(super) const STOP_OLD: &str = "stop_old";
pub(super) const VERIFY: &str = "verify";
pub(super) const RESUME_ARCHIVING: &str = "resume_archiving";
pub(super) const START_OLD: &str = "start_old";
pub(super) const RESTORE_APP: &str = "restore_app";
pub(super) const VERIFY_ROLLBACK: &str = "verify_rollback";

/// The metadata key that names the cutover (its run) a cloned replica belongs to, and the replica's number.
pub const CUTOVER_METADATA: &str = "walden_cutover";
pub const REPLICA_METADATA: &str = "walden_replica";

/// How long a machine lease taken for an update lasts, and how long a held one is waited out.
const MACHINE_LEASE_SECS: u64 = 120;
const LEASE_PATIENCE: Duration = Duration::from_secs(60);

/// Why a step attempt did not succeed.
#[derive(Debug)]
pub(super) enum StepError {
    /// Worth another attempt (429, 5xx, 408, a lost connection, an ambiguous create, a lease conflict).
    Transient(String),
    /// The phase stops with this cause, in plain words.
    Permanent(String),
    /// The console lost the cutover (its lease) or the database: stop without recording anything.
    Cutover(CutoverError),
}

impl From<fly::Error> for StepError {
    fn from(e: fly::Error) -> Self {
        let text = e.to_string();
        let transient = match &e {
            fly::Error::Transport { .. } | fly::Error::AmbiguousCreate { .. } => true,
            fly::Error::WaitTimeout { .. } => true,
            fly::Error::Api { status, .. } => matches!(status, 408 | 409 | 429) || *status >= 500,
            _ => false,
        };
        if transient {
            StepError::Transient(text)
        } else {
            StepError::Permanent(format!("Fly refused: {text}."))
        }
    }
}

impl From<CutoverError> for StepError {
    fn from(e: CutoverError) -> Self {
        StepError::Cutover(e)
    }
}

/// What a step needs.
pub(super) struct Ctx<'a> {
    pub client: &'a FlyClient,
    pub keyring: &'a Keyring,
    pub held: &'a Held<'a>,
    pub row: &'a CutoverRow,
    /// The cutover's steps (what it did, for the rollback and the checklist).
    pub cutover: &'a [CutoverStepView],
    pub options: &'a CutoverOptions,
}

impl Ctx<'_> {
    /// What the cutover's step `kind` (for `app`, when per app) produced.
    pub fn cutover_produced(&self, kind: &str, app: Option<&str>) -> Value {
        self.cutover
            .iter()
            .find(|s| s.kind == kind && s.app.as_deref() == app)
            .map(|s| s.produced.clone())
            .unwrap_or(Value::Null)
    }
}

/// Runs one attempt of `step`, carrying on from (and adding to) `produced`.
pub(super) async fn execute(
    ctx: &Ctx<'_>,
    step: &CutoverStepView,
    produced: &mut Value,
) -> Result<(), StepError> {
    if !produced.is_object() {
        *produced = json!({});
    }
    let app = step.app.as_deref().unwrap_or_default();
    let idx = step.index;
    match step.kind.as_str() {
        STOP_ARCHIVING => stop_archiving(ctx, idx, produced).await,
        CLONE_REPLICAS => clone_replicas(ctx, idx, produced).await,
        POINT_APP => point_app(ctx, idx, app, produced).await,
        STOP_OLD => stop_old(ctx, idx, produced).await,
        RESUME_ARCHIVING => resume_archiving(ctx, idx, produced).await,
        START_OLD => start_old(ctx, idx, produced).await,
        RESTORE_APP => restore_app(ctx, idx, app, produced).await,
        VERIFY | VERIFY_ROLLBACK => verify(ctx, step, produced).await,
        other => Err(StepError::Permanent(format!("unknown step {other}"))),
    }
}

// ---------------------------------------------------------------- reading Fly

/// The app's machines that are not destroyed.
pub(super) async fn live_machines(
    client: &FlyClient,
    app: &str,
) -> Result<Vec<Machine>, fly::Error> {
    Ok(client
        .list_machines(app, &ListMachines::default())
        .await?
        .into_iter()
        .filter(|m| !m.is_gone())
        .collect())
}

/// The value of `app`'s secret `name` (`None`: not set). Fly leaving the value out (the token may not read
/// values) stops the step: without it nothing can be kept for a rollback.
pub(super) async fn secret_value(
    client: &FlyClient,
    app: &str,
    name: &str,
) -> Result<Option<SecretString>, StepError> {
    let secrets = client.list_secrets_with_values(app).await?;
    let Some(secret) = secrets.into_iter().find(|s| s.name == name) else {
        return Ok(None);
    };
    secret.value.map(Some).ok_or_else(|| {
        StepError::Permanent(format!(
            "Fly did not show the value of {name} in {app}: the organisation's token cannot read secret values, \
             so the old value cannot be kept for a rollback."
        ))
    })
}

/// Why `app` cannot be pointed at a new cluster, if it cannot: it must exist and its `DATABASE_URL` must
/// point at `old_app` (`<old_app>.flycast` or `.internal`).
pub(super) async fn points_at(client: &FlyClient, app: &str, old_app: &str) -> Result<(), String> {
    match client.get_app(app).await {
        Ok(_) => {}
        Err(e) if e.is_not_found() => return Err(format!("There is no app {app} on Fly.")),
        Err(e) => return Err(format!("{app} cannot be read on Fly: {e}.")),
    }
    let value = match secret_value(client, app, DATABASE_URL).await {
        Ok(Some(v)) => v,
        Ok(None) => {
            return Err(format!(
                "{app} has no {DATABASE_URL} secret to point elsewhere."
            ))
        }
        Err(StepError::Permanent(why) | StepError::Transient(why)) => return Err(why),
        Err(StepError::Cutover(e)) => return Err(e.to_string()),
    };
    let host = url::host(value.expose_secret())
        .unwrap_or_default()
        .to_owned();
    if url::cluster_suffix(&host, old_app).is_none() {
        return Err(format!(
            "{app}'s {DATABASE_URL} does not point at {old_app} (its host is {}); only apps using the old cluster \
             are moved.",
            if host.is_empty() { "unreadable" } else { &host }
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- changing Fly, one machine at a time

/// The ids in `produced[key]` (an array of strings).
pub(super) fn ids(produced: &Value, key: &str) -> Vec<String> {
    produced
        .get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Waits for `state` (of `version`, when given) in bounded calls, keeping the cutover's lease between them; a
/// machine in `failed` stops the step.
async fn wait_state(
    ctx: &Ctx<'_>,
    app: &str,
    id: &str,
    state: &str,
    version: Option<String>,
) -> Result<(), StepError> {
    let start = tokio::time::Instant::now();
    let what = WaitFor::state(state).version(version);
    loop {
        match ctx
            .client
            .wait(app, id, &what, Duration::from_secs(30))
            .await
        {
            Ok(_) => return Ok(()),
            Err(fly::Error::WaitTimeout { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let machine = ctx.client.get_machine(app, id).await?;
        if machine.state == "failed" && state != "failed" {
            return Err(StepError::Permanent(format!(
                "The machine {id} of {app} is in the failed state; look at fly machine status {id} -a {app}."
            )));
        }
        if start.elapsed() >= ctx.options.wait_deadline {
            return Err(StepError::Permanent(format!(
                "The machine {id} of {app} was not {state} after {} s (it is {}); look at its logs (fly logs -a {app}).",
                ctx.options.wait_deadline.as_secs(),
                machine.state
            )));
        }
        ctx.held.refresh().await?;
    }
}

/// Rolls secrets `version` out to every live machine of `app` as `fly secrets set` does (leaders last; each
/// under a machine lease: get, update with its own config and `min_secrets_version`, wait): a machine that was
/// started is launched by the update and waited for; any other is updated with `skip_launch` and stays as it
/// was, unless it is in `launch` (the rollback's stopped machines): then it is started once updated. Each machine done is kept in `produced["machines"]` (its id → the
/// instance it runs now, which the checklist compares), so a second attempt skips it.
async fn roll_out(
    ctx: &Ctx<'_>,
    idx: usize,
    app: &str,
    version: Option<u64>,
    launch: &[String],
    produced: &mut Value,
) -> Result<(), StepError> {
    let mut machines = live_machines(ctx.client, app).await?;
    machines.sort_by_key(|m| {
        (
            fly::stolon::role(m) == fly::stolon::Role::Leader,
            m.id.clone(),
        )
    });
    for m in machines {
        if produced["machines"].get(&m.id).is_some() {
            continue;
        }
        let lease = ctx
            .client
            .acquire_lease_waiting(
                app,
                &m.id,
                MACHINE_LEASE_SECS,
                Some("walden cutover"),
                LEASE_PATIENCE,
            )
            .await?;
        let nonce = lease.nonce.unwrap_or_default();
        let updated = update_one(ctx, app, &m.id, version, launch, &nonce).await;
        if let Err(e) = ctx.client.release_lease(app, &m.id, &nonce).await {
            tracing::warn!(machine = %m.id, error = %e, "cutover: could not release a machine lease");
        }
        let instance = updated?;
        if !produced["machines"].is_object() {
            produced["machines"] = json!({});
        }
        produced["machines"][&m.id] = json!(instance);
        ctx.held.progress(idx, produced).await?;
    }
    Ok(())
}

/// One machine of [`roll_out`], under its lease: returns the instance it runs after the update.
async fn update_one(
    ctx: &Ctx<'_>,
    app: &str,
    id: &str,
    version: Option<u64>,
    launch: &[String],
    nonce: &str,
) -> Result<String, StepError> {
    let m = ctx.client.get_machine(app, id).await?;
    let config = m.config.clone().ok_or_else(|| {
        StepError::Permanent(format!(
            "The machine {id} of {app} has no config to update."
        ))
    })?;
    let relaunch = !fly::should_skip_launch(&m.state);
    let start = !relaunch && launch.iter().any(|l| l == id);
    let req = UpdateMachineRequest {
        config,
        name: None,
        region: None,
        min_secrets_version: version,
        skip_launch: (!relaunch).then_some(true),
        skip_secrets: None,
        current_version: m.instance_id.clone(),
    };
    let nonce = (!nonce.is_empty()).then_some(nonce);
    let updated = ctx.client.update_machine(app, id, &req, nonce).await?;
    if relaunch {
        wait_state(ctx, app, id, "started", updated.instance_id.clone()).await?;
    } else if start {
        // Fly leaves a machine that was not started stopped after an update (and refuses a start while the
        // update replaces it): the new version settles, then is started with the app's current secrets.
        wait_state(ctx, app, id, "settled", updated.instance_id.clone()).await?;
        ctx.client.start_machine(app, id, nonce).await?;
        wait_state(ctx, app, id, "started", updated.instance_id.clone()).await?;
    }
    Ok(updated.instance_id.unwrap_or_default())
}

/// Sets (or unsets, `None`) `app`'s secret `name` unless a version was set by an earlier attempt; returns the
/// version, kept in `produced["secrets_version"]` at once.
async fn set_secret_once(
    ctx: &Ctx<'_>,
    idx: usize,
    app: &str,
    name: &str,
    value: Option<SecretString>,
    produced: &mut Value,
) -> Result<u64, StepError> {
    if let Some(v) = produced.get("secrets_version").and_then(Value::as_u64) {
        return Ok(v);
    }
    let values = BTreeMap::from([(name.to_owned(), value)]);
    let version = ctx.client.update_secrets(app, &values).await?;
    produced["secrets_version"] = json!(version);
    ctx.held.progress(idx, produced).await?;
    Ok(version)
}

// ---------------------------------------------------------------- the cutover

/// `ENABLE_WALG` unset on the old cluster (its value kept sealed first), rolled out to its machines.
async fn stop_archiving(ctx: &Ctx<'_>, idx: usize, produced: &mut Value) -> Result<(), StepError> {
    let old = &ctx.row.old_app;
    if produced.get("secrets_version").is_none() {
        if let Some(value) = secret_value(ctx.client, old, ENABLE_WALG).await? {
            keep(ctx, old, ENABLE_WALG, &value).await?;
        }
    }
    // Unsetting a secret that is not set is no error on Fly (and gives the version to roll out).
    let version = set_secret_once(ctx, idx, old, ENABLE_WALG, None, produced).await?;
    roll_out(ctx, idx, old, Some(version), &[], produced).await
}

/// Keeps `value` (what `app`'s `name` was) sealed for a rollback.
async fn keep(ctx: &Ctx<'_>, app: &str, name: &str, value: &SecretString) -> Result<(), StepError> {
    store::keep_secret(ctx.held.pool, ctx.keyring, ctx.held.run, app, name, value)
        .await
        .map_err(StepError::Cutover)
}

/// How many replicas the new cluster gets: the old cluster's machines but one (the new leader).
async fn replica_count(ctx: &Ctx<'_>) -> Result<usize, StepError> {
    Ok(live_machines(ctx.client, &ctx.row.old_app)
        .await?
        .len()
        .saturating_sub(1))
}

/// Replicas cloned from the new cluster's leader as `fly machine clone` does: a new empty volume each (the
/// leader's volume name and size; its region, or the user's choice), a machine with the leader's config on it, waited for.
async fn clone_replicas(ctx: &Ctx<'_>, idx: usize, produced: &mut Value) -> Result<(), StepError> {
    let new = &ctx.row.new_app;
    let count = match produced.get("replicas").and_then(Value::as_u64) {
        Some(n) => n as usize,
        None => {
            let n = replica_count(ctx).await?;
            produced["replicas"] = json!(n);
            produced["volumes"] = json!({});
            produced["machines"] = json!({});
            ctx.held.progress(idx, produced).await?;
            n
        }
    };
    for i in 1..=count {
        let key = i.to_string();
        let machines = live_machines(ctx.client, new).await?;
        if let Some(m) = machines.iter().find(|m| is_replica(m, ctx.held.run, &key)) {
            produced["machines"][&key] = json!(m.id);
            continue;
        }
        let leader = new_leader(new, &machines)?;
        let volume = clone_volume(ctx, idx, new, &leader, &key, produced).await?;
        let machine = clone_machine(ctx, new, &leader, &key, &volume).await?;
        produced["machines"][&key] = json!(machine.id);
        ctx.held.progress(idx, produced).await?;
    }
    for i in 1..=count {
        if let Some(id) = produced["machines"][i.to_string()].as_str() {
            wait_state(ctx, new, id, "started", None).await?;
        }
    }
    Ok(())
}

/// Whether `m` is replica `key` of the cutover `run`.
fn is_replica(m: &Machine, run: &str, key: &str) -> bool {
    m.config.as_ref().is_some_and(|c| {
        c.metadata.get(CUTOVER_METADATA).map(String::as_str) == Some(run)
            && c.metadata.get(REPLICA_METADATA).map(String::as_str) == Some(key)
    })
}

/// The new cluster's leader (else its only started machine): what replicas are cloned from.
fn new_leader(app: &str, machines: &[Machine]) -> Result<Machine, StepError> {
    let started: Vec<&Machine> = machines.iter().filter(|m| m.state == "started").collect();
    fly::stolon::find_leader(machines)
        .ok()
        .or(match started.as_slice() {
            [one] => Some(*one),
            _ => None,
        })
        .cloned()
        .ok_or_else(|| {
            StepError::Transient(format!(
                "the new cluster {app} has no started leader to clone replicas from yet"
            ))
        })
}

/// Where the replicas go: the user's choice, else the leader's region.
fn replica_region(ctx: &Ctx<'_>, leader: &Machine) -> String {
    ctx.row
        .replica_region
        .clone()
        .unwrap_or_else(|| leader.region.clone())
}

/// Replica `key`'s volume: the one an earlier attempt made, else a new empty one like the leader's.
async fn clone_volume(
    ctx: &Ctx<'_>,
    idx: usize,
    app: &str,
    leader: &Machine,
    key: &str,
    produced: &mut Value,
) -> Result<String, StepError> {
    let volumes = ctx.client.list_volumes(app).await?;
    if let Some(id) = produced["volumes"][key].as_str() {
        if volumes.iter().any(|v| v.id == id && !v.is_destroyed()) {
            return Ok(id.to_owned());
        }
    }
    let mount = leader
        .config
        .as_ref()
        .and_then(|c| c.mounts.first())
        .cloned()
        .unwrap_or_default();
    let source = volumes
        .iter()
        .find(|v| mount.volume.as_deref() == Some(v.id.as_str()));
    let name = mount
        .name
        .clone()
        .or_else(|| source.map(|v| v.name.clone()))
        .unwrap_or_else(|| "pg_data".into());
    let size_gb = source
        .and_then(|v| v.size_gb)
        .or(mount.size_gb)
        .unwrap_or(10);
    let req = CreateVolumeRequest {
        name,
        region: replica_region(ctx, leader),
        size_gb,
        encrypted: source.and_then(|v| v.encrypted),
        require_unique_zone: None,
        snapshot_id: None,
        source_volume_id: None,
        snapshot_retention: None,
        compute: None,
        compute_image: None,
    };
    let volume = ctx.client.create_volume(app, &req).await?;
    produced["volumes"][key] = json!(volume.id);
    ctx.held.progress(idx, produced).await?;
    Ok(volume.id)
}

/// Replica `key`'s machine on `volume`: the leader's config (without the restore's one-time
/// `FLY_RESTORED_FROM`, which would make a replica start read-write after a reboot, and without the restore
/// run's tag), tagged with the cutover and the replica's number.
async fn clone_machine(
    ctx: &Ctx<'_>,
    app: &str,
    leader: &Machine,
    key: &str,
    volume: &str,
) -> Result<Machine, StepError> {
    let mut config = leader.config.clone().ok_or_else(|| {
        StepError::Permanent(format!(
            "The new cluster's leader {} has no config to clone.",
            leader.id
        ))
    })?;
    config.env.remove("FLY_RESTORED_FROM");
    config.metadata.remove(RUN_METADATA);
    config
        .metadata
        .insert(CUTOVER_METADATA.to_owned(), ctx.held.run.to_owned());
    config
        .metadata
        .insert(REPLICA_METADATA.to_owned(), key.to_owned());
    if let Some(image) = leader.image() {
        config.image = Some(image);
    }
    let mut mount = config.mounts.first().cloned().unwrap_or_default();
    mount.volume = Some(volume.to_owned());
    if mount.path.is_none() {
        mount.path = Some("/data".into());
    }
    config.mounts = vec![mount];
    let req = CreateMachineRequest {
        config,
        name: None,
        region: Some(replica_region(ctx, leader)),
        lease_ttl: None,
        min_secrets_version: ctx.client.secrets_min_version(app),
        skip_launch: None,
        skip_secrets: None,
        skip_service_registration: None,
    };
    Ok(ctx.client.create_machine(app, &req).await?)
}

/// The selected `app`'s `DATABASE_URL` pointed at the new cluster (the old value kept sealed first), rolled
/// out. Already pointing there (an earlier attempt): only the roll-out is finished.
async fn point_app(
    ctx: &Ctx<'_>,
    idx: usize,
    app: &str,
    produced: &mut Value,
) -> Result<(), StepError> {
    if produced.get("secrets_version").is_none() {
        let current = secret_value(ctx.client, app, DATABASE_URL)
            .await?
            .ok_or_else(|| {
                StepError::Permanent(format!("{app} has no {DATABASE_URL} secret any more."))
            })?;
        let host = url::host(current.expose_secret()).unwrap_or_default();
        let new_url = match url::cluster_suffix(host, &ctx.row.old_app) {
            Some(suffix) => {
                keep(ctx, app, DATABASE_URL, &current).await?;
                let new_host = format!("{}{suffix}", ctx.row.new_app);
                produced["host"] = json!(new_host);
                url::with_host(current.expose_secret(), &new_host).map(SecretString::from)
            }
            // An attempt that set it and crashed before keeping the version: setting it again is harmless.
            None if url::cluster_suffix(host, &ctx.row.new_app).is_some() => {
                produced["host"] = json!(host);
                Some(current.clone())
            }
            None => {
                return Err(StepError::Permanent(format!(
                    "{app}'s {DATABASE_URL} no longer points at {} (someone changed it since the cutover \
                     began); nothing of {app} was changed.",
                    ctx.row.old_app
                )))
            }
        };
        let new_url = new_url
            .ok_or_else(|| StepError::Permanent(format!("{app}'s {DATABASE_URL} is not a URL.")))?;
        set_secret_once(ctx, idx, app, DATABASE_URL, Some(new_url), produced).await?;
    }
    let version = produced["secrets_version"].as_u64();
    roll_out(ctx, idx, app, version, &[], produced).await
}

/// The old cluster's started machines stopped (and waited for), never destroyed. Which were started is kept
/// first, so the rollback starts those and an attempt after a crash stops the same ones.
async fn stop_old(ctx: &Ctx<'_>, idx: usize, produced: &mut Value) -> Result<(), StepError> {
    let old = &ctx.row.old_app;
    if produced.get("stopped").is_none() {
        let started: Vec<String> = live_machines(ctx.client, old)
            .await?
            .into_iter()
            .filter(|m| !fly::should_skip_launch(&m.state))
            .map(|m| m.id)
            .collect();
        produced["stopped"] = json!(started);
        ctx.held.progress(idx, produced).await?;
    }
    for id in ids(produced, "stopped") {
        let m = ctx.client.get_machine(old, &id).await?;
        if m.state == "stopped" || m.is_gone() {
            continue;
        }
        if m.state != "stopping" {
            ctx.client
                .stop_machine(old, &id, &StopRequest::default(), None)
                .await?;
        }
        wait_state(ctx, old, &id, "stopped", None).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------- the rollback

/// The old `ENABLE_WALG` set again (staged: [`start_old`] brings it to the machines). Nothing kept (the cutover
/// never got that far, or it was not set): nothing to do.
async fn resume_archiving(
    ctx: &Ctx<'_>,
    idx: usize,
    produced: &mut Value,
) -> Result<(), StepError> {
    let old = &ctx.row.old_app;
    let kept =
        store::kept_secret(ctx.held.pool, ctx.keyring, ctx.held.run, old, ENABLE_WALG).await?;
    if let Some(value) = kept {
        set_secret_once(ctx, idx, old, ENABLE_WALG, Some(value), produced).await?;
    }
    Ok(())
}

/// The old cluster's machines brought back: those the cutover stopped are updated with the resumed secrets
/// version (which launches them) and waited for; the others get it as a roll-out would.
async fn start_old(ctx: &Ctx<'_>, idx: usize, produced: &mut Value) -> Result<(), StepError> {
    let old = &ctx.row.old_app;
    let stopped = ids(&ctx.cutover_produced(STOP_OLD, None), "stopped");
    let version = ctx.held_version(RESUME_ARCHIVING).await?;
    roll_out(ctx, idx, old, version, &stopped, produced).await
}

impl Ctx<'_> {
    /// The secrets version the rollback's step `kind` set, if it set one.
    async fn held_version(&self, kind: &str) -> Result<Option<u64>, StepError> {
        let steps = store::steps(self.held.pool, self.held.run, self.held.phase).await?;
        Ok(steps
            .iter()
            .find(|s| s.kind == kind)
            .and_then(|s| s.produced.get("secrets_version"))
            .and_then(Value::as_u64))
    }
}

/// `app`'s old `DATABASE_URL` set again and rolled out. Nothing kept (the cutover never changed it): nothing
/// to do.
async fn restore_app(
    ctx: &Ctx<'_>,
    idx: usize,
    app: &str,
    produced: &mut Value,
) -> Result<(), StepError> {
    let Some(old) =
        store::kept_secret(ctx.held.pool, ctx.keyring, ctx.held.run, app, DATABASE_URL).await?
    else {
        return Ok(());
    };
    let host = url::host(old.expose_secret())
        .unwrap_or_default()
        .to_owned();
    produced["host"] = json!(host);
    let version = set_secret_once(ctx, idx, app, DATABASE_URL, Some(old), produced).await?;
    roll_out(ctx, idx, app, Some(version), &[], produced).await
}

/// The checklist, checked until every line holds (machines take a while to pass their checks) or the wait
/// deadline passes; the last result is kept in `produced["checks"]` either way.
async fn verify(
    ctx: &Ctx<'_>,
    step: &CutoverStepView,
    produced: &mut Value,
) -> Result<(), StepError> {
    let start = tokio::time::Instant::now();
    loop {
        let checks = match step.kind.as_str() {
            VERIFY => checklist::cutover(ctx).await?,
            _ => checklist::rollback(ctx).await?,
        };
        let failing: Vec<String> = checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{} ({})", c.what, c.detail))
            .collect();
        produced["checks"] = serde_json::to_value(&checks).map_err(CutoverError::from)?;
        ctx.held.progress(step.index, produced).await?;
        if failing.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= ctx.options.wait_deadline {
            return Err(StepError::Permanent(format!(
                "The checklist does not hold after {} s: {}.",
                ctx.options.wait_deadline.as_secs(),
                failing.join("; ")
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
