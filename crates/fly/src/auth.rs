//! Fly API tokens and the `Authorization` header, built the way flyctl/fly-go build it
//! (`tokens/tokens.go`): strip a `Bearer `/`FlyV1 ` prefix, split on `,`, send the macaroons
//! (`fm1r_`, `fm1a_`, `fm2_`) as `FlyV1 <m1>,<m2>` and anything else as `Bearer <token>`.

use std::fmt;

use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

/// Prefixes of Fly macaroon tokens.
const MACAROON_PREFIXES: [&str; 3] = ["fm1r_", "fm1a_", "fm2_"];

/// The scheme a token is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// `FlyV1 <macaroons>` — org/deploy/readonly/machine-exec tokens from `fly tokens create`.
    FlyV1,
    /// `Bearer <token>` — OAuth/personal tokens (`fly auth token`).
    Bearer,
}

/// A Fly API token. The value is a [`SecretString`]; `Debug` shows only the scheme.
#[derive(Clone)]
pub struct Token {
    scheme: AuthScheme,
    /// The credential without any scheme prefix (macaroons joined by `,`).
    value: SecretString,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("scheme", &self.scheme)
            .field("value", &"[REDACTED]")
            .finish()
    }
}

impl Token {
    /// Parse a token as pasted by a user: with or without a `Bearer `/`FlyV1 ` prefix, possibly a
    /// comma-separated list. Returns `None` when nothing usable is left.
    pub fn parse(raw: &SecretString) -> Option<Self> {
        let s = strip_scheme(raw.expose_secret().trim());
        let parts: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        let macaroons: Vec<&str> = parts
            .iter()
            .copied()
            .filter(|p| MACAROON_PREFIXES.iter().any(|m| p.starts_with(m)))
            .collect();
        if !macaroons.is_empty() {
            return Some(Self {
                scheme: AuthScheme::FlyV1,
                value: SecretString::from(macaroons.join(",")),
            });
        }
        parts.first().map(|p| Self {
            scheme: AuthScheme::Bearer,
            value: SecretString::from((*p).to_string()),
        })
    }

    /// Convenience for tests and callers holding a plain string.
    pub fn from_string(raw: impl Into<String>) -> Option<Self> {
        Self::parse(&SecretString::from(raw.into()))
    }

    pub fn scheme(&self) -> AuthScheme {
        self.scheme
    }

    /// The `Authorization` header value, marked sensitive (hyper/reqwest will not log it).
    pub fn header_value(&self) -> Option<HeaderValue> {
        let prefix = match self.scheme {
            AuthScheme::FlyV1 => "FlyV1 ",
            AuthScheme::Bearer => "Bearer ",
        };
        let mut v =
            HeaderValue::from_str(&format!("{prefix}{}", self.value.expose_secret())).ok()?;
        v.set_sensitive(true);
        Some(v)
    }
}

/// Drop a leading `Bearer`/`FlyV1` scheme word (any case) followed by whitespace or nothing.
fn strip_scheme(s: &str) -> &str {
    for scheme in ["bearer", "flyv1"] {
        let Some(head) = s.get(..scheme.len()) else {
            continue;
        };
        let rest = &s[scheme.len()..];
        if head.eq_ignore_ascii_case(scheme)
            && (rest.is_empty() || rest.starts_with(char::is_whitespace))
        {
            return rest.trim_start();
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(raw: &str) -> String {
        let t = Token::from_string(raw).expect("token");
        t.header_value()
            .and_then(|h| h.to_str().ok().map(str::to_string))
            .unwrap_or_default()
    }

    #[test]
    fn macaroons_use_flyv1_and_others_bearer() {
        assert_eq!(header("fm2_abc"), "FlyV1 fm2_abc");
        assert_eq!(header("fm1r_abc"), "FlyV1 fm1r_abc");
        assert_eq!(header("fm1a_abc"), "FlyV1 fm1a_abc");
        assert_eq!(header("FlyV1 fm2_abc,fm2_def"), "FlyV1 fm2_abc,fm2_def");
        assert_eq!(header("Bearer fm2_abc"), "FlyV1 fm2_abc");
        assert_eq!(header("oauth-token"), "Bearer oauth-token");
        assert_eq!(header("Bearer oauth-token"), "Bearer oauth-token");
        assert_eq!(header("FlyV1 oauth-token"), "Bearer oauth-token");
        // A mixed list keeps only the macaroons for the Machines API (fly-go FlapsHeader).
        assert_eq!(header("oauth,fm2_m"), "FlyV1 fm2_m");
        assert!(Token::from_string("  Bearer  ").is_none());
    }

    #[test]
    fn debug_never_shows_the_token() {
        let t = Token::from_string("fm2_supersecretvalue").expect("token");
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("supersecret"), "{dbg}");
        assert!(t.header_value().is_some_and(|h| h.is_sensitive()));
    }
}
