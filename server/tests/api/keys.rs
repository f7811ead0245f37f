//! The console between a master-key change and `walden keys rotate`: secrets sealed with the old key keep
//! opening through the retired key (`WALDEN_RETIRED_MASTER_KEYS`), so two-factor sign-in keeps working.

use walden_app::api::auth::Login;
use walden_core::keyring::Keyring;
use walden_core::seal::SealKey;
use walden_core::users::{totp, Role};

use crate::helpers::{app_with, TestApp, PW};

const OLD: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const NEW: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const SECRET: &[u8] = b"twenty bytes secret!";

/// A user whose TOTP secret was sealed with the old key, as before the key changed.
async fn user_sealed_with_the_old_key(app: &TestApp) {
    let id = app.add_users(&[("nia", Role::Operator)]).await[0];
    let old = Keyring::new(SealKey::from_hex(&OLD.into()).unwrap());
    let sealed = old.seal(SECRET, &format!("walden/totp/user/{id}")).unwrap();
    let pool = walden_core::db::open(&app.data_dir()).await.unwrap();
    sqlx::query("UPDATE users SET totp_secret = ? WHERE id = ?")
        .bind(sealed)
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

fn login_now() -> Login {
    Login {
        name: "nia".into(),
        password: PW.into(),
        code: totp::code_at(SECRET, totp::unix_now()).unwrap(),
    }
}

#[tokio::test]
async fn serve_opens_old_secrets_with_a_retired_key() {
    let app = app_with(|c| {
        c.master_key = Some(NEW.into());
        c.retired_master_keys = vec![OLD.into()];
    })
    .await;
    user_sealed_with_the_old_key(&app).await;
    let res = app.session().call(&login_now()).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    app.stop().await;

    // Without the retired key the old secret cannot be opened: sign-in fails (and says nothing of why).
    let app = app_with(|c| c.master_key = Some(NEW.into())).await;
    user_sealed_with_the_old_key(&app).await;
    let res = app.session().call(&login_now()).await;
    assert_ne!(res.status(), 200);
    let body = res.text().await.unwrap();
    assert!(!body.contains(OLD) && !body.contains(NEW), "{body}");
    app.stop().await;
}
