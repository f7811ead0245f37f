//! The cluster's own `archive_timeout`, read from its Stolon cluster spec (`stolonctl spec` on the leader, the
//! `pgParameters` Stolon applies to every keeper), so the WAL rule uses 3 × the cluster's value rather than the
//! default. Read at most once an hour per cluster (an exec on a machine is not free), kept in `cluster_health`.
//! Only `archive_timeout` is taken from the spec's output; the rest is dropped unread and never logged.

use fly::stolon::Stolon;

use crate::orgs::Orgs;

/// How long a value read from the cluster is used before it is read again.
pub const REREAD_AFTER_SECS: i64 = 3600;

/// `archive_timeout` of the cluster `org`/`app`, in seconds, from its leader's `stolonctl spec`; the error as
/// text (no leader, the exec failed, the spec has no value).
pub(crate) async fn read(orgs: &Orgs, org: &str, app: &str) -> Result<i64, String> {
    let client = orgs.client_for(org).await.map_err(|e| e.to_string())?;
    let stolon = Stolon::new(client, app);
    let leader = stolon.leader().await.map_err(|e| e.to_string())?;
    let spec = stolon
        .stolonctl(&leader.id, &["spec"], 30)
        .await
        .map_err(|e| e.to_string())?;
    from_spec(&spec).ok_or_else(|| "the cluster spec sets no readable archive_timeout".to_owned())
}

/// `pgParameters.archive_timeout` of a Stolon cluster spec (JSON), in seconds.
pub fn from_spec(spec: &str) -> Option<i64> {
    let spec: serde_json::Value = serde_json::from_str(spec).ok()?;
    let value = spec.pointer("/pgParameters/archive_timeout")?;
    match value {
        serde_json::Value::String(s) => seconds(s),
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// A PostgreSQL time setting whose default unit is seconds (`60`, `60s`, `5min`, `1h`, `1500ms`), in whole
/// seconds (units as in PostgreSQL's guc.c: ms, s, min, h, d).
pub fn seconds(value: &str) -> Option<i64> {
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let n: i64 = number.parse().ok()?;
    let factor_ms: i64 = match unit.trim() {
        "" | "s" => 1000,
        "ms" => 1,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    Some(n.checked_mul(factor_ms)? / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_archive_timeout_in_postgres_units() {
        assert_eq!(seconds("60"), Some(60));
        assert_eq!(seconds("60s"), Some(60));
        assert_eq!(seconds("5min"), Some(300));
        assert_eq!(seconds("1h"), Some(3600));
        assert_eq!(seconds("1500ms"), Some(1));
        assert_eq!(seconds("0"), Some(0));
        assert_eq!(seconds("soon"), None);
        assert_eq!(seconds("5 weeks"), None);
    }

    #[test]
    fn reads_it_from_a_stolon_spec() {
        let spec =
            r#"{"initMode":"new","pgParameters":{"archive_mode":"on","archive_timeout":"120"}}"#;
        assert_eq!(from_spec(spec), Some(120));
        assert_eq!(from_spec(r#"{"pgParameters":{}}"#), None);
        assert_eq!(from_spec("null"), None);
        assert_eq!(from_spec("not json"), None);
    }
}
