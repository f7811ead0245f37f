//! Pre-flight for an existing destination cluster (issue #13 item 1b, the seed guide's path: a cluster the team
//! made with `fly pg create`). It only reads: the app is in the org, runs Fly's Stolon image of the backup's
//! Postgres major, and is EMPTY (no database beyond the image's, no user table), each asked with psql over exec
//! on the cluster's own machine (the password stays in the machine's environment, the transaction read-only).

use fly::escrow::{cluster_kind, ClusterKind};
use fly::{ExecRequest, FlyClient, ListMachines, Machine};

use super::checks::{major_of_label, major_of_num};
use super::Reason;

/// The databases `fly pg create` leaves on a Stolon cluster; any other is user data.
pub const IMAGE_DATABASES: [&str; 3] = ["postgres", "template0", "template1"];

/// psql as `postgres` on the machine's own Postgres (:5433) with the machine's `OPERATOR_PASSWORD` (read from
/// its `/data/.env`, never from the argv), one read-only statement `$1` in the database `$2`.
const EMPTY_SQL_SCRIPT: &str = "export $(cat /data/.env | xargs)
PGPASSWORD=\"$OPERATOR_PASSWORD\" PGOPTIONS='-c default_transaction_read_only=on' psql -X -q -w -h localhost -p 5433 -U postgres -d \"$2\" -t -A -c \"$1\"
";

/// Every live machine's kind must be Stolon, the app in `org`; pushes the reasons otherwise.
pub(super) async fn app_checks(
    client: &FlyClient,
    org: &str,
    app: &str,
    reasons: &mut Vec<Reason>,
) {
    match client.get_app(app).await {
        Ok(found) => {
            let slug = found.organization.and_then(|o| o.slug);
            if slug.as_deref().is_some_and(|s| s != org) {
                reasons.push(Reason::new(
                    "not_in_org",
                    format!("The app {app} is not in the organisation {org}."),
                    "Restore into a cluster of the source's organisation.".into(),
                ));
            }
        }
        Err(e) if e.status() == Some(404) => reasons.push(Reason::new(
            "no_such_app",
            format!("There is no app named {app} to restore into."),
            "Create it first with fly pg create, or restore into a new cluster (--to).".into(),
        )),
        Err(e) => reasons.push(Reason::new(
            "name_unchecked",
            format!("Fly could not say whether {app} exists: {e}."),
            "Try again in a moment.".into(),
        )),
    }
}

/// The live machines of the existing cluster, and a reason when one is not Fly's Stolon image.
pub(super) async fn stolon_machines(
    client: &FlyClient,
    app: &str,
    reasons: &mut Vec<Reason>,
) -> Vec<Machine> {
    let machines: Vec<Machine> = match client.list_machines(app, &ListMachines::default()).await {
        Ok(m) => m.into_iter().filter(|m| !m.is_gone()).collect(),
        Err(_) => return Vec::new(),
    };
    if let Some(other) = machines
        .iter()
        .find(|m| cluster_kind(m) != ClusterKind::Stolon)
    {
        reasons.push(Reason::new(
            "not_stolon",
            format!(
                "The machine {} of {app} does not run Fly's Stolon Postgres image (fly.app_role=postgres_cluster \
                 without fly.pg-manager), so the restore's stolonctl init cannot run there.",
                other.id
            ),
            "Restore into a cluster made with fly pg create (the Stolon image), or into a new cluster (--to).".into(),
        ));
    }
    machines
}

/// The backup's major against the existing cluster's image label.
pub(super) fn same_major(
    backup: &str,
    backup_num: Option<i64>,
    app: &str,
    label: Option<&str>,
) -> Option<Reason> {
    let b = backup_num.and_then(major_of_num)?;
    match label.and_then(major_of_label) {
        Some(i) if i == b => None,
        Some(i) => Some(Reason::new(
            "major_mismatch",
            format!(
                "Backup {backup} was taken by PostgreSQL {b}, but {app} runs PostgreSQL {i}: PostgreSQL refuses \
                 data files of another major version."
            ),
            format!("Restore into a PostgreSQL {b} cluster (fly pg create --image-ref flyio/postgres:{b}), or into a new cluster (--to)."),
        )),
        None => Some(Reason::new(
            "major_unknown",
            format!("The Postgres version of {app}'s image is unknown (no fly.pg-version label or tag)."),
            "Restore into a cluster made with fly pg create, or into a new cluster (--to).".into(),
        )),
    }
}

/// Whether the cluster holds no user data: no database beyond [`IMAGE_DATABASES`], no user table in
/// `postgres`. Asked on `machine` (the leader); a reason when it is not empty or cannot be asked.
pub(super) async fn emptiness(client: &FlyClient, app: &str, machine: &str) -> Option<Reason> {
    let unasked = |why: String| {
        Reason::new(
            "emptiness_unknown",
            format!("Whether {app} is empty could not be checked: {why}."),
            "Start its machines (fly machine start -a APP) and plan again.".into(),
        )
    };
    let databases = match sql(
        client,
        app,
        machine,
        "select datname from pg_database",
        "postgres",
    )
    .await
    {
        Ok(rows) => rows,
        Err(why) => return Some(unasked(why)),
    };
    let user: Vec<&String> = databases
        .iter()
        .filter(|d| !IMAGE_DATABASES.contains(&d.as_str()))
        .collect();
    if !user.is_empty() {
        return Some(not_empty(
            app,
            format!(
                "it holds the database(s) {}",
                user.iter()
                    .map(|d| d.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let tables = match sql(
        client,
        app,
        machine,
        "select count(*) from pg_stat_user_tables",
        "postgres",
    )
    .await
    {
        Ok(rows) => rows,
        Err(why) => return Some(unasked(why)),
    };
    match tables.first().map(String::as_str) {
        Some("0") => None,
        Some(n) => Some(not_empty(
            app,
            format!("its postgres database holds {n} user table(s)"),
        )),
        None => Some(unasked("psql answered nothing".into())),
    }
}

fn not_empty(app: &str, what: String) -> Reason {
    Reason::new(
        "not_empty",
        format!("{app} is not empty: {what}. A restore replaces all of a cluster's data, so Walden only restores into an empty one."),
        "Restore into a new cluster (--to), or into an empty one made with fly pg create.".into(),
    )
}

/// One read-only statement; its output lines, or psql's first error line.
async fn sql(
    client: &FlyClient,
    app: &str,
    machine: &str,
    statement: &str,
    database: &str,
) -> Result<Vec<String>, String> {
    let req =
        ExecRequest::new(["sh", "-c", EMPTY_SQL_SCRIPT, "sh", statement, database]).timeout(30);
    let out = client
        .exec_unchecked(app, machine, &req)
        .await
        .map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(out
            .stderr
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("psql failed")
            .chars()
            .take(300)
            .collect());
    }
    Ok(out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}
