//! Who may call what: the policy each API module declares (`walden_app::api::POLICY`), checked against the
//! server functions actually registered, then tried over HTTP as anonymous, viewer, operator and admin.

use std::collections::BTreeSet;

use leptos::server_fn::ServerFn;
use reqwest::RequestBuilder;
use serde::Serialize;
use walden_app::api::alerts::ListAlerts;
use walden_app::api::audit::{AuditQuery, ExportAudit, ListAudit, VerifyAudit};
use walden_app::api::auth::{
    AcceptInvite, ChangePassword, GetCurrentUser, GetSetupNeeded, Login, Logout, LogoutEverywhere,
    SetupAdmin,
};
use walden_app::api::clusters::{ClusterOverview, ListClusters, RefreshCluster};
use walden_app::api::escrow::{
    ApproveReveal, CaptureCredentials, EnterCredentials, GetCredentials, GetRequireRevealApproval,
    ListRevealRequests, ProveCredentials, RequestReveal, RevealApproved, RevealCredential,
    SetRequireRevealApproval,
};
use walden_app::api::orgs::{
    AddOrg, ListOrgs, ListPostgresApps, ListTracked, RemoveOrg, TrackCluster, UntrackCluster,
};
use walden_app::api::restores::{
    ApproveRestorePlan, CancelRestoreRun, CheckRestoreName, Choices, CutoverRestore, GetCutover,
    GetPlanApproval, GetRequireRestoreApproval, GetRestoreOptions, GetRestoreRun, ListRestoreRuns,
    PlanRestore, RetryRestoreRun, RollbackCutover, SetRequireRestoreApproval, StartRestore,
};
use walden_app::api::status::GetConsoleStatus;
use walden_app::api::timeline::GetClusterTimeline;
use walden_app::api::totp::{
    BeginTotp, ConfirmTotp, DisableTotp, GetRequireTotpForAdmins, SetRequireTotpForAdmins,
};
use walden_app::api::users::{
    CreateInvite, ListInvites, ListUsers, RevokeInvite, SetUserDisabled, SetUserRole,
};
use walden_app::api::Access;
use walden_app::api::FormSecret;
use walden_core::users::Role;

use crate::helpers::{app_with, InputEncoding, Session, PW};

/// The proxy header the matrix's console reads client addresses from.
const CLIENT_IP: &str = "x-test-client-ip";

/// Every module's policy, in one list.
fn policy() -> Vec<Access> {
    walden_app::api::POLICY
        .iter()
        .flat_map(|module| module.iter().copied())
        .collect()
}

#[test]
fn every_registered_server_function_has_a_policy() {
    let registered: BTreeSet<&str> = leptos::server_fn::axum::server_fn_paths()
        .map(|(path, _method)| path)
        .collect();
    let policy = policy();
    let listed: BTreeSet<&str> = policy.iter().map(|(path, _)| *path).collect();
    assert_eq!(listed.len(), policy.len(), "a path is listed twice");
    let missing: Vec<_> = registered.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "add these server functions to their module's POLICY: {missing:?}"
    );
    let unknown: Vec<_> = listed.difference(&registered).collect();
    assert!(
        unknown.is_empty(),
        "POLICY lists unknown paths: {unknown:?}"
    );
}

/// One server function called with sample arguments.
struct Probe {
    path: &'static str,
    request: Box<dyn Fn(&Session) -> RequestBuilder>,
    /// The status a caller whose role is allowed gets (200, or a field error for sample arguments that are
    /// deliberately wrong so nothing changes).
    allowed: u16,
    /// The arguments ask for more than the function's own role check (someone else's TOTP: admins only).
    domain_min: Option<Role>,
}

fn probe<F>(args: F, allowed: u16) -> Probe
where
    F: ServerFn + Serialize + 'static,
    F::Protocol: InputEncoding,
{
    Probe {
        path: F::PATH,
        request: Box::new(move |session| session.request(&args)),
        allowed,
        domain_min: None,
    }
}

/// Sample calls, one per server function. Those that end the session come last.
fn probes(target: i64) -> Vec<Probe> {
    let any = AuditQuery::default();
    vec![
        // The console's own health (the demo badge shows on the sign-in page too).
        probe(GetConsoleStatus {}, 200),
        probe(ListClusters {}, 200),
        probe(ClusterOverview {}, 200),
        // The demo cluster is not tracked: Refresh now is refused with a conflict (nothing read).
        probe(
            RefreshCluster {
                org: flysim::DEMO_ORG.into(),
                app: flysim::DEMO_APP.into(),
            },
            409,
        ),
        probe(GetCurrentUser {}, 200),
        probe(GetSetupNeeded {}, 200),
        // Wrong credentials or closed doors: nothing changes, for anyone.
        probe(
            Login {
                name: "nobody".into(),
                password: "not a password".into(),
                code: String::new(),
            },
            422,
        ),
        probe(
            SetupAdmin {
                token: "not the setup token".into(),
                name: "root".into(),
                password: PW.into(),
            },
            409,
        ),
        probe(
            AcceptInvite {
                token: "not-an-invitation".into(),
                name: "newcomer".into(),
                password: PW.into(),
            },
            422,
        ),
        probe(ListUsers {}, 200),
        probe(
            SetUserRole {
                user_id: target,
                role: "viewer".into(),
            },
            200,
        ),
        probe(
            SetUserDisabled {
                user_id: target,
                disabled: false,
            },
            200,
        ),
        probe(
            CreateInvite {
                role: "viewer".into(),
                hours: 1,
            },
            200,
        ),
        probe(ListInvites {}, 200),
        // No such invitation: allowed callers get a field error, nothing changes.
        probe(RevokeInvite { id: 999_999 }, 422),
        probe(
            ListAudit {
                query: any.clone(),
                before: None,
                limit: 50,
            },
            200,
        ),
        probe(VerifyAudit {}, 200),
        probe(
            ExportAudit {
                query: any,
                format: "csv".into(),
            },
            200,
        ),
        probe(GetRequireTotpForAdmins {}, 200),
        // Organisations (the demo console's environment org is flysim's `demo`). Wrong token, unknown
        // organisation, unknown app, untracked cluster: allowed callers get the refusal, nothing changes.
        probe(ListOrgs {}, 200),
        probe(
            AddOrg {
                slug: "personal".into(),
                token: FormSecret("not a Fly token".into()),
            },
            422,
        ),
        probe(
            RemoveOrg {
                slug: "no-such-org".into(),
            },
            404,
        ),
        probe(
            ListPostgresApps {
                org: flysim::DEMO_ORG.into(),
            },
            200,
        ),
        probe(ListTracked {}, 200),
        probe(
            TrackCluster {
                org: flysim::DEMO_ORG.into(),
                app: "no-such-app".into(),
            },
            422,
        ),
        probe(
            UntrackCluster {
                org: flysim::DEMO_ORG.into(),
                app: flysim::DEMO_APP.into(),
            },
            409,
        ),
        // Escrow: nothing captured; reveals and requests without a reason are refused before anything else.
        // The demo cluster is not tracked: capture and prove are refused with a conflict.
        probe(
            CaptureCredentials {
                org: flysim::DEMO_ORG.into(),
                app: flysim::DEMO_APP.into(),
            },
            409,
        ),
        probe(
            ProveCredentials {
                org: flysim::DEMO_ORG.into(),
                app: flysim::DEMO_APP.into(),
            },
            409,
        ),
        probe(
            EnterCredentials {
                org: flysim::DEMO_ORG.into(),
                app: flysim::DEMO_APP.into(),
                su_password: FormSecret("typed su".into()),
                repl_password: FormSecret("typed repl".into()),
                operator_password: FormSecret("typed operator".into()),
            },
            409,
        ),
        probe(ListAlerts {}, 200),
        probe(
            GetCredentials {
                org: flysim::DEMO_ORG.into(),
                app: flysim::DEMO_APP.into(),
            },
            200,
        ),
        // The cluster page: the demo cluster is not tracked, so allowed callers get "not found".
        probe(
            GetClusterTimeline {
                org: flysim::DEMO_ORG.into(),
                app: flysim::DEMO_APP.into(),
            },
            404,
        ),
        // Restores: the demo cluster is not tracked, so the plan is refused (an answer, nothing stored); no
        // plan or run has these ids.
        probe(GetRestoreOptions {}, 200),
        probe(
            CheckRestoreName {
                name: "demo-db-copy".into(),
            },
            200,
        ),
        probe(
            PlanRestore {
                org: flysim::DEMO_ORG.into(),
                app: flysim::DEMO_APP.into(),
                choices: Choices {
                    kind: "latest".into(),
                    name: "demo-db-copy".into(),
                    ..Choices::default()
                },
            },
            200,
        ),
        probe(
            StartRestore {
                hash: "0".repeat(64),
                confirm: "demo-db-copy".into(),
            },
            404,
        ),
        probe(GetRestoreRun { id: "0".repeat(16) }, 404),
        probe(ListRestoreRuns {}, 200),
        probe(RetryRestoreRun { id: "0".repeat(16) }, 404),
        probe(
            CancelRestoreRun {
                id: "0".repeat(16),
                destroy: false,
            },
            404,
        ),
        probe(
            GetPlanApproval {
                hash: "0".repeat(64),
            },
            404,
        ),
        probe(
            ApproveRestorePlan {
                hash: "0".repeat(64),
            },
            404,
        ),
        probe(GetRequireRestoreApproval {}, 200),
        probe(SetRequireRestoreApproval { enabled: false }, 200),
        probe(
            GetCutover {
                run: "0".repeat(16),
            },
            404,
        ),
        probe(
            CutoverRestore {
                run: "0".repeat(16),
                apps: String::new(),
                region: String::new(),
                confirm: "demo-db".into(),
            },
            404,
        ),
        probe(
            RollbackCutover {
                run: "0".repeat(16),
                confirm: "demo-db".into(),
            },
            404,
        ),
        probe(
            RevealCredential {
                org: flysim::DEMO_ORG.into(),
                app: flysim::DEMO_APP.into(),
                version: 1,
                field: "SU_PASSWORD".into(),
                reason: String::new(),
            },
            422,
        ),
        probe(
            RequestReveal {
                org: flysim::DEMO_ORG.into(),
                app: flysim::DEMO_APP.into(),
                version: 1,
                field: "SU_PASSWORD".into(),
                reason: String::new(),
            },
            422,
        ),
        probe(ListRevealRequests {}, 200),
        probe(ApproveReveal { id: 999_999 }, 404),
        probe(RevealApproved { id: 999_999 }, 404),
        probe(GetRequireRevealApproval {}, 200),
        probe(SetRequireRevealApproval { enabled: false }, 200),
        probe(SetRequireTotpForAdmins { enabled: false }, 200),
        // Someone else's TOTP: admins only (the target has none; removing none is fine).
        Probe {
            domain_min: Some(Role::Admin),
            ..probe(
                DisableTotp {
                    user_id: target,
                    current_password: String::new(),
                },
                200,
            )
        },
        // Enrolment is one's own business: any signed-in user. A wrong first code changes nothing.
        probe(
            BeginTotp {
                current_password: PW.into(),
                current_code: String::new(),
            },
            200,
        ),
        probe(
            ConfirmTotp {
                code: "000000".into(),
            },
            422,
        ),
        // A wrong current password: allowed callers get a field error, nothing changes.
        probe(
            ChangePassword {
                current_password: "not the password".into(),
                new_password: "a brand new passphrase".into(),
            },
            422,
        ),
        // Last: they end the session.
        probe(LogoutEverywhere {}, 200),
        probe(Logout {}, 200),
    ]
}

/// What `caller` should get from `probe`, given the function's least role `min`.
fn expected(min: Option<Role>, caller: Option<Role>, probe: &Probe) -> u16 {
    match (min, caller) {
        (None, _) => probe.allowed,
        (Some(_), None) => 401,
        (Some(min), Some(role)) if role < min => 403,
        (Some(_), Some(role)) if probe.domain_min.is_some_and(|least| role < least) => 403,
        _ => probe.allowed,
    }
}

#[tokio::test]
async fn authorization_matrix() {
    // Each call comes from its own address (through the proxy header), so the per-client budget of anonymous
    // refusal rows (`RefusalBudget`) never runs out and every refusal can be counted.
    let app = app_with(|c| c.client_ip_header = Some(CLIENT_IP.parse().unwrap())).await;
    let target = app.add_users(&[("target", Role::Viewer)]).await[0];
    let callers = [
        ("anonymous", app.session(), None),
        (
            "viewer",
            app.signed_in(Role::Viewer).await,
            Some(Role::Viewer),
        ),
        (
            "operator",
            app.signed_in(Role::Operator).await,
            Some(Role::Operator),
        ),
        ("admin", app.signed_in(Role::Admin).await, Some(Role::Admin)),
    ];
    let policy = policy();
    let probes = probes(target);
    let probed: BTreeSet<&str> = probes.iter().map(|p| p.path).collect();
    for (path, _) in &policy {
        assert!(probed.contains(path), "add a probe for {path}");
    }

    let mut table = Vec::new();
    // Refusals by the role check itself (not by the domain's own rules): each leaves an access.denied row.
    let mut role_refusals = 0;
    let mut calls = 0u32;
    for (who, session, role) in &callers {
        for probe in &probes {
            calls += 1;
            let address = format!("10.0.{}.{}", calls / 250, calls % 250 + 1);
            let min = policy
                .iter()
                .find(|(path, _)| *path == probe.path)
                .unwrap_or_else(|| panic!("{} has a probe but no policy", probe.path))
                .1;
            let res = (probe.request)(session)
                .header(CLIENT_IP, address)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let want = expected(min, *role, probe);
            let refused_by_role = match (min, role) {
                (Some(_), None) => true,
                (Some(min), Some(role)) => role < &min,
                (None, _) => false,
            };
            role_refusals += usize::from(refused_by_role);
            table.push(format!("{who:>9} {:<32} {status}", probe.path));
            assert_eq!(
                status,
                want,
                "{who} calling {}\n{}",
                probe.path,
                res.text().await.unwrap_or_default()
            );
        }
    }
    // Pages render for everyone (the shell); their data comes through the server functions above.
    for path in [
        "/",
        "/clusters",
        "/restores",
        "/restores/0000000000000000",
        "/clusters/demo/demo-db/restore",
        "/audit",
        "/settings",
        "/settings/orgs",
        "/credentials",
        "/credentials/demo/demo-db",
        "/login",
        "/users",
        "/account",
    ] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }
    println!("{}", table.join("\n"));
    let pool = walden_core::db::open(&app.data_dir()).await.unwrap();
    let filter = walden_core::audit::AuditFilter {
        action: Some("access.denied".into()),
        ..Default::default()
    };
    let denied = walden_core::audit::count(&pool, &filter).await.unwrap();
    pool.close().await;
    assert!(role_refusals > 0);
    assert_eq!(
        denied, role_refusals as i64,
        "every refusal by the role check is audited"
    );
    app.stop().await;
}
