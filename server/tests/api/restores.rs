//! Restores over HTTP: the wizard (`/clusters/{org}/{app}/restore`) for an operator and a viewer, a refused plan
//! with every reason on the page, and a plan of the tracked demo cluster (flysim, its wal-g bucket on local
//! storage) confirmed into a run that the console's worker moves on, shown on its progress page and in the
//! list of runs, and again after a restart.

use std::time::Duration;

use walden_app::api::escrow::CaptureCredentials;
use walden_app::api::restores::{
    ApproveRestorePlan, CancelRestoreRun, Choices, CutoverRestore, GetPlanApproval, GetRestoreRun,
    PlanAnswer, PlanApproval, PlanRestore, PlanView, RetryRestoreRun, RunPage,
    SetRequireRestoreApproval, StartRestore,
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

/// The plan of the demo cluster's latest commit into `to` with `assertion`, or the refusal.
async fn plan_of(operator: &Session, to: &str, assertion: &str) -> Result<PlanView, PlanAnswer> {
    let choices = Choices {
        kind: "latest".into(),
        name: to.into(),
        assertion: assertion.into(),
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
    match res.json().await.unwrap() {
        PlanAnswer::Plan(plan) => Ok(*plan),
        refused => Err(refused),
    }
}

/// Starts the plan `hash` into `to`; the run's id.
async fn start(operator: &Session, hash: &str, to: &str) -> String {
    let res = operator
        .call(&StartRestore {
            hash: hash.into(),
            confirm: to.into(),
        })
        .await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// The run's page once no worker moves it on any more (a generous deadline: a whole restore against the
/// emulator takes minutes on a loaded machine).
async fn stopped(session: &Session, run: &str) -> RunPage {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        let res = session.call(&GetRestoreRun { id: run.into() }).await;
        assert_eq!(res.status(), 200);
        let page: RunPage = res.json().await.unwrap();
        if !page.live {
            return page;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run never stopped: {page:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A bad assertion is refused by the plan with the reason; one that does not hold (the emulator answers
/// `select false` with false) fails the run at verification, and the run's page offers operators the three
/// choices (viewers see the failure, no buttons): a retry runs it again, cancel and clean up ends it and lists
/// what the run created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_offers_retry_clean_up_and_leave_to_operators_only() {
    let (app, operator) = demo_console().await;
    let Err(PlanAnswer::Refused(reasons)) =
        plan_of(&operator, "demo-db-bad", "DELETE FROM orders").await
    else {
        panic!("a writing assertion must be refused");
    };
    assert!(
        reasons.iter().any(|r| r.code == "bad_assertion"),
        "{reasons:?}"
    );
    let html = operator
        .page(&format!(
            "{WIZARD}?step=3&kind=latest&name=demo-db-bad&assertion=DROP+TABLE+orders"
        ))
        .await;
    assert!(html.contains("data-code=\"bad_assertion\""), "{html}");

    let to = "demo-db-false";
    let plan = plan_of(&operator, to, "select false").await.unwrap();
    let run = start(&operator, &plan.hash, to).await;
    let page = stopped(&operator, &run).await;
    assert_eq!(page.state, "failed", "{page:?}");
    assert!(
        page.failure
            .as_deref()
            .unwrap_or_default()
            .contains("assertion did not hold"),
        "{page:?}"
    );
    assert!(page.can_control && !page.created.is_empty(), "{page:?}");

    let html = operator.page(&format!("/restores/{run}")).await;
    for test in [
        "run-failure",
        "run-actions",
        "retry",
        "cancel-destroy",
        "cancel-leave",
    ] {
        assert_eq!(count(&html, test), 1, "{test} in {html}");
    }
    assert!(html.contains("Leave as is"));
    let viewer = app.signed_in(Role::Viewer).await;
    let html = viewer.page(&format!("/restores/{run}")).await;
    assert_eq!(count(&html, "run-failure"), 1, "{html}");
    assert_eq!(count(&html, "run-actions"), 0, "no buttons for a viewer");
    let retry = RetryRestoreRun { id: run.clone() };
    assert_eq!(viewer.call(&retry).await.status(), 403);

    // A retry runs the failed step again: it fails again, for the same reason.
    let res = operator.call(&retry).await;
    assert_eq!(res.status(), 200);
    let page: RunPage = res.json().await.unwrap();
    assert!(
        ["pending", "running", "failed"].contains(&page.state.as_str()),
        "{page:?}"
    );
    assert_eq!(stopped(&operator, &run).await.state, "failed");

    let cancel = CancelRestoreRun {
        id: run.clone(),
        destroy: true,
    };
    let res = operator.call(&cancel).await;
    assert_eq!(res.status(), 200);
    let page: RunPage = res.json().await.unwrap();
    assert_eq!(page.state, "cancelled", "{page:?}");
    assert!(page.cleanup.is_some(), "{page:?}");
    let (status, _) = error_of(operator.call(&retry).await).await;
    assert_eq!(status, 409, "only a failed run is retried");
    let cutover = CutoverRestore {
        run: run.clone(),
        apps: String::new(),
        region: String::new(),
        confirm: "demo-db".into(),
    };
    let (status, _) = error_of(operator.call(&cutover).await).await;
    assert_eq!(status, 409, "only a done run is cut over");
    let html = operator.page(&format!("/restores/{run}")).await;
    assert_eq!(count(&html, "run-actions"), 0, "{html}");
    assert_eq!(count(&html, "run-cleanup"), 1);
    app.stop().await;
}

/// With the admin setting on, the wizard says an approval is needed and who may give it; the author cannot
/// start or approve; another operator approves on `/restores?plan=HASH`; then the author starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_person_rule_another_operator_approves_then_the_author_starts() {
    let (app, author) = demo_console().await;
    let admin = app.signed_in(Role::Admin).await;
    let rule = SetRequireRestoreApproval { enabled: true };
    assert_eq!(author.call(&rule).await.status(), 403, "admins only");
    assert_eq!(admin.call(&rule).await.status(), 200);
    let html = admin.page("/settings").await;
    assert!(
        html.contains("data-test=\"require-restore-approval-state\">Approval required."),
        "{html}"
    );

    let to = "demo-db-approved";
    let plan = plan_of(&author, to, "").await.unwrap();
    let approval = plan.approval.clone().unwrap();
    assert!(approval.required && approval.approvals.is_empty());
    assert!(
        !approval.may_approve.contains(&approval.author),
        "{approval:?}"
    );
    assert!(!approval.may_approve.is_empty());
    let html = author
        .page(&format!("{WIZARD}?step=3&kind=latest&name={to}"))
        .await;
    assert_eq!(count(&html, "approval-needed"), 1, "{html}");
    assert!(html.contains(&format!("/restores?plan={}", plan.hash)));

    let starting = StartRestore {
        hash: plan.hash.clone(),
        confirm: to.into(),
    };
    let (status, _) = error_of(author.call(&starting).await).await;
    assert_eq!(status, 409, "not approved yet");
    let approve = ApproveRestorePlan {
        hash: plan.hash.clone(),
    };
    let (status, _) = error_of(author.call(&approve).await).await;
    assert_eq!(status, 409, "the author cannot approve");

    let other = app.signed_in(Role::Operator).await;
    let html = other.page(&format!("/restores?plan={}", plan.hash)).await;
    assert_eq!(count(&html, "plan-approval"), 1, "{html}");
    assert_eq!(count(&html, "approve"), 1);
    assert_eq!(other.call(&approve).await.status(), 200);
    let res = other
        .call(&GetPlanApproval {
            hash: plan.hash.clone(),
        })
        .await;
    let state: PlanApproval = res.json().await.unwrap();
    assert_eq!(state.approvals.len(), 1, "{state:?}");
    assert!(!state.can_approve, "approved once");

    let run = start(&author, &plan.hash, to).await;
    assert!(!run.is_empty());
    app.stop().await;
}
