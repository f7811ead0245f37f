//! The plan's canonical form and its hash: JSON with object keys sorted at every depth, no whitespace, so the
//! same plan always gives the same bytes; the hash is SHA-256 of them, lower-case hex. A plan holds no secret
//! (only placeholders), so the hash reveals none.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// `value` with every object's keys sorted (serde_json's map may keep insertion order).
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                out.insert(k.clone(), sorted(&map[k]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The canonical JSON text of `value`.
pub fn canonical(value: &Value) -> String {
    sorted(value).to_string()
}

/// SHA-256 of the canonical text, hex.
pub fn hash(value: &Value) -> String {
    hex::encode(Sha256::digest(canonical(value).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_does_not_matter() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"d":[1,{"y":2,"x":1}],"c":null}}"#)
            .unwrap_or_default();
        let b: Value = serde_json::from_str(r#"{"a":{"c":null,"d":[1,{"x":1,"y":2}]},"b":1}"#)
            .unwrap_or_default();
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(hash(&a), hash(&b));
        assert_eq!(hash(&a).len(), 64);
    }
}
