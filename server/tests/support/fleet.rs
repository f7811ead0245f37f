//! In-process set-up for the worker tests (`escrow_worker.rs`, `monitor_worker.rs`): flysim on loopback (a
//! manual clock) with the demo cluster and a second Stolon cluster, and a core [`Walden`] on a real SQLite
//! file that talks to it with the demo org's token, both clusters tracked, sealed with the binary's
//! [`super::MASTER_KEY`] (so a `walden` process on the same data directory opens its escrow).

use std::path::Path;

use fly::FlyClient;
use flysim::{ClusterSeed, Sim, DEMO_APP, DEMO_ORG, DEMO_TOKEN};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use walden_core::access::{Actor, RequestMeta};
use walden_core::clusters::FlyConnection;
use walden_core::keyring::Keyring;
use walden_core::users::HashParams;
use walden_core::{Walden, WaldenOptions};

/// The second tracked cluster (a plain history; the demo cluster has the showcase one).
pub const SECOND_APP: &str = "orders-db";

pub struct Fleet {
    /// The emulator, to advance its clock or inject faults.
    pub sim: Sim,
    /// Its server (dropping it stops nothing: the cancel token is never fired).
    pub run: flysim::Running,
    pub walden: Walden,
}

impl Fleet {
    /// Both clusters seeded under `dir` (`walg-demo`, `walg-orders`), Walden's data in `dir/data`, fault and
    /// id draws from `seed`.
    pub async fn start(dir: &Path, seed: u64) -> Fleet {
        let sim = Sim::builder()
            .manual_clock(Sim::new().now())
            .seed(seed)
            .build()
            .unwrap();
        sim.seed_demo(dir.join("walg-demo")).unwrap();
        sim.seed_cluster(&ClusterSeed::new(
            DEMO_ORG,
            SECOND_APP,
            &dir.join("walg-orders"),
        ))
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let run = flysim::spawn(listener, sim.clone(), CancellationToken::new()).unwrap();
        let fleet = Fleet {
            walden: Walden::open(
                &dir.join("data"),
                WaldenOptions {
                    hash: HashParams::TEST,
                    keyring: Some(
                        Keyring::from_master_hex(&SecretString::from(super::MASTER_KEY)).unwrap(),
                    ),
                    fly: Some(FlyConnection {
                        client: fly_client(&run.base_url),
                        org: DEMO_ORG.into(),
                    }),
                    ..WaldenOptions::default()
                },
            )
            .await
            .unwrap(),
            sim,
            run,
        };
        for app in [DEMO_APP, SECOND_APP] {
            fleet
                .walden
                .orgs()
                .track(&Actor::cli(), &RequestMeta::default(), DEMO_ORG, app)
                .await
                .unwrap();
        }
        fleet
    }

    /// A Fly client with the demo org's token, to act on the emulator as a user would.
    pub fn fly(&self) -> FlyClient {
        fly_client(&self.run.base_url)
    }
}

fn fly_client(base_url: &str) -> FlyClient {
    FlyClient::builder()
        .token(SecretString::from(DEMO_TOKEN))
        .machines_base_url(base_url.to_owned())
        .api_base_url(base_url.to_owned())
        .build()
        .unwrap()
}
