//! Issue #13 item 8, the crash half: the real `walden serve` binary (its restore worker running) restores
//! flysim's demo cluster (in-process, loopback HTTP) and is killed with SIGKILL — no clean shutdown — right
//! after each step of the plan is recorded done (so the kill lands at the boundary or inside the next step),
//! then started again on the same data directory: every run still ends `done` with exactly one app, one volume
//! and one machine of its own on the emulator, each step recorded done exactly once (one `restore.step.done`
//! audit row per step), and the source cluster unchanged.
//!
//! The emulator keeps its manual clock, moved on in the background (the keeper boots and the PITR replays while
//! the console polls); the console runs with `--restore-poll-secs 1` and `--restore-lease-secs 2`, so the
//! restarted console takes the killed one's run over within seconds instead of the default minute. Runs are
//! planned and started through core on the same SQLite file (as the console's own pages do), and followed by
//! reading that file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::fs::File;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

mod support;

use fly::{FlyClient, ListMachines};
use flysim::{Sim, DEMO_APP, DEMO_ORG};
use support::fleet::Fleet;
use walden_core::access::{Actor, RequestMeta};
use walden_core::restore::engine::{RunState, RunView, RUN_METADATA};
use walden_core::restore::{
    ClusterRef, Destination, DestinationKind, RestoreRequest, RestoreTarget,
};
use walden_core::Walden;

/// How long a whole run (or the wait for one step) may take before the test gives up: generous, never timed.
const DEADLINE: Duration = Duration::from_secs(240);

/// Moves the emulator's manual clock on in the background (5 simulated seconds every 10 ms), as a real Fly's
/// time passes while the console works; stops when dropped.
struct Ticker(tokio::task::JoinHandle<()>);

impl Ticker {
    fn start(sim: &Sim) -> Ticker {
        let sim = sim.clone();
        Ticker(tokio::spawn(async move {
            loop {
                sim.advance(Duration::from_secs(5));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }))
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `walden serve` on the fleet's data directory with a fast restore poll and a short lease, its output in
/// `logs/serve-<n>.{out,err}`.
fn serve(dir: &Path, base_url: &str, n: usize) -> Child {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut cmd = support::walden(&dir.join("data"), base_url);
    cmd.env("RUST_LOG", "info")
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--secure-cookies",
            "false",
            "--restore-poll-secs",
            "1",
            "--restore-lease-secs",
            "2",
        ])
        .stdin(Stdio::null())
        .stdout(File::create(logs.join(format!("serve-{n}.out"))).unwrap())
        .stderr(File::create(logs.join(format!("serve-{n}.err"))).unwrap());
    cmd.spawn().unwrap()
}

/// SIGKILL (`Child::kill` on Unix), then reaped.
fn kill_9(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Plans a restore of the demo cluster's latest point into `to` and starts its run (pending until the
/// console's worker takes it).
async fn start_run(walden: &Walden, to: &str) -> RunView {
    let (actor, meta) = (Actor::cli(), RequestMeta::default());
    let request = RestoreRequest {
        source: ClusterRef {
            org: DEMO_ORG.into(),
            app: DEMO_APP.into(),
        },
        target: RestoreTarget::Latest,
        timeline: None,
        destination: Destination {
            kind: DestinationKind::New,
            app: to.into(),
            region: None,
            memory_mb: None,
            volume_gb: None,
        },
        assertion: None,
        assertion_database: None,
    };
    let plan = walden
        .restores()
        .plan(&actor, &meta, &request)
        .await
        .unwrap();
    walden
        .restores()
        .start_run(&actor, &meta, &plan.hash, to)
        .await
        .unwrap()
}

/// Reads the run from the SQLite file until `until` holds (or the run stopped), within [`DEADLINE`].
async fn wait_for(walden: &Walden, run: &str, until: impl Fn(&RunView) -> bool) -> RunView {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let view = walden.restores().run(run).await.unwrap();
        if until(&view) || !view.state.runnable() {
            return view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run never got there: {view:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The run's app exists once, with exactly one live volume and one live machine, tagged with the run.
async fn assert_one_of_each(client: &FlyClient, app: &str, run: &str) {
    let apps = client
        .list_apps(DEMO_ORG)
        .await
        .unwrap()
        .apps
        .into_iter()
        .filter(|a| a.name == app)
        .count();
    assert_eq!(apps, 1, "one app {app}");
    let volumes = client
        .list_volumes(app)
        .await
        .unwrap()
        .into_iter()
        .filter(|v| !v.is_destroyed())
        .count();
    assert_eq!(volumes, 1, "one volume in {app}");
    let machines: Vec<_> = client
        .list_machines(app, &ListMachines::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|m| !m.is_gone())
        .collect();
    assert_eq!(machines.len(), 1, "one machine in {app}");
    let tag = machines[0]
        .config
        .as_ref()
        .and_then(|c| c.metadata.get(RUN_METADATA).cloned());
    assert_eq!(
        tag.as_deref(),
        Some(run),
        "the machine of {app} is the run's"
    );
}

/// Each step of the run recorded done exactly once in the audit log.
async fn assert_each_step_done_once(walden: &Walden, view: &RunView) {
    let (rows, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT json_extract(detail, '$.index')) FROM audit_log \
         WHERE action = 'restore.step.done' AND run_id = ?",
    )
    .bind(&view.id)
    .fetch_one(walden.pool())
    .await
    .unwrap();
    let steps = view.steps.len() as i64;
    assert_eq!((rows, distinct), (steps, steps), "run {}", view.id);
}

/// The source cluster as the emulator holds it: machines (state and config), volumes, secrets (digests).
async fn source_state(client: &FlyClient) -> Vec<String> {
    let mut out = Vec::new();
    for m in client
        .list_machines(DEMO_APP, &ListMachines::default())
        .await
        .unwrap()
    {
        let config = serde_json::to_string(&m.config).unwrap();
        out.push(format!("machine {} {} {config}", m.id, m.state));
    }
    for v in client.list_volumes(DEMO_APP).await.unwrap() {
        out.push(format!("volume {} {:?}", v.id, v.attached_machine_id));
    }
    for s in client.list_secrets(DEMO_APP).await.unwrap() {
        out.push(format!("secret {} {:?}", s.name, s.digest));
    }
    out.sort();
    out
}

/// One test, one emulator, one run per boundary: after step k is recorded done the console is killed -9 and
/// started again; the run ends done with one of each, nothing done twice, the source unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_killed_at_every_step_boundary_finishes_each_restore_once() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(dir.path(), 11).await;
    let client = fleet.fly();
    fleet
        .walden
        .escrow()
        .capture(&Actor::cli(), &RequestMeta::default(), DEMO_ORG, DEMO_APP)
        .await
        .unwrap();
    let _clock = Ticker::start(&fleet.sim);
    let source_before = source_state(&client).await;
    let (mut k, mut steps, mut consoles) = (0, usize::MAX, 0);
    while k + 1 < steps {
        let to = format!("kill-{k}");
        let run = start_run(&fleet.walden, &to).await;
        steps = run.steps.len();
        consoles += 1;
        let console = serve(dir.path(), &fleet.run.base_url, consoles);
        let at = wait_for(&fleet.walden, &run.id, |v| v.steps[k].status == "done").await;
        kill_9(console);
        assert!(
            at.state.runnable(),
            "killed after step {k}, not before: {at:#?}"
        );

        consoles += 1;
        let console = serve(dir.path(), &fleet.run.base_url, consoles);
        let view = wait_for(&fleet.walden, &run.id, |_| false).await;
        kill_9(console);
        assert_eq!(
            view.state,
            RunState::Done,
            "killed after step {k}: {view:#?}"
        );
        assert_one_of_each(&client, &to, &run.id).await;
        assert_each_step_done_once(&fleet.walden, &view).await;
        k += 1;
    }
    assert_eq!(source_state(&client).await, source_before);
}
