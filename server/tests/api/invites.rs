//! Invitations over real HTTP: the pending list, revoking, and the admin lifetime cap (security review M6).

use walden_app::api::auth::AcceptInvite;
use walden_app::api::users::{CreateInvite, InviteLink, InviteRow, ListInvites, RevokeInvite};
use walden_app::error::AppError;
use walden_core::audit::AuditFilter;
use walden_core::users::Role;

use crate::helpers::{app, error_of, Session, TestApp, PW};

async fn invite(admin: &Session, role: &str, hours: u32) -> InviteLink {
    let res = admin
        .call(&CreateInvite {
            role: role.into(),
            hours,
        })
        .await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn pending(admin: &Session) -> Vec<InviteRow> {
    let res = admin.call(&ListInvites {}).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// `(action, outcome)` of every audit row about invitations, oldest first.
async fn invite_rows(app: &TestApp) -> Vec<(String, String)> {
    let pool = walden_core::db::open(&app.data_dir()).await.unwrap();
    let mut rows = walden_core::audit::query(&pool, &AuditFilter::default(), None, 500)
        .await
        .unwrap()
        .rows;
    pool.close().await;
    rows.reverse();
    rows.into_iter()
        .filter(|r| r.action.starts_with("invite."))
        .map(|r| (r.action, r.outcome))
        .collect()
}

#[tokio::test]
async fn pending_invitations_are_listed_without_tokens_and_a_revoked_link_is_refused() {
    let app = app().await;
    app.add_users(&[("kim", Role::Admin)]).await;
    let admin = app.login("kim", PW).await;
    let viewer = invite(&admin, "viewer", 72).await;
    let operator = invite(&admin, "operator", 1).await;
    let token = viewer.path.split("token=").nth(1).unwrap().to_owned();

    let res = admin.call(&ListInvites {}).await;
    let body = res.text().await.unwrap();
    assert!(!body.contains(&token), "the list shows no token: {body}");
    let list: Vec<InviteRow> = serde_json::from_str(&body).unwrap();
    // Soonest to expire first, with who made them.
    assert_eq!(
        list.iter().map(|i| i.id).collect::<Vec<_>>(),
        [operator.id, viewer.id]
    );
    assert_eq!(list[1].role, "viewer");
    assert_eq!(list[1].created_by, "kim");
    assert_eq!(list[1].expires_at, viewer.expires_at);

    let res = admin.call(&RevokeInvite { id: viewer.id }).await;
    assert_eq!(res.status(), 200);
    let list = pending(&admin).await;
    assert_eq!(list.iter().map(|i| i.id).collect::<Vec<_>>(), [operator.id]);

    // The revoked link no longer makes an account.
    let res = app
        .session()
        .call(&AcceptInvite {
            token,
            name: "lena".into(),
            password: PW.into(),
        })
        .await;
    let (status, err) = error_of(res).await;
    assert_eq!(status, 422);
    assert!(matches!(err, AppError::Validation { ref field, .. } if field == "token"));

    // Revoking it again, or an invitation that never was: a clear refusal, audited, nothing else written.
    for id in [viewer.id, 9999] {
        let res = admin.call(&RevokeInvite { id }).await;
        let (status, err) = error_of(res).await;
        assert_eq!(status, 422);
        assert!(err.to_string().contains("not valid"), "{err}");
    }
    assert_eq!(pending(&admin).await.len(), 1);
    assert_eq!(
        invite_rows(&app).await,
        [
            ("invite.create".to_owned(), "ok".to_owned()),
            ("invite.create".into(), "ok".into()),
            ("invite.revoke".into(), "ok".into()),
            ("invite.revoke".into(), "failed".into()),
            ("invite.revoke".into(), "failed".into()),
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn admin_invitations_live_hours_not_weeks() {
    let app = app().await;
    app.add_users(&[("kim", Role::Admin)]).await;
    let admin = app.login("kim", PW).await;
    invite(&admin, "admin", 24).await;
    for (role, hours, says) in [("admin", 25, "24 hours"), ("viewer", 169, "7 days")] {
        let res = admin
            .call(&CreateInvite {
                role: role.into(),
                hours,
            })
            .await;
        let (status, err) = error_of(res).await;
        assert_eq!(status, 422, "{role} {hours}");
        assert!(
            matches!(err, AppError::Validation { ref field, ref message } if field == "ttl" && message.contains(says)),
            "{err:?}"
        );
    }
    invite(&admin, "viewer", 168).await;
    assert_eq!(pending(&admin).await.len(), 2);
    assert_eq!(
        invite_rows(&app).await,
        [
            ("invite.create".to_owned(), "ok".to_owned()),
            ("invite.create".into(), "failed".into()),
            ("invite.create".into(), "failed".into()),
            ("invite.create".into(), "ok".into()),
        ]
    );
    app.stop().await;
}
