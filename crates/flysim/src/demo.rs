//! The demo seed: an org, a token, and a 3-Machine Stolon cluster whose wal-g storage is a local directory
//! holding a day of history (WAL every few minutes, base backups twice a day).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::clock::ms;
use crate::model::*;
use crate::sim::{new_app, Sim, SimError};
use crate::stolon::{default_spec, md5_password, USERS};

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
    /// loaded). `storage` becomes the cluster's `WALG_FILE_PREFIX` and receives its backup history.
    pub fn seed_demo(&self, storage: impl AsRef<Path>) -> Result<DemoInfo, SimError> {
        self.add_org(DEMO_ORG, "Demo Org");
        self.add_org("personal", "Personal");
        let has_token = self.lock().tokens.contains_key(DEMO_TOKEN);
        if !has_token {
            self.add_token(DEMO_TOKEN, &[DEMO_ORG, "personal"]);
        }
        let mut info =
            self.seed_cluster(&ClusterSeed::new(DEMO_ORG, DEMO_APP, storage.as_ref()))?;
        info.token = DEMO_TOKEN.into();
        Ok(info)
    }

    /// Add a running Stolon cluster (as `fly pg create` + the wal-g guide would leave it) to an existing
    /// org, with `history_hours` of WAL and base backups in `storage` (its `WALG_FILE_PREFIX`). Idempotent:
    /// an existing app of that name is left as it is. Tests use it for a source cluster to restore from.
    pub fn seed_cluster(&self, seed: &ClusterSeed) -> Result<DemoInfo, SimError> {
        let storage = seed.storage.clone();
        std::fs::create_dir_all(&storage).map_err(|e| SimError::Storage {
            path: storage.display().to_string(),
            reason: e.to_string(),
        })?;
        let storage = storage.canonicalize().unwrap_or(storage);
        if !self.lock().orgs.contains_key(&seed.org) {
            return Err(SimError::Invalid(format!(
                "org {} does not exist (add_org first)",
                seed.org
            )));
        }
        let now = ms(self.now());
        let mut st = self.lock();
        if let Some(a) = st.apps.get(&seed.app) {
            let machines = a.machines.keys().cloned().collect();
            return Ok(DemoInfo {
                org: seed.org.clone(),
                token: String::new(),
                app: seed.app.clone(),
                storage,
                machines,
            });
        }
        let mut app = new_app(
            &mut st,
            &seed.app,
            &seed.org,
            "default",
            "postgres_cluster",
            now - 30 * 86_400_000,
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
            (
                "FLY_CONSUL_URL",
                format!(
                    "https://:flysim@consul-iad.fly-shared.net/{}-{}/",
                    seed.app, app.id
                ),
            ),
        ];
        for (k, v) in &secrets {
            app.secrets.insert(
                k.to_string(),
                Secret {
                    digest: format!("{:016x}", st.rand()),
                    value: v.clone(),
                    created_ms: now - 29 * 86_400_000,
                    updated_ms: now - 29 * 86_400_000,
                },
            );
        }
        app.secrets_version = 3;
        let env: BTreeMap<String, String> = secrets
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let regions = &seed.regions;
        let mut ids = Vec::new();
        for (i, region) in regions.iter().enumerate() {
            let vol_id = st.next_id("vol_", 16);
            let id = st.next_id("", 14);
            let instance = st.ulid(now);
            let ip = format!(
                "fdaa:0:1a2b:a7b:{:x}:{:x}:{:x}:2",
                0x1c3 + i,
                0x2b5f + i * 7,
                0x4e2a + i * 13
            );
            let config = json!({
                "image": seed.image,
                "env": {"PRIMARY_REGION": regions.first().cloned().unwrap_or_else(|| "iad".into())},
                "guest": {"cpu_kind": "shared", "cpus": 2, "memory_mb": 4096},
                "metadata": {"fly-managed-postgres": "true", "fly_platform_version": "v2", "managed-by-fly-deploy": "true"},
                "mounts": [{"volume": vol_id, "path": "/data", "name": "pg_data", "size_gb": 40, "encrypted": true}],
                "metrics": {"port": 9187, "path": "/metrics"},
                "checks": {
                    "pg": {"type": "http", "port": 5500, "path": "/flycheck/pg", "interval": "15s", "timeout": "10s"},
                    "role": {"type": "http", "port": 5500, "path": "/flycheck/role", "interval": "15s", "timeout": "10s"},
                    "vm": {"type": "http", "port": 5500, "path": "/flycheck/vm", "interval": "15s", "timeout": "10s"}
                },
                "restart": {"policy": "always"}
            });
            let mut files = BTreeMap::new();
            files.insert(
                "/data/.env".to_string(),
                format!("STOLONCTL_CLUSTER_NAME={}\nSTOLONCTL_STORE_BACKEND=consul\nSTOLONCTL_STORE_URL={}\nSTOLONCTL_STORE_NODE={}\n", seed.app,
                    env["FLY_CONSUL_URL"], env["FLY_CONSUL_URL"]),
            );
            app.volumes.insert(
                vol_id.clone(),
                Volume {
                    id: vol_id.clone(),
                    name: "pg_data".into(),
                    state: "created".into(),
                    size_gb: 40,
                    region: region.to_string(),
                    zone: format!("{:04x}", 0x2a1b + i),
                    encrypted: true,
                    attached_machine_id: Some(id.clone()),
                    created_ms: now - 30 * 86_400_000,
                    snapshot_retention: 5,
                    auto_backup_enabled: true,
                    files,
                    has_pgdata: true,
                    keeper_initializing: false,
                },
            );
            let mut events = VecDeque::new();
            events.push_front(Event {
                id: st.ulid(now - 3_600_000),
                kind: "launch".into(),
                status: "created".into(),
                source: "user".into(),
                ms: now - 3_600_000,
                request: json!({}),
            });
            events.push_front(Event {
                id: st.ulid(now - 3_598_000),
                kind: "start".into(),
                status: "started".into(),
                source: "flyd".into(),
                ms: now - 3_598_000,
                request: json!({}),
            });
            app.machines.insert(
                id.clone(),
                Machine {
                    id: id.clone(),
                    name: format!(
                        "{}-{}",
                        seed.app,
                        [
                            "bold-wave",
                            "calm-leaf",
                            "misty-pine",
                            "dawn-lake",
                            "wild-sun"
                        ][i % 5]
                    ),
                    state: MachineState::Started,
                    region: region.to_string(),
                    instance_id: instance,
                    private_ip: ip,
                    config,
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
                    volume: Some(vol_id),
                    destroyed: false,
                },
            );
            ids.push(id);
        }
        let mut roles = BTreeMap::new();
        for (user, var) in USERS {
            roles.insert(user.to_string(), md5_password(user, &env[var]));
        }
        let mut databases = BTreeMap::new();
        databases.insert("postgres".to_string(), BTreeMap::new());
        databases.insert(
            "app".to_string(),
            BTreeMap::from([("events".to_string(), 0u64), ("users".to_string(), 1200u64)]),
        );
        let mut pg = PgCluster {
            cluster_uid: "a1b2c3d4".into(),
            spec: default_spec(),
            phase: "normal".into(),
            master: Some(ids[0].clone()),
            system_identifier: 7_301_234_567_890_123_456,
            timeline: 1,
            lsn: 0x0000_0003_0000_0028,
            pg_version: crate::stolon::pg_version_of(&seed.image),
            roles,
            databases,
            pitr: None,
            archive_armed: true,
            initialised: true,
        };
        crate::walg::seed_history(&storage, &mut pg, now, seed.history_hours, 12, 5, &ids[0])
            .map_err(|e| SimError::Storage {
                path: storage.display().to_string(),
                reason: e.to_string(),
            })?;
        app.pg = Some(pg);
        st.apps.insert(seed.app.to_string(), app);
        let archive_every = self.timing().archive_timeout.as_millis() as i64;
        st.schedule(&seed.app, now + archive_every, TimerKind::Archive);
        for id in &ids {
            st.log(
                &seed.app,
                id,
                now,
                "keeper   | LOG:  database system is ready to accept connections",
            );
        }
        drop(st);
        self.save();
        Ok(DemoInfo {
            org: seed.org.clone(),
            token: String::new(),
            app: seed.app.clone(),
            storage,
            machines: ids,
        })
    }
}
