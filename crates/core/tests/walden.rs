//! The façade: one `Walden` opened on a data directory hands out services over one database and one keyring.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use secrecy::SecretString;
use walden_core::audit::{Actor, RequestMeta};
use walden_core::clusters::DiscoverError;
use walden_core::keyring::Keyring;
use walden_core::settings::REQUIRE_TOTP_FOR_ADMINS;
use walden_core::users::{HashParams, Role, UserError};
use walden_core::{Walden, WaldenOptions};

const CHEAP: HashParams = HashParams {
    m_cost: 64,
    t_cost: 1,
    p_cost: 1,
};

fn options(keyring: Option<Keyring>) -> WaldenOptions {
    WaldenOptions {
        hash: CHEAP,
        hash_limits: Default::default(),
        keyring,
        fly: None,
        fly_endpoints: None,
    }
}

#[tokio::test]
async fn the_services_share_one_database_and_one_keyring() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = Keyring::generate().unwrap();
    let walden = Walden::open(dir.path(), options(Some(keyring.clone())))
        .await
        .unwrap();
    let meta = RequestMeta::default();
    let password = SecretString::from("a perfectly fine passphrase");
    let admin = walden
        .accounts()
        .create_user(&Actor::cli(), &meta, "root", &password, Role::Admin)
        .await
        .unwrap();
    walden
        .settings()
        .set_bool(&admin.actor(), &meta, REQUIRE_TOTP_FOR_ADMINS, true)
        .await
        .unwrap();
    assert!(walden.settings().require_totp_for_admins().await.unwrap());
    assert!(walden.accounts().must_enrol_totp(&admin).await.unwrap());

    let page = walden
        .audit()
        .query(&Default::default(), None, 10)
        .await
        .unwrap();
    let actions: Vec<&str> = page.rows.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["setting.change", "user.create"]);
    assert_eq!(walden.audit().count(&Default::default()).await.unwrap(), 2);
    assert!(walden.audit().verify().await.unwrap().is_intact());

    // TOTP seals with the façade's keyring.
    assert_eq!(
        walden.keyring().map(Keyring::primary_id),
        Some(keyring.primary_id())
    );
    walden
        .accounts()
        .begin_totp(&admin.actor(), &meta, &password, None)
        .await
        .unwrap();

    // No Fly connection (the CLI): listing clusters says so.
    assert_eq!(walden.clusters().org(), None);
    assert!(matches!(
        walden.clusters().list().await.unwrap_err(),
        DiscoverError::NotConfigured
    ));

    // Clones share the pool.
    walden.clone().close().await;
    assert!(walden.pool().is_closed());
}

#[tokio::test]
async fn without_a_keyring_two_factor_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let walden = Walden::open(dir.path(), options(None)).await.unwrap();
    let user = walden
        .accounts()
        .create_user(
            &Actor::cli(),
            &RequestMeta::default(),
            "kim",
            &SecretString::from("a perfectly fine passphrase"),
            Role::Viewer,
        )
        .await
        .unwrap();
    assert!(walden.keyring().is_none());
    assert!(matches!(
        walden
            .accounts()
            .begin_totp(
                &user.actor(),
                &RequestMeta::default(),
                &SecretString::from("a perfectly fine passphrase"),
                None
            )
            .await
            .unwrap_err(),
        UserError::NoSealKey
    ));
}
