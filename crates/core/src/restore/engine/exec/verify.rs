//! Verification with SQL over exec: the restored cluster is out of recovery, on a timeline newer than the
//! backup's, the user's read-only assertion (if any) holds, and each escrowed role logs in. Passwords go on the
//! exec's stdin, never into its argv (as `fly::escrow::prove_logins` does).

use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use zeroize::Zeroize;

use super::pitr::{exec, machine_of};
use super::{StepCtx, StepError};

/// psql as `postgres` on the machine's own Postgres (:5433), the password read from stdin, the statement `$1`
/// in the database `$2`.
/// `PGOPTIONS` makes every transaction read-only (libpq passes it to the server), so even a statement that slipped
/// past the plan's check could not write.
const SQL_SCRIPT: &str = "IFS= read -r PGPASSWORD; export PGPASSWORD; \
export PGOPTIONS='-c default_transaction_read_only=on'; \
exec psql -X -q -w -h localhost -p 5433 -U postgres -d \"$2\" -t -A -c \"$1\"";

/// One read-only statement as `postgres`; its first row's first column, or psql's error.
async fn query(
    ctx: &StepCtx<'_>,
    app: &str,
    machine: &str,
    password: &SecretString,
    (sql, database): (&str, &str),
) -> Result<Result<Option<String>, String>, StepError> {
    let argv: Vec<String> = vec![
        "sh".into(),
        "-c".into(),
        SQL_SCRIPT.into(),
        "sh".into(),
        sql.into(),
        database.into(),
    ];
    let mut stdin = format!("{}\n", password.expose_secret());
    let out = exec(ctx, app, machine, &argv, Some(stdin.clone())).await;
    stdin.zeroize();
    let out = out?;
    if !out.success() {
        let why = out
            .stderr
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("psql failed")
            .chars()
            .take(300)
            .collect();
        return Ok(Err(why));
    }
    Ok(Ok(out
        .stdout
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)))
}

/// The escrowed passwords of the plan's version (opened for this step only).
pub(super) async fn credentials(
    ctx: &StepCtx<'_>,
) -> Result<fly::stolon::ClusterCredentials, StepError> {
    let source = &ctx.plan.source;
    let names = ["SU_PASSWORD", "REPL_PASSWORD", "OPERATOR_PASSWORD"];
    let mut opened = ctx
        .escrow
        .values_for_restore(&source.org, &source.app, ctx.plan.escrow.version, &names)
        .await
        .map_err(|e| {
            StepError::Permanent(format!(
                "The escrowed passwords of {}/{} (version {}) cannot be opened: {e}.",
                source.org, source.app, ctx.plan.escrow.version
            ))
        })?;
    let mut take = |name: &str| {
        opened.remove(name).ok_or_else(|| {
            StepError::Permanent(format!("The escrowed {name} could not be opened."))
        })
    };
    Ok(fly::stolon::ClusterCredentials {
        su_password: take("SU_PASSWORD")?,
        repl_password: take("REPL_PASSWORD")?,
        operator_password: take("OPERATOR_PASSWORD")?,
    })
}

/// Whether an assertion's answer holds: a first value that is not false, null or empty. No row fails.
pub fn assertion_holds(first: Option<&str>) -> bool {
    match first.map(str::trim) {
        None | Some("") => false,
        Some(v) => !matches!(v.to_ascii_lowercase().as_str(), "f" | "false" | "0"),
    }
}

/// Out of recovery, a newer timeline than the backup's, and the assertion true. A server still in recovery is
/// worth another attempt (the promotion may be a moment behind the cluster data); the rest fails the run.
pub(super) async fn verify(
    ctx: &StepCtx<'_>,
    app: &str,
    assertion: Option<&str>,
    database: Option<&str>,
) -> Result<Value, StepError> {
    let machine = machine_of(ctx)?;
    let creds = credentials(ctx).await?;
    let password = &creds.operator_password;
    let in_recovery = query(
        ctx,
        app,
        &machine,
        password,
        ("select pg_is_in_recovery()", "postgres"),
    )
    .await?;
    match in_recovery.as_ref().map(|v| v.as_deref()) {
        Ok(Some("f")) => {}
        Ok(Some("t")) => {
            return Err(StepError::Transient(
                "the restored server is still in recovery".into(),
            ))
        }
        Ok(other) => {
            return Err(StepError::Transient(format!(
                "pg_is_in_recovery() answered {other:?}"
            )))
        }
        Err(e) if e.contains("password authentication failed") => {
            return Err(StepError::Permanent(format!(
                "The restored database refuses the escrowed password of postgres: {e}. The escrowed passwords \
                 (version {}) are not the ones valid at the target time; plan again with the right version.",
                ctx.plan.escrow.version
            )))
        }
        Err(e) => return Err(StepError::Transient(format!("psql on {machine}: {e}"))),
    }
    let timeline = query(
        ctx,
        app,
        &machine,
        password,
        (
            "select timeline_id from pg_control_checkpoint()",
            "postgres",
        ),
    )
    .await?
    .map_err(|e| StepError::Transient(format!("psql on {machine}: {e}")))?
    .and_then(|v| v.parse::<u32>().ok())
    .ok_or_else(|| StepError::Transient("the timeline could not be read".into()))?;
    let backup_timeline = ctx.plan.backup.timeline;
    if timeline <= backup_timeline {
        return Err(StepError::Permanent(format!(
            "The restored server is on timeline {timeline}, not after the backup's ({backup_timeline}): it did not \
             promote at the end of the recovery. Look at its logs (fly logs -a {app} -i {machine})."
        )));
    }
    let mut produced = json!({ "in_recovery": false, "timeline": timeline });
    if let Some(sql) = assertion {
        let answer = query(
            ctx,
            app,
            &machine,
            password,
            (sql, database.unwrap_or("postgres")),
        )
        .await?;
        match answer {
            Ok(first) if assertion_holds(first.as_deref()) => {
                produced["assertion"] = json!("true");
            }
            Ok(first) => {
                return Err(StepError::Permanent(format!(
                    "Your assertion did not hold on the restored data: it answered {}. The restore ran, but \
                     not to the data you expected; cancel it, or look at the restored cluster first.",
                    first.map_or_else(|| "no row".to_owned(), |v| format!("'{v}'"))
                )))
            }
            Err(e) => {
                return Err(StepError::Permanent(format!(
                    "Your assertion could not run on the restored data: {e}."
                )))
            }
        }
    }
    Ok(produced)
}

/// Each escrowed role logs in on the restored cluster (`fly::escrow::prove_logins`); a refused role fails the
/// run naming it.
pub(super) async fn prove_logins(ctx: &StepCtx<'_>, app: &str) -> Result<Value, StepError> {
    let creds = credentials(ctx).await?;
    let proofs = fly::escrow::prove_logins(ctx.client, app, &creds)
        .await
        .map_err(|e| StepError::Transient(format!("the login check could not run: {e}")))?;
    let refused: Vec<&str> = proofs
        .iter()
        .filter(|p| p.outcome == fly::escrow::ProofOutcome::WrongPassword)
        .map(|p| p.role)
        .collect();
    if !refused.is_empty() {
        return Err(StepError::Permanent(format!(
            "The restored database refuses the escrowed passwords of {} (version {}): those roles had other \
             passwords at the target time. Plan again with the escrow version valid then, and cancel this run.",
            refused.join(", "),
            ctx.plan.escrow.version
        )));
    }
    if let Some(p) = proofs
        .iter()
        .find(|p| matches!(p.outcome, fly::escrow::ProofOutcome::CouldNotCheck(_)))
    {
        return Err(StepError::Transient(format!(
            "the login of {} could not be checked: {:?}",
            p.role, p.outcome
        )));
    }
    let roles: Vec<&str> = proofs.iter().map(|p| p.role).collect();
    Ok(json!({ "logins": roles }))
}

#[cfg(test)]
mod tests {
    use super::assertion_holds;

    #[test]
    fn an_assertion_holds_on_a_true_or_non_empty_answer() {
        assert!(assertion_holds(Some("t")));
        assert!(assertion_holds(Some("42")));
        assert!(!assertion_holds(Some("f")));
        assert!(!assertion_holds(Some("")));
        assert!(!assertion_holds(None));
    }
}
