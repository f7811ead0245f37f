//! Signing in and out.
//!
//! Unknown user, wrong password and disabled user all give [`LoginError::InvalidCredentials`] after the same
//! amount of hashing work, and each is recorded as a `failed` `auth.login` row with the reason in `detail`
//! (the caller only ever sees the generic error). A TOTP code is accepted once: the matched time step is
//! stored, guarded again inside the write transaction.
//!
//! Every attempt passes the limiter ([`super::throttle`]) before any hashing, keyed by the account (the user,
//! or the keyed fingerprint of a name that is no user) and the client. A refused attempt writes one `denied`
//! row and nothing else. Every failure stays charged, including "enter the code" (a right password without
//! its code), so that reply confirms a password no more cheaply than a full sign-in (security review M2). A
//! full success takes the charge back and makes the client known to the account (exempt from the account-wide
//! back-off, so nobody can lock a user out of their usual place).

use secrecy::{ExposeSecret, SecretString};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::throttle::{self, CredentialKey, Reservation};
use super::{
    totp, user_subject, Accounts, LoginError, LoginSuccess, User, UserError, MAX_NAME_LEN,
    MAX_PASSWORD_CHARS, USER_COLUMNS,
};
use crate::access::{Actor, RequestMeta};
use crate::audit::{self, actions, AuditedTx, Event, Outcome};

/// What a login needs from the user's row.
struct Credentials {
    user: User,
    password_hash: String,
    sealed_totp: Option<Vec<u8>>,
    last_step: Option<i64>,
}

/// One login attempt: who it is for (as typed) and where it came from, for its audit rows.
struct Attempt<'a> {
    accounts: &'a Accounts,
    meta: &'a RequestMeta,
    name: &'a str,
}

impl Attempt<'_> {
    /// Record a failed attempt and return `error`.
    async fn fail(
        &self,
        reason: &'static str,
        user: Option<&User>,
        error: LoginError,
    ) -> Result<LoginError, LoginError> {
        let subject = match user {
            Some(u) => user_subject(u.id),
            None => self.accounts.unknown_name_subject(self.name),
        };
        let event = Event::new(actions::AUTH_LOGIN, Outcome::Failed)
            .subject(subject)
            .detail(serde_json::json!({ "reason": reason }));
        audit::record(&self.accounts.pool, &Actor::Anonymous, self.meta, &event).await?;
        Ok(error)
    }

    /// Record an attempt refused before any check (`denied`, with why).
    async fn refuse(
        &self,
        subject: String,
        reason: &'static str,
        limit: &'static str,
    ) -> Result<(), LoginError> {
        let event = Event::new(actions::AUTH_LOGIN, Outcome::Denied)
            .subject(subject)
            .detail(serde_json::json!({ "reason": reason, "limit": limit }));
        audit::record(&self.accounts.pool, &Actor::Anonymous, self.meta, &event).await?;
        Ok(())
    }
}

impl Accounts {
    /// Check a name, password and (when the user has TOTP) code. Records `auth.login` with outcome `ok` or
    /// `failed`. Unknown user, wrong password and disabled user all give [`LoginError::InvalidCredentials`]
    /// after the same amount of hashing work.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn authenticate(
        &self,
        meta: &RequestMeta,
        name: &str,
        password: &SecretString,
        totp_code: Option<&str>,
    ) -> Result<LoginSuccess, LoginError> {
        let attempt = Attempt {
            accounts: self,
            meta,
            name: name.trim(),
        };
        // Over-long input is refused without hashing it (the work is bounded), with the same generic error.
        if attempt.name.len() > MAX_NAME_LEN
            || password.expose_secret().chars().count() > MAX_PASSWORD_CHARS
        {
            let invalid = LoginError::InvalidCredentials;
            return Err(attempt.fail("input too long", None, invalid).await?);
        }
        let credentials = self.credentials(attempt.name).await?;
        let account = match &credentials {
            Some(c) => user_subject(c.user.id),
            None => self.unknown_name_subject(attempt.name),
        };
        let key = CredentialKey::new(account.clone(), meta.client_ip.as_deref());
        let reservation = match self.throttle.reserve(&key, throttle::unix_now()).await? {
            Ok(r) => r,
            Err(limit) => {
                attempt.refuse(account, "throttled", limit).await?;
                return Err(LoginError::Throttled);
            }
        };
        let checked = match self.check_password(&attempt, password, credentials).await {
            Err(LoginError::Internal(UserError::Busy)) => {
                self.throttle.cancel(reservation).await?;
                attempt
                    .refuse(account, "busy", "hashing queue full")
                    .await?;
                return Err(LoginError::Internal(UserError::Busy));
            }
            other => other?,
        };
        let (checked, rehash) = checked;
        let step = self.check_code(&attempt, &checked, totp_code).await?;
        self.finish_login(&attempt, reservation, checked, password, rehash, step)
            .await
    }

    /// The row of the user called `name`, if there is one.
    async fn credentials(&self, name: &str) -> Result<Option<Credentials>, LoginError> {
        let row: Option<SqliteRow> = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, password_hash, totp_last_step FROM users WHERE name = ? COLLATE NOCASE"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        Ok(Some(Credentials {
            user: User::from_row(&r)?,
            password_hash: r.try_get("password_hash")?,
            sealed_totp: r.try_get("totp_secret")?,
            last_step: r.try_get("totp_last_step")?,
        }))
    }

    /// Verify the password (against a dummy hash when there is no such user, so the work is the same).
    /// Returns the user, and whether the hash must be remade, with their TOTP state for the next step.
    async fn check_password(
        &self,
        attempt: &Attempt<'_>,
        password: &SecretString,
        credentials: Option<Credentials>,
    ) -> Result<(Checked, bool), LoginError> {
        let phc = credentials.as_ref().map(|c| c.password_hash.clone());
        let verified = self.hasher.verify(password, phc).await?;
        let invalid = LoginError::InvalidCredentials;
        match credentials {
            Some(c) if verified.ok && !c.user.disabled => Ok((
                Checked {
                    user: c.user,
                    sealed_totp: c.sealed_totp,
                    last_step: c.last_step,
                },
                verified.needs_rehash,
            )),
            Some(c) => {
                let reason = if verified.ok {
                    "disabled"
                } else {
                    "wrong password"
                };
                Err(attempt.fail(reason, Some(&c.user), invalid).await?)
            }
            None => Err(attempt.fail("unknown user", None, invalid).await?),
        }
    }

    /// The second factor, when the user has one: the matched time step, which must be newer than the last.
    async fn check_code(
        &self,
        attempt: &Attempt<'_>,
        checked: &Checked,
        totp_code: Option<&str>,
    ) -> Result<Option<u64>, LoginError> {
        let Some(sealed) = &checked.sealed_totp else {
            return Ok(None);
        };
        let user = &checked.user;
        let Some(code) = totp_code.filter(|c| !c.trim().is_empty()) else {
            let required = LoginError::TotpRequired;
            return Err(attempt.fail("code required", Some(user), required).await?);
        };
        let secret = self.open_totp_secret(sealed, user.id)?;
        match totp::check(&secret, code, totp::unix_now()) {
            Some(s) if checked.last_step.is_none_or(|l| (s as i64) > l) => Ok(Some(s)),
            _ => {
                let invalid = LoginError::TotpInvalid;
                Err(attempt.fail("wrong code", Some(user), invalid).await?)
            }
        }
    }

    /// Store what the login changes (a remade hash, the spent TOTP step) with its `ok` row, then decide
    /// whether the user must enrol TOTP first.
    async fn finish_login(
        &self,
        attempt: &Attempt<'_>,
        reservation: Reservation,
        checked: Checked,
        password: &SecretString,
        rehash: bool,
        step: Option<u64>,
    ) -> Result<LoginSuccess, LoginError> {
        let user = checked.user;
        let rehash = if rehash {
            Some(self.hasher.hash(password).await?)
        } else {
            None
        };
        let mut tx = AuditedTx::begin(&self.pool).await?;
        if let Some(phc) = &rehash {
            sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
                .bind(phc)
                .bind(user.id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(s) = step {
            // Guarded again inside the write transaction: two logins racing with one code, one wins.
            let done = sqlx::query(
                "UPDATE users SET totp_last_step = ? WHERE id = ? \
                 AND (totp_last_step IS NULL OR totp_last_step < ?)",
            )
            .bind(s as i64)
            .bind(user.id)
            .bind(s as i64)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                drop(tx);
                let reused = LoginError::TotpInvalid;
                return Err(attempt.fail("code reused", Some(&user), reused).await?);
            }
        }
        self.throttle
            .succeeded(&mut tx, reservation, true, throttle::unix_now())
            .await?;
        let mut detail = serde_json::json!({ "second_factor": step.is_some() });
        if rehash.is_some() {
            detail["rehashed"] = true.into();
        }
        let event = Event::new(actions::AUTH_LOGIN, Outcome::Ok)
            .subject(user_subject(user.id))
            .detail(detail);
        tx.commit(&user.actor(), attempt.meta, &event).await?;
        let must_enrol_totp = self.must_enrol_totp(&user).await?;
        Ok(LoginSuccess {
            user,
            must_enrol_totp,
        })
    }

    /// Record a logout.
    #[tracing::instrument(skip_all, fields(actor = %actor.display_name()), err(level = "debug"))]
    pub async fn record_logout(&self, actor: &Actor, meta: &RequestMeta) -> Result<(), UserError> {
        let mut event = Event::new(actions::AUTH_LOGOUT, Outcome::Ok);
        if let Some(id) = actor.user_id() {
            event = event.subject(user_subject(id));
        }
        audit::record(&self.pool, actor, meta, &event).await?;
        Ok(())
    }
}

/// A user whose password was right, with their TOTP state for the second step.
struct Checked {
    user: User,
    sealed_totp: Option<Vec<u8>>,
    last_step: Option<i64>,
}
