//! Issue #11 item 7, the whole-run plaintext scan: the real `walden serve` (logs at trace level), driven over
//! loopback HTTP as a browser drives it through the whole escrow story against an in-process flysim, then
//! stopped with SIGTERM. Its standard output and error, every HTML page and server-function answer it gave,
//! and every file in its data directory (`walden.db` with its `-wal` and `-shm` while it runs, again after it
//! stopped, and the audit checkpoints) must hold none of the secrets it handled, nor their hex or base64
//! encodings. The two reveal answers are the only places a value may appear: they are checked to hold it (so
//! the story really handled the values) and kept out of the scan.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

#[path = "api/helpers.rs"]
#[allow(dead_code)] // the in-process harness is not used here, only its browser session
mod helpers;
mod support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flysim::ClusterSeed;
use leptos::server_fn::ServerFn;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use walden_app::api::auth::{AcceptInvite, Login, SetupAdmin};
use walden_app::api::escrow::{
    ApproveReveal, CaptureCredentials, CaptureSummary, GetCredentials, ListRevealRequests,
    ProofResult, ProveCredentials, RequestReveal, RequestRow, RevealApproved, RevealCredential,
    Revealed, SetRequireRevealApproval,
};
use walden_app::api::orgs::{AddOrg, ListOrgs, ListPostgresApps, TrackCluster};
use walden_app::api::users::{CreateInvite, InviteLink};
use walden_app::api::FormSecret;

use helpers::{InputEncoding, Session};

/// Every wait in this file ends when its condition holds; this only bounds a hang.
const PATIENCE: Duration = Duration::from_secs(60);
const ADMIN_PASSWORD: &str = "admin sign-in phrase 7Qm2";
const OPERATOR_PASSWORD: &str = "operator sign-in phrase 3Xr8";

/// A value that must not appear: its name (what a failure shows, never the value) and its bytes.
struct Secret {
    name: &'static str,
    value: String,
}

/// Where a scan found a secret.
#[derive(Debug)]
struct Finding {
    secret: &'static str,
    encoding: String,
    source: String,
    /// Where the matched bytes start (for base64, the first character that depends only on the value).
    offset: usize,
}

/// Looks for every form of every secret in named byte sources, and keeps what it finds.
struct Scanner {
    /// (secret name, encoding name, bytes to look for), indexed below by their first byte.
    needles: Vec<(&'static str, String, Vec<u8>)>,
    by_first_byte: Vec<Vec<usize>>,
    findings: Vec<Finding>,
    /// Names of the sources scanned, so a test can show that the scan covered what it should.
    scanned: Vec<String>,
}

impl Scanner {
    fn new(secrets: &[Secret]) -> Self {
        let mut needles = Vec::new();
        for secret in secrets {
            for (encoding, bytes) in encodings(secret.value.as_bytes()) {
                needles.push((secret.name, encoding, bytes));
            }
        }
        let mut by_first_byte = vec![Vec::new(); 256];
        for (i, (_, _, bytes)) in needles.iter().enumerate() {
            by_first_byte[usize::from(bytes[0])].push(i);
        }
        Scanner {
            needles,
            by_first_byte,
            findings: Vec::new(),
            scanned: Vec::new(),
        }
    }

    /// Scan `haystack`, known to a failure message as `source`: one pass, checking at each byte only the
    /// needles that start with it (the logs at trace level run to megabytes).
    fn bytes(&mut self, source: &str, haystack: &[u8]) {
        for (offset, byte) in haystack.iter().enumerate() {
            for &i in &self.by_first_byte[usize::from(*byte)] {
                let (secret, encoding, needle) = &self.needles[i];
                if haystack[offset..].starts_with(needle) {
                    self.findings.push(Finding {
                        secret,
                        encoding: encoding.clone(),
                        source: source.to_owned(),
                        offset,
                    });
                }
            }
        }
        self.scanned.push(source.to_owned());
    }

    fn file(&mut self, path: &Path) {
        let bytes = std::fs::read(path).unwrap();
        self.bytes(&path.display().to_string(), &bytes);
    }

    /// Every file under `dir`, however deep.
    fn dir(&mut self, dir: &Path) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                self.dir(&path);
            } else {
                self.file(&path);
            }
        }
    }

    /// One line per finding: the secret's name (never its value), its encoding, the source, the byte offset.
    fn report(&self) -> Vec<String> {
        self.findings
            .iter()
            .map(|f| {
                format!(
                    "{} ({}) in {} at byte {}",
                    f.secret, f.encoding, f.source, f.offset
                )
            })
            .collect()
    }

    fn assert_clean(&self) {
        let report = self.report();
        assert!(
            report.is_empty(),
            "secrets in plaintext:\n{}",
            report.join("\n")
        );
    }
}

/// The byte strings that betray `value`: itself; its hex in both cases; and for base64 (standard and URL-safe
/// alphabets) the run of characters that every base64 text holding `value` contains, whichever of the three
/// alignments it starts at (the characters shared with the neighbouring bytes are left out).
fn encodings(value: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut forms = vec![
        ("plain".to_owned(), value.to_vec()),
        ("hex".to_owned(), hex(value).into_bytes()),
        ("HEX".to_owned(), hex(value).to_uppercase().into_bytes()),
    ];
    for (alphabet, name) in [(STANDARD, "base64"), (URL_SAFE, "base64url")] {
        for shift in 0..3 {
            let mut shifted = vec![0u8; shift];
            shifted.extend_from_slice(value);
            let text = base64(&shifted, alphabet);
            let bits = 8 * shifted.len();
            let first = (8 * shift).div_ceil(6);
            let last = if bits % 6 == 0 {
                text.len()
            } else {
                text.len() - 1
            };
            let core = text[first..last].to_vec();
            if !forms.iter().any(|(_, f)| *f == core) {
                forms.push((format!("{name}, offset {shift}"), core));
            }
        }
    }
    forms
}

/// The base64 alphabets (RFC 4648 sections 4 and 5).
const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Base64 without padding, in `alphabet`.
fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize]);
        }
    }
    out
}

/// The scan is not vacuous: a value planted in a file is found in each of its forms, named, at its offset; a
/// file holding only part of it is clean; the report names the value but never shows it.
#[test]
fn the_scanner_finds_a_planted_value_in_every_encoding() {
    // `?>` and `~?` give base64 characters 62 and 63, so the URL-safe alphabet's text differs.
    const VALUE: &str = "planted?>~?value";
    assert_eq!(
        String::from_utf8(base64(b"any carnal pleas", STANDARD)).unwrap(),
        "YW55IGNhcm5hbCBwbGVhcw",
        "RFC 4648's example"
    );
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean");
    std::fs::write(&clean, &VALUE.as_bytes()[1..]).unwrap();
    let forms = [
        ("plain", VALUE.as_bytes().to_vec()),
        ("hex", hex(VALUE.as_bytes()).into_bytes()),
        ("HEX", hex(VALUE.as_bytes()).to_uppercase().into_bytes()),
        (
            "base64, offset 1",
            base64(format!("x{VALUE}").as_bytes(), STANDARD),
        ),
        (
            "base64, offset 2",
            base64(format!("xy{VALUE}yz").as_bytes(), STANDARD),
        ),
        (
            "base64url, offset 0",
            base64(format!("???{VALUE}").as_bytes(), URL_SAFE),
        ),
    ];
    for (i, (_, form)) in forms.iter().enumerate() {
        let mut bytes = b"\x00\x01 some prefix ".to_vec();
        bytes.extend_from_slice(form);
        bytes.extend_from_slice(b" some suffix");
        std::fs::write(dir.path().join(format!("planted{i}")), bytes).unwrap();
    }

    let mut scanner = Scanner::new(&[Secret {
        name: "PLANTED",
        value: VALUE.into(),
    }]);
    scanner.dir(dir.path());
    assert_eq!(scanner.scanned.len(), 7);
    for (i, (encoding, _)) in forms.iter().enumerate() {
        let source = dir.path().join(format!("planted{i}")).display().to_string();
        assert!(
            scanner
                .findings
                .iter()
                .any(|f| f.source == source && f.encoding == *encoding && f.secret == "PLANTED"),
            "{encoding} not found in {source}: {:?}",
            scanner.findings
        );
    }
    let clean = clean.display().to_string();
    assert!(
        !scanner.findings.iter().any(|f| f.source == clean),
        "part of the value is not the value"
    );
    let message = scanner.report().join("\n");
    assert!(message.contains("PLANTED (plain) in "), "{message}");
    assert!(message.contains("planted0 at byte 15"), "{message}");
    assert!(!message.contains(VALUE), "{message}");
}

/// A `walden serve` child process whose standard output and error go to files.
struct Console {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    base: String,
}

impl Console {
    /// Start `walden serve` on a free loopback port, with cookies that work over plain HTTP, and wait until
    /// its log says where it listens.
    fn start(dir: &Path, data: &Path, flysim_url: &str) -> Console {
        let (stdout, stderr) = (dir.join("serve.stdout"), dir.join("serve.stderr"));
        let mut cmd = support::walden(data, flysim_url);
        for var in [
            "WALDEN_SETUP_TOKEN",
            "WALDEN_SETUP_TOKEN_FILE",
            "WALDEN_ALLOWED_HOSTS",
            "WALDEN_METRICS_BIND",
            "WALDEN_AUDIT_SINK",
        ] {
            cmd.env_remove(var);
        }
        let child = cmd
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--secure-cookies",
                "false",
            ])
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut console = Console {
            child,
            stdout,
            stderr,
            base: String::new(),
        };
        let addr = console.wait_for(|_, log| {
            let (_, rest) = log.split_once("Walden is listening on http://")?;
            let addr: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            Some(addr)
        });
        console.base = format!("http://{addr}");
        console
    }

    /// Wait until `found` sees what it looks for in (standard output, log); fails if the process exits first.
    fn wait_for<T>(&mut self, found: impl Fn(&str, &str) -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let out = std::fs::read_to_string(&self.stdout).unwrap();
            let log = String::from_utf8_lossy(&std::fs::read(&self.stderr).unwrap()).into_owned();
            if let Some(value) = found(&out, &log) {
                return value;
            }
            if let Some(exit) = self.child.try_wait().unwrap() {
                panic!("walden serve exited ({exit}) before it was ready:\n{out}\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "walden serve is not ready:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The path of the one-time setup link the console printed on standard output.
    fn setup_path(&mut self) -> String {
        self.wait_for(|out, _| {
            let start = out.find("/setup?token=")?;
            Some(out[start..].split_whitespace().next()?.to_owned())
        })
    }

    /// A browser on this console: its own cookie jar, and the headers a browser sends with a same-origin
    /// request (the console's cross-origin check reads them).
    fn browser(&self) -> Session {
        let mut headers = HeaderMap::new();
        headers.insert("origin", HeaderValue::from_str(&self.base).unwrap());
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        Session::at(&self.base, headers)
    }

    /// SIGTERM, then wait for a clean exit (the console finishes its requests and closes the database); the
    /// files holding its standard output and its log.
    fn stop(mut self) -> [PathBuf; 2] {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + PATIENCE;
        let exit = loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                break exit;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("walden serve did not stop after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(exit.success(), "walden serve exited with {exit}");
        [self.stdout, self.stderr]
    }
}

/// Every answer the console gave in the story (HTML pages and server functions' JSON), kept for the scan,
/// except the reveals, whose answer is the one place a value may appear.
struct Answers {
    base: String,
    kept: Vec<(String, Vec<u8>)>,
}

impl Answers {
    /// GET the page `path` as `who` (`label` names them in a failure) and keep its HTML.
    async fn page(&mut self, label: &str, who: &Session, path: &str) -> String {
        let request = format!("GET {path} as {label}");
        let res = who
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body = res.bytes().await.unwrap().to_vec();
        let text = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(status, 200, "{request}: {text}");
        assert!(text.contains("<html"), "{request}: not HTML: {text}");
        self.kept.push((request, body));
        text
    }

    /// Call a server function as `who` and keep its answer.
    async fn call<F, T>(&mut self, label: &str, who: &Session, args: &F) -> T
    where
        F: ServerFn + Serialize,
        F::Protocol: InputEncoding,
        T: DeserializeOwned,
    {
        let (request, body) = answer_of(label, who, args).await;
        let decoded = decode(&request, &body);
        self.kept.push((request, body));
        decoded
    }

    /// Reveal a value as `who`: the answer is returned, not kept.
    async fn reveal<F>(&mut self, label: &str, who: &Session, args: &F) -> Revealed
    where
        F: ServerFn + Serialize,
        F::Protocol: InputEncoding,
    {
        let (request, body) = answer_of(label, who, args).await;
        decode(&request, &body)
    }
}

/// POST a server function; its request line for messages and its body. Any status but 200 fails with both (the
/// arguments are left out: some are passwords).
async fn answer_of<F>(label: &str, who: &Session, args: &F) -> (String, Vec<u8>)
where
    F: ServerFn + Serialize,
    F::Protocol: InputEncoding,
{
    let request = format!("POST {} as {label}", F::PATH);
    let res = who.call(args).await;
    let status = res.status();
    let body = res.bytes().await.unwrap().to_vec();
    assert_eq!(status, 200, "{request}: {}", String::from_utf8_lossy(&body));
    (request, body)
}

fn decode<T: DeserializeOwned>(request: &str, body: &[u8]) -> T {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{request}: {e}: {}", String::from_utf8_lossy(body)))
}

/// What the story handles that must stay secret: the demo cluster's three passwords (flysim's `ClusterSeed`),
/// the Fly token the console uses and an admin pastes, and both people's sign-in passwords.
fn secrets(seed: &ClusterSeed) -> Vec<Secret> {
    let secret = |name, value: &str| Secret {
        name,
        value: value.to_owned(),
    };
    vec![
        secret("SU_PASSWORD", &seed.su_password),
        secret("REPL_PASSWORD", &seed.repl_password),
        secret("OPERATOR_PASSWORD", &seed.operator_password),
        secret("the Fly token", flysim::DEMO_TOKEN),
        secret("the admin's sign-in password", ADMIN_PASSWORD),
        secret("the operator's sign-in password", OPERATOR_PASSWORD),
    ]
}

/// The two people of the story, each in a browser of their own.
struct People {
    admin: Session,
    operator: Session,
}

/// The first admin through the setup link the console printed, then signed in afresh as on a later visit; an
/// operator through an invitation link the admin made.
async fn people(console: &mut Console, answers: &mut Answers) -> People {
    let setup_path = console.setup_path();
    let first = console.browser();
    answers.page("a visitor", &first, &setup_path).await;
    let _: serde_json::Value = answers
        .call(
            "a visitor",
            &first,
            &SetupAdmin {
                token: token_of(&setup_path),
                name: "ada".into(),
                password: ADMIN_PASSWORD.into(),
            },
        )
        .await;
    let admin = console.browser();
    answers.page("a visitor", &admin, "/login").await;
    let _: serde_json::Value = answers
        .call(
            "a visitor",
            &admin,
            &Login {
                name: "ada".into(),
                password: ADMIN_PASSWORD.into(),
                code: String::new(),
            },
        )
        .await;

    let invite: InviteLink = answers
        .call(
            "admin",
            &admin,
            &CreateInvite {
                role: "operator".into(),
                hours: 1,
            },
        )
        .await;
    let operator = console.browser();
    answers.page("a visitor", &operator, &invite.path).await;
    let _: serde_json::Value = answers
        .call(
            "a visitor",
            &operator,
            &AcceptInvite {
                token: token_of(&invite.path),
                name: "otto".into(),
                password: OPERATOR_PASSWORD.into(),
            },
        )
        .await;
    People { admin, operator }
}

/// The token of a `…?token=` link.
fn token_of(link: &str) -> String {
    link.split_once("token=").unwrap().1.to_owned()
}

/// The escrow story: an org added by pasting a token, the demo cluster tracked, captured and proven; a reveal
/// with a reason; then two-person approval turned on, a request, the other person's approval and the
/// approved reveal. Each reveal is checked to give the cluster's value, so the story really handled them.
async fn escrow_story(people: &People, answers: &mut Answers, seed: &ClusterSeed) {
    let People { admin, operator } = people;
    let (org, app) = (&seed.org, &seed.app);
    let _: serde_json::Value = answers.call("admin", admin, &ListOrgs {}).await;
    let _: serde_json::Value = answers
        .call(
            "admin",
            admin,
            &AddOrg {
                slug: "personal".into(),
                token: FormSecret(flysim::DEMO_TOKEN.into()),
            },
        )
        .await;
    let _: serde_json::Value = answers
        .call("admin", admin, &ListPostgresApps { org: org.clone() })
        .await;
    let _: serde_json::Value = answers
        .call(
            "admin",
            admin,
            &TrackCluster {
                org: org.clone(),
                app: app.clone(),
            },
        )
        .await;

    let captured: CaptureSummary = answers
        .call(
            "operator",
            operator,
            &CaptureCredentials {
                org: org.clone(),
                app: app.clone(),
            },
        )
        .await;
    assert_eq!(captured.version, 1, "{captured:?}");
    let proofs: Vec<ProofResult> = answers
        .call(
            "operator",
            operator,
            &ProveCredentials {
                org: org.clone(),
                app: app.clone(),
            },
        )
        .await;
    assert!(proofs.iter().all(|p| p.status == "opens"), "{proofs:?}");
    let _: serde_json::Value = answers
        .call(
            "operator",
            operator,
            &GetCredentials {
                org: org.clone(),
                app: app.clone(),
            },
        )
        .await;

    let reveal = RevealCredential {
        org: org.clone(),
        app: app.clone(),
        version: 1,
        field: "SU_PASSWORD".into(),
        reason: "restore drill".into(),
    };
    let revealed = answers.reveal("operator", operator, &reveal).await;
    assert_eq!(revealed.value, seed.su_password);

    let _: serde_json::Value = answers
        .call("admin", admin, &SetRequireRevealApproval { enabled: true })
        .await;
    let request = RequestReveal {
        org: org.clone(),
        app: app.clone(),
        version: 1,
        field: "REPL_PASSWORD".into(),
        reason: "checking replication".into(),
    };
    let asked: RequestRow = answers.call("operator", operator, &request).await;
    let pending: Vec<RequestRow> = answers.call("admin", admin, &ListRevealRequests {}).await;
    assert!(pending.iter().any(|r| r.id == asked.id), "{pending:?}");
    let _: RequestRow = answers
        .call("admin", admin, &ApproveReveal { id: asked.id })
        .await;
    let revealed = answers
        .reveal("operator", operator, &RevealApproved { id: asked.id })
        .await;
    assert_eq!(revealed.value, seed.repl_password);
}

/// Every page of the console (the routes in `app/src/lib.rs`), as each of them sees it.
async fn every_page(people: &People, answers: &mut Answers, seed: &ClusterSeed) {
    let credentials = format!("/credentials/{}/{}", seed.org, seed.app);
    for (label, who) in [("admin", &people.admin), ("operator", &people.operator)] {
        for path in [
            "/",
            "/clusters",
            "/restores",
            "/audit",
            "/credentials",
            credentials.as_str(),
            "/settings",
            "/settings/orgs",
            "/account",
            "/users",
        ] {
            answers.page(label, who, path).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_console_run_leaves_no_secret_in_its_logs_answers_or_database_files() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stop_flysim = CancellationToken::new();
    let (flysim, info) = flysim::start_demo(
        listener,
        dir.path().join("bucket"),
        None,
        stop_flysim.clone(),
    )
    .await
    .unwrap();
    let seed = ClusterSeed::new(&info.org, &info.app, &info.storage);
    let data = dir.path().join("data");
    let mut console = Console::start(dir.path(), &data, &flysim.base_url);
    let mut answers = Answers {
        base: console.base.clone(),
        kept: Vec::new(),
    };

    let people = people(&mut console, &mut answers).await;
    escrow_story(&people, &mut answers, &seed).await;
    every_page(&people, &mut answers, &seed).await;

    // The database files as they are while the console runs (the -wal and -shm exist only then), ...
    let mut scanner = Scanner::new(&secrets(&seed));
    scanner.dir(&data);
    let wal = data.join(format!("{}-wal", walden_core::db::DB_FILE));
    assert!(
        scanner.scanned.contains(&wal.display().to_string()),
        "{:?}",
        scanner.scanned
    );

    // ... and, once it has stopped, its output, its log, every answer kept and the data directory again.
    let outputs = console.stop();
    stop_flysim.cancel();
    let log = std::fs::read_to_string(&outputs[1]).unwrap();
    assert!(log.contains("TRACE"), "the log is at trace level");
    for output in &outputs {
        scanner.file(output);
    }
    for (request, body) in &answers.kept {
        scanner.bytes(request, body);
    }
    scanner.dir(&data);
    let db = data.join(walden_core::db::DB_FILE).display().to_string();
    assert!(scanner.scanned.contains(&db), "{:?}", scanner.scanned);
    scanner.assert_clean();
}
