//! Fault injection (deterministic with a seed) and the demo seed (with persistence).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use flysim::{Faults, Sim, DEMO_APP, DEMO_TOKEN};
use serde_json::{json, Value};
use time::macros::datetime;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

async fn statuses(seed: u64) -> Vec<u16> {
    let env = start().await;
    env.sim.set_faults(Faults {
        seed,
        rate_429: 0.3,
        rate_5xx: 0.2,
        ..Faults::default()
    });
    let mut out = Vec::new();
    for _ in 0..40 {
        out.push(env.call("GET", "/v1/tokens/current", None).await.status);
    }
    out
}

#[tokio::test]
async fn rates_are_deterministic_with_a_seed() {
    let a = statuses(11).await;
    let b = statuses(11).await;
    let c = statuses(12).await;
    assert_eq!(a, b, "same seed, same faults");
    assert_ne!(a, c, "another seed, other faults");
    assert!(
        a.contains(&429) && a.contains(&503) && a.contains(&200),
        "{a:?}"
    );
}

#[tokio::test]
async fn create_408_after_success_really_created() {
    let env = start().await;
    env.create_app("amb").await;
    env.sim.set_faults(Faults {
        create_408_after_success: 1.0,
        ..Faults::default()
    });
    let r = env
        .call(
            "POST",
            "/v1/apps/amb/machines",
            Some(json!({"config": {"image": "nginx", "metadata": {"run": "r1"}}})),
        )
        .await;
    assert_eq!(r.status, 408);
    assert!(r.body["error"]
        .as_str()
        .unwrap()
        .starts_with("deadline_exceeded"));
    env.sim.set_faults(Faults::default());
    // Looking (by metadata) finds the machine that the 408 hid.
    let list = env
        .ok("GET", "/v1/apps/amb/machines?metadata.run=r1", None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn exec_deadline_exceeded_and_latency() {
    let env = start().await;
    env.create_app("ex").await;
    let m = env
        .ok(
            "POST",
            "/v1/apps/ex/machines",
            Some(json!({"config": {"image": "nginx"}})),
        )
        .await;
    let id = m["id"].as_str().unwrap().to_string();
    env.advance(3);
    env.sim.set_faults(Faults {
        exec_deadline_exceeded: 1.0,
        ..Faults::default()
    });
    let r = env
        .call(
            "POST",
            &format!("/v1/apps/ex/machines/{id}/exec"),
            Some(json!({"command": ["true"]})),
        )
        .await;
    assert_eq!(r.status, 408);
    assert!(r.body["error"]
        .as_str()
        .unwrap()
        .starts_with("deadline_exceeded"));
    // Latency is real time added before the answer (measured, not asserted as a performance target).
    env.sim.set_faults(Faults {
        latency: Duration::from_millis(120),
        ..Faults::default()
    });
    let t = std::time::Instant::now();
    env.ok("GET", "/v1/tokens/current", None).await;
    assert!(t.elapsed() >= Duration::from_millis(120));
}

/// A lease conflict refuses a Machine's update and stop with 409 and changes nothing; exec and reads pass.
#[tokio::test]
async fn lease_conflicts_refuse_machine_mutations_only() {
    let env = start().await;
    env.create_app("held").await;
    let m = env
        .ok(
            "POST",
            "/v1/apps/held/machines",
            Some(json!({"config": {"image": "nginx"}})),
        )
        .await;
    let id = m["id"].as_str().unwrap().to_string();
    env.advance(3);
    env.sim.set_faults(Faults {
        lease_conflict: 1.0,
        ..Faults::default()
    });
    let update = env
        .call(
            "POST",
            &format!("/v1/apps/held/machines/{id}"),
            Some(json!({"config": {"image": "nginx:2"}})),
        )
        .await;
    assert_eq!(update.status, 409, "{:?}", update.body);
    let stop = env
        .call("POST", &format!("/v1/apps/held/machines/{id}/stop"), None)
        .await;
    assert_eq!(stop.status, 409);
    let exec = env
        .call(
            "POST",
            &format!("/v1/apps/held/machines/{id}/exec"),
            Some(json!({"command": ["true"]})),
        )
        .await;
    assert_eq!(exec.status, 200);
    let now = env
        .ok("GET", &format!("/v1/apps/held/machines/{id}"), None)
        .await;
    assert_eq!(now["state"], "started");
    assert_eq!(now["config"]["image"], "nginx");
}

#[tokio::test]
async fn a_machine_that_never_becomes_healthy() {
    let env = start().await;
    env.create_app("sick").await;
    let dir = tempfile::tempdir().unwrap();
    let v = env
        .set_secrets(
            "sick",
            pg_secrets("a", "b", "c", dir.path().to_str().unwrap()),
        )
        .await;
    let vol = env
        .ok(
            "POST",
            "/v1/apps/sick/volumes",
            Some(json!({"name": "pg_data", "region": "iad"})),
        )
        .await;
    let cfg =
        json!({"image": "flyio/postgres:14.6", "mounts": [{"volume": vol["id"], "path": "/data"}]});
    env.sim.set_faults(Faults {
        never_healthy: BTreeSet::from(["sick-1".to_string()]),
        ..Faults::default()
    });
    let m = env
        .ok(
            "POST",
            "/v1/apps/sick/machines",
            Some(json!({"name": "sick-1", "config": cfg, "min_secrets_version": v})),
        )
        .await;
    let id = m["id"].as_str().unwrap().to_string();
    env.advance(600);
    assert_eq!(env.machine("sick", &id).await["state"], "started");
    let (status, output) = env.role("sick", &id).await;
    assert_eq!(status, "critical");
    assert!(output.contains("connection refused"), "{output}");
}

/// A Machine Fly cannot launch settles in the persistent `failed` state (docs `machine-states`): `wait` for
/// `settled` answers with it (flyctl `internal/machine/update.go` then fails the update), `wait` for `failed`
/// succeeds, and a `start` tries again (flyctl's rollout relaunches `failed` Machines, `shouldSkipLaunch`).
#[tokio::test]
async fn a_machine_that_cannot_launch_ends_failed() {
    let env = start().await;
    env.create_app("broken").await;
    env.sim.set_faults(Faults {
        launch_fails: BTreeSet::from(["broken-1".to_string()]),
        ..Faults::default()
    });
    let m = env
        .ok(
            "POST",
            "/v1/apps/broken/machines",
            Some(json!({"name": "broken-1", "config": {"image": "nginx"}})),
        )
        .await;
    let id = m["id"].as_str().unwrap().to_string();
    env.advance(5);
    let m = env.machine("broken", &id).await;
    assert_eq!(m["state"], "failed");
    assert!(
        m["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "launch" && e["status"] == "failed"),
        "{m}"
    );
    let settled = env
        .call(
            "GET",
            &format!("/v1/apps/broken/machines/{id}/wait?state=settled&timeout=5"),
            None,
        )
        .await;
    assert_eq!(settled.status, 200, "{}", settled.body);
    assert_eq!(settled.body["state"], "failed");
    let failed = env
        .call(
            "GET",
            &format!("/v1/apps/broken/machines/{id}/wait?state=failed&timeout=5"),
            None,
        )
        .await;
    assert_eq!(failed.status, 200, "{}", failed.body);

    env.sim.set_faults(Faults::default());
    let started = env
        .call(
            "POST",
            &format!("/v1/apps/broken/machines/{id}/start"),
            None,
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.body);
    env.advance(5);
    assert_eq!(env.machine("broken", &id).await["state"], "started");
}

#[tokio::test]
async fn oom_event_and_restart() {
    let env = start().await;
    env.create_app("oom").await;
    let m = env
        .ok(
            "POST",
            "/v1/apps/oom/machines",
            Some(json!({"config": {"image": "nginx"}})),
        )
        .await;
    let id = m["id"].as_str().unwrap().to_string();
    env.advance(3);
    env.sim.inject_oom("oom", &id).unwrap();
    assert_eq!(env.machine("oom", &id).await["state"], "starting");
    env.advance(3);
    let m = env.machine("oom", &id).await;
    assert_eq!(m["state"], "started");
    let exit = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "exit")
        .unwrap()
        .clone();
    assert_eq!(exit["request"]["exit_event"]["oom_killed"], true);
    assert_eq!(exit["request"]["exit_event"]["exit_code"], 137);
    assert!(env.sim.inject_oom("oom", "nope").is_err());
}

#[tokio::test]
async fn demo_seed_has_a_cluster_with_history_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("walg");
    let state = dir.path().join("flysim.json");
    let sim = Sim::builder()
        .manual_clock(datetime!(2026-03-01 12:00 UTC))
        .seed(42)
        .persist(&state)
        .build()
        .unwrap();
    let info = sim.seed_demo(&storage).unwrap();
    assert_eq!(info.machines.len(), 3);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let run = flysim::spawn(listener, sim.clone(), CancellationToken::new()).unwrap();
    let http = reqwest::Client::new();
    let get = |p: String| {
        let http = http.clone();
        let url = format!("{}{p}", run.base_url);
        async move {
            http.get(url)
                .header("Authorization", format!("FlyV1 {DEMO_TOKEN}"))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let list = get(format!("/v1/apps/{DEMO_APP}/machines")).await;
    let roles: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == "role")
                .unwrap()["output"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        roles.iter().filter(|r| *r == "leader").count(),
        1,
        "{roles:?}"
    );
    assert_eq!(
        roles.iter().filter(|r| *r == "replica").count(),
        2,
        "{roles:?}"
    );
    let backups: Vec<_> = std::fs::read_dir(storage.join("basebackups_005"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with("_backup_stop_sentinel.json")
        })
        .collect();
    assert_eq!(
        backups.len(),
        6,
        "three weeks of history: four full backups and two deltas"
    );
    let wal = std::fs::read_dir(storage.join("wal_005")).unwrap().count();
    assert!(wal > 800, "{wal} WAL objects");
    // A backup-push through exec on the leader works with the demo's secrets.
    let leader = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["checks"][1]["output"] == "leader")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = http
        .post(format!(
            "{}/v1/apps/{DEMO_APP}/machines/{leader}/exec",
            run.base_url
        ))
        .header("Authorization", format!("FlyV1 {DEMO_TOKEN}"))
        .json(&json!({"command": ["wal-g", "backup-push", "/data/postgres"]}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(out["exit_code"], 0, "{out}");
    run.shutdown().await.unwrap();

    // Reload from the state file: same apps, machines and secrets; seeding again is a no-op.
    let sim2 = Sim::builder()
        .manual_clock(datetime!(2026-03-01 12:10 UTC))
        .persist(&state)
        .build()
        .unwrap();
    let info2 = sim2.seed_demo(&storage).unwrap();
    let mut a = info.machines.clone();
    let mut b = info2.machines.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert_eq!(sim2.pg_phase(DEMO_APP), Some(("normal".into(), None)));
}

#[tokio::test]
async fn real_clock_transitions_progress_in_the_background() {
    let timing = flysim::Timing {
        start: Duration::from_millis(100),
        stop: Duration::from_millis(100),
        app_visible_after: Duration::from_millis(100),
        ..flysim::Timing::default()
    };
    let env = start_with(Sim::builder().timing(timing).build().unwrap()).await;
    env.create_app("rt").await;
    let m = env
        .ok(
            "POST",
            "/v1/apps/rt/machines",
            Some(json!({"config": {"image": "nginx"}})),
        )
        .await;
    let id = m["id"].as_str().unwrap();
    // The background ticker settles `created → started`; wait long-polls until it does.
    let r = env
        .call(
            "GET",
            &format!("/v1/apps/rt/machines/{id}/wait?state=started&timeout=10"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    env.ok("POST", &format!("/v1/apps/rt/machines/{id}/stop"), None)
        .await;
    let r = env
        .call(
            "GET",
            &format!("/v1/apps/rt/machines/{id}/wait?state=stopped&timeout=10"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = env
        .call(
            "GET",
            &format!("/v1/apps/rt/machines/{id}/wait?state=started&timeout=1"),
            None,
        )
        .await;
    assert_eq!(r.status, 408);
}

#[tokio::test]
async fn documented_rate_limits_when_enforced() {
    let env = start().await;
    env.create_app("rl").await;
    let m = env
        .ok(
            "POST",
            "/v1/apps/rl/machines",
            Some(json!({"config": {"image": "nginx"}})),
        )
        .await;
    let id = m["id"].as_str().unwrap().to_string();
    env.advance(3);
    env.sim.set_faults(Faults {
        enforce_rate_limits: true,
        ..Faults::default()
    });
    // Get Machine: burst 10, then 429 until simulated time refills 5/s.
    let mut got = Vec::new();
    for _ in 0..11 {
        got.push(
            env.call("GET", &format!("/v1/apps/rl/machines/{id}"), None)
                .await
                .status,
        );
    }
    assert_eq!(&got[..10], &[200; 10]);
    assert_eq!(got[10], 429);
    env.advance(1);
    for _ in 0..5 {
        assert_eq!(
            env.call("GET", &format!("/v1/apps/rl/machines/{id}"), None)
                .await
                .status,
            200
        );
    }
    // Other actions: 1/s burst 3, per action and Machine.
    let stop = format!("/v1/apps/rl/machines/{id}/stop");
    let got: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(env.call("POST", &stop, None).await.status);
        }
        v
    };
    assert_eq!(got, vec![200, 200, 200, 429]);
    // Another action on the same Machine has its own bucket.
    assert_eq!(
        env.call("GET", &format!("/v1/apps/rl/machines/{id}/events"), None)
            .await
            .status,
        200
    );
}

/// A JSON document of the bucket.
fn json_file(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The newest delta's documents are what wal-g writes for a second delta: the `Delta*` sentinel fields
/// naming its parent and the chain's full backup, the whole data directory as `DataCatalogSize`, and files
/// metadata whose tar lists exactly the files not skipped.
#[test]
fn the_newest_delta_is_written_as_wal_g_writes_a_second_delta() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::builder().seed(42).build().unwrap();
    sim.seed_demo(dir.path()).unwrap();
    let base = dir.path().join("basebackups_005");
    let mut sentinels: Vec<String> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("_D_") && n.ends_with("_backup_stop_sentinel.json"))
        .collect();
    sentinels.sort();
    assert_eq!(sentinels.len(), 2, "{sentinels:?}");
    let first = sentinels[0].trim_end_matches("_backup_stop_sentinel.json");
    let second = sentinels[1].trim_end_matches("_backup_stop_sentinel.json");
    let sentinel = json_file(&base.join(&sentinels[1]));
    assert_eq!(sentinel["DeltaFrom"], first);
    assert_eq!(sentinel["DeltaCount"], 2);
    let parent = json_file(&base.join(&sentinels[0]));
    assert_eq!(parent["DeltaCount"], 1);
    let full = sentinel["DeltaFullName"].as_str().unwrap();
    assert_eq!(parent["DeltaFrom"], full);
    assert_eq!(sentinel["DeltaLSN"], parent["LSN"]);
    // A delta's name ends with its parent's start segment (wal-g's `StripWalFileName`).
    assert_eq!(second.split("_D_").nth(1), first.get(5..29));
    assert!(base
        .join(format!("{full}_backup_stop_sentinel.json"))
        .is_file());
    assert!(sentinel["DataCatalogSize"].as_u64() > sentinel["UncompressedSize"].as_u64());
    let files = json_file(&base.join(second).join("files_metadata.json"));
    let packed: Vec<&str> = files["TarFileSets"]["part_001.tar.lz4"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for (name, file) in files["Files"].as_object().unwrap() {
        let skipped = file["IsSkipped"].as_bool().unwrap();
        assert_eq!(skipped, !packed.contains(&name.as_str()), "{name}");
    }
    assert!(files["Files"]["/PG_VERSION"]["IsSkipped"]
        .as_bool()
        .unwrap());
}

/// Demo mode's application (`flysim::start_demo` writes every 20 s): a write on the running leader is
/// archived at the next archive_timeout, as on a busy cluster; an idle cluster archives nothing; a stopped
/// cluster takes no writes.
#[tokio::test]
async fn the_demo_application_writes_are_archived_while_its_leader_runs() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("walg");
    let sim = Sim::builder()
        .manual_clock(datetime!(2026-03-01 12:00 UTC))
        .seed(42)
        .build()
        .unwrap();
    let info = sim.seed_demo(&storage).unwrap();
    let mut env = start_with(sim.clone()).await;
    env.token = DEMO_TOKEN.into();
    let segments = || std::fs::read_dir(storage.join("wal_005")).unwrap().count();
    let before = segments();

    env.advance(61);
    assert_eq!(segments(), before, "an idle cluster archives nothing");

    assert!(sim.demo_write(DEMO_APP, 3));
    env.advance(61);
    assert_eq!(segments(), before + 1, "the write's segment is archived");

    // Stopping only the leader would be a failover (a replica takes over and takes the writes).
    for id in &info.machines {
        env.ok(
            "POST",
            &format!("/v1/apps/{DEMO_APP}/machines/{id}/stop"),
            None,
        )
        .await;
    }
    env.advance(30);
    assert!(
        !sim.demo_write(DEMO_APP, 3),
        "a stopped cluster takes no writes"
    );
}
