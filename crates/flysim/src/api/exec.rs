//! `POST /v1/apps/{app}/machines/{id}/exec`: run a command on a started Machine.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Extension, Router};
use serde_json::json;

use super::{decode, reply, ApiResult, Caller};
use crate::sim::{ApiError, Sim};

pub(super) fn router() -> Router<Sim> {
    Router::new().route("/apps/{app}/machines/{id}/exec", post(exec_machine))
}

/// The longest an exec request can wait for its command, in seconds.
const EXEC_TIMEOUT_CAP_S: u64 = 60;

/// An exec body. `container` is accepted and ignored: an emulated Machine has one container.
#[derive(serde::Deserialize, Default)]
struct ExecRequest {
    command: Option<Vec<String>>,
    cmd: Option<String>,
    stdin: Option<String>,
    timeout: Option<u64>,
}

impl ExecRequest {
    /// The argv: `command`, else the deprecated `cmd` string split with shell quoting (flyctl relies on
    /// quotes).
    fn argv(&mut self) -> Result<Vec<String>, ApiError> {
        match (self.command.take(), self.cmd.take()) {
            (Some(command), _) if !command.is_empty() => Ok(command),
            (_, Some(cmd)) if !cmd.trim().is_empty() => {
                shlex::split(&cmd).ok_or_else(|| ApiError::bad("invalid cmd: unbalanced quotes"))
            }
            _ => Err(ApiError::bad("invalid_argument: command is required")),
        }
    }
}

async fn exec_machine(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let mut request: ExecRequest = decode(&body, "MachineExecRequest")?;
    let argv = request.argv()?;
    // Fly's proxy ends a request after 60 s (fly-go `flaps/flaps_machines_wait.go`:
    // `proxyTimeoutThreshold`; flyctl#4194 shows exec 408s): a longer `timeout` does not help.
    let timeout_s = request.timeout.unwrap_or(60).clamp(1, EXEC_TIMEOUT_CAP_S);
    let stdin = request.stdin.unwrap_or_default();
    let out = sim.exec(&caller, &app, &id, &argv, &stdin, timeout_s)?;
    reply(
        200,
        json!({"exit_code": out.code, "exit_signal": 0, "stdout": out.stdout, "stderr": out.stderr}),
    )
}
