//! What credential escrow needs from the emulated image: exec `stdin` read by `read`, `printenv -0`
//! / `env -0`, and `ALTER ROLE … PASSWORD` through psql changing which password opens a role.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod common;

use common::*;
use serde_json::{json, Value};

const APP: &str = "roles-db";

/// A seeded cluster; returns (leader, a replica).
async fn cluster(env: &Env, dir: &std::path::Path) -> (String, String) {
    let info = env
        .sim
        .seed_cluster(&flysim::ClusterSeed::new(ORG, APP, dir))
        .unwrap();
    (info.machines[0].clone(), info.machines[1].clone())
}

async fn exec_with_stdin(env: &Env, id: &str, argv: &[&str], stdin: &str) -> Value {
    env.ok(
        "POST",
        &format!("/v1/apps/{APP}/machines/{id}/exec"),
        Some(json!({"command": argv, "stdin": stdin, "timeout": 30})),
    )
    .await
}

/// psql on `id` as `user`, the password on stdin, `sql` as `$2`.
async fn psql(env: &Env, id: &str, user: &str, password: &str, sql: &str) -> Value {
    let script = "IFS= read -r PGPASSWORD; export PGPASSWORD; exec psql -X -w -h localhost -p 5433 -U \"$1\" -d postgres -t -A -c \"$2\"";
    exec_with_stdin(
        env,
        id,
        &["sh", "-c", script, "sh", user, sql],
        &format!("{password}\n"),
    )
    .await
}

#[tokio::test]
async fn read_takes_the_first_line_of_exec_stdin() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let (leader, _) = cluster(&env, dir.path()).await;
    // The value as a later list expands it, and through the environment once exported.
    let echoed = exec_with_stdin(
        &env,
        &leader,
        &["sh", "-c", "IFS= read -r X; echo \"[$X]\"\necho \"<$X>\""],
        "  a b  \n",
    )
    .await;
    assert_eq!(echoed["stdout"], "[  a b  ]\n<  a b  >\n");
    let whole = exec_with_stdin(
        &env,
        &leader,
        &["sh", "-c", "IFS= read -r X; export X; printenv X"],
        "  a\\b  \nsecond\n",
    )
    .await;
    assert_eq!(whole["stdout"], "  a\\b  \n");
    let trimmed = exec_with_stdin(
        &env,
        &leader,
        &["sh", "-c", "read -r X; export X; printenv X"],
        "  a\\b  \n",
    )
    .await;
    assert_eq!(trimmed["stdout"], "a\\b\n");
    let escaped = exec_with_stdin(
        &env,
        &leader,
        &["sh", "-c", "read X; export X; printenv X"],
        "a\\b\n",
    )
    .await;
    assert_eq!(escaped["stdout"], "ab\n");
    let split = exec_with_stdin(
        &env,
        &leader,
        &["sh", "-c", "read -r A B; export A B; printenv A B"],
        "one two three\n",
    )
    .await;
    assert_eq!(split["stdout"], "one\ntwo three\n");
    // No newline-ended line: exit 1, as dash and bash.
    let eof = exec_with_stdin(&env, &leader, &["sh", "-c", "read -r X || echo eof"], "").await;
    assert_eq!(eof["stdout"], "eof\n");
}

#[tokio::test]
async fn printenv_and_env_with_null_separate_entries_by_nul() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let (leader, _) = cluster(&env, dir.path()).await;
    for argv in [&["printenv", "-0"][..], &["env", "--null"][..]] {
        let out = env.exec(APP, &leader, argv).await;
        let stdout = out["stdout"].as_str().unwrap();
        assert!(stdout.ends_with('\0'), "{argv:?}");
        assert!(!stdout.contains('\n'), "{argv:?}");
        assert!(
            stdout
                .split('\0')
                .any(|e| e == "SU_PASSWORD=demo-su-Zq81xKp2"),
            "{argv:?}"
        );
    }
    let one = env
        .exec(APP, &leader, &["printenv", "-0", "FLY_APP_NAME"])
        .await;
    assert_eq!(one["stdout"], format!("{APP}\0"));
}

#[tokio::test]
async fn alter_role_password_changes_which_password_opens_the_role() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let (leader, replica) = cluster(&env, dir.path()).await;
    let su = "demo-su-Zq81xKp2";
    let repl = "demo-repl-Lw73Hs0";
    assert_eq!(
        psql(&env, &leader, "repluser", repl, "select 1").await["stdout"],
        "1\n"
    );

    // A standby refuses it (before repluser changes: a replica whose REPL_PASSWORD no longer
    // opens repluser fails its role check, see `stolon::role_of`); an unknown role is named.
    let standby = psql(
        &env,
        &replica,
        "flypgadmin",
        su,
        "ALTER ROLE postgres PASSWORD 'x'",
    )
    .await;
    assert_eq!(
        standby["stderr"],
        "ERROR:  cannot execute ALTER ROLE in a read-only transaction\n"
    );
    let unknown = psql(
        &env,
        &leader,
        "flypgadmin",
        su,
        "ALTER ROLE nobody PASSWORD 'x'",
    )
    .await;
    assert_eq!(
        unknown["stderr"],
        "ERROR:  role \"nobody\" does not exist\n"
    );

    // A superuser changes another role's password; the literal keeps its case and quotes.
    let altered = psql(
        &env,
        &leader,
        "flypgadmin",
        su,
        "ALTER ROLE repluser WITH PASSWORD 'N3w''pw'",
    )
    .await;
    assert_eq!(altered["stdout"], "ALTER ROLE\n", "{altered}");
    let old = psql(&env, &leader, "repluser", repl, "select 1").await;
    assert_eq!(old["exit_code"], 2);
    assert!(old["stderr"]
        .as_str()
        .unwrap()
        .contains("password authentication failed for user \"repluser\""));
    assert_eq!(
        psql(&env, &leader, "repluser", "N3w'pw", "select 1").await["stdout"],
        "1\n"
    );
    // The roles are the cluster's: a replica accepts the new password too.
    assert_eq!(
        psql(&env, &replica, "repluser", "N3w'pw", "select 1").await["stdout"],
        "1\n"
    );

    // repluser is no superuser: only its own password.
    let denied = psql(
        &env,
        &leader,
        "repluser",
        "N3w'pw",
        "alter user postgres password 'x'",
    )
    .await;
    assert_eq!(denied["exit_code"], 1);
    assert_eq!(denied["stderr"], "ERROR:  permission denied\n");
    let own = psql(
        &env,
        &leader,
        "repluser",
        "N3w'pw",
        "ALTER ROLE repluser PASSWORD 'again'",
    )
    .await;
    assert_eq!(own["stdout"], "ALTER ROLE\n");
}
