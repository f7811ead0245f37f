//! TOTP (RFC 6238) second factor, through the `totp-rs` crate: SHA-1, 6 digits, 30-second steps, one step of
//! clock skew either way — what every authenticator app understands.
//!
//! The codes (free functions), then the account operations: enrolment in two steps (begin, then confirm
//! with a first code) and removal. Secrets are sealed at rest with the façade's
//! [`Keyring`](crate::keyring::Keyring), bound to the user's row (`walden/totp/user/<id>`).

use secrecy::SecretString;
use totp_rs::{Algorithm, Builder, Totp};
use zeroize::Zeroizing;

use super::reauth::Reauth;
use super::{user_subject, Accounts, User, UserError};
use crate::access::{Actor, RequestMeta, Role};
use crate::audit::{self, actions, AuditedTx, Event, Outcome};
use crate::ts;

/// The issuer shown in authenticator apps.
pub const ISSUER: &str = "Walden";
/// Secret length in bytes (160 bits, RFC 4226's recommendation).
pub const SECRET_LEN: usize = 20;

/// What a user needs to add Walden to an authenticator app. Both values are secret.
pub struct TotpEnrolment {
    /// The secret in base32, for typing in by hand.
    pub secret_base32: SecretString,
    /// The `otpauth://` URL, for a QR code.
    pub otpauth_url: SecretString,
}

impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrolment(..)")
    }
}

/// A fresh random secret.
pub fn new_secret() -> Result<Zeroizing<Vec<u8>>, UserError> {
    let mut s = Zeroizing::new(vec![0u8; SECRET_LEN]);
    getrandom::fill(&mut s[..]).map_err(|_| UserError::Internal("random"))?;
    Ok(s)
}

fn build(secret: &[u8], account: &str) -> Result<Totp, UserError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        // ':' is not allowed in either part; user names never contain one.
        .with_account_name(account.replace(':', "_"))
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|_| UserError::Internal("totp parameters"))
}

/// The enrolment values for `secret`.
pub fn enrolment(secret: &[u8], account: &str) -> Result<TotpEnrolment, UserError> {
    let totp = build(secret, account)?;
    let url = totp.to_url().map_err(|_| UserError::Internal("totp url"))?;
    Ok(TotpEnrolment {
        secret_base32: SecretString::from(totp.secret().to_base32()),
        otpauth_url: SecretString::from(url),
    })
}

/// Check `code` at Unix time `now`, accepting the step before and after. Returns the matched time step, which
/// the caller must store so that the same code is never accepted twice. The comparison is constant-time
/// (totp-rs `Token`'s `PartialEq`).
pub fn check(secret: &[u8], code: &str, now: u64) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    build(secret, "x").ok()?.check(&code, now)
}

/// The code for Unix time `t` (tests and the CLI's self-check).
pub fn code_at(secret: &[u8], t: u64) -> Result<String, UserError> {
    Ok(build(secret, "x")?.generate(t).to_string())
}

/// Decode a base32 secret as shown at enrolment (tests; a user re-entering a secret).
pub fn secret_from_base32(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    totp_rs::Secret::try_from_base32(s.trim())
        .ok()
        .map(|s| Zeroizing::new(s.as_ref().to_vec()))
}

/// The current Unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a sealed TOTP secret is bound to: its user's row.
pub(crate) fn totp_context(user_id: i64) -> String {
    format!("walden/totp/user/{user_id}")
}

impl Accounts {
    /// Open a user's sealed TOTP secret (current or pending).
    pub(super) fn open_totp_secret(
        &self,
        sealed: &[u8],
        user_id: i64,
    ) -> Result<Zeroizing<Vec<u8>>, UserError> {
        self.keyring()?
            .open(sealed, &totp_context(user_id))
            .map_err(|_| UserError::Internal("a stored TOTP secret could not be opened"))
    }

    /// Start enrolling (or replacing) a TOTP authenticator for oneself. The current password is required,
    /// and the current code when a factor is already enrolled (security review H2), checked through the
    /// limiter. A new secret is stored (sealed) as pending with its `user.totp_begin` row, in one transaction:
    /// no row, no secret (fail closed). Nothing changes for logins until [`Self::confirm_totp`].
    #[tracing::instrument(skip_all, fields(actor = %actor.display_name()), err(level = "debug"))]
    pub async fn begin_totp(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        current_password: &SecretString,
        current_code: Option<&str>,
    ) -> Result<TotpEnrolment, UserError> {
        let Some(user_id) = actor.user_id() else {
            return Err(UserError::Forbidden);
        };
        let keyring = self.keyring()?;
        let user = self.reload(user_id).await?;
        let ask = Reauth {
            action: actions::USER_TOTP_BEGIN,
            password: Some(current_password),
            code: Some(current_code.unwrap_or_default()),
        };
        let checked = self.reauthenticate(actor, meta, user_id, ask).await?;
        let secret = new_secret()?;
        let sealed = keyring
            .seal(&secret, &totp_context(user_id))
            .map_err(|_| UserError::Internal("sealing failed"))?;
        let mut tx = AuditedTx::begin(&self.pool).await?;
        if let Some(step) = checked.step {
            // The current code is spent, like at sign-in; guarded again against a racing use.
            let spent = sqlx::query(
                "UPDATE users SET totp_last_step = ? WHERE id = ? \
                 AND (totp_last_step IS NULL OR totp_last_step < ?)",
            )
            .bind(step as i64)
            .bind(user_id)
            .bind(step as i64)
            .execute(&mut *tx)
            .await?;
            if spent.rows_affected() == 0 {
                drop(tx);
                let failed = Event::new(actions::USER_TOTP_BEGIN, Outcome::Failed)
                    .subject(user_subject(user_id))
                    .detail(serde_json::json!({ "reason": "code reused" }));
                audit::record(&self.pool, actor, meta, &failed).await?;
                return Err(UserError::WrongPasswordOrCode);
            }
        }
        sqlx::query("UPDATE users SET totp_pending = ? WHERE id = ?")
            .bind(sealed)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let event = Event::new(actions::USER_TOTP_BEGIN, Outcome::Ok)
            .subject(user_subject(user_id))
            .detail(serde_json::json!({ "replacing": user.totp_enabled }));
        tx.commit(actor, meta, &event).await?;
        enrolment(&secret, &user.name)
    }

    /// Finish enrolment with a first code from the app. Records `user.totp_enrol`; when it replaces a factor
    /// the row says `replaced: true` and the session epoch is bumped, so every other session of the user ends
    /// (the caller re-issues its own from the returned user, as after a password change).
    #[tracing::instrument(skip_all, fields(actor = %actor.display_name()), err(level = "debug"))]
    pub async fn confirm_totp(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        code: &str,
    ) -> Result<User, UserError> {
        let Some(user_id) = actor.user_id() else {
            return Err(UserError::Forbidden);
        };
        self.keyring()?;
        let pending: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT totp_pending FROM users WHERE id = ?")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        let pending = pending
            .ok_or(UserError::NotFound)?
            .ok_or(UserError::NoPendingTotp)?;
        let secret = self.open_totp_secret(&pending, user_id)?;
        let Some(step) = check(&secret, code, unix_now()) else {
            let failed = Event::new(actions::USER_TOTP_ENROL, Outcome::Failed)
                .subject(user_subject(user_id))
                .detail(serde_json::json!({ "reason": "wrong code" }));
            audit::record(&self.pool, actor, meta, &failed).await?;
            return Err(UserError::TotpInvalid);
        };
        let mut tx = AuditedTx::begin(&self.pool).await?;
        let replaced: bool =
            sqlx::query_scalar("SELECT totp_secret IS NOT NULL FROM users WHERE id = ?")
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await?;
        // A replacement ends every other session: whoever enrolled the old factor may not be the owner.
        let done = sqlx::query(
            "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL, totp_last_step = ?, \
             session_epoch = session_epoch + ?, updated_at = ? WHERE id = ? AND totp_pending IS NOT NULL",
        )
        .bind(step as i64)
        .bind(i64::from(replaced))
        .bind(ts::format(ts::now()))
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(UserError::NoPendingTotp);
        }
        let event = Event::new(actions::USER_TOTP_ENROL, Outcome::Ok)
            .subject(user_subject(user_id))
            .detail(serde_json::json!({ "replaced": replaced }));
        tx.commit(actor, meta, &event).await?;
        self.reload(user_id).await
    }

    /// Remove a user's TOTP: one's own (the current password is required, checked through the limiter), or
    /// anyone's for an admin (a lost phone).
    #[tracing::instrument(
        skip_all,
        fields(actor = %actor.display_name(), user_id = user_id),
        err(level = "debug")
    )]
    pub async fn disable_totp(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        user_id: i64,
        current_password: Option<&SecretString>,
    ) -> Result<User, UserError> {
        let own = actor.user_id() == Some(user_id);
        if !own {
            self.require(actor, Role::Admin, meta, actions::USER_TOTP_DISABLE, || {
                user_subject(user_id)
            })
            .await?;
        } else {
            let ask = Reauth {
                action: actions::USER_TOTP_DISABLE,
                password: current_password,
                code: None,
            };
            self.reauthenticate(actor, meta, user_id, ask).await?;
        }
        let mut tx = AuditedTx::begin(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE users SET totp_secret = NULL, totp_pending = NULL, totp_last_step = NULL, updated_at = ? \
             WHERE id = ?",
        )
        .bind(ts::format(ts::now()))
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(UserError::NotFound);
        }
        let event =
            Event::new(actions::USER_TOTP_DISABLE, Outcome::Ok).subject(user_subject(user_id));
        tx.commit(actor, meta, &event).await?;
        self.reload(user_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn rfc6238_test_vector() {
        // RFC 6238 appendix B, SHA-1, T = 59 → 94287082 (8 digits); the 6-digit code is the last six.
        let secret = b"12345678901234567890";
        assert_eq!(code_at(secret, 59).unwrap(), "287082");
        assert_eq!(check(secret, "287082", 59), Some(1));
        assert_eq!(check(secret, "287 082", 59), Some(1));
    }

    #[test]
    fn a_window_of_one_step_either_way() {
        let secret = new_secret().unwrap();
        let t = 1_800_000_000;
        let code = code_at(&secret, t).unwrap();
        assert_eq!(check(&secret, &code, t), Some(t / 30));
        assert_eq!(check(&secret, &code, t + 30), Some(t / 30));
        assert_eq!(check(&secret, &code, t - 30), Some(t / 30));
        assert_eq!(check(&secret, &code, t + 90), None);
        assert_eq!(check(&secret, "abcdef", t), None);
        assert_eq!(check(&secret, "1234567", t), None);
        assert_eq!(check(&secret, "", t), None);
    }

    #[test]
    fn enrolment_gives_an_otpauth_url() {
        let secret = new_secret().unwrap();
        let e = enrolment(&secret, "alice").unwrap();
        assert!(e
            .otpauth_url
            .expose_secret()
            .starts_with("otpauth://totp/Walden:alice?"));
        assert!(e
            .otpauth_url
            .expose_secret()
            .contains(e.secret_base32.expose_secret()));
        assert_eq!(format!("{e:?}"), "TotpEnrolment(..)");
    }
}
