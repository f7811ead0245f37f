//! The scheduled escrow capture (`walden::jobs::escrow_tick`): one run captures and proves every tracked
//! cluster (flysim over loopback HTTP, a real SQLite file), records a new version only when a value changed,
//! counts a cluster it cannot reach as failed without stopping, and stops between clusters on shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod support;

use flysim::{DEMO_APP, DEMO_ORG};
use support::fleet::{Fleet, SECOND_APP};
use tokio_util::sync::CancellationToken;
use walden::jobs::{escrow_capture, escrow_tick, EscrowTick};
use walden_core::access::{Actor, RequestMeta};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tick_captures_and_proves_every_tracked_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(dir.path(), 9).await;
    let (sim, walden) = (&fleet.sim, &fleet.walden);
    let (cli, meta) = (Actor::cli(), RequestMeta::default());

    let token = CancellationToken::new();
    let first = escrow_tick(walden, &token).await;
    assert_eq!(
        first,
        EscrowTick {
            captured: 2,
            new_versions: 2,
            failed: 0
        }
    );
    for app in [DEMO_APP, SECOND_APP] {
        let versions = walden
            .escrow()
            .versions(&cli, &meta, DEMO_ORG, app)
            .await
            .unwrap();
        assert_eq!(versions.len(), 1, "{app}");
        assert_eq!(versions[0].captured_by, "(system:escrow-worker)");
        let proofs = walden
            .escrow()
            .latest_proofs(&cli, &meta, DEMO_ORG, app)
            .await
            .unwrap();
        assert_eq!(proofs.len(), 3, "{app}");
        assert!(proofs.iter().all(|p| p.ok), "{proofs:?}");
    }

    // Nothing changed: no new version.
    let second = escrow_tick(walden, &token).await;
    assert_eq!(
        second,
        EscrowTick {
            captured: 2,
            new_versions: 0,
            failed: 0
        }
    );

    // A cluster whose machines are all stopped: captured from the secrets API (unchanged), but its proof
    // cannot run: counted as failed, and the other cluster is still done.
    let fly = fleet.fly();
    for m in fly
        .list_machines(SECOND_APP, &fly::ListMachines::default())
        .await
        .unwrap()
    {
        fly.stop_machine(SECOND_APP, &m.id, &fly::StopRequest::default(), None)
            .await
            .unwrap();
    }
    sim.advance(std::time::Duration::from_secs(10));
    let third = escrow_tick(walden, &token).await;
    assert_eq!(
        third,
        EscrowTick {
            captured: 2,
            new_versions: 0,
            failed: 1
        }
    );

    // A shut-down worker captures nothing more, and its loop ends.
    token.cancel();
    assert_eq!(escrow_tick(walden, &token).await, EscrowTick::default());
    escrow_capture(walden.clone(), token, std::time::Duration::from_secs(3600)).await;
    let versions = walden
        .escrow()
        .versions(&cli, &meta, DEMO_ORG, DEMO_APP)
        .await
        .unwrap();
    assert_eq!(versions.len(), 1);
}
