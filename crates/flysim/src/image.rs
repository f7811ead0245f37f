//! The seam between the Machine state machine (`sim`) and what runs inside a Machine.
//!
//! `sim` knows Machines, states and timers; it does not know Postgres. When a Machine finishes starting,
//! becomes ready, goes away, or is asked for its health checks, `sim` calls the functions here, which
//! hand the event to the Machine's [`ImageBehaviour`]: [`crate::stolon::StolonImage`] for
//! `flyio/postgres:*`, [`PlainImage`] for anything else. Cluster-wide work of the Stolon image (PITR
//! steps, archiving, detached backups) arrives here as timers too. A new image (postgres-flex, say) is a
//! new `ImageBehaviour` and one line in [`behaviour_of`].
//!
//! Invariant: this is the only module that `sim` reaches the Stolon image and wal-g through.

use serde_json::{json, Value};

use crate::model::*;
use crate::sim::Sim;
use crate::stolon::StolonImage;

/// What an image does at the moments the Machine state machine cares about.
pub(crate) trait ImageBehaviour: Sync {
    /// The Machine reached `started`: run the image's entrypoint. It schedules `TimerKind::Ready` when
    /// the boot completes (or `TimerKind::Crash` when it panics).
    fn boot(&self, state: &mut State, app: &str, machine: &str, at: i64, sim: &Sim);
    /// The boot completed: the Machine is started and this is its current boot.
    fn ready(&self, state: &mut State, app: &str, machine: &str, at: i64);
    /// Health checks as Fly reports them on the Machine.
    fn checks(&self, app: &App, machine: &Machine, now: i64) -> Vec<Value>;
}

/// Any image flysim does not emulate: ready half a second after start, no checks.
pub(crate) struct PlainImage;

impl ImageBehaviour for PlainImage {
    fn boot(&self, state: &mut State, app: &str, machine: &str, at: i64, _sim: &Sim) {
        let Some(gen) = state
            .apps
            .get(app)
            .and_then(|owner| owner.machines.get(machine))
            .map(|member| member.gen)
        else {
            return;
        };
        let machine = machine.to_string();
        state.schedule(app, at + 500, TimerKind::Ready { machine, gen });
    }

    fn ready(&self, _state: &mut State, _app: &str, _machine: &str, _at: i64) {}

    fn checks(&self, _app: &App, _machine: &Machine, _now: i64) -> Vec<Value> {
        Vec::new()
    }
}

/// The behaviour of the image `machine` runs.
fn behaviour_of(machine: &Machine) -> &'static dyn ImageBehaviour {
    if is_stolon_image(image_of(machine)) {
        &StolonImage
    } else {
        &PlainImage
    }
}

/// What a process running on a Machine can reach: the state, the Sim (timing, faults), who it is and
/// the simulated time.
pub(crate) struct ExecContext<'a> {
    pub state: &'a mut State,
    pub sim: &'a Sim,
    pub app: String,
    pub machine: String,
    pub now: i64,
}

/// The Machine reached `started`.
pub(crate) fn boot(state: &mut State, app: &str, machine: &str, at: i64, sim: &Sim) {
    let Some(found) = state
        .apps
        .get(app)
        .and_then(|owner| owner.machines.get(machine))
    else {
        return;
    };
    behaviour_of(found).boot(state, app, machine, at, sim);
}

/// A boot finished; ignored when the Machine moved on since (`gen`) or is not started.
pub(crate) fn ready(state: &mut State, app: &str, machine: &str, gen: u64, at: i64) {
    let Ok(found) = state.machine_mut(app, machine) else {
        return;
    };
    if found.gen != gen || found.state != MachineState::Started {
        return;
    }
    found.ready_ms = Some(at);
    let behaviour = behaviour_of(found);
    behaviour.ready(state, app, machine, at);
}

/// The Machine's processes are gone (stop, exit, replace, destroy): it is no longer ready, and the app's
/// Stolon cluster, if it has one, notices a member left (whatever image the Machine runs now).
pub(crate) fn halted(state: &mut State, app: &str, machine: &str, at: i64) {
    crate::stolon::halted(state, app, machine, at);
}

/// Health checks of a Machine.
pub(crate) fn checks(app: &App, machine: &Machine, now: i64) -> Vec<Value> {
    behaviour_of(machine).checks(app, machine, now)
}

/// Cluster-wide timers of the Stolon image and wal-g.
pub(crate) fn cluster_timer(state: &mut State, app: &str, kind: TimerKind, at: i64, sim: &Sim) {
    match kind {
        TimerKind::Pitr { gen } => crate::stolon::pitr_step(state, app, gen, at, sim),
        TimerKind::Archive => crate::stolon::archive_tick(state, app, at, sim),
        TimerKind::Failover { master } => crate::stolon::failover(state, app, &master, at),
        TimerKind::BackupDone { machine, job } => {
            crate::walg::finish_push(state, app, &machine, &job, at)
        }
        TimerKind::Settle { .. }
        | TimerKind::Ready { .. }
        | TimerKind::Crash { .. }
        | TimerKind::Checks { .. } => {}
    }
}

/// The image a Machine runs (`config.image`).
pub(crate) fn image_of(member: &Machine) -> &str {
    member
        .config
        .get("image")
        .and_then(|v| v.as_str())
        .unwrap_or("")
}

/// `flyio/postgres` (any tag or digest, with or without a Docker Hub host).
pub(crate) fn is_stolon_image(image: &str) -> bool {
    let repo = image.split(['@', ':']).next().unwrap_or("");
    let repo = repo.strip_prefix("docker.io/").unwrap_or(repo);
    let repo = repo.strip_prefix("registry-1.docker.io/").unwrap_or(repo);
    repo == "flyio/postgres"
}

/// `ImageRef` as Fly reports it.
pub(crate) fn image_ref(image: &str) -> Value {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d.to_string())),
        None => (image, None),
    };
    let (repo, tag) = match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (name, "latest"),
    };
    let (registry, repository) = match repo.split_once('/') {
        Some((host, rest)) if host.contains('.') => (host.to_string(), rest.to_string()),
        _ => ("docker-hub-mirror.fly.io".to_string(), repo.to_string()),
    };
    let digest = digest.unwrap_or_else(|| {
        use md5::{Digest, Md5};
        let h = hex::encode(Md5::digest(image.as_bytes()));
        format!("sha256:{h}{h}")
    });
    let mut labels = serde_json::Map::new();
    if is_stolon_image(image) {
        labels.insert("fly.app_role".into(), json!("postgres_cluster"));
        labels.insert("fly.version".into(), json!("v0.0.41"));
        labels.insert("fly.pg-version".into(), json!(tag));
    } else if repository.trim_start_matches("docker.io/") == "flyio/postgres-flex" {
        // fly-apps/postgres-flex `Dockerfile`: `LABEL fly.app_role=postgres_cluster`,
        // `fly.pg-version`, `fly.pg-manager=repmgr` (flyctl tells flex from Stolon by the last one).
        // flysim does not emulate the flex image itself: such a Machine only runs and reports its image.
        labels.insert("fly.app_role".into(), json!("postgres_cluster"));
        labels.insert("fly.pg-version".into(), json!(tag));
        labels.insert("fly.pg-manager".into(), json!("repmgr"));
    }
    json!({"registry": registry, "repository": repository, "tag": tag, "digest": digest, "labels": labels})
}
