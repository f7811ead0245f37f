//! The shared vocabulary of access: who acts ([`Actor`]), with which [`Role`], from where ([`RequestMeta`]),
//! and the one shape of a refused form field ([`FieldError`]).
//!
//! A leaf module: it imports nothing from this crate, so `audit`, `settings`, `users` and the services to
//! come can all speak it without importing each other.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a user may do. Ordered: `Viewer < Operator < Admin`; each role can do everything the lower ones can.
///
/// Stored as lower-case text (`users.role`, `invites.role`, with a `CHECK` on the allowed values).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, sqlx::Type,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything except secrets.
    Viewer,
    /// Runs backups and restores.
    Operator,
    /// Manages users and settings.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            _ => Err(FieldError::new(
                "role",
                "the role must be viewer, operator or admin",
            )),
        }
    }
}

/// Who did it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Actor {
    /// A signed-in user, with the name and role they had at the time.
    User { id: i64, name: String, role: Role },
    /// Someone not signed in (a login attempt, the first-run setup page, an invite being accepted).
    Anonymous,
    /// Walden itself or its command line (`label` says which, e.g. `cli`).
    System { label: String },
}

impl Actor {
    /// The CLI, run by whoever can read the data directory.
    pub fn cli() -> Self {
        Actor::System {
            label: "cli".into(),
        }
    }

    /// The user id written to the log, if any.
    pub fn user_id(&self) -> Option<i64> {
        match self {
            Actor::User { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// The name written to the log. Names that are not user names are in parentheses, which user names cannot
    /// contain, so `(anonymous)` never means a user called "anonymous".
    pub fn display_name(&self) -> String {
        match self {
            Actor::User { name, .. } => name.clone(),
            Actor::Anonymous => "(anonymous)".into(),
            Actor::System { label } => format!("(system:{label})"),
        }
    }

    /// `true` when the actor holds at least `role`. The system (CLI) holds every role.
    pub fn has_role(&self, role: Role) -> bool {
        match self {
            Actor::User { role: r, .. } => *r >= role,
            Actor::Anonymous => false,
            Actor::System { .. } => true,
        }
    }
}

/// Where the request came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestMeta {
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
}

/// A form field that failed validation, with a message for the person filling it in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        FieldError {
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!("Admin".parse::<Role>().unwrap(), Role::Admin);
        assert_eq!(" operator ".parse::<Role>().unwrap(), Role::Operator);
        let err = "root".parse::<Role>().unwrap_err();
        assert_eq!(err.field, "role");
        assert_eq!(err.message, "the role must be viewer, operator or admin");
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            assert_eq!(r.to_string(), r.as_str());
        }
    }

    #[test]
    fn actors_hold_roles_and_names() {
        let viewer = Actor::User {
            id: 7,
            name: "val".into(),
            role: Role::Viewer,
        };
        assert!(viewer.has_role(Role::Viewer) && !viewer.has_role(Role::Operator));
        assert_eq!(viewer.user_id(), Some(7));
        assert!(!Actor::Anonymous.has_role(Role::Viewer));
        assert!(Actor::cli().has_role(Role::Admin));
        assert_eq!(Actor::cli().display_name(), "(system:cli)");
        assert_eq!(Actor::Anonymous.display_name(), "(anonymous)");
    }

    /// The database holds roles as the same lower-case words (`CHECK (role IN (…))` in the migrations).
    #[tokio::test]
    async fn roles_round_trip_through_sqlite_as_lowercase_text() {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        for role in Role::ALL {
            let text: String = sqlx::query_scalar("SELECT ?")
                .bind(role)
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(text, role.as_str());
            let back: Role = sqlx::query_scalar("SELECT ?")
                .bind(role.as_str())
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(back, role);
        }
        let bad: Result<Role, _> = sqlx::query_scalar("SELECT 'root'")
            .fetch_one(&mut conn)
            .await;
        assert!(bad.is_err());
    }
}
