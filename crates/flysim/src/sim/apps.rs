//! Apps and tokens: who may see what, app creation (name rules, uniqueness), deletion.

use super::{ApiError, ApiResult, Sim};
use crate::clock::ms;
use crate::model::{App, State, Token};
use crate::sim::new_app;

/// What the API shows of an app.
pub(crate) struct AppSummary {
    pub id: String,
    pub name: String,
    pub network: String,
    pub internal_numeric_id: u64,
    pub machine_count: usize,
    pub volume_count: usize,
    pub org_slug: String,
    pub org_name: String,
    pub org_numeric_id: u64,
    pub app_role: String,
    pub created_ms: i64,
}

/// A `POST /apps` body.
#[derive(serde::Deserialize)]
pub(crate) struct CreateAppRequest {
    pub name: Option<String>,
    pub org_slug: Option<String>,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub app_role_id: Option<String>,
}

/// One org a token acts in, as `/tokens/current` lists it.
pub(crate) struct TokenScope {
    pub token_id: String,
    pub org_slug: String,
    pub org_name: String,
    pub apps: Vec<String>,
    pub user: Option<String>,
}

/// Fly's app-name rule: lowercase letters, digits and dashes; starts with a letter or digit; 2–63 chars.
pub fn valid_app_name(name: &str) -> Result<(), String> {
    if name.len() < 2 || name.len() > 63 {
        return Err("Name must be between 2 and 63 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("Name can only contain lowercase letters, numbers, and dashes".into());
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("Name cannot start or end with a dash".into());
    }
    Ok(())
}

/// 403 unless `caller` may act on `app` (its org, and its app list for deploy tokens).
pub(crate) fn can_see(caller: &Token, app: &App) -> ApiResult<()> {
    let org_ok = caller.orgs.contains(&app.org);
    let app_ok = caller
        .apps
        .as_ref()
        .is_none_or(|apps| apps.contains(&app.name));
    if org_ok && app_ok {
        Ok(())
    } else {
        Err(ApiError::new(
            403,
            format!("unauthorized: token has no access to app {}", app.name),
        ))
    }
}

fn summary(state: &State, app: &App) -> AppSummary {
    let org = state.orgs.get(&app.org);
    AppSummary {
        id: app.id.clone(),
        name: app.name.clone(),
        network: app.network.clone(),
        internal_numeric_id: app.internal_numeric_id,
        machine_count: app.machines.values().filter(|m| !m.destroyed).count(),
        volume_count: app.volumes.len(),
        org_slug: app.org.clone(),
        org_name: org.map(|o| o.name.clone()).unwrap_or_default(),
        org_numeric_id: org.map(|o| o.internal_numeric_id).unwrap_or(0),
        app_role: app.app_role.clone(),
        created_ms: app.created_ms,
    }
}

impl State {
    /// The app `name` if `caller` may see it (404 unknown, 403 not allowed).
    pub(crate) fn visible_app(&self, caller: &Token, name: &str) -> ApiResult<&App> {
        let app = self.app(name)?;
        can_see(caller, app)?;
        Ok(app)
    }
}

impl Sim {
    /// Run `change` on the state once `caller` is known to see `app`.
    pub(crate) fn with_visible_app<T>(
        &self,
        caller: &Token,
        app: &str,
        change: impl FnOnce(&mut State) -> ApiResult<T>,
    ) -> ApiResult<T> {
        let mut state = self.lock();
        state.visible_app(caller, app)?;
        change(&mut state)
    }

    /// Whether `app` was created too recently to be seen (`Timing::app_visible_after`). On a manual
    /// clock the refusal moves the clock to the moment the app appears, as a client that waits and
    /// retries would see it (like a pending wait does).
    pub(crate) fn app_still_hidden(&self, app: &str) -> bool {
        let now = ms(self.now());
        let visible_at = {
            let state = self.lock();
            let Some(found) = state.apps.get(app) else {
                return false;
            };
            found.created_ms + self.timing().app_visible_after.as_millis() as i64
        };
        if now >= visible_at {
            return false;
        }
        if self.inner.manual.is_some() {
            self.advance(std::time::Duration::from_millis((visible_at - now) as u64));
        }
        true
    }

    /// GraphQL `enablePostgresConsul(input: {appId})` as flyctl calls it (`flypg/launcher.go`
    /// `generateConsulURL`, fly-go `resource_postgres.go`): a per-app consul URL with its own token, the
    /// same one on every call.
    pub(crate) fn enable_postgres_consul(&self, caller: &Token, app: &str) -> ApiResult<String> {
        self.with_visible_app(caller, app, |state| {
            if let Some(url) = state.app(app)?.consul_url.clone() {
                return Ok(url);
            }
            let token = state.next_id("", 24);
            let path = state.next_id("", 8);
            let url = format!("https://:{token}@consul-iad-1.fly-shared.net/{app}-{path}/");
            if let Some(owner) = state.apps.get_mut(app) {
                owner.consul_url = Some(url.clone());
            }
            Ok(url)
        })
    }

    /// The token behind an `Authorization` value (`Bearer …` or `FlyV1 …`, comma lists allowed).
    pub(crate) fn authenticate(&self, authorization: Option<&str>) -> ApiResult<Token> {
        let unauthenticated = || ApiError::new(401, "Authenticate: token validation error");
        let raw = authorization.ok_or_else(unauthenticated)?.trim();
        let value = raw
            .strip_prefix("Bearer ")
            .or_else(|| raw.strip_prefix("FlyV1 "))
            .ok_or_else(unauthenticated)?
            .trim();
        let state = self.lock();
        value
            .split(',')
            .find_map(|part| state.tokens.get(part.trim()).cloned())
            .ok_or_else(unauthenticated)
    }

    /// Apps of `org` the caller sees, optionally only those with `app_role`.
    pub(crate) fn list_apps(
        &self,
        caller: &Token,
        org: Option<&str>,
        role: Option<&str>,
    ) -> ApiResult<Vec<AppSummary>> {
        let Some(org) = org.filter(|s| !s.is_empty()) else {
            return Err(ApiError::bad("org_slug is required"));
        };
        if !caller.orgs.iter().any(|o| o == org) {
            return Err(ApiError::not_found(format!(
                "organization not found: {org}"
            )));
        }
        // A new app is missing from the list as it is from every other request (see
        // `app_still_hidden`), without moving a manual clock.
        let visible_before = ms(self.now()) - self.timing().app_visible_after.as_millis() as i64;
        let state = self.lock();
        Ok(state
            .apps
            .values()
            .filter(|app| app.org == org && can_see(caller, app).is_ok())
            .filter(|app| app.created_ms <= visible_before)
            .filter(|app| role.is_none_or(|r| r == app.app_role))
            .map(|app| summary(&state, app))
            .collect())
    }

    /// Create an app (Fly's name rules, unique names); the 408-after-success fault may follow.
    pub(crate) fn create_app(
        &self,
        caller: &Token,
        request: CreateAppRequest,
    ) -> ApiResult<AppSummary> {
        let name = request.name.unwrap_or_default();
        valid_app_name(&name).map_err(|e| ApiError::new(422, format!("Validation failed: {e}")))?;
        let org = request.org_slug.unwrap_or_default();
        if org.is_empty() {
            return Err(ApiError::bad("org_slug is required"));
        }
        if !caller.orgs.contains(&org) || caller.apps.is_some() {
            return Err(ApiError::new(
                403,
                format!("unauthorized: token cannot create apps in organization {org}"),
            ));
        }
        let now = ms(self.now());
        let created = {
            let mut state = self.lock();
            if !state.orgs.contains_key(&org) {
                return Err(ApiError::not_found(format!(
                    "organization not found: {org}"
                )));
            }
            if state.apps.contains_key(&name) {
                return Err(ApiError::new(
                    422,
                    "Validation failed: Name has already been taken",
                ));
            }
            let network = request.network.as_deref().unwrap_or("");
            let role = request.app_role_id.as_deref().unwrap_or("");
            let app = new_app(&mut state, &name, &org, network, role, now);
            let created = summary(&state, &app);
            state.apps.insert(name, app);
            created
        };
        self.after_create()?;
        Ok(created)
    }

    pub(crate) fn get_app(&self, caller: &Token, app: &str) -> ApiResult<AppSummary> {
        let state = self.lock();
        let found = state.visible_app(caller, app)?;
        Ok(summary(&state, found))
    }

    /// Delete an app with everything in it, and drop its pending timers.
    pub(crate) fn delete_app(&self, caller: &Token, app: &str) -> ApiResult<()> {
        self.with_visible_app(caller, app, |state| {
            state.apps.remove(app);
            state.timers.retain(|timer| timer.app != app);
            Ok(())
        })
    }

    /// The 408-after-success fault on create calls: the thing exists, the answer says timeout.
    pub(crate) fn after_create(&self) -> ApiResult<()> {
        let hit = {
            let mut faults = self.faults();
            let rate = faults.cfg.create_408_after_success;
            faults.hit(rate)
        };
        if hit {
            self.changed();
            return Err(ApiError::new(408, "deadline_exceeded: request timed out"));
        }
        Ok(())
    }

    /// The orgs (and apps) the caller's token acts in.
    pub(crate) fn token_scopes(&self, caller: &Token) -> Vec<TokenScope> {
        let state = self.lock();
        caller
            .orgs
            .iter()
            .map(|org| TokenScope {
                token_id: caller.token_id.clone(),
                org_slug: org.clone(),
                org_name: state
                    .orgs
                    .get(org)
                    .map(|o| o.name.clone())
                    .unwrap_or_default(),
                apps: caller.apps.clone().unwrap_or_default(),
                user: caller.user.clone(),
            })
            .collect()
    }
}
