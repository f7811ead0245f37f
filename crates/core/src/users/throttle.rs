//! The one limiter for every password or code check: sign-in, changing one's password, turning two-factor
//! sign-in off, and beginning (or replacing) a TOTP enrolment (security review H2, H4, M1, M2, M3, L5).
//!
//! State lives in SQLite (`credential_failures`, `credential_known_clients`), so a restart forgets nothing and
//! every console process sees the same counts. Three limits, all counted over failures only:
//!
//! - **strict, per (account, client)**: [`ThrottlePolicy::pair_max`] failures per
//!   [`ThrottlePolicy::pair_window`]. This is the limit a guesser meets first.
//! - **per client**: [`ThrottlePolicy::client_max`] failures per window across every account, against one
//!   address spraying many names. IPv6 clients are keyed by their /64, the block one subscriber gets.
//! - **account-wide, with back-off**: after [`ThrottlePolicy::account_free`] failures in an hour, each further
//!   attempt on the account must wait a delay after the last failure that doubles with every failure (up to
//!   [`ThrottlePolicy::backoff_max`]); and never more than [`ThrottlePolicy::account_max_per_hour`] failures
//!   an hour (ASVS 4.0.3 2.2.1 asks for at most 100).
//!
//! Malicious lockout (review M1): the back-off does not apply to a client the user has fully signed in from in
//! the last [`ThrottlePolicy::known_client_days`] days; from there only the strict and per-client limits apply
//! (and the hourly cap, which failures from elsewhere cannot reach: the back-off holds them far below it). So
//! failures sent from other addresses cannot keep the owner out of their usual place; a new place waits out the
//! back-off, and `walden user` on the server resets a password without any of this.
//!
//! The tables stay bounded: a failure row lives at most an hour (pruned on every write and by the maintenance
//! worker), and every row is an attempt that passed the limits and then waited for a hashing slot, so rows
//! are added no faster than passwords can be hashed; a known-client row needs a successful sign-in and goes
//! after 30 days.
//!
//! An attempt is charged *before* the check runs (a reservation, taken in the same write transaction as the
//! counting), so a burst of concurrent guesses cannot overrun a limit; a correct check takes its reservation
//! back. A refused attempt writes nothing here (its audit row is the caller's).

use std::net::IpAddr;

use sqlx::{SqliteConnection, SqlitePool};

/// The limits. [`ThrottlePolicy::default`] is what the console uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures allowed per (account, client) per `pair_window` seconds.
    pub pair_max: i64,
    pub pair_window: i64,
    /// Failures allowed per client (all accounts) per `client_window` seconds.
    pub client_max: i64,
    pub client_window: i64,
    /// Failures an account may take in an hour before the back-off starts.
    pub account_free: i64,
    /// The first back-off delay in seconds, doubled with every further failure.
    pub backoff_base: i64,
    /// The longest back-off delay in seconds.
    pub backoff_max: i64,
    /// Hard cap on failures per account per hour, from any client.
    pub account_max_per_hour: i64,
    /// How long a client stays known after a successful sign-in.
    pub known_client_days: i64,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            pair_max: 5,
            pair_window: 15 * 60,
            client_max: 30,
            client_window: 15 * 60,
            account_free: 10,
            backoff_base: 30,
            backoff_max: 15 * 60,
            account_max_per_hour: 100,
            known_client_days: 30,
        }
    }
}

const HOUR: i64 = 3600;

impl ThrottlePolicy {
    /// The oldest failure any limit still looks at.
    fn longest_window(&self) -> i64 {
        self.pair_window.max(self.client_window).max(HOUR)
    }

    /// The decision for an attempt, given what the table says. Pure, so the arithmetic is tested alone.
    pub fn decide(&self, counts: &Counts, now: i64) -> Decision {
        if counts.pair >= self.pair_max {
            return Decision::Refused("too many failures for this account from this client");
        }
        if counts.client >= self.client_max {
            return Decision::Refused("too many failures from this client");
        }
        if counts.account_hour >= self.account_max_per_hour {
            return Decision::Refused("hourly limit for this account");
        }
        if !counts.known_client && counts.account_hour >= self.account_free {
            let doublings = (counts.account_hour - self.account_free).min(30);
            let delay = self
                .backoff_base
                .saturating_mul(1_i64 << doublings)
                .min(self.backoff_max);
            if counts.last_failure.is_some_and(|last| now < last + delay) {
                return Decision::Refused("account back-off");
            }
        }
        Decision::Allowed
    }
}

/// What the limiter counts for one attempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Failures of this (account, client) in the strict window.
    pub pair: i64,
    /// Failures of this client, any account, in its window.
    pub client: i64,
    /// Failures of this account in the last hour.
    pub account_hour: i64,
    /// When the account last failed.
    pub last_failure: Option<i64>,
    /// The user has fully signed in from this client recently.
    pub known_client: bool,
}

/// Whether an attempt may go ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Refused; the reason is for the audit row, never for the caller.
    Refused(&'static str),
}

/// Whom a check is for and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialKey {
    /// `user:<id>`, or the fingerprint subject of a name that is no user.
    pub account: String,
    /// See [`client_key`].
    pub client: String,
}

impl CredentialKey {
    pub fn new(account: String, client_ip: Option<&str>) -> Self {
        CredentialKey {
            account,
            client: client_key(client_ip),
        }
    }
}

/// The client part of a key: an IPv4 address as is (IPv4-mapped IPv6 too), an IPv6 address by its /64 (one
/// subscriber's block, so rotating addresses inside it gains nothing), `unknown` when there is none.
pub fn client_key(ip: Option<&str>) -> String {
    match ip.and_then(|s| s.trim().parse::<IpAddr>().ok()) {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{net}/64")
            }
        },
        None => "unknown".to_owned(),
    }
}

/// An attempt that passed the limiter and is counted as a failure until [`Throttle::succeeded`].
#[derive(Debug)]
pub struct Reservation {
    id: i64,
    key: CredentialKey,
}

/// The limiter over the pool. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Throttle {
    pool: SqlitePool,
    policy: ThrottlePolicy,
}

/// The current Unix time in seconds.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Throttle {
    pub fn new(pool: SqlitePool, policy: ThrottlePolicy) -> Self {
        Throttle { pool, policy }
    }

    pub fn policy(&self) -> &ThrottlePolicy {
        &self.policy
    }

    /// Count, decide and, when allowed, charge the attempt, in one write transaction (so concurrent attempts
    /// are counted one after the other). A refusal writes nothing.
    pub async fn reserve(
        &self,
        key: &CredentialKey,
        now: i64,
    ) -> Result<Result<Reservation, &'static str>, sqlx::Error> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let counts = self.counts(&mut tx, key, now).await?;
        if let Decision::Refused(reason) = self.policy.decide(&counts, now) {
            return Ok(Err(reason));
        }
        Self::prune_on(
            &mut tx,
            now - self.policy.longest_window(),
            now,
            &self.policy,
        )
        .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO credential_failures (account, client, at) VALUES (?, ?, ?) RETURNING id",
        )
        .bind(&key.account)
        .bind(&key.client)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(Reservation {
            id,
            key: key.clone(),
        }))
    }

    /// The check was correct: take the reservation back and clear this (account, client)'s failures. A full
    /// sign-in (`sign_in`) also makes the client known to the account.
    pub async fn succeeded(
        &self,
        conn: &mut SqliteConnection,
        reservation: Reservation,
        sign_in: bool,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        let key = &reservation.key;
        sqlx::query("DELETE FROM credential_failures WHERE id = ? OR (account = ? AND client = ?)")
            .bind(reservation.id)
            .bind(&key.account)
            .bind(&key.client)
            .execute(&mut *conn)
            .await?;
        if sign_in {
            sqlx::query(
                "INSERT INTO credential_known_clients (account, client, at) VALUES (?, ?, ?) \
                 ON CONFLICT (account, client) DO UPDATE SET at = excluded.at",
            )
            .bind(&key.account)
            .bind(&key.client)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// No check took place after all (the hashing queue was full): the attempt is not counted.
    pub async fn cancel(&self, reservation: Reservation) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM credential_failures WHERE id = ?")
            .bind(reservation.id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Delete what no limit looks at any more. Returns the rows deleted.
    pub async fn prune(&self, now: i64) -> Result<u64, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        Self::prune_on(
            &mut conn,
            now - self.policy.longest_window(),
            now,
            &self.policy,
        )
        .await
    }

    async fn prune_on(
        conn: &mut SqliteConnection,
        failures_before: i64,
        now: i64,
        policy: &ThrottlePolicy,
    ) -> Result<u64, sqlx::Error> {
        let failures = sqlx::query("DELETE FROM credential_failures WHERE at < ?")
            .bind(failures_before)
            .execute(&mut *conn)
            .await?;
        let known = sqlx::query("DELETE FROM credential_known_clients WHERE at < ?")
            .bind(now - policy.known_client_days * 24 * HOUR)
            .execute(&mut *conn)
            .await?;
        Ok(failures.rows_affected() + known.rows_affected())
    }

    async fn counts(
        &self,
        conn: &mut SqliteConnection,
        key: &CredentialKey,
        now: i64,
    ) -> Result<Counts, sqlx::Error> {
        let p = &self.policy;
        let (pair, client, account_hour, last_failure, known_client): (
            i64,
            i64,
            i64,
            Option<i64>,
            bool,
        ) = sqlx::query_as(
            "SELECT \
               (SELECT COUNT(*) FROM credential_failures WHERE account = ?1 AND client = ?2 AND at > ?3), \
               (SELECT COUNT(*) FROM credential_failures WHERE client = ?2 AND at > ?4), \
               (SELECT COUNT(*) FROM credential_failures WHERE account = ?1 AND at > ?5), \
               (SELECT MAX(at) FROM credential_failures WHERE account = ?1), \
               EXISTS (SELECT 1 FROM credential_known_clients WHERE account = ?1 AND client = ?2 AND at > ?6)",
        )
        .bind(&key.account)
        .bind(&key.client)
        .bind(now - p.pair_window)
        .bind(now - p.client_window)
        .bind(now - HOUR)
        .bind(now - p.known_client_days * 24 * HOUR)
        .fetch_one(conn)
        .await?;
        Ok(Counts {
            pair,
            client,
            account_hour,
            last_failure,
            known_client,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_keyed_by_its_64() {
        assert_eq!(
            client_key(Some("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            client_key(Some("2001:db8:1:2::1")),
            client_key(Some("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            client_key(Some("2001:db8:1:2::1")),
            client_key(Some("2001:db8:1:3::1"))
        );
        assert_eq!(client_key(Some("203.0.113.9")), "203.0.113.9");
        assert_eq!(client_key(Some("::ffff:203.0.113.9")), "203.0.113.9");
        assert_eq!(client_key(None), "unknown");
        assert_eq!(client_key(Some("not an address")), "unknown");
    }

    #[test]
    fn the_strict_and_client_limits() {
        let p = ThrottlePolicy::default();
        let now = 1_800_000_000;
        let ok = Counts::default();
        assert_eq!(p.decide(&ok, now), Decision::Allowed);
        let pair = Counts { pair: 5, ..ok };
        assert!(matches!(p.decide(&pair, now), Decision::Refused(_)));
        let known_pair = Counts {
            known_client: true,
            ..pair
        };
        assert!(matches!(p.decide(&known_pair, now), Decision::Refused(_)));
        let client = Counts { client: 30, ..ok };
        assert!(matches!(p.decide(&client, now), Decision::Refused(_)));
    }

    #[test]
    fn the_account_back_off_doubles_and_spares_known_clients() {
        let p = ThrottlePolicy::default();
        let now = 1_800_000_000;
        let at = |n: i64, ago: i64| Counts {
            account_hour: n,
            last_failure: Some(now - ago),
            ..Counts::default()
        };
        assert_eq!(p.decide(&at(9, 0), now), Decision::Allowed);
        assert!(matches!(p.decide(&at(10, 29), now), Decision::Refused(_)));
        assert_eq!(p.decide(&at(10, 30), now), Decision::Allowed);
        assert!(matches!(p.decide(&at(11, 59), now), Decision::Refused(_)));
        assert_eq!(p.decide(&at(11, 60), now), Decision::Allowed);
        assert!(matches!(p.decide(&at(40, 899), now), Decision::Refused(_)));
        assert_eq!(p.decide(&at(40, 900), now), Decision::Allowed);
        // A client the user signed in from is not held by failures from elsewhere...
        let known = Counts {
            known_client: true,
            ..at(40, 0)
        };
        assert_eq!(p.decide(&known, now), Decision::Allowed);
        // ...but nobody gets past the hourly cap.
        let capped = Counts {
            known_client: true,
            ..at(100, 3000)
        };
        assert!(matches!(p.decide(&capped, now), Decision::Refused(_)));
    }

    #[test]
    fn the_back_off_keeps_failures_from_elsewhere_below_the_hourly_cap() {
        // An attacker with unlimited addresses, trying the moment each delay ends, for an hour.
        let p = ThrottlePolicy::default();
        let start = 1_800_000_000;
        let mut failures: Vec<i64> = Vec::new();
        let mut t = start;
        while t < start + HOUR {
            let counts = Counts {
                account_hour: failures.iter().filter(|&&f| f > t - HOUR).count() as i64,
                last_failure: failures.last().copied(),
                ..Counts::default()
            };
            if p.decide(&counts, t) == Decision::Allowed {
                failures.push(t);
            }
            t += 1;
        }
        assert!(
            failures.len() < 30,
            "{} failures in an hour",
            failures.len()
        );
        assert!((failures.len() as i64) < p.account_max_per_hour);
    }
}
