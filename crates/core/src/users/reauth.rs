//! Asking a signed-in user for their password (and current code) again before a sensitive change: changing
//! the password, turning two-factor sign-in off, beginning or replacing an enrolment (security review H2, M3).
//!
//! One path for all of them, through the limiter ([`super::throttle`]), so a stolen session is not an
//! unlimited password oracle: every failure is charged and writes one `failed` audit row under the caller's
//! action; a check the limiter refuses writes one `denied` row and nothing else.

use secrecy::SecretString;

use super::throttle::{self, CredentialKey, Reservation};
use super::{totp, user_subject, Accounts, UserError};
use crate::access::{Actor, RequestMeta};
use crate::audit::{self, Event, Outcome};

/// What a re-authentication asks for.
pub(super) struct Reauth<'a> {
    /// The audit action the rows are written under (`user.password_change`, ...).
    pub action: &'static str,
    pub password: Option<&'a SecretString>,
    /// `Some` when the current TOTP code is required from a user who has one (the typed code, maybe empty).
    pub code: Option<&'a str>,
}

/// A successful re-authentication: the TOTP step matched, if a code was checked. The caller stores it with
/// its change ([`Accounts::spend_totp_step`]) so the code cannot be used again.
pub(super) struct Reauthenticated {
    pub step: Option<u64>,
}

impl Accounts {
    /// Check `user_id`'s own password (and code, see [`Reauth::code`]) through the limiter.
    pub(super) async fn reauthenticate(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        user_id: i64,
        ask: Reauth<'_>,
    ) -> Result<Reauthenticated, UserError> {
        let key = CredentialKey::new(user_subject(user_id), meta.client_ip.as_deref());
        let now = throttle::unix_now();
        let reservation = match self.throttle.reserve(&key, now).await? {
            Ok(r) => r,
            Err(limit) => {
                let refusal = Event::new(ask.action, Outcome::Denied)
                    .subject(user_subject(user_id))
                    .detail(serde_json::json!({ "reason": "throttled", "limit": limit }));
                audit::record(&self.pool, actor, meta, &refusal).await?;
                return Err(UserError::Throttled);
            }
        };
        let row: Option<(String, Option<Vec<u8>>, Option<i64>)> = sqlx::query_as(
            "SELECT password_hash, totp_secret, totp_last_step FROM users WHERE id = ?",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some((phc, sealed, last_step)) = row else {
            self.throttle.cancel(reservation).await?;
            return Err(UserError::NotFound);
        };
        let wants_code = ask.code.is_some() && sealed.is_some();
        let wrong = if wants_code {
            UserError::WrongPasswordOrCode
        } else {
            UserError::WrongPassword
        };
        let Some(password) = ask.password else {
            return Err(self
                .reauth_failed(actor, meta, &ask, user_id, "no password", wrong)
                .await);
        };
        let verified = match self.hasher.verify(password, Some(phc)).await {
            Ok(v) => v,
            Err(e) => {
                return Err(self
                    .not_checked(actor, meta, &ask, user_id, reservation, e)
                    .await)
            }
        };
        if !verified.ok {
            return Err(self
                .reauth_failed(actor, meta, &ask, user_id, "wrong password", wrong)
                .await);
        }
        let mut step = None;
        if let (true, Some(sealed)) = (wants_code, &sealed) {
            let code = ask.code.map(str::trim).unwrap_or_default();
            if code.is_empty() {
                return Err(self
                    .reauth_failed(actor, meta, &ask, user_id, "code required", wrong)
                    .await);
            }
            let secret = self.open_totp_secret(sealed, user_id)?;
            match totp::check(&secret, code, totp::unix_now()) {
                Some(s) if last_step.is_none_or(|l| (s as i64) > l) => step = Some(s),
                _ => {
                    return Err(self
                        .reauth_failed(actor, meta, &ask, user_id, "wrong code", wrong)
                        .await)
                }
            }
        }
        let mut conn = self.pool.acquire().await?;
        self.throttle
            .succeeded(&mut conn, reservation, false, now)
            .await?;
        Ok(Reauthenticated { step })
    }

    /// A failed check: it stays charged; one `failed` row says why.
    async fn reauth_failed(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        ask: &Reauth<'_>,
        user_id: i64,
        reason: &'static str,
        error: UserError,
    ) -> UserError {
        let failed = Event::new(ask.action, Outcome::Failed)
            .subject(user_subject(user_id))
            .detail(serde_json::json!({ "reason": reason }));
        match audit::record(&self.pool, actor, meta, &failed).await {
            Ok(_) => error,
            Err(e) => UserError::Audit(e),
        }
    }

    /// The check could not run (the hashing queue stayed full): not charged; a `denied` row says so.
    async fn not_checked(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        ask: &Reauth<'_>,
        user_id: i64,
        reservation: Reservation,
        error: UserError,
    ) -> UserError {
        if let Err(e) = self.throttle.cancel(reservation).await {
            return e.into();
        }
        if matches!(error, UserError::Busy) {
            let refusal = Event::new(ask.action, Outcome::Denied)
                .subject(user_subject(user_id))
                .detail(serde_json::json!({ "reason": "busy" }));
            if let Err(e) = audit::record(&self.pool, actor, meta, &refusal).await {
                return e.into();
            }
        }
        error
    }
}
