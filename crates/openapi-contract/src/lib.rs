//! Check HTTP requests and responses against an OpenAPI 3.0 document.
//!
//! Built for the Fly Machines API document vendored in `spec/fly-machines-openapi.yml` (beside this crate's
//! `Cargo.toml`; its source and date are in `spec/SOURCE.md`), used by the `fly` client's and the `flysim`
//! emulator's contract tests.
//!
//! ```no_run
//! use openapi_contract::Contract;
//! use serde_json::json;
//!
//! let contract = Contract::load().unwrap();
//! // A request the client sends: method, path (with or without `/v1`, with query), JSON body.
//! contract
//!     .check_request("POST", "/v1/apps/my-app/machines/123/exec", Some(&json!({"command": ["ls"]})))
//!     .unwrap();
//! // A response: the status picks the documented response, the body is checked against its schema.
//! contract
//!     .check_response("GET", "/v1/apps/my-app", 200, Some(&json!({"name": "my-app"})))
//!     .unwrap();
//! ```
//!
//! How the OpenAPI 3.0 schemas become JSON Schema (draft 2020-12):
//! * `$ref: "#/components/schemas/X"` is resolved inside one combined document;
//! * `nullable: true` adds `null` to `type` (or `enum`), or wraps a typeless schema in `anyOf [null, …]`;
//! * OpenAPI-only keywords (`example`, `discriminator`, `xml`, `externalDocs`, `x-*`, `readOnly`,
//!   `writeOnly`, `deprecated`) are dropped; boolean `exclusiveMinimum/Maximum` become numeric;
//! * in strict mode every object schema that lists `properties` and does not say
//!   `additionalProperties` gets `unevaluatedProperties: false`, so a field the document does not
//!   know is reported by name. Requests are strict by default (a client must not invent fields);
//!   responses are lenient by default (servers add fields; see [`Contract::with_strict_responses`]).
//!
//! Where a real peer knowingly departs from the document (documented in the reference notes), a test
//! states it explicitly with [`Contract::extend_property`] or [`Contract::allow_query_param`], next
//! to a comment saying why.
//!
//! Responses with a status the operation does not document: a status ≥ 400 is accepted when its
//! body is an `ErrorResponse` (the Fly docs list 401/404/408/409/412/422/429/5xx with that body for
//! every endpoint); anything else is a violation.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

/// Where the Fly Machines API document lives, relative to this crate's directory (see `spec/SOURCE.md`).
pub const FLY_MACHINES_OPENAPI: &str = "spec/fly-machines-openapi.yml";

/// Failure to load or compile the document itself (not a contract violation).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read OpenAPI document {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("OpenAPI document {path} is not valid YAML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("OpenAPI document has no `paths` object")]
    NoPaths,
}

/// One mismatch between a message and the document. `location` names the part of the message
/// (`request body`, `query parameter timeout`, `response body`) and `pointer` the field inside
/// it as a JSON pointer (`/config/guest/cpus`), empty for the whole value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub location: String,
    pub pointer: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "{}: {}", self.location, self.message)
        } else {
            write!(f, "{} at {}: {}", self.location, self.pointer, self.message)
        }
    }
}

/// All violations found for one message, with the operation they were checked against.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Violations {
    /// `METHOD /template` of the matched operation, or the raw request when none matched.
    pub operation: String,
    pub items: Vec<Violation>,
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} violates the OpenAPI document:", self.operation)?;
        for v in &self.items {
            write!(f, "\n  - {v}")?;
        }
        Ok(())
    }
}

impl Violations {
    /// True when one of the violations mentions `field` (in its location, pointer or message).
    pub fn mentions(&self, field: &str) -> bool {
        self.items.iter().any(|v| {
            v.location.contains(field) || v.pointer.contains(field) || v.message.contains(field)
        })
    }
}

/// A matched operation.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: String,
    /// Path template as written in the document, e.g. `/apps/{app_name}/machines/{machine_id}`.
    pub template: String,
    pub operation_id: Option<String>,
    /// Path parameters taken from the concrete path.
    pub path_params: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Mode {
    Strict,
    Lenient,
}

/// The loaded document plus a cache of compiled validators.
pub struct Contract {
    /// The raw document as JSON (for paths/operations).
    doc: Value,
    /// `components.schemas`, converted to JSON Schema, in both modes.
    schemas: HashMap<Mode, Value>,
    strict_responses: bool,
    extra_query: Vec<(String, String, String)>,
    cache: Mutex<HashMap<(Mode, String), Arc<jsonschema::Validator>>>,
}

impl fmt::Debug for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contract")
            .field("strict_responses", &self.strict_responses)
            .field("extra_query", &self.extra_query)
            .finish_non_exhaustive()
    }
}

impl Contract {
    /// Load the Fly Machines API document ([`FLY_MACHINES_OPENAPI`]), vendored beside this crate and found
    /// from its `CARGO_MANIFEST_DIR`, so a fresh clone needs nothing outside the repository.
    pub fn load() -> Result<Self, LoadError> {
        Self::load_from(Path::new(env!("CARGO_MANIFEST_DIR")).join(FLY_MACHINES_OPENAPI))
    }

    /// Load any OpenAPI 3.0 YAML (or JSON) document.
    pub fn load_from(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let doc: Value = serde_norway::from_str(&text).map_err(|e| LoadError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::from_document(doc)
    }

    /// Build from an already parsed document.
    pub fn from_document(doc: Value) -> Result<Self, LoadError> {
        if !doc.get("paths").is_some_and(Value::is_object) {
            return Err(LoadError::NoPaths);
        }
        let raw = doc
            .pointer("/components/schemas")
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new()));
        let mut schemas = HashMap::new();
        for mode in [Mode::Strict, Mode::Lenient] {
            let mut converted = Map::new();
            if let Value::Object(map) = &raw {
                for (name, schema) in map {
                    converted.insert(name.clone(), convert(schema, mode));
                }
            }
            schemas.insert(mode, Value::Object(converted));
        }
        Ok(Self {
            doc,
            schemas,
            strict_responses: false,
            extra_query: Vec::new(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Also reject unknown fields in response bodies (useful for an emulator that must not invent
    /// fields). Off by default.
    pub fn with_strict_responses(mut self, strict: bool) -> Self {
        self.strict_responses = strict;
        self
    }

    /// Add (or replace) a property of a component schema, e.g. a field the real API accepts but the
    /// document omits (`CreateAppRequest.app_role_id`). Say why in a comment where you call it.
    pub fn extend_property(mut self, schema: &str, property: &str, property_schema: Value) -> Self {
        for mode in [Mode::Strict, Mode::Lenient] {
            let converted = convert(&property_schema, mode);
            if let Some(Value::Object(s)) =
                self.schemas.get_mut(&mode).and_then(|m| m.get_mut(schema))
            {
                let props = s
                    .entry("properties")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(props) = props {
                    props.insert(property.to_string(), converted);
                }
            }
        }
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
        self
    }

    /// Accept a query parameter the document does not list for an operation. `name` ending in `.`
    /// is a prefix (`metadata.` accepts `metadata.role=…`, as the docs describe for list machines).
    pub fn allow_query_param(mut self, method: &str, template: &str, name: &str) -> Self {
        self.extra_query.push((
            method.to_ascii_uppercase(),
            template.to_string(),
            name.to_string(),
        ));
        self
    }

    /// Find the operation for `method` and a concrete path (`/v1` prefix and query are ignored).
    pub fn operation(&self, method: &str, path: &str) -> Result<Operation, Violations> {
        let method_lc = method.to_ascii_lowercase();
        let (path_only, _) = split_query(path);
        let path_only = strip_version(path_only);
        let segs: Vec<&str> = path_only.trim_matches('/').split('/').collect();
        let mut best: Option<(usize, Operation)> = None;
        if let Some(Value::Object(paths)) = self.doc.get("paths") {
            for (template, item) in paths {
                let tsegs: Vec<&str> = template.trim_matches('/').split('/').collect();
                if tsegs.len() != segs.len() {
                    continue;
                }
                let mut literal = 0;
                let mut params = BTreeMap::new();
                let mut ok = true;
                for (t, s) in tsegs.iter().zip(&segs) {
                    if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                        if s.is_empty() {
                            ok = false;
                            break;
                        }
                        params.insert(name.to_string(), percent_decode(s));
                    } else if t == s {
                        literal += 1;
                    } else {
                        ok = false;
                        break;
                    }
                }
                if !ok {
                    continue;
                }
                let Some(op) = item.get(&method_lc) else {
                    continue;
                };
                if best.as_ref().is_none_or(|(l, _)| literal > *l) {
                    best = Some((
                        literal,
                        Operation {
                            method: method.to_ascii_uppercase(),
                            template: template.clone(),
                            operation_id: op
                                .get("operationId")
                                .and_then(Value::as_str)
                                .map(str::to_string),
                            path_params: params,
                        },
                    ));
                }
            }
        }
        best.map(|(_, op)| op).ok_or_else(|| Violations {
            operation: format!("{} {}", method.to_ascii_uppercase(), path),
            items: vec![Violation {
                location: "path".into(),
                pointer: String::new(),
                message: format!(
                    "no operation {} {} in the document",
                    method.to_ascii_uppercase(),
                    path_only
                ),
            }],
        })
    }

    /// Check a request: the operation exists, query parameters are declared and well typed,
    /// required query parameters are present, and the JSON body matches the request schema
    /// (strictly: unknown fields are violations). `body: None` means no body was sent.
    pub fn check_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Operation, Violations> {
        self.check_request_with_headers(method, path, &[], body)
    }

    /// Like [`Contract::check_request`], also checking that required header parameters (e.g.
    /// `fly-machine-lease-nonce` on lease release) are among `header_names`.
    pub fn check_request_with_headers(
        &self,
        method: &str,
        path: &str,
        header_names: &[&str],
        body: Option<&Value>,
    ) -> Result<Operation, Violations> {
        let op = self.operation(method, path)?;
        let op_json = self.op_json(&op);
        let mut items = Vec::new();
        let (_, query) = split_query(path);
        let params = collect_params(&self.doc, &op);

        // Query parameters.
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        for (name, value) in &pairs {
            let declared = params.iter().find(|p| {
                p.get("in").and_then(Value::as_str) == Some("query")
                    && p.get("name").and_then(Value::as_str) == Some(name)
            });
            match declared {
                Some(p) => {
                    let schema = p.get("schema").cloned().unwrap_or(Value::Bool(true));
                    items.extend(self.check_param_value(name, value, &schema));
                }
                None => {
                    let allowed = self.extra_query.iter().any(|(m, t, n)| {
                        *m == op.method
                            && *t == op.template
                            && (n == name || (n.ends_with('.') && name.starts_with(n.as_str())))
                    });
                    if !allowed {
                        items.push(Violation {
                            location: format!("query parameter {name}"),
                            pointer: String::new(),
                            message: format!("`{name}` is not a query parameter of this operation"),
                        });
                    }
                }
            }
        }
        for p in &params {
            let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
            let name = p.get("name").and_then(Value::as_str).unwrap_or("");
            match p.get("in").and_then(Value::as_str) {
                Some("query") if required && !pairs.iter().any(|(k, _)| k == name) => {
                    items.push(Violation {
                        location: format!("query parameter {name}"),
                        pointer: String::new(),
                        message: format!("required query parameter `{name}` is missing"),
                    })
                }
                Some("header")
                    if required && !header_names.iter().any(|h| h.eq_ignore_ascii_case(name)) =>
                {
                    items.push(Violation {
                        location: format!("header {name}"),
                        pointer: String::new(),
                        message: format!("required header `{name}` is missing"),
                    })
                }
                _ => {}
            }
        }

        // Body.
        let rb = op_json.get("requestBody");
        let rb = rb.map(|r| self.deref(r));
        match (rb, body) {
            (None, None) => {}
            (None, Some(_)) => items.push(Violation {
                location: "request body".into(),
                pointer: String::new(),
                message: "this operation takes no request body".into(),
            }),
            (Some(rb), None) => {
                if rb.get("required").and_then(Value::as_bool).unwrap_or(false) {
                    items.push(Violation {
                        location: "request body".into(),
                        pointer: String::new(),
                        message: "a request body is required".into(),
                    });
                }
            }
            (Some(rb), Some(body)) => {
                if let Some(schema) = json_schema_of(rb) {
                    items.extend(self.validate(Mode::Strict, schema, body, "request body"));
                }
            }
        }
        if items.is_empty() {
            Ok(op)
        } else {
            Err(Violations {
                operation: format!("{} {}", op.method, op.template),
                items,
            })
        }
    }

    /// Check a response: `status` must be documented for the operation (or be ≥ 400 with an
    /// `ErrorResponse` body), and a JSON body must match the documented schema. `body: None`
    /// means an empty body; documented responses without a schema accept any body.
    pub fn check_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: Option<&Value>,
    ) -> Result<Operation, Violations> {
        let op = self.operation(method, path)?;
        let op_json = self.op_json(&op);
        let mode = if self.strict_responses {
            Mode::Strict
        } else {
            Mode::Lenient
        };
        let responses = op_json.get("responses");
        let documented = responses
            .and_then(|r| r.get(status.to_string()))
            .or_else(|| responses.and_then(|r| r.get("default")))
            .map(|r| self.deref(r));
        let mut items = Vec::new();
        match documented {
            Some(resp) => {
                if let (Some(schema), Some(body)) = (json_schema_of(resp), body) {
                    items.extend(self.validate(mode, schema, body, "response body"));
                }
            }
            None if status >= 400 => {
                let schema = serde_json::json!({"$ref": "#/components/schemas/ErrorResponse"});
                match body {
                    Some(b) => items.extend(self.validate(mode, &schema, b, "error response body")),
                    None => items.push(Violation {
                        location: "error response body".into(),
                        pointer: String::new(),
                        message: format!("status {status} without an ErrorResponse body"),
                    }),
                }
            }
            None => items.push(Violation {
                location: "status".into(),
                pointer: String::new(),
                message: format!("status {status} is not documented for this operation"),
            }),
        }
        if items.is_empty() {
            Ok(op)
        } else {
            Err(Violations {
                operation: format!("{} {}", op.method, op.template),
                items,
            })
        }
    }

    /// Validate a value against a named component schema (`"Machine"`, `"fly.MachineConfig"`).
    pub fn check_schema(
        &self,
        schema: &str,
        value: &Value,
        strict: bool,
    ) -> Result<(), Violations> {
        let mode = if strict { Mode::Strict } else { Mode::Lenient };
        let s = serde_json::json!({"$ref": format!("#/components/schemas/{schema}")});
        let items = self.validate(mode, &s, value, schema);
        if items.is_empty() {
            Ok(())
        } else {
            Err(Violations {
                operation: format!("schema {schema}"),
                items,
            })
        }
    }

    fn op_json(&self, op: &Operation) -> &Value {
        self.doc
            .get("paths")
            .and_then(|p| p.get(&op.template))
            .and_then(|p| p.get(op.method.to_ascii_lowercase()))
            .unwrap_or(&Value::Null)
    }

    /// Resolve a `$ref` to a non-schema component (requestBodies, responses, parameters).
    fn deref<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => r
                .strip_prefix('#')
                .and_then(|p| self.doc.pointer(p))
                .unwrap_or(v),
            None => v,
        }
    }

    fn check_param_value(&self, name: &str, value: &str, schema: &Value) -> Vec<Violation> {
        let location = format!("query parameter {name}");
        let ty = schema.get("type").and_then(Value::as_str);
        // An enum-typed string parameter may carry a comma-separated list (the wait `state` docs).
        let parts: Vec<&str> = if schema.get("enum").is_some() {
            value.split(',').collect()
        } else {
            vec![value]
        };
        let mut out = Vec::new();
        for part in parts {
            let typed = match ty {
                Some("integer") => match part.parse::<i64>() {
                    Ok(n) => Value::from(n),
                    Err(_) => {
                        out.push(Violation {
                            location: location.clone(),
                            pointer: String::new(),
                            message: format!("`{part}` is not an integer"),
                        });
                        continue;
                    }
                },
                Some("number") => match part.parse::<f64>() {
                    Ok(n) => serde_json::json!(n),
                    Err(_) => {
                        out.push(Violation {
                            location: location.clone(),
                            pointer: String::new(),
                            message: format!("`{part}` is not a number"),
                        });
                        continue;
                    }
                },
                Some("boolean") => match part {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => {
                        out.push(Violation {
                            location: location.clone(),
                            pointer: String::new(),
                            message: format!("`{part}` is not a boolean (true/false)"),
                        });
                        continue;
                    }
                },
                _ => Value::String(part.to_string()),
            };
            out.extend(self.validate(Mode::Strict, schema, &typed, &location));
        }
        out
    }

    fn validate(
        &self,
        mode: Mode,
        schema: &Value,
        value: &Value,
        location: &str,
    ) -> Vec<Violation> {
        let validator = match self.validator(mode, schema) {
            Ok(v) => v,
            Err(message) => {
                return vec![Violation {
                    location: location.to_string(),
                    pointer: String::new(),
                    message: format!("schema does not compile: {message}"),
                }]
            }
        };
        validator
            .iter_errors(value)
            .map(|e| Violation {
                location: location.to_string(),
                pointer: e.instance_path().to_string(),
                message: e.to_string(),
            })
            .collect()
    }

    fn validator(&self, mode: Mode, schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
        let key = (mode, schema.to_string());
        if let Ok(cache) = self.cache.lock() {
            if let Some(v) = cache.get(&key) {
                return Ok(v.clone());
            }
        }
        let root = serde_json::json!({
            "$ref": "#/$defs/op",
            "$defs": {"op": convert(schema, mode)},
            "components": {"schemas": self.schemas.get(&mode).cloned().unwrap_or(Value::Null)},
        });
        let v = Arc::new(
            jsonschema::draft202012::options()
                .build(&root)
                .map_err(|e| e.to_string())?,
        );
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, v.clone());
        }
        Ok(v)
    }
}

/// Path-level plus operation-level parameters (operation wins), `$ref`s resolved.
fn collect_params(doc: &Value, op: &Operation) -> Vec<Value> {
    let item = doc.get("paths").and_then(|p| p.get(&op.template));
    let mut out: Vec<Value> = Vec::new();
    let resolve = |p: &Value| -> Value {
        match p.get("$ref").and_then(Value::as_str) {
            Some(r) => r
                .strip_prefix('#')
                .and_then(|ptr| doc.pointer(ptr))
                .cloned()
                .unwrap_or_else(|| p.clone()),
            None => p.clone(),
        }
    };
    let lists = [
        item.and_then(|i| i.get("parameters")),
        item.and_then(|i| i.get(op.method.to_ascii_lowercase()))
            .and_then(|o| o.get("parameters")),
    ];
    for list in lists.into_iter().flatten() {
        if let Value::Array(ps) = list {
            for p in ps {
                let p = resolve(p);
                let key = (p.get("name").cloned(), p.get("in").cloned());
                out.retain(|q| (q.get("name").cloned(), q.get("in").cloned()) != key);
                out.push(p);
            }
        }
    }
    out
}

/// The JSON schema of a request body or response object (`application/json`, else any content).
fn json_schema_of(obj: &Value) -> Option<&Value> {
    let content = obj.get("content")?.as_object()?;
    content
        .get("application/json")
        .or_else(|| content.values().next())
        .and_then(|c| c.get("schema"))
}

fn split_query(path: &str) -> (&str, Option<&str>) {
    match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    }
}

fn strip_version(path: &str) -> &str {
    match path.strip_prefix("/v1") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ => path,
    }
}

fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// Convert one OpenAPI 3.0 schema object to JSON Schema 2020-12.
fn convert(schema: &Value, mode: Mode) -> Value {
    let Value::Object(obj) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    let nullable = obj
        .get("nullable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    for (k, v) in obj {
        if k.starts_with("x-") {
            continue;
        }
        match k.as_str() {
            "nullable" | "example" | "discriminator" | "xml" | "externalDocs" | "readOnly"
            | "writeOnly" | "deprecated" => {}
            "properties" | "patternProperties" => {
                if let Value::Object(props) = v {
                    let conv: Map<String, Value> = props
                        .iter()
                        .map(|(name, s)| (name.clone(), convert(s, mode)))
                        .collect();
                    out.insert(k.clone(), Value::Object(conv));
                }
            }
            "items" | "additionalProperties" | "not" => {
                out.insert(k.clone(), convert(v, mode));
            }
            "allOf" | "anyOf" | "oneOf" => {
                if let Value::Array(list) = v {
                    out.insert(
                        k.clone(),
                        Value::Array(list.iter().map(|s| convert(s, mode)).collect()),
                    );
                }
            }
            "exclusiveMinimum" | "exclusiveMaximum" => {
                let bound = if k == "exclusiveMinimum" {
                    "minimum"
                } else {
                    "maximum"
                };
                if v.as_bool() == Some(true) {
                    if let Some(b) = obj.get(bound) {
                        out.insert(k.clone(), b.clone());
                    }
                } else if v.is_number() {
                    out.insert(k.clone(), v.clone());
                }
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    // A boolean exclusive bound replaced minimum/maximum.
    for (ex, bound) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        if obj.get(ex).and_then(Value::as_bool) == Some(true) {
            out.remove(bound);
        }
    }
    if mode == Mode::Strict
        && out.contains_key("properties")
        && !out.contains_key("additionalProperties")
    {
        out.insert("unevaluatedProperties".into(), Value::Bool(false));
    }
    if nullable {
        match out.get_mut("type") {
            Some(Value::String(t)) => {
                let t = t.clone();
                out.insert("type".into(), serde_json::json!([t, "null"]));
                if let Some(Value::Array(e)) = out.get_mut("enum") {
                    if !e.contains(&Value::Null) {
                        e.push(Value::Null);
                    }
                }
            }
            _ => {
                return serde_json::json!({"anyOf": [{"type": "null"}, Value::Object(out)]});
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn contract() -> Contract {
        Contract::load().expect("the reference document loads")
    }

    #[test]
    fn finds_templated_operations() {
        let c = contract();
        let op = c
            .operation("GET", "/v1/apps/my-app/machines/abc/wait?state=started")
            .unwrap();
        assert_eq!(op.template, "/apps/{app_name}/machines/{machine_id}/wait");
        assert_eq!(
            op.path_params.get("machine_id").map(String::as_str),
            Some("abc")
        );
        let op = c.operation("GET", "/tokens/current").unwrap();
        assert_eq!(op.template, "/tokens/current");
        let err = c.operation("GET", "/v1/nope").unwrap_err();
        assert!(err.to_string().contains("no operation GET /nope"), "{err}");
    }

    #[test]
    fn valid_exec_request_passes_and_unknown_field_is_named() {
        let c = contract();
        c.check_request(
            "POST",
            "/v1/apps/a/machines/m/exec",
            Some(&json!({"command": ["ls", "-l"], "timeout": 10})),
        )
        .unwrap();
        let err = c
            .check_request(
                "POST",
                "/v1/apps/a/machines/m/exec",
                Some(&json!({"command": ["ls"], "bogus_field": 1})),
            )
            .unwrap_err();
        assert!(err.mentions("bogus_field"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_nested_field() {
        let c = contract();
        let err = c
            .check_request(
                "POST",
                "/v1/apps/a/machines",
                Some(&json!({"config": {"image": "x", "guest": {"cpus": "two"}}})),
            )
            .unwrap_err();
        assert!(
            err.items.iter().any(|v| v.pointer == "/config/guest/cpus"),
            "{err}"
        );
    }

    #[test]
    fn query_parameters_are_declared_and_typed() {
        let c = contract();
        c.check_request(
            "GET",
            "/v1/apps/a/machines/m/wait?state=started,stopped&timeout=60",
            None,
        )
        .unwrap();
        let err = c
            .check_request("GET", "/v1/apps/a/machines/m/wait?timeout=1m", None)
            .unwrap_err();
        assert!(err.mentions("timeout"), "{err}");
        let err = c
            .check_request("GET", "/v1/apps/a/machines/m/wait?state=running", None)
            .unwrap_err();
        assert!(err.mentions("state"), "{err}");
        let err = c.check_request("GET", "/v1/apps?x=1", None).unwrap_err();
        assert!(err.mentions("org_slug") && err.mentions("`x`"), "{err}");
        let c = c.allow_query_param("GET", "/apps/{app_name}/machines", "metadata.");
        c.check_request("GET", "/v1/apps/a/machines?metadata.role=x", None)
            .unwrap();
    }

    #[test]
    fn required_header_is_checked() {
        let c = contract();
        let err = c
            .check_request("DELETE", "/v1/apps/a/machines/m/lease", None)
            .unwrap_err();
        assert!(err.mentions("fly-machine-lease-nonce"), "{err}");
        c.check_request_with_headers(
            "DELETE",
            "/v1/apps/a/machines/m/lease",
            &["Fly-Machine-Lease-Nonce"],
            None,
        )
        .unwrap();
    }

    #[test]
    fn responses_are_checked_by_status() {
        let c = contract();
        c.check_response(
            "GET",
            "/v1/apps/a",
            200,
            Some(&json!({"name": "a", "extra": true})),
        )
        .unwrap();
        let err = c
            .check_response("GET", "/v1/apps/a", 200, Some(&json!({"name": 5})))
            .unwrap_err();
        assert!(err.items.iter().any(|v| v.pointer == "/name"), "{err}");
        c.check_response(
            "GET",
            "/v1/apps/a",
            404,
            Some(&json!({"error": "app not found"})),
        )
        .unwrap();
        assert!(c.check_response("GET", "/v1/apps/a", 302, None).is_err());
        let strict = contract().with_strict_responses(true);
        let err = strict
            .check_response(
                "GET",
                "/v1/apps/a",
                200,
                Some(&json!({"name": "a", "extra": true})),
            )
            .unwrap_err();
        assert!(err.mentions("extra"), "{err}");
    }

    #[test]
    fn every_component_schema_compiles() {
        let c = contract();
        let names: Vec<String> = c.schemas[&Mode::Strict]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        assert!(names.len() > 100, "{} schemas", names.len());
        for name in names {
            if let Err(e) = c.check_schema(&name, &json!(null), true) {
                assert!(!e.to_string().contains("does not compile"), "{e}");
            }
        }
    }

    #[test]
    fn nullable_accepts_null() {
        let v = convert(
            &json!({"type": "string", "nullable": true, "enum": ["a"]}),
            Mode::Strict,
        );
        assert_eq!(v, json!({"type": ["string", "null"], "enum": ["a", null]}));
        let v = convert(&json!({"$ref": "#/x", "nullable": true}), Mode::Strict);
        assert_eq!(v, json!({"anyOf": [{"type": "null"}, {"$ref": "#/x"}]}));
    }

    #[test]
    fn extend_property_admits_a_documented_extra_field() {
        let c = contract();
        let body = json!({"name": "a", "org_slug": "o", "app_role_id": "postgres_cluster"});
        assert!(c.check_request("POST", "/v1/apps", Some(&body)).is_err());
        let c = c.extend_property("CreateAppRequest", "app_role_id", json!({"type": "string"}));
        c.check_request("POST", "/v1/apps", Some(&body)).unwrap();
    }
}
