//! The leader's volume and the forecast of when it is full (issue #12 item 6: "the leader's volume filling
//! because WAL is not being archived, with a forecast of when it is full").
//!
//! Why it matters: while `archive_command` fails, PostgreSQL keeps every finished WAL segment in `pg_wal` with
//! its `.ready` file until it is archived (`src/backend/postmaster/pgarch.c`), so the leader's `/data` volume
//! grows by one segment per switch; above 90 % use the Stolon image's role check answers `readonly`
//! (fly-apps/postgres-ha `pkg/flycheck/role.go`) and the cluster stops taking writes.
//!
//! Each monitor refresh reads the volume attached to the leader machine from the Machines API
//! (`GET /v1/apps/{app}/volumes`: `bytes_used`, `bytes_total`, `attached_machine_id`) and keeps a [`Sample`]
//! in `volume_samples` (migration `20261203000100_volume_samples.sql`, the last [`KEEP_SECS`]). [`forecast`]
//! fits a least-squares line through the samples of the last [`WINDOW_SECS`]; the rule that turns it into an
//! alert is [`super::health::volume_filling`]. A volume that cannot be read is not an alert by itself: the
//! reason is kept in the cluster's row (`cluster_health.volume_error`) and shown beside it.

use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use time::{Duration, OffsetDateTime};

use crate::clusters::MachineSummary;
use crate::ts;

/// Samples older than this are deleted when a new one is written (48 hours).
pub const KEEP_SECS: i64 = 48 * 3600;
/// The forecast looks at the samples of the last 6 hours: recent enough to follow a change of pace.
pub const WINDOW_SECS: i64 = 6 * 3600;
/// A growth rate needs at least this many samples in the window ...
pub const MIN_SAMPLES: usize = 3;
/// ... spanning at least 10 minutes.
pub const MIN_SPAN_SECS: i64 = 600;
/// Above this share of use the Stolon image answers `readonly` to its role check (fly-apps/postgres-ha
/// `pkg/flycheck/role.go`: `if used > 90 { return "readonly", nil }`).
pub const READ_ONLY_PERCENT: f64 = 90.0;
/// The longest forecast given (ten years): beyond it "full at" means nothing.
const HORIZON_SECS: f64 = 10.0 * 365.0 * 86_400.0;

/// One reading of the leader's volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub at: OffsetDateTime,
    pub used: u64,
    pub total: u64,
}

impl Sample {
    /// Share of the volume in use, in percent.
    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        self.used as f64 * 100.0 / self.total as f64
    }
}

/// What the samples say about the volume's growth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Forecast {
    /// Fewer than [`MIN_SAMPLES`] samples in the window, or spanning less than [`MIN_SPAN_SECS`].
    NotEnoughSamples,
    /// Flat or shrinking.
    NotGrowing { bytes_per_sec: f64 },
    /// Growing: full at `full_at` at this pace (now when it is full already).
    Growing {
        bytes_per_sec: f64,
        full_at: OffsetDateTime,
    },
}

impl Forecast {
    /// When the volume is full, if it grows.
    pub fn full_at(&self) -> Option<OffsetDateTime> {
        match self {
            Forecast::Growing { full_at, .. } => Some(*full_at),
            _ => None,
        }
    }
}

/// The forecast at `now` from `samples` (any order; those outside the last [`WINDOW_SECS`] are ignored): the
/// least-squares growth rate in bytes per second, and full at `now + (total − used) / rate` from the newest
/// sample. Pure.
pub fn forecast(samples: &[Sample], now: OffsetDateTime) -> Forecast {
    let from = now - Duration::seconds(WINDOW_SECS);
    let recent: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= from && s.at <= now)
        .collect();
    let (Some(first), Some(newest)) = (
        recent.iter().map(|s| s.at).min(),
        recent.iter().max_by_key(|s| s.at),
    ) else {
        return Forecast::NotEnoughSamples;
    };
    if recent.len() < MIN_SAMPLES || (newest.at - first).whole_seconds() < MIN_SPAN_SECS {
        return Forecast::NotEnoughSamples;
    }
    let points: Vec<(f64, f64)> = recent
        .iter()
        .map(|s| ((s.at - first).as_seconds_f64(), s.used as f64))
        .collect();
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    if sxx <= 0.0 {
        return Forecast::NotEnoughSamples;
    }
    let rate = sxy / sxx;
    if !rate.is_finite() || rate <= 0.0 {
        return Forecast::NotGrowing {
            bytes_per_sec: if rate.is_finite() { rate } else { 0.0 },
        };
    }
    let free = newest.total.saturating_sub(newest.used) as f64;
    let secs = (free / rate).min(HORIZON_SECS);
    Forecast::Growing {
        bytes_per_sec: rate,
        full_at: now + Duration::seconds_f64(secs),
    }
}

/// The leader's volume as the rules see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeStatus {
    /// The newest sample (`None`: never read).
    pub latest: Option<Sample>,
    pub forecast: Forecast,
    /// Why the last refresh could not read it (`None` when it could).
    pub error: Option<String>,
}

impl VolumeStatus {
    /// One short line for people: "71 % full, fills in about 19 h (Tue 14:05 UTC)", with why it was not read.
    pub fn describe(&self, now: OffsetDateTime) -> String {
        let mut line = match (&self.latest, &self.error) {
            (None, Some(e)) => return format!("not read: {e}"),
            (None, None) => "not read yet".to_owned(),
            (Some(s), _) => {
                let mut l = format!("{:.0} % full", s.percent());
                match self.forecast {
                    Forecast::NotEnoughSamples => {
                        l.push_str(" (not enough samples yet for a forecast)")
                    }
                    Forecast::NotGrowing { .. } => l.push_str(", not growing"),
                    Forecast::Growing { full_at, .. } => {
                        l.push_str(&format!(", {}", fills_in(now, full_at)))
                    }
                }
                l
            }
        };
        if let Some(e) = &self.error {
            line.push_str(&format!("; not read on the last refresh: {e}"));
        }
        line
    }
}

/// "fills in about 19 h (Tue 14:05 UTC)".
pub fn fills_in(now: OffsetDateTime, full_at: OffsetDateTime) -> String {
    let secs = (full_at - now).whole_seconds().max(0);
    if secs == 0 {
        return "full now".to_owned();
    }
    let t = full_at.to_offset(time::UtcOffset::UTC);
    let when = if secs < 6 * 86_400 {
        format!(
            "{} {:02}:{:02} UTC",
            &t.weekday().to_string()[..3],
            t.hour(),
            t.minute()
        )
    } else {
        super::health::short_time(t)
    };
    format!("fills in about {} ({when})", span(secs))
}

/// A duration in the largest unit that keeps it readable: "40 min", "19 h", "12 days".
pub fn span(secs: i64) -> String {
    match secs {
        s if s < 90 * 60 => format!("{} min", (s + 30) / 60),
        s if s < 48 * 3600 => format!("{} h", (s + 1800) / 3600),
        s => format!("{} days", (s + 43_200) / 86_400),
    }
}

/// The machine whose volume is the leader's: the one leader, or, when none says so, the one machine whose role
/// check answers `readonly` (what the leader answers above 90 % use).
pub fn leader_machine(machines: &[MachineSummary]) -> Option<&MachineSummary> {
    let one = |role: &str| {
        let mut found = machines.iter().filter(|m| m.role == role);
        match (found.next(), found.next()) {
            (Some(m), None) => Some(m),
            _ => None,
        }
    };
    one("leader").or_else(|| one("readonly"))
}

/// The leader's volume from the app's volumes: the one attached to `leader_id` (`attached_machine_id`), else
/// one of those its config mounts (`mounted`, volume ids). The error says why there is no reading (no such
/// volume, or the host reported no sizes).
pub fn pick(
    volumes: &[fly::Volume],
    leader_id: &str,
    mounted: &[String],
) -> Result<(String, u64, u64), String> {
    let live = || volumes.iter().filter(|v| !v.is_destroyed());
    let volume = live()
        .find(|v| v.attached_machine_id.as_deref() == Some(leader_id))
        .or_else(|| live().find(|v| mounted.contains(&v.id)))
        .ok_or_else(|| format!("no volume is attached to the leader machine {leader_id}"))?;
    match (volume.bytes_used, volume.bytes_total) {
        (Some(used), Some(total)) if total > 0 => Ok((volume.id.clone(), used.min(total), total)),
        _ => Err(format!(
            "Fly reported no bytes_used/bytes_total for volume {}",
            volume.id
        )),
    }
}

/// Keeps a sample and deletes those older than [`KEEP_SECS`], in one transaction.
pub async fn save_sample(
    pool: &SqlitePool,
    org: &str,
    app: &str,
    volume_id: &str,
    sample: Sample,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT OR REPLACE INTO volume_samples (org, app, at, volume_id, bytes_used, bytes_total) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(org)
    .bind(app)
    .bind(ts::format(sample.at))
    .bind(volume_id)
    .bind(i64::try_from(sample.used).unwrap_or(i64::MAX))
    .bind(i64::try_from(sample.total).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM volume_samples WHERE org = ? AND app = ? AND at < ?")
        .bind(org)
        .bind(app)
        .bind(ts::format(sample.at - Duration::seconds(KEEP_SECS)))
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE cluster_health SET volume_error = NULL WHERE org = ? AND app = ?")
        .bind(org)
        .bind(app)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Records why the leader's volume could not be read (the samples stay).
pub async fn save_error(
    pool: &SqlitePool,
    org: &str,
    app: &str,
    error: &str,
) -> Result<(), sqlx::Error> {
    let clipped: String = error.chars().take(2000).collect();
    sqlx::query("UPDATE cluster_health SET volume_error = ? WHERE org = ? AND app = ?")
        .bind(clipped)
        .bind(org)
        .bind(app)
        .execute(pool)
        .await?;
    Ok(())
}

/// The leader's volume as stored, with the forecast at `now`; `None` when it was never read nor tried.
pub async fn load(
    pool: &SqlitePool,
    org: &str,
    app: &str,
    now: OffsetDateTime,
) -> Result<Option<VolumeStatus>, sqlx::Error> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT at, bytes_used, bytes_total FROM volume_samples WHERE org = ? AND app = ? ORDER BY at",
    )
    .bind(org)
    .bind(app)
    .fetch_all(pool)
    .await?;
    let samples: Vec<Sample> = rows
        .into_iter()
        .filter_map(|(at, used, total)| {
            Some(Sample {
                at: ts::parse(&at)?,
                used: u64::try_from(used).ok()?,
                total: u64::try_from(total).ok()?,
            })
        })
        .collect();
    let error: Option<String> =
        sqlx::query_scalar("SELECT volume_error FROM cluster_health WHERE org = ? AND app = ?")
            .bind(org)
            .bind(app)
            .fetch_optional(pool)
            .await?
            .flatten();
    if samples.is_empty() && error.is_none() {
        return Ok(None);
    }
    Ok(Some(VolumeStatus {
        latest: samples.last().copied(),
        forecast: forecast(&samples, now),
        error,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-29 12:00 UTC);
    const GIB: u64 = 1 << 30;

    /// Samples every 5 minutes over the last `minutes`, used bytes from `used(i)`.
    fn series(minutes: i64, total: u64, used: impl Fn(i64) -> u64) -> Vec<Sample> {
        (0..=minutes / 5)
            .map(|i| Sample {
                at: NOW - Duration::minutes(minutes - i * 5),
                used: used(i),
                total,
            })
            .collect()
    }

    #[test]
    fn a_flat_volume_is_not_growing() {
        let f = forecast(&series(60, 10 * GIB, |_| 4 * GIB), NOW);
        assert_eq!(f, Forecast::NotGrowing { bytes_per_sec: 0.0 });
        assert_eq!(f.full_at(), None);
    }

    #[test]
    fn a_growing_volume_is_full_when_the_line_reaches_its_size() {
        // 10 GiB, 4 GiB used now, growing 1 GiB an hour: full in 6 hours.
        let total = 10 * GIB;
        let samples = series(60, total, |i| 3 * GIB + i as u64 * (GIB / 12));
        let Forecast::Growing {
            bytes_per_sec,
            full_at,
        } = forecast(&samples, NOW)
        else {
            panic!("growing");
        };
        assert!(
            (bytes_per_sec - GIB as f64 / 3600.0).abs() < 1.0,
            "{bytes_per_sec}"
        );
        let off = (full_at - (NOW + Duration::hours(6))).abs();
        assert!(off < Duration::seconds(1), "{full_at}");
    }

    #[test]
    fn a_shrinking_volume_is_not_growing() {
        let f = forecast(
            &series(60, 10 * GIB, |i| 8 * GIB - i as u64 * 1_000_000),
            NOW,
        );
        assert!(
            matches!(f, Forecast::NotGrowing { bytes_per_sec } if bytes_per_sec < 0.0),
            "{f:?}"
        );
    }

    #[test]
    fn noise_around_a_steady_growth_gives_its_rate() {
        // 1 MiB a minute, give or take 3 MiB.
        let mib = 1u64 << 20;
        let wobble = [0i64, 3, -2, 1, -3, 2, 0, -1, 3, -2, 1, 0, -3];
        let samples = series(60, 10 * GIB, |i| {
            (GIB as i64 + i * 5 * mib as i64 + wobble[i as usize] * mib as i64) as u64
        });
        let Forecast::Growing { bytes_per_sec, .. } = forecast(&samples, NOW) else {
            panic!("growing");
        };
        let per_minute = bytes_per_sec * 60.0 / mib as f64;
        assert!((per_minute - 1.0).abs() < 0.15, "{per_minute} MiB/min");
    }

    #[test]
    fn too_few_or_too_close_samples_give_no_forecast() {
        let growing = |i: i64| GIB + i as u64 * GIB / 10;
        // Two samples.
        assert_eq!(
            forecast(&series(5, 10 * GIB, growing), NOW),
            Forecast::NotEnoughSamples
        );
        // Three samples over less than 10 minutes.
        let close: Vec<Sample> = (0..3)
            .map(|i| Sample {
                at: NOW - Duration::minutes(4 - i * 2),
                used: growing(i),
                total: 10 * GIB,
            })
            .collect();
        assert_eq!(forecast(&close, NOW), Forecast::NotEnoughSamples);
        // Samples older than the window do not count.
        let old: Vec<Sample> = series(60, 10 * GIB, growing)
            .into_iter()
            .map(|s| Sample {
                at: s.at - Duration::hours(7),
                ..s
            })
            .collect();
        assert_eq!(forecast(&old, NOW), Forecast::NotEnoughSamples);
        assert_eq!(forecast(&[], NOW), Forecast::NotEnoughSamples);
    }

    #[test]
    fn a_volume_over_ninety_percent_still_gets_its_forecast() {
        let total = 10 * GIB;
        let samples = series(30, total, |i| {
            9 * GIB + 200 * (1 << 20) + i as u64 * 20 * (1 << 20)
        });
        assert!(samples.last().unwrap().percent() > READ_ONLY_PERCENT);
        let full_at = forecast(&samples, NOW).full_at().unwrap();
        assert!(
            full_at > NOW && full_at < NOW + Duration::hours(24),
            "{full_at}"
        );
        // Full already: full now.
        let full = series(30, total, |i| total - 6 * (1 << 20) + i as u64 * (1 << 20));
        assert_eq!(forecast(&full, NOW).full_at(), Some(NOW));
    }

    #[test]
    fn the_line_says_how_full_and_when() {
        let status = VolumeStatus {
            latest: Some(Sample {
                at: NOW,
                used: 71,
                total: 100,
            }),
            forecast: Forecast::Growing {
                bytes_per_sec: 1.0,
                full_at: datetime!(2026-11-30 07:05 UTC),
            },
            error: None,
        };
        assert_eq!(
            status.describe(NOW),
            "71 % full, fills in about 19 h (Mon 07:05 UTC)"
        );
        assert_eq!(span(40 * 60), "40 min");
        assert_eq!(span(3 * 86_400), "3 days");
    }

    fn machine(id: &str, role: &str) -> MachineSummary {
        MachineSummary {
            id: id.into(),
            name: id.into(),
            region: "iad".into(),
            state: "started".into(),
            role: role.into(),
            image: String::new(),
        }
    }

    #[test]
    fn the_leaders_volume_is_the_one_attached_to_it() {
        let ms = [machine("a", "replica"), machine("b", "leader")];
        assert_eq!(leader_machine(&ms).unwrap().id, "b");
        let full = [machine("a", "replica"), machine("b", "readonly")];
        assert_eq!(leader_machine(&full).unwrap().id, "b");
        assert!(leader_machine(&[machine("a", "replica")]).is_none());
        let vol = |id: &str, on: &str, used: Option<u64>| fly::Volume {
            id: id.into(),
            attached_machine_id: Some(on.into()),
            bytes_used: used,
            bytes_total: Some(100),
            ..fly::Volume::default()
        };
        let volumes = [vol("v1", "a", Some(5)), vol("v2", "b", Some(70))];
        assert_eq!(
            pick(&volumes, "b", &[]).unwrap(),
            ("v2".to_owned(), 70, 100)
        );
        assert!(pick(&volumes, "c", &[]).unwrap_err().contains("no volume"));
        // Not reported as attached: the one the machine's config mounts.
        let mounted = ["v1".to_owned()];
        assert_eq!(pick(&volumes, "c", &mounted).unwrap().0, "v1");
        assert!(pick(&[vol("v3", "b", None)], "b", &[])
            .unwrap_err()
            .contains("bytes_used"));
    }
}
