//! Server-only: the signed-in session.
//!
//! A signed-in session holds `{user_id, epoch, login_at}` under [`SESSION_KEY`]. It is good while the user
//! exists, is enabled, still has that session epoch (password change, disable and "log out everywhere" bump
//! it), and the absolute lifetime has not run out. The idle lifetime is the session cookie's and the store's
//! (tower-sessions `Expiry::OnInactivity`, set in the server's security layer).

use serde::{Deserialize, Serialize};
use tower_sessions::Session;
use walden_core::users::User;

use super::AppState;
use crate::error::AppError;

/// The session entry of a signed-in user.
pub const SESSION_KEY: &str = "walden.auth";
/// When the session was last used (Unix seconds); written on every authenticated call.
const SEEN_KEY: &str = "walden.seen";

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct SessionAuth {
    pub user_id: i64,
    pub epoch: i64,
    /// Unix seconds.
    pub login_at: i64,
}

/// How long sessions live.
#[derive(Clone, Copy, Debug)]
pub struct SessionPolicy {
    /// Signed out after this long without a request (enforced by the session layer).
    pub idle: time::Duration,
    /// Signed out this long after signing in, however active.
    pub absolute: time::Duration,
}

async fn session() -> Result<Session, AppError> {
    leptos_axum::extract::<Session>()
        .await
        .map_err(super::internal)
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The signed-in user, or `None`. A stale session (expired, signed out everywhere, user disabled) is
/// flushed.
pub async fn current_user(state: &AppState) -> Result<Option<User>, AppError> {
    let session = session().await?;
    let Some(auth) = session.get::<SessionAuth>(SESSION_KEY).await? else {
        return Ok(None);
    };
    let fresh = now_unix() - auth.login_at < state.sessions.absolute.whole_seconds();
    let user = if fresh {
        state
            .walden
            .accounts()
            .session_user(auth.user_id, auth.epoch)
            .await?
    } else {
        None
    };
    match &user {
        // Touch the session so its idle expiry restarts from this request.
        Some(_) => session.insert(SEEN_KEY, now_unix()).await?,
        None => session.flush().await?,
    }
    Ok(user)
}

/// Start a signed-in session for `user`: a new session id (no fixation), then the auth entry.
pub async fn start(user: &User) -> Result<(), AppError> {
    let session = session().await?;
    session.cycle_id().await?;
    let auth = SessionAuth {
        user_id: user.id,
        epoch: user.session_epoch,
        login_at: now_unix(),
    };
    Ok(session.insert(SESSION_KEY, auth).await?)
}

/// End this session (the record is deleted from the store and the cookie cleared).
pub async fn end() -> Result<(), AppError> {
    Ok(session().await?.flush().await?)
}
