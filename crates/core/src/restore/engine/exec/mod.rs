//! One executor per built [`Step`]: each looks before it creates, so running it again after a crash, a lost
//! answer or a retry finds what it made instead of making it twice. The app is created by the run, so whatever
//! is inside it is the run's; machines are also tagged `walden_run=<run id>` in their metadata.

use std::collections::BTreeMap;
use std::time::Duration;

use fly::{
    CreateAppRequest, CreateMachineRequest, CreateVolumeRequest, FlyClient, ListMachines, Machine,
    MachineConfig, MachineGuest, MachineMount, WaitFor,
};
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::escrow::Escrow;

use super::super::{Plan, Step};
use super::runs::Held;
use super::{EngineError, EngineOptions};

mod existing;
mod pitr;
mod post;
mod verify;

pub(crate) use existing::stopped_ids;
pub use verify::assertion_holds;

/// The metadata key that names the run a machine belongs to.
pub const RUN_METADATA: &str = "walden_run";

/// Where the new cluster's secrets come from: a value in the plan of this form is filled in at run time.
pub(super) const ESCROWED: &str = "<escrowed ";
/// The Consul URL placeholder: [`enable_consul`] sets `FLY_CONSUL_URL` itself, so the URL (it carries a
/// Consul token) is never held beyond that step.
const FROM_CONSUL: &str = "<from enablePostgresConsul>";

/// Why a step attempt did not succeed.
#[derive(Debug)]
pub(super) enum StepError {
    /// Worth another attempt (429, 5xx, 408, a lost connection, an ambiguous create, a lease conflict).
    Transient(String),
    /// The run stops with this cause, in plain words.
    Permanent(String),
    /// The worker lost the run (its lease) or the database: stop without recording anything.
    Engine(EngineError),
}

impl From<fly::Error> for StepError {
    fn from(e: fly::Error) -> Self {
        let text = e.to_string();
        let transient = match &e {
            fly::Error::Transport { .. } | fly::Error::AmbiguousCreate { .. } => true,
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

impl From<EngineError> for StepError {
    fn from(e: EngineError) -> Self {
        StepError::Engine(e)
    }
}

/// Whether the engine can run `step`. The run pauses before the first one it cannot: a bare
/// [`Step::Exec`] (an argv the engine has no executor for, from a plan older than the PITR steps).
pub(super) fn built(step: &Step) -> bool {
    !matches!(step, Step::Exec { .. })
}

/// The step's kind as stored (`create_app`, …).
pub(super) fn kind(step: &Step) -> String {
    serde_json::to_value(step)
        .ok()
        .and_then(|v| v.get("step").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// What a step needs to run.
pub(super) struct StepCtx<'a> {
    pub client: &'a FlyClient,
    pub escrow: &'a Escrow,
    pub plan: &'a Plan,
    pub held: &'a Held<'a>,
    /// What the steps before this one produced, in order.
    pub earlier: &'a [Value],
    /// Attempts of this step made before this one (by this worker or one that crashed).
    pub prior_attempts: i64,
    /// The step's index in the plan (where its progress is stored).
    pub index: usize,
    /// Deadlines and the poll interval of the long steps.
    pub options: EngineOptions,
    /// Whether the worker is shutting down (asked between two polls of a long step).
    pub stop: &'a (dyn Fn() -> bool + Sync),
}

impl StepCtx<'_> {
    /// Between two polls of a long step: keeps the lease, waits the poll interval, and stops the step (it stays
    /// running, to resume) when the worker shuts down.
    async fn pause(&self) -> Result<(), StepError> {
        self.held.refresh().await?;
        if (self.stop)() {
            return Err(StepError::Engine(EngineError::Stopped));
        }
        tokio::time::sleep(self.options.poll_interval).await;
        if (self.stop)() {
            return Err(StepError::Engine(EngineError::Stopped));
        }
        Ok(())
    }

    /// The newest value an earlier step produced under `key`.
    fn earlier_str(&self, key: &str) -> Option<String> {
        self.earlier
            .iter()
            .rev()
            .find_map(|v| v.get(key).and_then(Value::as_str).map(str::to_owned))
    }

    /// The newest secrets version an earlier step set (what a machine must start with).
    fn secrets_version(&self) -> Option<u64> {
        self.earlier
            .iter()
            .filter_map(|v| v.get("secrets_version").and_then(Value::as_u64))
            .max()
    }
}

/// Runs one attempt of `step`; what it produced (ids and versions, never a secret).
pub(super) async fn execute(ctx: &StepCtx<'_>, step: &Step) -> Result<Value, StepError> {
    match step {
        Step::CreateApp { app, org } => create_app(ctx, app, org).await,
        Step::EnableConsul { app } => enable_consul(ctx, app).await,
        Step::SetSecrets { app, values } => set_secrets(ctx, app, values).await,
        Step::CreateVolume {
            app,
            name,
            region,
            size_gb,
        } => create_volume(ctx, app, name, region, *size_gb).await,
        Step::CreateMachine { .. } => create_machine(ctx, step).await,
        Step::Wait { app, state } => wait_started(ctx, app, state).await,
        Step::KeeperCheck { app, argv } => pitr::keeper_check(ctx, app, argv).await,
        Step::PitrInit { app, argv, .. } => pitr::pitr_init(ctx, app, argv).await,
        Step::PitrProgress { app, argv } => pitr::pitr_progress(ctx, app, argv).await,
        Step::Verify {
            app,
            assertion,
            database,
        } => verify::verify(ctx, app, assertion.as_deref(), database.as_deref()).await,
        Step::ProveLogins { app } => verify::prove_logins(ctx, app).await,
        Step::KeepOneMachine { app } => existing::keep_one_machine(ctx, app).await,
        Step::UpdateMachine { app, .. } => post::update_machine(ctx, app).await,
        Step::BackupPush { app, argv, .. } => post::backup_push(ctx, app, argv).await,
        other @ Step::Exec { .. } => Err(StepError::Permanent(format!(
            "the step {} has no executor",
            kind(other)
        ))),
    }
}

/// The app, created once. An app of that name found before this step ever sent a create was made by someone
/// else since the plan: the run stops rather than take it over. Found after an attempt that may have sent the
/// create (a crash, a lost answer): it is the run's.
async fn create_app(ctx: &StepCtx<'_>, app: &str, org: &str) -> Result<Value, StepError> {
    match ctx.client.get_app(app).await {
        Ok(_) if ctx.prior_attempts > 0 => return Ok(json!({ "app": app })),
        Ok(_) => return Err(name_taken(app)),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    let req = CreateAppRequest {
        name: app.to_owned(),
        org_slug: org.to_owned(),
        network: None,
        enable_subdomains: None,
        app_role_id: None,
    };
    match ctx.client.create_app(&req).await {
        Ok(()) => Ok(json!({ "app": app })),
        Err(e) if e.status() == Some(422) => Err(name_taken(app)),
        Err(e) => Err(e.into()),
    }
}

fn name_taken(app: &str) -> StepError {
    StepError::Permanent(format!(
        "The name {app} was taken since the plan: an app of that name exists that this restore did not create. \
         Nothing was changed; plan again with another name."
    ))
}

/// `FLY_CONSUL_URL` from `enablePostgresConsul`, set at once (the image panics without it). Already set: done.
async fn enable_consul(ctx: &StepCtx<'_>, app: &str) -> Result<Value, StepError> {
    let secrets = ctx.client.list_secrets(app).await?;
    if secrets.iter().any(|s| s.name == "FLY_CONSUL_URL") {
        return Ok(json!({ "consul": "set" }));
    }
    let url = ctx.client.enable_postgres_consul(app).await?;
    let values = BTreeMap::from([("FLY_CONSUL_URL".to_owned(), Some(url))]);
    let version = ctx.client.update_secrets(app, &values).await?;
    Ok(json!({ "consul": "set", "secrets_version": version }))
}

/// The plan's secrets with the escrowed values filled in now (opened from escrow for this call only, never
/// stored); setting the same values again is harmless, so this step simply runs again.
async fn set_secrets(
    ctx: &StepCtx<'_>,
    app: &str,
    values: &BTreeMap<String, Option<String>>,
) -> Result<Value, StepError> {
    let escrowed: Vec<&str> = values
        .iter()
        .filter(|(_, v)| v.as_deref().is_some_and(|v| v.starts_with(ESCROWED)))
        .map(|(k, _)| k.as_str())
        .collect();
    let source = &ctx.plan.source;
    let mut opened = if escrowed.is_empty() {
        BTreeMap::new()
    } else {
        ctx.escrow
            .values_for_restore(&source.org, &source.app, ctx.plan.escrow.version, &escrowed)
            .await
            .map_err(|e| {
                StepError::Permanent(format!(
                    "The escrowed values of {}/{} (version {}) cannot be opened: {e}.",
                    source.org, source.app, ctx.plan.escrow.version
                ))
            })?
    };
    let mut resolved: BTreeMap<String, Option<SecretString>> = BTreeMap::new();
    for (name, value) in values {
        match value.as_deref() {
            None => {
                resolved.insert(name.clone(), None);
            }
            Some(FROM_CONSUL) => {}
            Some(v) if v.starts_with(ESCROWED) => {
                let value = opened.remove(name).ok_or_else(|| {
                    StepError::Permanent(format!("The escrowed {name} could not be opened."))
                })?;
                resolved.insert(name.clone(), Some(value));
            }
            Some(v) => {
                resolved.insert(name.clone(), Some(SecretString::from(v.to_owned())));
            }
        }
    }
    let version = ctx.client.update_secrets(app, &resolved).await?;
    Ok(json!({ "secrets_version": version }))
}

/// The data volume: one of the plan's name already in the (run's own) app is the one this run made.
async fn create_volume(
    ctx: &StepCtx<'_>,
    app: &str,
    name: &str,
    region: &str,
    size_gb: i64,
) -> Result<Value, StepError> {
    let existing = ctx.client.list_volumes(app).await?;
    if let Some(v) = existing
        .iter()
        .find(|v| !v.is_destroyed() && v.name == name)
    {
        return Ok(json!({ "volume": v.id }));
    }
    let req = CreateVolumeRequest {
        name: name.to_owned(),
        region: region.to_owned(),
        size_gb,
        encrypted: None,
        require_unique_zone: None,
        snapshot_id: None,
        source_volume_id: None,
        snapshot_retention: None,
        compute: None,
        compute_image: None,
    };
    let volume = ctx.client.create_volume(app, &req).await?;
    Ok(json!({ "volume": volume.id }))
}

/// The machine: the source's full config read now, the plan's image, size, region and env, the new volume,
/// tagged with the run, started with the secrets version the earlier steps set. A machine of this run already
/// in the app is the one.
async fn create_machine(ctx: &StepCtx<'_>, step: &Step) -> Result<Value, StepError> {
    let Step::CreateMachine {
        app,
        region,
        image,
        memory_mb,
        cpus,
        cpu_kind,
        env,
    } = step
    else {
        return Err(StepError::Permanent("not a machine step".into()));
    };
    if let Some(m) = run_machine(ctx, app).await? {
        return Ok(json!({ "machine": m.id }));
    }
    let volume = ctx
        .earlier_str("volume")
        .ok_or_else(|| StepError::Permanent("the volume step produced no volume id".into()))?;
    let source = source_config(ctx.client, &ctx.plan.source.app).await?;
    let mut config = source;
    config.image = Some(image.clone());
    let guest = config.guest.get_or_insert_with(MachineGuest::default);
    guest.memory_mb = Some(*memory_mb);
    guest.cpus = Some(*cpus);
    guest.cpu_kind = Some(cpu_kind.clone());
    config
        .env
        .extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let path = config
        .mounts
        .first()
        .and_then(|m| m.path.clone())
        .unwrap_or_else(|| "/data".into());
    config.mounts = vec![MachineMount {
        volume: Some(volume),
        path: Some(path),
        ..MachineMount::default()
    }];
    config
        .metadata
        .insert(RUN_METADATA.to_owned(), ctx.held.run.to_owned());
    let req = CreateMachineRequest {
        config,
        name: None,
        region: Some(region.clone()),
        lease_ttl: None,
        min_secrets_version: ctx.secrets_version(),
        skip_launch: None,
        skip_secrets: None,
        skip_service_registration: None,
    };
    let machine = ctx.client.create_machine(app, &req).await?;
    Ok(json!({ "machine": machine.id }))
}

/// The machine of this run in `app`, if one exists.
async fn run_machine(ctx: &StepCtx<'_>, app: &str) -> Result<Option<Machine>, StepError> {
    let machines = ctx
        .client
        .list_machines(app, &ListMachines::default())
        .await?;
    Ok(machines.into_iter().find(|m| {
        !m.is_gone()
            && m.config
                .as_ref()
                .and_then(|c| c.metadata.get(RUN_METADATA))
                .is_some_and(|r| r == ctx.held.run)
    }))
}

/// The source's leader's (else any live machine's) full config, read at run time.
async fn source_config(client: &FlyClient, app: &str) -> Result<MachineConfig, StepError> {
    let machines: Vec<Machine> = client
        .list_machines(app, &ListMachines::default())
        .await?
        .into_iter()
        .filter(|m| !m.is_gone())
        .collect();
    let chosen = fly::stolon::find_leader(&machines)
        .ok()
        .or_else(|| machines.first());
    chosen.and_then(|m| m.config.clone()).ok_or_else(|| {
        StepError::Permanent(format!(
            "The source {app} has no machine whose config can be read; the new machine copies it."
        ))
    })
}

/// Waits for the plan's state (`started`) in bounded calls, keeping the lease between them; a machine Fly
/// could not launch (`failed`) stops the run at once rather than at the deadline.
async fn wait_started(ctx: &StepCtx<'_>, app: &str, state: &str) -> Result<Value, StepError> {
    let id = ctx
        .earlier_str("machine")
        .ok_or_else(|| StepError::Permanent("the machine step produced no machine id".into()))?;
    let start = tokio::time::Instant::now();
    let chunk = Duration::from_secs(30);
    loop {
        match ctx
            .client
            .wait(app, &id, &WaitFor::state(state), chunk)
            .await
        {
            Ok(_) => return Ok(json!({ "machine": id, "state": state })),
            Err(fly::Error::WaitTimeout { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let machine = ctx.client.get_machine(app, &id).await?;
        if machine.state == "failed" {
            return Err(StepError::Permanent(format!(
                "Fly could not launch the new machine {id} (it is in the failed state): a host or image problem. \
                 Look at fly machine status {id} -a {app}."
            )));
        }
        if start.elapsed() >= ctx.options.wait_deadline {
            return Err(StepError::Permanent(format!(
                "The new machine {id} was not {state} after {} minutes (it is {}); look at its logs \
                 (fly logs -a {app}).",
                ctx.options.wait_deadline.as_secs() / 60,
                machine.state
            )));
        }
        ctx.held.refresh().await?;
    }
}
