use leptos::prelude::*;

use crate::error::AppError;
use crate::model::ConsoleStatus;

/// The console's own health: version, demo mode, database reachability, schema version.
#[server(endpoint = "get_console_status")]
pub async fn get_console_status() -> Result<ConsoleStatus, AppError> {
    use crate::ssr::{app_state, internal};
    use time::format_description::well_known::Rfc3339;

    let state = app_state()?;
    let database_ok = walden_core::db::ping(&state.pool).await;
    let migrations = if database_ok {
        walden_core::db::applied_migrations(&state.pool)
            .await
            .map_err(internal)?
    } else {
        0
    };
    let checked_at = time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .map_err(internal)?;
    Ok(ConsoleStatus {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        demo_mode: state.demo_mode,
        database_ok,
        migrations,
        checked_at,
    })
}
