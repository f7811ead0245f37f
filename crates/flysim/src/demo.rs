//! The demo seed: an org, a token, and a 3-Machine Stolon cluster whose wal-g storage is a local directory
//! holding three weeks of history with every element of the timeline (see `walg::demo_history`); other seeded
//! clusters get a plain history of `history_hours`.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::clock::ms;
use crate::model::*;
use crate::sim::{new_app, Sim, SimError};
use crate::stolon::{init_config, md5_password, Sizing, USERS};

pub const DEMO_ORG: &str = "demo";
/// A macaroon-shaped token, so clients send it with the `FlyV1` scheme as they would a real org token.
pub const DEMO_TOKEN: &str = "fm2_flysim_demo_org_token";
pub const DEMO_APP: &str = "demo-db";

/// A Stolon cluster to seed (see [`Sim::seed_cluster`]).
#[derive(Debug, Clone)]
pub struct ClusterSeed {
    pub org: String,
    pub app: String,
    /// wal-g storage (`WALG_FILE_PREFIX`).
    pub storage: PathBuf,
    /// One Machine per entry; the first is the leader and its region is `PRIMARY_REGION`.
    pub regions: Vec<String>,
    pub image: String,
    pub su_password: String,
    pub repl_password: String,
    pub operator_password: String,
    /// Hours of archived WAL (a segment every 5 min) with a base backup every 12 h (first after 1 h).
    pub history_hours: i64,
    /// Instead of `history_hours`, the demo's three weeks that show every element of the timeline (full,
    /// permanent and delta backups, a WAL gap, a promotion to timeline 2, a quiet night): the cluster then runs
    /// on timeline 2.
    pub showcase_history: bool,
    /// No user data and no archive: only the image's `postgres` database, no table, no history (what
    /// `fly pg create` leaves; a cluster to restore into).
    pub empty: bool,
}

impl ClusterSeed {
    /// The demo's shape: 3 Machines (iad, iad, ord), `flyio/postgres:14.6`, 26 h of history.
    pub fn new(org: &str, app: &str, storage: &Path) -> Self {
        Self {
            org: org.into(),
            app: app.into(),
            storage: storage.to_path_buf(),
            regions: vec!["iad".into(), "iad".into(), "ord".into()],
            image: "flyio/postgres:14.6".into(),
            su_password: "demo-su-Zq81xKp2".into(),
            repl_password: "demo-repl-Lw73Hs0".into(),
            operator_password: "demo-op-Vb55nQe9".into(),
            history_hours: 26,
            showcase_history: false,
            empty: false,
        }
    }
}

/// What the demo seed created.
#[derive(Debug, Clone)]
pub struct DemoInfo {
    pub org: String,
    /// The demo token (empty for [`Sim::seed_cluster`], which adds no token).
    pub token: String,
    pub app: String,
    pub storage: PathBuf,
    pub machines: Vec<String>,
}

impl Sim {
    /// A real-time Sim with the demo seed (see [`Sim::seed_demo`]).
    pub fn demo(storage: impl AsRef<Path>) -> Result<(Sim, DemoInfo), SimError> {
        let sim = Sim::builder().seed(42).build()?;
        let info = sim.seed_demo(storage)?;
        Ok((sim, info))
    }

    /// Add the demo org, token and cluster (`demo-db`) unless they exist already (a persisted state was
    /// loaded). `storage` becomes the cluster's `WALG_FILE_PREFIX` and receives its backup history (the
    /// showcase: see [`ClusterSeed::showcase_history`]).
    pub fn seed_demo(&self, storage: impl AsRef<Path>) -> Result<DemoInfo, SimError> {
        self.add_org(DEMO_ORG, "Demo Org");
        self.add_org("personal", "Personal");
        let has_token = self.lock().tokens.contains_key(DEMO_TOKEN);
        if !has_token {
            self.add_token(DEMO_TOKEN, &[DEMO_ORG, "personal"]);
        }
        let seed = ClusterSeed {
            showcase_history: true,
            ..ClusterSeed::new(DEMO_ORG, DEMO_APP, storage.as_ref())
        };
        let mut info = self.seed_cluster(&seed)?;
        info.token = DEMO_TOKEN.into();
        Ok(info)
    }

    /// Add a running Stolon cluster (as `fly pg create` + the wal-g guide would leave it) to an existing
    /// org, with `history_hours` of WAL and base backups in `storage` (its `WALG_FILE_PREFIX`). Idempotent:
    /// an existing app of that name is left as it is. Tests use it for a source cluster to restore from.
    pub fn seed_cluster(&self, seed: &ClusterSeed) -> Result<DemoInfo, SimError> {
        let storage = prepare_storage(&seed.storage)?;
        if !self.lock().orgs.contains_key(&seed.org) {
            return Err(SimError::Invalid(format!(
                "org {} does not exist (add_org first)",
                seed.org
            )));
        }
        let info = |machines| DemoInfo {
            org: seed.org.clone(),
            token: String::new(),
            app: seed.app.clone(),
            storage: storage.clone(),
            machines,
        };
        let now = ms(self.now());
        let mut state = self.lock();
        if let Some(existing) = state.apps.get(&seed.app) {
            return Ok(info(existing.machines.keys().cloned().collect()));
        }
        if seed.regions.is_empty() {
            return Err(SimError::Invalid(format!(
                "cluster {} needs at least one region",
                seed.app
            )));
        }
        let mut app = new_app(
            &mut state,
            &seed.app,
            &seed.org,
            "default",
            "postgres_cluster",
            now - 30 * DAY_MS,
        );
        let env = seed_secrets(&mut state, &mut app, seed, &storage, now);
        let ids: Vec<String> = (0..seed.regions.len())
            .map(|index| seed_member(&mut state, &mut app, seed, index, &env, now))
            .collect();
        let leader = ids.first().cloned().unwrap_or_default();
        let mut pg = seed_pg(seed, &env, &leader);
        let written = if seed.empty {
            // Just made with `fly pg create`: no archive yet.
            Ok(())
        } else if seed.showcase_history {
            // Before the promotion the second Machine led (a replica since it came back).
            let leaders = crate::walg::Leaders {
                before: ids.get(1).unwrap_or(&leader),
                after: &leader,
            };
            crate::walg::seed_demo_history(&storage, &mut pg, now, leaders)
        } else {
            crate::walg::seed_history(&storage, &mut pg, now, seed.history_hours, 12, 5, &leader)
        };
        written.map_err(|e| SimError::Storage {
            path: storage.display().to_string(),
            reason: e.to_string(),
        })?;
        app.pg = Some(pg);
        state.apps.insert(seed.app.to_string(), app);
        let archive_every = self.timing().archive_timeout.as_millis() as i64;
        state.schedule(&seed.app, now + archive_every, TimerKind::Archive);
        for id in &ids {
            // The seeded Machines have been up for an hour: their checks have run.
            state.start_checks(&seed.app, id, now, 0);
            state.log(
                &seed.app,
                id,
                now,
                "keeper   | LOG:  database system is ready to accept connections",
            );
        }
        drop(state);
        self.save();
        Ok(info(ids))
    }
}

impl Sim {
    /// One write of the demo's application: `rows` new rows in `app.events`, committed on the leader, so the
    /// next archive_timeout switches and archives a segment as a busy cluster would. Nothing is written while
    /// the leader is not started and ready (a stopped cluster takes no writes). Returns whether it wrote.
    pub fn demo_write(&self, app: &str, rows: u64) -> bool {
        let leader_ready = {
            let state = self.lock();
            state.apps.get(app).is_some_and(|owner| {
                owner
                    .pg
                    .as_ref()
                    .and_then(|pg| pg.master.as_ref())
                    .and_then(|id| owner.machines.get(id))
                    .is_some_and(|m| m.state == MachineState::Started && m.ready_ms.is_some())
            })
        };
        leader_ready && self.pg_insert(app, "app", "events", rows).is_ok()
    }
}

const DAY_MS: i64 = 86_400_000;

/// Create the storage directory; its canonical path becomes `WALG_FILE_PREFIX`.
fn prepare_storage(storage: &Path) -> Result<PathBuf, SimError> {
    std::fs::create_dir_all(storage).map_err(|e| SimError::Storage {
        path: storage.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(storage
        .canonicalize()
        .unwrap_or_else(|_| storage.to_path_buf()))
}

/// The secrets `fly pg create` and the wal-g guide set; returns them as the Machines' env.
fn seed_secrets(
    state: &mut State,
    app: &mut App,
    seed: &ClusterSeed,
    storage: &Path,
    now: i64,
) -> BTreeMap<String, String> {
    let consul = format!(
        "https://:flysim@consul-iad.fly-shared.net/{}-{}/",
        seed.app, app.id
    );
    let secrets: [(&str, String); 10] = [
        ("SU_PASSWORD", seed.su_password.clone()),
        ("REPL_PASSWORD", seed.repl_password.clone()),
        ("OPERATOR_PASSWORD", seed.operator_password.clone()),
        ("PGPASSWORD", seed.operator_password.clone()),
        ("PGUSER", "postgres".into()),
        ("PGHOST", "localhost".into()),
        ("PGPORT", "5432".into()),
        ("ENABLE_WALG", "true".into()),
        ("WALG_FILE_PREFIX", storage.display().to_string()),
        ("FLY_CONSUL_URL", consul),
    ];
    for (name, value) in &secrets {
        app.secrets.insert(
            name.to_string(),
            Secret {
                digest: format!("{:016x}", state.rand()),
                value: value.clone(),
                created_ms: now - 29 * DAY_MS,
                updated_ms: now - 29 * DAY_MS,
            },
        );
    }
    app.secrets_version = 3;
    secrets
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
}

/// The config `fly pg create` gives a member.
fn member_config(seed: &ClusterSeed, volume: &str) -> serde_json::Value {
    let primary = seed
        .regions
        .first()
        .cloned()
        .unwrap_or_else(|| "iad".into());
    json!({
        "image": seed.image,
        "env": {"PRIMARY_REGION": primary},
        "guest": {"cpu_kind": "shared", "cpus": 2, "memory_mb": 4096},
        "metadata": {"fly-managed-postgres": "true", "fly_platform_version": "v2", "managed-by-fly-deploy": "true"},
        "mounts": [{"volume": volume, "path": "/data", "name": "pg_data", "size_gb": 40, "encrypted": true}],
        "metrics": {"port": 9187, "path": "/metrics"},
        "checks": {
            "pg": {"type": "http", "port": 5500, "path": "/flycheck/pg", "interval": "15s", "timeout": "10s"},
            "role": {"type": "http", "port": 5500, "path": "/flycheck/role", "interval": "15s", "timeout": "10s"},
            "vm": {"type": "http", "port": 5500, "path": "/flycheck/vm", "interval": "15s", "timeout": "10s"}
        },
        "restart": {"policy": "always"}
    })
}

/// Member `index`: a started Machine (booted an hour ago) with its attached `pg_data` volume. Returns
/// the Machine's id.
fn seed_member(
    state: &mut State,
    app: &mut App,
    seed: &ClusterSeed,
    index: usize,
    env: &BTreeMap<String, String>,
    now: i64,
) -> String {
    let region = seed.regions.get(index).cloned().unwrap_or_default();
    let volume_id = state.next_id("vol_", 16);
    let id = state.next_id("", 14);
    let instance_id = state.ulid(now);
    let consul = env.get("FLY_CONSUL_URL").cloned().unwrap_or_default();
    let dotenv = format!("STOLONCTL_CLUSTER_NAME={}\nSTOLONCTL_STORE_BACKEND=consul\nSTOLONCTL_STORE_URL={consul}\nSTOLONCTL_STORE_NODE={consul}\n", seed.app);
    let volume = Volume {
        id: volume_id.clone(),
        name: "pg_data".into(),
        state: "created".into(),
        size_gb: 40,
        region: region.clone(),
        zone: format!("{:04x}", 0x2a1b + index),
        encrypted: true,
        attached_machine_id: Some(id.clone()),
        created_ms: now - 30 * DAY_MS,
        snapshot_retention: 5,
        auto_backup_enabled: true,
        files: BTreeMap::from([("/data/.env".to_string(), dotenv)]),
        has_pgdata: true,
        keeper_initializing: false,
        used_percent: None,
        wal_ready_bytes: 0,
    };
    app.volumes.insert(volume_id.clone(), volume);
    let mut events = VecDeque::new();
    for (ago, kind, status, source) in [
        (3_600_000, "launch", "created", "user"),
        (3_598_000, "start", "started", "flyd"),
    ] {
        events.push_front(Event {
            id: state.ulid(now - ago),
            kind: kind.into(),
            status: status.into(),
            source: source.into(),
            ms: now - ago,
            request: json!({}),
        });
    }
    const NAMES: [&str; 5] = [
        "bold-wave",
        "calm-leaf",
        "misty-pine",
        "dawn-lake",
        "wild-sun",
    ];
    let machine = Machine {
        id: id.clone(),
        name: format!("{}-{}", seed.app, NAMES[index % NAMES.len()]),
        state: MachineState::Started,
        region,
        instance_id,
        private_ip: format!(
            "fdaa:0:1a2b:a7b:{:x}:{:x}:{:x}:2",
            0x1c3 + index,
            0x2b5f + index * 7,
            0x4e2a + index * 13
        ),
        config: member_config(seed, &volume_id),
        created_ms: now - 3_600_000,
        updated_ms: now - 3_598_000,
        events,
        lease: None,
        cordoned: false,
        secrets_env: env.clone(),
        secrets_version: 3,
        gen: 1,
        restart_count: 0,
        ready_ms: Some(now - 3_590_000),
        crash_reason: None,
        volume: Some(volume_id),
        destroyed: false,
        checks_run: None,
        checks_loop: 0,
    };
    app.machines.insert(id.clone(), machine);
    id
}

/// The cluster's data: roles from the seed's passwords, an `app` database with two tables (unless
/// [`ClusterSeed::empty`]).
fn seed_pg(seed: &ClusterSeed, env: &BTreeMap<String, String>, leader: &str) -> PgCluster {
    let roles = USERS
        .iter()
        .map(|(user, var)| {
            let password = env.get(*var).map(String::as_str).unwrap_or("");
            (user.to_string(), md5_password(user, password))
        })
        .collect();
    let mut databases = BTreeMap::from([("postgres".to_string(), BTreeMap::new())]);
    if !seed.empty {
        databases.insert(
            "app".to_string(),
            BTreeMap::from([("events".to_string(), 0u64), ("users".to_string(), 1200u64)]),
        );
    }
    PgCluster {
        cluster_uid: "a1b2c3d4".into(),
        spec: init_config(Sizing {
            memory_mb: 4096,
            disk_gb: 40,
            pg_major: crate::stolon::pg_version_of(&seed.image) / 10000,
        }),
        phase: "normal".into(),
        master: Some(leader.to_string()),
        system_identifier: 7_301_234_567_890_123_456,
        timeline: 1,
        lsn: 0x0000_0003_0000_0028,
        pg_version: crate::stolon::pg_version_of(&seed.image),
        roles,
        databases,
        pitr: None,
        archive_armed: true,
        initialised: true,
        unarchived_commit_ms: None,
        started_archive_mode: BTreeMap::new(),
        wal_push_refused: false,
        ready_commit_ms: None,
    }
}
