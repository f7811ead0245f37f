//! Fly organisations over HTTP, against the demo console's in-process flysim (its environment org is `demo`;
//! flysim's demo token may also act in `personal`): adding with a pasted token, the refusals a person can
//! act on, the environment org that cannot be removed, Postgres apps, tracking.

use walden_app::api::orgs::{
    AddOrg, ListOrgs, ListPostgresApps, ListTracked, OrgRow, PgAppRow, RemoveOrg, TrackCluster,
    TrackedRow, UntrackCluster,
};
use walden_app::api::FormSecret;
use walden_app::error::AppError;
use walden_core::users::Role;

use crate::helpers::{app, error_of};

fn add(slug: &str, token: &str) -> AddOrg {
    AddOrg {
        slug: slug.into(),
        token: FormSecret(token.into()),
    }
}

#[tokio::test]
async fn an_admin_adds_an_org_by_token_and_tracks_its_clusters() {
    let app = app().await;
    let admin = app.signed_in(Role::Admin).await;

    // Only the environment's organisation at first, marked as such.
    let res = admin.call(&ListOrgs {}).await;
    assert_eq!(res.status(), 200);
    let orgs: Vec<OrgRow> = res.json().await.unwrap();
    assert_eq!(orgs.len(), 1);
    assert_eq!(orgs[0].slug, flysim::DEMO_ORG);
    assert!(orgs[0].from_environment);

    // A wrong token, a token for another organisation: refusals that say what to fix, nothing stored.
    let (status, err) = error_of(admin.call(&add("personal", "fm2_not_a_real_token")).await).await;
    assert_eq!(status, 422);
    assert!(
        matches!(&err, AppError::Validation { field, .. } if field == "token"),
        "{err:?}"
    );
    let (status, err) = error_of(admin.call(&add("someone-else", flysim::DEMO_TOKEN)).await).await;
    assert_eq!(status, 422);
    match &err {
        AppError::Validation { field, message } => {
            assert_eq!(field, "slug");
            assert!(message.contains("someone-else"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    // The right token: added, listed, and its token never comes back.
    let res = admin.call(&add("personal", flysim::DEMO_TOKEN)).await;
    let text = res.text().await.unwrap();
    assert!(
        !text.contains(flysim::DEMO_TOKEN),
        "the token is not echoed"
    );
    let added: OrgRow = serde_json::from_str(&text).unwrap();
    assert_eq!(added.slug, "personal");
    assert!(!added.from_environment);
    let res = admin.call(&ListOrgs {}).await;
    let text = res.text().await.unwrap();
    assert!(!text.contains(flysim::DEMO_TOKEN));
    let slugs: Vec<String> = serde_json::from_str::<Vec<OrgRow>>(&text)
        .unwrap()
        .into_iter()
        .map(|o| o.slug)
        .collect();
    assert_eq!(slugs, ["personal", flysim::DEMO_ORG]);

    // The environment's organisation cannot be removed; an added one can.
    let (status, err) = error_of(
        admin
            .call(&RemoveOrg {
                slug: flysim::DEMO_ORG.into(),
            })
            .await,
    )
    .await;
    assert_eq!(status, 409);
    assert!(err.to_string().contains("FLY_API_TOKEN"), "{err}");
    let res = admin
        .call(&RemoveOrg {
            slug: "personal".into(),
        })
        .await;
    assert_eq!(res.status(), 200);

    // The demo org's Stolon cluster, with its machines and regions.
    let res = admin
        .call(&ListPostgresApps {
            org: flysim::DEMO_ORG.into(),
        })
        .await;
    assert_eq!(res.status(), 200);
    let apps: Vec<PgAppRow> = res.json().await.unwrap();
    let demo = apps.iter().find(|a| a.app == flysim::DEMO_APP).unwrap();
    assert_eq!(demo.flavour, "stolon");
    assert!(!demo.machines.is_empty());
    assert!(!demo.regions.is_empty());
    assert!(!demo.tracked);

    // Track, refused twice and for an unknown app; untrack.
    let track = TrackCluster {
        org: flysim::DEMO_ORG.into(),
        app: flysim::DEMO_APP.into(),
    };
    assert_eq!(admin.call(&track).await.status(), 200);
    let (status, _) = error_of(admin.call(&track).await).await;
    assert_eq!(status, 409);
    let (status, err) = error_of(
        admin
            .call(&TrackCluster {
                org: flysim::DEMO_ORG.into(),
                app: "no-such-app".into(),
            })
            .await,
    )
    .await;
    assert_eq!(status, 422);
    assert!(matches!(&err, AppError::Validation { field, .. } if field == "app"));
    let viewer = app.signed_in(Role::Viewer).await;
    let tracked: Vec<TrackedRow> = viewer.call(&ListTracked {}).await.json().await.unwrap();
    assert_eq!(tracked.len(), 1);
    assert_eq!(tracked[0].app, flysim::DEMO_APP);
    let res = admin
        .call(&UntrackCluster {
            org: flysim::DEMO_ORG.into(),
            app: flysim::DEMO_APP.into(),
        })
        .await;
    assert_eq!(res.status(), 200);
    let tracked: Vec<TrackedRow> = viewer.call(&ListTracked {}).await.json().await.unwrap();
    assert!(tracked.is_empty());

    // The Settings → Fly organizations page renders its heading; no token anywhere in it.
    let html = admin.page("/settings/orgs").await;
    assert!(html.contains("Fly organizations"));
    assert!(
        html.contains("data-test=\"open-add-org\""),
        "admins get the form's opener (the form loads in the browser)"
    );
    assert!(!html.contains(flysim::DEMO_TOKEN));
    let html = viewer.page("/settings/orgs").await;
    assert!(html.contains(&format!("data-org=\"{}\"", flysim::DEMO_ORG)));
    assert!(
        !html.contains("data-test=\"open-add-org\""),
        "viewers see the list only"
    );
    app.stop().await;
}
