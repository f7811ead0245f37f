//! The console's own health, shown to everyone (the demo badge shows on the sign-in page too).

use leptos::prelude::*;

use crate::error::AppError;
use crate::model::ConsoleStatus;
#[cfg(feature = "ssr")]
use leptos::server_fn::ServerFn;

/// Who may call each server function of this module (`None`: anyone).
#[cfg(feature = "ssr")]
pub const POLICY: &[super::Access] = &[(<GetConsoleStatus as ServerFn>::PATH, None)];

/// The console's own health: version, demo mode, database reachability, schema version.
#[server(endpoint = "get_console_status")]
#[cfg_attr(feature = "ssr", tracing::instrument(skip_all, err(level = "info")))]
pub async fn get_console_status() -> Result<ConsoleStatus, AppError> {
    use time::format_description::well_known::Rfc3339;
    let visitor = crate::server::Visitor::new().await?;
    let database_ok = walden_core::db::ping(visitor.pool()).await;
    let migrations = if database_ok {
        walden_core::db::applied_migrations(visitor.pool()).await?
    } else {
        0
    };
    Ok(ConsoleStatus {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        demo_mode: visitor.demo_mode(),
        database_ok,
        migrations,
        checked_at: time::OffsetDateTime::now_utc().format(&Rfc3339)?,
    })
}
