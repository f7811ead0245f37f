//! The JSON documents wal-g writes (sentinels, `metadata.json`) and PostgreSQL `.history` files.
//!
//! Parsing is tolerant: unknown keys are ignored, V1 and V2 sentinel fields are both accepted, LSNs and system
//! identifiers are read as `u64` (never through `f64`), and times are RFC 3339 with any number of fraction
//! digits. A field with the wrong type is reported as a problem rather than failing the whole document.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Parses an RFC 3339 time with any fraction. `0001-01-01T00:00:00Z` (Go's zero time) and `""` mean unset.
pub fn parse_time(s: &str) -> Result<Option<OffsetDateTime>, String> {
    let s = s.trim();
    if s.is_empty() || s.starts_with("0001-01-01T00:00:00") {
        return Ok(None);
    }
    // time's Rfc3339 accepts at most 9 fraction digits; trim extra digits leniently.
    let fixed;
    let s = match s.find('.') {
        Some(dot) => {
            let frac_end = s[dot + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .map(|i| dot + 1 + i)
                .unwrap_or(s.len());
            if frac_end - dot - 1 > 9 {
                fixed = format!("{}{}", &s[..dot + 10], &s[frac_end..]);
                fixed.as_str()
            } else {
                s
            }
        }
        None => s,
    };
    OffsetDateTime::parse(s, &Rfc3339)
        .map(|t| Some(t.to_offset(time::UtcOffset::UTC)))
        .map_err(|e| format!("'{s}' is not an RFC 3339 time: {e}"))
}

struct Fields<'a> {
    map: &'a Map<String, Value>,
    problems: Vec<String>,
}

impl<'a> Fields<'a> {
    fn get(&self, keys: &[&str]) -> Option<(&'a str, &'a Value)> {
        keys.iter()
            .find_map(|k| self.map.get_key_value(*k).map(|(k, v)| (k.as_str(), v)))
            .filter(|(_, v)| !v.is_null())
    }
    fn u64(&mut self, keys: &[&str]) -> Option<u64> {
        let (k, v) = self.get(keys)?;
        match v {
            Value::Number(n) => match n.as_u64() {
                Some(x) => Some(x),
                None => {
                    self.problems
                        .push(format!("{k} is not an unsigned integer ({n})"));
                    None
                }
            },
            Value::String(s) => match s.parse::<u64>() {
                Ok(x) => Some(x),
                Err(_) => {
                    self.problems.push(format!("{k} is not a number ('{s}')"));
                    None
                }
            },
            other => {
                self.problems
                    .push(format!("{k} has the wrong type ({})", type_name(other)));
                None
            }
        }
    }
    fn i64(&mut self, keys: &[&str]) -> Option<i64> {
        let (k, v) = self.get(keys)?;
        match v.as_i64() {
            Some(x) => Some(x),
            None => {
                self.problems.push(format!("{k} is not an integer"));
                None
            }
        }
    }
    fn string(&mut self, keys: &[&str]) -> Option<String> {
        let (k, v) = self.get(keys)?;
        match v {
            Value::String(s) => Some(s.clone()),
            other => {
                self.problems
                    .push(format!("{k} is not a string ({})", type_name(other)));
                None
            }
        }
    }
    fn bool(&mut self, keys: &[&str]) -> Option<bool> {
        let (k, v) = self.get(keys)?;
        match v {
            Value::Bool(b) => Some(*b),
            other => {
                self.problems
                    .push(format!("{k} is not a boolean ({})", type_name(other)));
                None
            }
        }
    }
    fn time(&mut self, keys: &[&str]) -> Option<OffsetDateTime> {
        let s = self.string(keys)?;
        match parse_time(&s) {
            Ok(t) => t,
            Err(e) => {
                self.problems.push(e);
                None
            }
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err("the object is empty".into());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(format!(
            "expected a JSON object, found {}",
            type_name(&other)
        )),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

/// A backup sentinel (`<name>_backup_stop_sentinel.json`), V1 and V2 fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sentinel {
    pub lsn: Option<u64>,
    pub finish_lsn: Option<u64>,
    pub delta_lsn: Option<u64>,
    pub delta_from: Option<String>,
    pub delta_full_name: Option<String>,
    pub delta_count: Option<u64>,
    pub pg_version: Option<i64>,
    pub system_identifier: Option<u64>,
    pub uncompressed_size: Option<i64>,
    pub compressed_size: Option<i64>,
    pub version: Option<i64>,
    pub start_time: Option<OffsetDateTime>,
    pub finish_time: Option<OffsetDateTime>,
    pub hostname: Option<String>,
    pub is_permanent: Option<bool>,
    /// Fields present but unusable (wrong type, bad time), in plain words.
    pub problems: Vec<String>,
}

impl Sentinel {
    /// Parses a sentinel. Fails only when the object is not a JSON object at all.
    pub fn parse(bytes: &[u8]) -> Result<Sentinel, String> {
        let map = object(bytes)?;
        let mut f = Fields {
            map: &map,
            problems: Vec::new(),
        };
        let s = Sentinel {
            lsn: f.u64(&["LSN"]),
            finish_lsn: f.u64(&["FinishLSN"]),
            delta_lsn: f.u64(&["DeltaLSN", "DeltaFromLSN"]),
            delta_from: f.string(&["DeltaFrom"]).filter(|s| !s.is_empty()),
            delta_full_name: f.string(&["DeltaFullName"]).filter(|s| !s.is_empty()),
            delta_count: f.u64(&["DeltaCount"]),
            pg_version: f.i64(&["PgVersion"]),
            system_identifier: f.u64(&["SystemIdentifier"]),
            uncompressed_size: f.i64(&["UncompressedSize"]),
            compressed_size: f.i64(&["CompressedSize"]),
            version: f.i64(&["Version"]),
            start_time: f.time(&["StartTime"]),
            finish_time: f.time(&["FinishTime"]),
            hostname: f.string(&["Hostname"]),
            is_permanent: f.bool(&["IsPermanent"]),
            problems: Vec::new(),
        };
        Ok(Sentinel {
            problems: f.problems,
            ..s
        })
    }
}

/// `<name>/metadata.json` (ExtendedMetadataDto). Authoritative for permanence and times.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub start_time: Option<OffsetDateTime>,
    pub finish_time: Option<OffsetDateTime>,
    pub hostname: Option<String>,
    pub data_dir: Option<String>,
    pub pg_version: Option<i64>,
    pub start_lsn: Option<u64>,
    pub finish_lsn: Option<u64>,
    pub is_permanent: Option<bool>,
    pub system_identifier: Option<u64>,
    pub uncompressed_size: Option<i64>,
    pub compressed_size: Option<i64>,
    pub user_data: Option<Value>,
    pub problems: Vec<String>,
}

impl Metadata {
    pub fn parse(bytes: &[u8]) -> Result<Metadata, String> {
        let map = object(bytes)?;
        let mut f = Fields {
            map: &map,
            problems: Vec::new(),
        };
        let m = Metadata {
            start_time: f.time(&["start_time"]),
            finish_time: f.time(&["finish_time"]),
            hostname: f.string(&["hostname"]),
            data_dir: f.string(&["data_dir"]),
            pg_version: f.i64(&["pg_version"]),
            start_lsn: f.u64(&["start_lsn"]),
            finish_lsn: f.u64(&["finish_lsn"]),
            is_permanent: f.bool(&["is_permanent"]),
            system_identifier: f.u64(&["system_identifier"]),
            uncompressed_size: f.i64(&["uncompressed_size"]),
            compressed_size: f.i64(&["compressed_size"]),
            user_data: map.get("user_data").filter(|v| !v.is_null()).cloned(),
            problems: Vec::new(),
        };
        Ok(Metadata {
            problems: f.problems,
            ..m
        })
    }
}

/// One record of a timeline history file: the timeline `parent` ended at `switch_lsn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub parent: u32,
    pub switch_lsn: u64,
    pub reason: String,
}

/// Parses a PostgreSQL `.history` file (tab- or space-separated; `%X/%X` with any zero padding; blank and `#`
/// lines skipped). Returns the records and the number of lines that could not be read.
pub fn parse_history(text: &str) -> (Vec<HistoryRecord>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, ['\t', ' ']);
        let tli = parts.next().and_then(|t| t.trim().parse::<u32>().ok());
        let mut rest = parts.next();
        // tolerate several spaces between fields
        let mut tail = parts.next().unwrap_or("");
        while rest == Some("") {
            let mut p = tail.splitn(2, ['\t', ' ']);
            rest = p.next();
            tail = p.next().unwrap_or("");
        }
        let lsn = rest.and_then(|l| {
            let (hi, lo) = l.split_once('/')?;
            if hi.is_empty() || lo.is_empty() || hi.len() > 8 || lo.len() > 8 {
                return None;
            }
            Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
        });
        match (tli, lsn) {
            (Some(parent), Some(switch_lsn)) => out.push(HistoryRecord {
                parent,
                switch_lsn,
                reason: tail.trim().to_string(),
            }),
            _ => bad += 1,
        }
    }
    (out, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_any_fraction() {
        let t = |s| parse_time(s).unwrap().unwrap();
        assert_eq!(t("2026-03-01T02:03:41.654321Z").microsecond(), 654321);
        assert_eq!(t("2026-03-01T14:00:09.25Z").millisecond(), 250);
        assert_eq!(t("2026-03-01T14:00:09Z").nanosecond(), 0);
        assert_eq!(
            t("2026-03-01T14:00:09.123456789123Z").nanosecond(),
            123456789
        );
        assert_eq!(t("2026-03-01T16:00:09+02:00").hour(), 14);
        assert_eq!(parse_time("0001-01-01T00:00:00Z").unwrap(), None);
        assert_eq!(parse_time("").unwrap(), None);
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn sentinel_v2_full() {
        let s = Sentinel::parse(br#"{"LSN":43570429992,"PgVersion":160004,"FinishLSN":43587248568,"SystemIdentifier":7409872345123456789,
 "UncompressedSize":2604967632,"CompressedSize":858502390,"DataCatalogSize":2598123520,
 "Spec":{"16385":{"loc":"/mnt/tbs1","link":"pg_tblspc/16385"},"base_prefix":"/var/lib/postgresql/16/main","tablespaces":["16385"]},
 "UserData":{"label":"nightly"},"ChkpNum":null,
 "Version":2,"StartTime":"2026-03-01T02:00:01.123456Z","FinishTime":"2026-03-01T02:03:41.654321Z",
 "DateFmt":"%Y-%m-%dT%H:%M:%S.%fZ","Hostname":"db1","DataDir":"/var/lib/postgresql/16/main","IsPermanent":false}"#).unwrap();
        assert_eq!(s.lsn, Some(43570429992));
        assert_eq!(s.finish_lsn, Some(43587248568));
        assert_eq!(s.system_identifier, Some(7409872345123456789)); // > 2^53, exact
        assert_eq!(s.version, Some(2));
        assert_eq!(s.is_permanent, Some(false));
        assert!(s.finish_time.is_some());
        assert!(s.problems.is_empty());
    }

    #[test]
    fn sentinel_delta_and_legacy_fields() {
        let s = Sentinel::parse(br#"{"LSN":44023414824,"DeltaFromLSN":43570429992,"DeltaFrom":"base_000000010000000A00000025",
 "DeltaFullName":"base_000000010000000A00000025","DeltaCount":1,"spec":{},"Files":{"/x":{}},"NewKey":[1,2]}"#).unwrap();
        assert_eq!(s.delta_lsn, Some(43570429992));
        assert_eq!(
            s.delta_from.as_deref(),
            Some("base_000000010000000A00000025")
        );
        assert_eq!(s.delta_count, Some(1));
        let minimal =
            Sentinel::parse(br#"{"LSN": 83886080, "PgVersion": 160000, "Spec": {}}"#).unwrap();
        assert_eq!(minimal.lsn, Some(83886080));
        assert_eq!(minimal.finish_lsn, None);
    }

    #[test]
    fn sentinel_bad_input() {
        assert!(Sentinel::parse(b"").is_err());
        assert!(Sentinel::parse(b"{\"LSN\": 1").is_err());
        assert!(Sentinel::parse(b"[1,2]").is_err());
        assert!(Sentinel::parse(b"\xff\xfe").is_err());
        let s = Sentinel::parse(
            br#"{"LSN":-5,"FinishLSN":"12","StartTime":"nope","IsPermanent":"yes"}"#,
        )
        .unwrap();
        assert_eq!(s.lsn, None);
        assert_eq!(s.finish_lsn, Some(12));
        assert_eq!(s.problems.len(), 3, "{:?}", s.problems);
    }

    #[test]
    fn metadata_parse() {
        let m = Metadata::parse(br#"{"start_time":"2026-03-01T02:00:01.123456Z","finish_time":"2026-03-01T02:03:41.654321Z",
 "date_fmt":"%Y-%m-%dT%H:%M:%S.%fZ","hostname":"db1","data_dir":"/var/lib/postgresql/16/main",
 "pg_version":160004,"start_lsn":43570429992,"finish_lsn":43587248568,"is_permanent":true,
 "system_identifier":7409872345123456789,"uncompressed_size":2604967632,"compressed_size":858502390,
 "user_data":{"label":"nightly"}}"#).unwrap();
        assert_eq!(m.is_permanent, Some(true));
        assert_eq!(m.system_identifier, Some(7409872345123456789));
        assert!(m.user_data.is_some());
        let z =
            Metadata::parse(br#"{"start_time":"0001-01-01T00:00:00Z","system_identifier":null}"#)
                .unwrap();
        assert_eq!(z.start_time, None);
        assert_eq!(z.system_identifier, None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_documents_never_panic(s in "\\PC{0,200}", b in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = Sentinel::parse(s.as_bytes());
            let _ = Sentinel::parse(&b);
            let _ = Metadata::parse(s.as_bytes());
            let _ = parse_history(&s);
            let _ = parse_time(&s);
            let _ = crate::names::BackupName::parse(&s);
            let _ = crate::names::classify_wal_file(&s, crate::names::DEFAULT_SEGMENT_SIZE);
            let _ = crate::names::Lsn::parse(&s);
            let _ = crate::plan::parse_target_time(&s);
        }
    }

    #[test]
    fn history_files() {
        let (r, bad) = parse_history("1\tA/3F1C0000\tno recovery target specified\n\n2\tB/10000000\tbefore 2026-03-02 10:00:00+00\n");
        assert_eq!(bad, 0);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].parent, 1);
        assert_eq!(r[0].switch_lsn, 0xA_3F1C_0000);
        assert_eq!(r[1].reason, "before 2026-03-02 10:00:00+00");
        let (r, _) = parse_history("1\t0/090400000\tbefore 2000-01-01 05:00:00+05\n\n");
        assert!(r.is_empty()); // 9 hex digits in the low part is not an LSN
        let (r, bad) =
            parse_history("# comment\n1  0/90400000  reason\n3\t0/00000010\n garbage \n");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].switch_lsn, 0x9040_0000);
        assert_eq!(r[1].switch_lsn, 0x10);
        assert_eq!(bad, 1);
    }
}
