//! Escrowed credentials over HTTP: versions and proofs for viewers, reveals with a reason for operators
//! (audited with it, `no-store`, never in a page's HTML), and the two-person path when reveals need approval.

use std::collections::BTreeMap;

use reqwest::Response;
use secrecy::SecretString;
use walden_app::api::escrow::{
    ApproveReveal, Credentials, GetCredentials, RequestReveal, RequestRow, RevealApproved,
    RevealCredential, Revealed, SetRequireRevealApproval,
};
use walden_app::error::AppError;
use walden_core::audit::{AuditFilter, AuditRow, RequestMeta};
use walden_core::escrow::{CaptureHow, Escrow};
use walden_core::users::Role;

use crate::helpers::{app, error_of, TestApp};

const SU: &str = "superuser password 4c1d";
const REPL: &str = "replication password 77e0";
const OPERATOR: &str = "operator password 90ab";

/// Capture the demo cluster's three passwords and prove two roles, straight through walden_core on the
/// console's own database, with the console's master key (see `helpers::app_with`).
async fn seed(app: &TestApp) {
    let pool = walden_core::db::open(&app.data_dir()).await.unwrap();
    let master: SecretString = "ab".repeat(32).into();
    let ring = walden::config::keyring(Some(&master), &[]).unwrap();
    let escrow = Escrow::new(pool.clone(), ring);
    let values: BTreeMap<String, SecretString> = [
        ("SU_PASSWORD", SU),
        ("REPL_PASSWORD", REPL),
        ("OPERATOR_PASSWORD", OPERATOR),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), SecretString::from(v)))
    .collect();
    let cli = walden_core::audit::Actor::cli();
    let meta = RequestMeta::default();
    let (org, app_name) = (flysim::DEMO_ORG, flysim::DEMO_APP);
    escrow
        .record_capture(&cli, &meta, org, app_name, CaptureHow::Exec, &values)
        .await
        .unwrap();
    escrow
        .record_proof(&cli, &meta, org, app_name, 1, "flypgadmin", true, None)
        .await
        .unwrap();
    escrow
        .record_proof(
            &cli,
            &meta,
            org,
            app_name,
            1,
            "repluser",
            false,
            Some("password authentication failed"),
        )
        .await
        .unwrap();
    pool.close().await;
}

fn reveal(field: &str, reason: &str) -> RevealCredential {
    RevealCredential {
        org: flysim::DEMO_ORG.into(),
        app: flysim::DEMO_APP.into(),
        version: 1,
        field: field.into(),
        reason: reason.into(),
    }
}

fn request(field: &str, reason: &str) -> RequestReveal {
    RequestReveal {
        org: flysim::DEMO_ORG.into(),
        app: flysim::DEMO_APP.into(),
        version: 1,
        field: field.into(),
        reason: reason.into(),
    }
}

async fn audit_rows(app: &TestApp, action: &str) -> Vec<AuditRow> {
    let pool = walden_core::db::open(&app.data_dir()).await.unwrap();
    let filter = AuditFilter {
        action: Some(action.into()),
        ..Default::default()
    };
    let rows = walden_core::audit::query(&pool, &filter, None, 100)
        .await
        .unwrap()
        .rows;
    pool.close().await;
    rows
}

/// A 409's message, in lower case (the domain's text is capitalised as a sentence for people).
async fn conflict_of(res: Response) -> String {
    match error_of(res).await {
        (status, AppError::Conflict(message)) if status == 409 => message.to_lowercase(),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// Every page that shows escrow data, as `session` sees it: none may hold a value.
async fn pages_hold_no_value(app: &TestApp, client: &reqwest::Client) {
    let credentials = format!("/credentials/{}/{}", flysim::DEMO_ORG, flysim::DEMO_APP);
    for path in ["/credentials", credentials.as_str(), "/settings", "/audit"] {
        let html = client
            .get(app.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for value in [SU, REPL, OPERATOR] {
            assert!(!html.contains(value), "{path} holds a value");
        }
    }
}

#[tokio::test]
async fn an_operator_reveals_with_a_reason_and_the_reveal_is_audited() {
    let app = app().await;
    seed(&app).await;
    let viewer = app.signed_in(Role::Viewer).await;
    let operator = app.signed_in(Role::Operator).await;

    // Viewers read the metadata: the version, its fingerprints, the proofs; never a value.
    let creds = GetCredentials {
        org: flysim::DEMO_ORG.into(),
        app: flysim::DEMO_APP.into(),
    };
    let res = viewer.call(&creds).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    for value in [SU, REPL, OPERATOR] {
        assert!(!text.contains(value));
    }
    let c: Credentials = serde_json::from_str(&text).unwrap();
    assert_eq!(c.versions.len(), 1);
    assert_eq!(c.versions[0].how, "exec");
    assert_eq!(c.versions[0].fields.len(), 3);
    assert!(c.versions[0]
        .fields
        .iter()
        .all(|f| f.changed && f.fingerprint.len() == 16));
    let failed = c.proofs.iter().find(|p| p.role == "repluser").unwrap();
    assert!(!failed.ok);
    assert_eq!(
        failed.message.as_deref(),
        Some("password authentication failed")
    );
    assert!(c.proofs.iter().any(|p| p.role == "flypgadmin" && p.ok));

    // A viewer may not reveal; an operator must give a reason.
    assert_eq!(
        viewer
            .call(&reveal("SU_PASSWORD", "restore"))
            .await
            .status(),
        403
    );
    let (status, err) = error_of(operator.call(&reveal("SU_PASSWORD", "   ")).await).await;
    assert_eq!(status, 422);
    assert!(
        matches!(&err, AppError::Validation { field, .. } if field == "reason"),
        "{err:?}"
    );

    // With a reason: the value, not stored by any cache, and an audit row with the reason (and no value).
    let res = operator
        .call(&reveal(
            "SU_PASSWORD",
            "restoring demo-db after the failed upgrade",
        ))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let revealed: Revealed = res.json().await.unwrap();
    assert_eq!(revealed.value, SU);
    assert!(
        !format!("{revealed:?}").contains(SU),
        "Debug hides the value"
    );
    let rows = audit_rows(&app, "escrow.reveal").await;
    let ok: Vec<_> = rows.iter().filter(|r| r.outcome == "ok").collect();
    assert_eq!(ok.len(), 1);
    assert_eq!(
        ok[0].reason.as_deref(),
        Some("restoring demo-db after the failed upgrade")
    );
    let refused_for_reason = rows
        .iter()
        .filter(|r| {
            r.outcome == "denied" && r.detail.as_deref().is_some_and(|d| d.contains("no reason"))
        })
        .count();
    assert_eq!(refused_for_reason, 1, "the refusal is audited too");
    for row in &rows {
        assert!(!format!("{row:?}").contains(SU));
    }

    pages_hold_no_value(&app, &operator.client).await;
    pages_hold_no_value(&app, &viewer.client).await;

    // The credentials view: versions and proofs for everyone; the reveal panel's opener for operators only (the
    // panel itself is loaded in the browser when opened).
    let page = format!("/credentials/{}/{}", flysim::DEMO_ORG, flysim::DEMO_APP);
    let html_of = |client: &reqwest::Client| client.get(app.url(&page)).send();
    let html = html_of(&viewer.client).await.unwrap().text().await.unwrap();
    assert!(html.contains("data-test=\"versions\"") && html.contains("data-test=\"proofs\""));
    assert!(html.contains(&c.versions[0].fields[0].fingerprint));
    assert!(html.contains("password authentication failed"));
    assert!(
        !html.contains("data-test=\"open-reveal\""),
        "viewers cannot reveal"
    );
    let html = html_of(&operator.client)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("data-test=\"open-reveal\""));
    app.stop().await;
}

#[tokio::test]
async fn with_approval_required_a_second_person_approves_and_the_requester_reveals_once() {
    let app = app().await;
    seed(&app).await;
    let admin = app.signed_in(Role::Admin).await;
    let asker = app.signed_in(Role::Operator).await;
    let approver = app.signed_in(Role::Operator).await;
    let viewer = app.signed_in(Role::Viewer).await;

    // Only admins change the setting.
    let on = SetRequireRevealApproval { enabled: true };
    assert_eq!(asker.call(&on).await.status(), 403);
    assert_eq!(admin.call(&on).await.status(), 200);
    let settings = admin.client.get(app.url("/settings")).send().await.unwrap();
    let html = settings.text().await.unwrap();
    assert!(
        html.contains("Approval required."),
        "the Settings page shows it"
    );

    // A direct reveal is refused now, saying what to do instead.
    let message = conflict_of(
        asker
            .call(&reveal("REPL_PASSWORD", "checking replication"))
            .await,
    )
    .await;
    assert!(message.contains("approval"), "{message}");

    // Request; the requester cannot approve it; a viewer cannot either.
    let res = asker
        .call(&request("REPL_PASSWORD", "checking replication"))
        .await;
    assert_eq!(res.status(), 200);
    let asked: RequestRow = res.json().await.unwrap();
    assert!(asked.mine);
    let id = asked.id;
    let message = conflict_of(asker.call(&ApproveReveal { id }).await).await;
    assert!(message.contains("own request"), "{message}");
    assert_eq!(viewer.call(&ApproveReveal { id }).await.status(), 403);
    // Not approved yet: nothing to reveal.
    let message = conflict_of(asker.call(&RevealApproved { id }).await).await;
    assert!(message.contains("not been approved"), "{message}");

    // Another operator approves; only the requester may use it, once.
    let res = approver.call(&ApproveReveal { id }).await;
    assert_eq!(res.status(), 200);
    let approved: RequestRow = res.json().await.unwrap();
    assert!(!approved.mine);
    assert!(approved.approver.is_some() && approved.expires_at.is_some());
    let message = conflict_of(approver.call(&RevealApproved { id }).await).await;
    assert!(message.contains("only the person"), "{message}");
    let res = asker.call(&RevealApproved { id }).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let revealed: Revealed = res.json().await.unwrap();
    assert_eq!(
        (
            revealed.field.as_str(),
            revealed.version,
            revealed.value.as_str()
        ),
        ("REPL_PASSWORD", 1, REPL)
    );
    let message = conflict_of(asker.call(&RevealApproved { id }).await).await;
    assert!(message.contains("already been used"), "{message}");

    // The use is audited with the request's reason; the approval by its approver.
    let used: Vec<_> = audit_rows(&app, "escrow.reveal")
        .await
        .into_iter()
        .filter(|r| r.outcome == "ok")
        .collect();
    assert_eq!(used.len(), 1);
    assert_eq!(used[0].reason.as_deref(), Some("checking replication"));
    let approvals: Vec<_> = audit_rows(&app, "escrow.reveal_approve")
        .await
        .into_iter()
        .filter(|r| r.outcome == "ok")
        .collect();
    assert_eq!(approvals.len(), 1);
    assert_ne!(approvals[0].actor_id, used[0].actor_id);

    pages_hold_no_value(&app, &asker.client).await;
    app.stop().await;
}

/// The page's two buttons: an operator captures the tracked demo cluster from its leader (a new version, then
/// "nothing changed"), and proves that the captured passwords open its roles; a viewer may do neither.
#[tokio::test]
async fn an_operator_captures_and_proves_a_tracked_cluster() {
    use walden_app::api::escrow::{
        CaptureCredentials, CaptureSummary, ProofResult, ProveCredentials,
    };
    use walden_app::api::orgs::TrackCluster;

    let app = app().await;
    let (admin, operator, viewer) = (
        app.signed_in(Role::Admin).await,
        app.signed_in(Role::Operator).await,
        app.signed_in(Role::Viewer).await,
    );
    let capture = CaptureCredentials {
        org: flysim::DEMO_ORG.into(),
        app: flysim::DEMO_APP.into(),
    };
    // Not tracked yet: refused with what to do, nothing stored.
    let (status, err) = error_of(operator.call(&capture).await).await;
    assert_eq!(status, 409);
    assert!(err.to_string().contains("not tracked"), "{err}");
    let track = TrackCluster {
        org: flysim::DEMO_ORG.into(),
        app: flysim::DEMO_APP.into(),
    };
    assert_eq!(admin.call(&track).await.status(), 200);

    assert_eq!(viewer.call(&capture).await.status(), 403);
    let res = operator.call(&capture).await;
    assert_eq!(res.status(), 200);
    let first: CaptureSummary = res.json().await.unwrap();
    assert!(first.created, "{first:?}");
    assert_eq!(first.version, 1);
    assert_eq!(first.how, "exec");
    for field in ["SU_PASSWORD", "REPL_PASSWORD", "OPERATOR_PASSWORD"] {
        assert!(first.changed.iter().any(|f| f == field), "{first:?}");
    }
    let res = operator.call(&capture).await;
    let again: CaptureSummary = res.json().await.unwrap();
    assert!(!again.created && again.version == 1, "{again:?}");

    let prove = ProveCredentials {
        org: flysim::DEMO_ORG.into(),
        app: flysim::DEMO_APP.into(),
    };
    assert_eq!(viewer.call(&prove).await.status(), 403);
    let res = operator.call(&prove).await;
    assert_eq!(res.status(), 200);
    let roles: Vec<ProofResult> = res.json().await.unwrap();
    let names: Vec<&str> = roles.iter().map(|r| r.role.as_str()).collect();
    assert_eq!(names.len(), 3, "{roles:?}");
    assert!(roles.iter().all(|r| r.status == "opens"), "{roles:?}");
    app.stop().await;
}

/// Hand entry for a cluster whose Machines are down: an operator types the three passwords, a version marked
/// "typed in (machines down)" is kept (the values only sealed), an empty one is refused with nothing stored,
/// the same values again make no new version; a viewer may not; an untracked cluster is refused.
#[tokio::test]
async fn an_operator_enters_the_passwords_by_hand_when_the_machines_are_down() {
    use walden_app::api::escrow::{CaptureSummary, EnterCredentials};
    use walden_app::api::orgs::TrackCluster;
    use walden_app::api::FormSecret;

    let app = app().await;
    let (admin, operator, viewer) = (
        app.signed_in(Role::Admin).await,
        app.signed_in(Role::Operator).await,
        app.signed_in(Role::Viewer).await,
    );
    let enter = |su: &str| EnterCredentials {
        org: flysim::DEMO_ORG.into(),
        app: flysim::DEMO_APP.into(),
        su_password: FormSecret(su.into()),
        repl_password: FormSecret(REPL.into()),
        operator_password: FormSecret(OPERATOR.into()),
    };
    let (status, err) = error_of(operator.call(&enter(SU)).await).await;
    assert_eq!(status, 409, "{err}");
    assert!(err.to_string().contains("not tracked"), "{err}");
    let track = TrackCluster {
        org: flysim::DEMO_ORG.into(),
        app: flysim::DEMO_APP.into(),
    };
    assert_eq!(admin.call(&track).await.status(), 200);

    assert_eq!(viewer.call(&enter(SU)).await.status(), 403);
    let (status, err) = error_of(operator.call(&enter("")).await).await;
    assert_eq!(status, 422, "{err}");
    assert!(err.to_string().contains("SU_PASSWORD"), "{err}");

    let res = operator.call(&enter(SU)).await;
    assert_eq!(res.status(), 200);
    let body = res.text().await.unwrap();
    for value in [SU, REPL, OPERATOR] {
        assert!(!body.contains(value), "the answer holds a value");
    }
    let kept: CaptureSummary = serde_json::from_str(&body).unwrap();
    assert!(kept.created && kept.version == 1, "{kept:?}");
    assert_eq!(kept.how, "manual_machines_down");
    let again: CaptureSummary = operator.call(&enter(SU)).await.json().await.unwrap();
    assert!(!again.created && again.version == 1, "{again:?}");

    let get = GetCredentials {
        org: flysim::DEMO_ORG.into(),
        app: flysim::DEMO_APP.into(),
    };
    let c: Credentials = viewer.call(&get).await.json().await.unwrap();
    assert_eq!(c.versions.len(), 1);
    assert_eq!(c.versions[0].how, "manual_machines_down");
    let rows = audit_rows(&app, "escrow.capture").await;
    assert!(
        rows.iter().any(|r| r.outcome == "ok"
            && r.detail
                .as_deref()
                .is_some_and(|d| d.contains("manual_machines_down"))),
        "{rows:?}"
    );
    pages_hold_no_value(&app, &operator.client).await;
    app.stop().await;
}
