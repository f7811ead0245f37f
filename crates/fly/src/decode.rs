//! Response decoders. They never panic on any input (property-tested in `tests/decoders.rs`).

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Decode a JSON body; an empty body decodes as `null` (so `Option`/defaults still work).
pub fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let trimmed = body.iter().position(|b| !b.is_ascii_whitespace());
    let slice: &[u8] = match trimmed {
        Some(_) => body,
        None => b"null",
    };
    serde_json::from_slice(slice).map_err(|e| e.to_string())
}

/// Fly's error text and status code from an error body (`ErrorResponse`, or fly-go's `message`),
/// falling back to a short plain-text body.
pub fn error_body(body: &[u8]) -> (String, Option<String>) {
    let text = |v: &Option<Value>| -> Option<String> {
        match v.as_ref()? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Null => None,
            Value::String(_) => None,
            other => Some(other.to_string()),
        }
    };
    if let Ok(b) = serde_json::from_slice::<crate::types::ErrorBody>(body) {
        let message = text(&b.error)
            .or_else(|| text(&b.message))
            .unwrap_or_default();
        return (message, text(&b.status));
    }
    let plain = String::from_utf8_lossy(body);
    let plain = plain.trim();
    let short: String = plain.chars().take(200).collect();
    (short, None)
}
