//! A `DATABASE_URL`'s host, read and replaced without touching the rest: the user, password, port, database
//! and parameters stay exactly as the app had them (the restored cluster has the source's escrowed
//! passwords, so the same credentials log in). Works on `&str`; callers keep the values in `SecretString`s.

/// The two private names a Fly Postgres app is reached by (`<app>.flycast`, `<app>.internal`).
pub const HOST_SUFFIXES: [&str; 2] = [".flycast", ".internal"];

/// Where the host sits in `url`: the byte range after `scheme://` and any `user:password@`, before the port,
/// path or parameters.
fn host_range(url: &str) -> Option<std::ops::Range<usize>> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    let host = &authority[host_start..];
    let host_len = if host.starts_with('[') {
        host.find(']').map_or(host.len(), |end| end + 1)
    } else {
        host.find(':').unwrap_or(host.len())
    };
    if host_len == 0 {
        return None;
    }
    Some(start + host_start..start + host_start + host_len)
}

/// The host of `url`, if it has one.
pub fn host(url: &str) -> Option<&str> {
    host_range(url).map(|r| &url[r])
}

/// `url` with its host replaced by `new_host`, everything else kept.
pub fn with_host(url: &str, new_host: &str) -> Option<String> {
    let range = host_range(url)?;
    let mut out = String::with_capacity(url.len() + new_host.len());
    out.push_str(&url[..range.start]);
    out.push_str(new_host);
    out.push_str(&url[range.end..]);
    Some(out)
}

/// The suffix (`.flycast` or `.internal`) when `host` names the app `app`, else `None`.
pub fn cluster_suffix(host: &str, app: &str) -> Option<&'static str> {
    HOST_SUFFIXES
        .into_iter()
        .find(|suffix| host.strip_suffix(suffix) == Some(app))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_replaced_and_nothing_else() {
        let old = "postgres://app_user:p%40ss:w@prod-db.flycast:5432/app?sslmode=disable";
        assert_eq!(host(old), Some("prod-db.flycast"));
        assert_eq!(
            with_host(old, "prod-db-restored.flycast").as_deref(),
            Some("postgres://app_user:p%40ss:w@prod-db-restored.flycast:5432/app?sslmode=disable")
        );
        assert_eq!(
            host("postgresql://u:p@prod-db.internal/db"),
            Some("prod-db.internal")
        );
        assert_eq!(
            host("postgres://prod-db.internal"),
            Some("prod-db.internal")
        );
        assert_eq!(host("postgres://u:p@[fdaa::3]:5432/db"), Some("[fdaa::3]"));
        assert_eq!(host("not a url"), None);
        assert_eq!(host("postgres://u:p@:5432/db"), None);
    }

    #[test]
    fn a_cluster_is_recognised_by_its_private_names_only() {
        assert_eq!(
            cluster_suffix("prod-db.flycast", "prod-db"),
            Some(".flycast")
        );
        assert_eq!(
            cluster_suffix("prod-db.internal", "prod-db"),
            Some(".internal")
        );
        assert_eq!(cluster_suffix("prod-db2.internal", "prod-db"), None);
        assert_eq!(cluster_suffix("prod-db.fly.dev", "prod-db"), None);
    }
}
