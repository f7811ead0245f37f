//! The app log as the logs endpoint pages it: the last 100 lines first, then 100 at a time after a
//! `next_token` (a nanosecond stamp; stamps strictly increase, see `State::log`).

use super::{ApiError, ApiResult, Sim};
use crate::model::*;

/// Lines per page.
const PAGE: usize = 100;

/// The logs query.
pub(crate) struct LogQuery {
    pub instance: Option<String>,
    pub region: Option<String>,
    /// `next_token` as text (parsed here: a bad one is 400).
    pub next_token: Option<String>,
}

/// One page and the token for the next.
pub(crate) struct LogPage {
    pub lines: Vec<LogLine>,
    pub next_token: i128,
}

impl Sim {
    pub(crate) fn app_logs(
        &self,
        caller: &Token,
        app: &str,
        query: &LogQuery,
    ) -> ApiResult<LogPage> {
        let state = self.lock();
        let found = state.visible_app(caller, app)?;
        let after: Option<i128> = match query.next_token.as_deref().filter(|s| !s.is_empty()) {
            Some(token) => Some(
                token
                    .parse()
                    .map_err(|_| ApiError::bad(format!("invalid next_token {token:?}")))?,
            ),
            None => None,
        };
        let matching: Vec<&LogLine> = found
            .logs
            .iter()
            .filter(|l| query.instance.as_ref().is_none_or(|i| *i == l.instance))
            .filter(|l| query.region.as_ref().is_none_or(|r| *r == l.region))
            .filter(|l| after.is_none_or(|t| l.ns > t))
            .collect();
        // First call: the most recent lines; with next_token: the next ones after it.
        let lines: Vec<LogLine> = if after.is_some() {
            matching.into_iter().take(PAGE).cloned().collect()
        } else {
            let skip = matching.len().saturating_sub(PAGE);
            matching.into_iter().skip(skip).cloned().collect()
        };
        let next_token = lines.last().map(|l| l.ns).or(after).unwrap_or(0);
        Ok(LogPage { lines, next_token })
    }
}
