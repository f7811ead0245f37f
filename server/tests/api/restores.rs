//! Restores over HTTP: the wizard (`/clusters/{org}/{app}/restore`) for an operator and a viewer, a refused plan
//! with every reason on the page, and a plan of the tracked demo cluster (flysim, its wal-g bucket on local
//! storage) confirmed into a run that the console's worker moves on, shown on its progress page and in the
//! list of runs, and again after a restart.

use std::time::Duration;

use walden_app::api::escrow::CaptureCredentials;
use walden_app::api::restores::{
    Choices, GetRestoreRun, PlanAnswer, PlanRestore, RunPage, StartRestore,
};
use walden_core::users::Role;

use crate::helpers::{app, error_of, restart, track_demo, Session, TestApp};

const WIZARD: &str = "/clusters/demo/demo-db/restore";

fn count(html: &str, test: &str) -> usize {
    html.matches(&format!("data-test=\"{test}\"")).count()
}

/// A console with the demo cluster tracked and its credentials and storage captured from its leader (as in
/// production), and an operator.
async fn demo_console() -> (TestApp, Session) {
    let app = app().await;
    track_demo(&app).await;
    let operator = app.signed_in(Role::Operator).await;
    let capture = CaptureCredentials {
        org: flysim::DEMO_ORG.into(),
        app: flysim::DEMO_APP.into(),
    };
    assert_eq!(operator.call(&capture).await.status(), 200);
    (app, operator)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wizard_opens_for_an_operator_and_tells_a_viewer_why_not() {
    let (app, operator) = demo_console().await;

    // From the timeline's link: a time target, echoed in UTC, and checked against the windows.
    let html = operator
        .page(&format!("{WIZARD}?kind=time&target=2001-01-01T00:00:00Z"))
        .await;
    assert_eq!(count(&html, "wizard"), 1, "{html}");
    assert_eq!(count(&html, "target-step"), 1);
    assert!(html.contains("= 2001-01-01 00:00 UTC"), "the UTC echo");
    assert!(
        html.contains(r#"name="target" value="2001-01-01T00:00:00Z""#),
        "the form carries the time before hydration too"
    );
    assert_eq!(
        count(&html, "time-problem"),
        1,
        "a time before every window is refused with the reason"
    );
    // Step 2 carries step 1's choices in hidden fields, so Back keeps them.
    let html = operator
        .page(&format!(
            "{WIZARD}?step=2&kind=lsn&lsn=0/3000028&name=demo-db-copy"
        ))
        .await;
    assert_eq!(count(&html, "destination-step"), 1, "{html}");
    assert!(html.contains(r#"name="lsn" value="0/3000028""#), "{html}");
    assert!(html.contains(r#"value="demo-db-copy""#));
    assert!(html.contains("0/3000028"), "the summary");

    let viewer = app.signed_in(Role::Viewer).await;
    let html = viewer.page(WIZARD).await;
    assert_eq!(count(&html, "wizard-forbidden"), 1, "{html}");
    assert_eq!(count(&html, "wizard"), 0);
    // The cluster page offers the wizard.
    let html = viewer.page("/clusters/demo/demo-db").await;
    assert!(html.contains(&format!("href=\"{WIZARD}\"")), "{html}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_plan_shows_every_reason_with_its_fix() {
    let (app, operator) = demo_console().await;
    let html = operator
        .page(&format!(
            "{WIZARD}?step=3&kind=latest&name=Demo_Copy&region=xyz&memory=256"
        ))
        .await;
    assert_eq!(count(&html, "refused"), 1, "{html}");
    for code in ["bad_name", "unknown_region", "memory_too_small"] {
        assert!(
            html.contains(&format!("data-code=\"{code}\"")),
            "{code} in {html}"
        );
    }
    assert_eq!(count(&html, "refusal"), 3, "{html}");
    assert_eq!(html.matches("Fix: ").count(), 3);
    assert_eq!(count(&html, "confirm"), 0, "nothing to confirm");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_plan_starts_a_run_that_its_page_and_the_list_show() {
    let (app, operator) = demo_console().await;
    let to = "demo-db-copy";
    let html = operator
        .page(&format!("{WIZARD}?step=3&kind=latest&name={to}"))
        .await;
    assert_eq!(count(&html, "plan"), 1, "{html}");
    assert!(count(&html, "plan-steps") == 1 && html.contains("POST /v1/apps?wait=true"));
    assert!(
        html.contains("&lt;escrowed") || html.contains("<escrowed"),
        "secrets as placeholders"
    );
    assert!(!html.contains("demo-su-Zq81xKp2"), "no escrowed password");
    assert!(html.contains(&format!(
        "Restore demo/demo-db to the latest archived commit into {to}"
    )));

    // The same choices planned again give the same plan (its hash is on the page).
    let choices = Choices {
        kind: "latest".into(),
        name: to.into(),
        ..Choices::default()
    };
    let res = operator
        .call(&PlanRestore {
            org: flysim::DEMO_ORG.into(),
            app: flysim::DEMO_APP.into(),
            choices,
        })
        .await;
    assert_eq!(res.status(), 200);
    let PlanAnswer::Plan(plan) = res.json().await.unwrap() else {
        panic!("the plan was refused");
    };
    assert!(html.contains(&plan.hash), "the page shows the plan's hash");

    let wrong = StartRestore {
        hash: plan.hash.clone(),
        confirm: "demo-db".into(),
    };
    let (status, _) = error_of(operator.call(&wrong).await).await;
    assert_eq!(status, 422, "the typed name must be the new cluster's");
    let start = StartRestore {
        hash: plan.hash.clone(),
        confirm: to.into(),
    };
    let res = operator.call(&start).await;
    assert_eq!(res.status(), 200);
    let run: String = res.json().await.unwrap();

    // The console's worker moves it on (a whole restore in the demo's real-time emulator takes minutes): wait
    // until its machine is created, or until it stops.
    let viewer = app.signed_in(Role::Viewer).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let page = loop {
        let res = viewer.call(&GetRestoreRun { id: run.clone() }).await;
        assert_eq!(res.status(), 200);
        let page: RunPage = res.json().await.unwrap();
        let machine_made = page
            .steps
            .iter()
            .any(|s| s.kind == "create_machine" && s.status == "done");
        if machine_made || !page.live {
            break page;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run never made its machine: {page:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(page.steps.iter().any(|s| s.status == "done"), "{page:?}");

    let html = viewer.page(&format!("/restores/{run}")).await;
    assert_eq!(count(&html, "run-step"), page.steps.len(), "{html}");
    assert!(page.steps.len() >= 5);
    assert!(html.contains(&format!("data-state=\"{}\"", page.state)));
    assert!(html.contains("POST /v1/apps?wait=true"), "each step's call");
    assert_eq!(count(&html, "run-elapsed"), 1);

    let html = viewer.page("/restores").await;
    assert_eq!(count(&html, "run-row"), 1, "{html}");
    assert!(html.contains(&format!("data-run=\"{run}\"")));
    assert!(html.contains("demo/demo-db") && html.contains(to));

    // Everything the page shows is in SQLite: a restarted console shows the same run.
    let app = restart(app).await;
    let html = app
        .signed_in(Role::Viewer)
        .await
        .page(&format!("/restores/{run}"))
        .await;
    assert_eq!(count(&html, "run-step"), page.steps.len(), "{html}");
    assert!(html.contains(&format!("data-state=\"{}\"", page.state)));
    app.stop().await;
}
