//! The programs a command can run: shell builtins and coreutils-like tools first, then the binaries of
//! the Stolon image (`stolonctl`, `stolonctl-run`, `psql`, `pg-role`, `wal-g`, `ps`).

use std::collections::BTreeMap;

use base64::Engine as _;

use super::{Out, Shell};
use crate::stolon;

/// How a program was invoked.
pub(super) struct Call<'c> {
    pub args: &'c [String],
    pub stdin: &'c str,
    pub env: &'c BTreeMap<String, String>,
    /// Started with a trailing `&`.
    pub background: bool,
    /// Where its stdout is redirected (detached wal-g logs there).
    pub log_path: Option<String>,
}

fn lines_out<'a>(lines: impl IntoIterator<Item = &'a str>) -> Out {
    Out::ok(
        lines
            .into_iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
}

/// `NAME=value` entries, each ended by a newline, or by a NUL with `-0`/`--null` (GNU coreutils
/// `printenv`/`env`: "end each output line with NUL, not newline"), which keeps a value holding a
/// newline (a JSON service-account key) unambiguous.
fn env_listing(env: &BTreeMap<String, String>, null: bool) -> Out {
    let end = if null { '\0' } else { '\n' };
    Out::ok(
        env.iter()
            .map(|(k, v)| format!("{k}={v}{end}"))
            .collect::<String>(),
    )
}

/// `date [-u] [+FORMAT]`: with `+%s` the Unix seconds (GNU coreutils `date`: "%s seconds since the
/// Epoch"), otherwise RFC 3339 (the only other output flysim gives).
fn date(args: &[String], now_ms: i64) -> Out {
    match args.iter().find(|a| a.starts_with('+')).map(String::as_str) {
        Some("+%s") => Out::ok(format!("{}\n", now_ms.div_euclid(1000))),
        Some(other) => Out::err(1, format!("date: flysim supports +%s only, not {other}\n")),
        None => Out::ok(format!("{}\n", crate::clock::rfc3339(now_ms))),
    }
}

/// `-0` / `--null` (GNU coreutils `printenv` and `env`).
fn is_null_flag(arg: &str) -> bool {
    arg == "-0" || arg == "--null"
}

impl Shell<'_, '_> {
    /// One program with its argv. Builtins, then the image's binaries.
    pub(crate) fn simple(
        &mut self,
        argv: &[String],
        stdin: &str,
        env: &BTreeMap<String, String>,
        background: bool,
        log_path: Option<String>,
    ) -> Out {
        let Some((program, args)) = argv.split_first() else {
            return Out::default();
        };
        let program = program.rsplit('/').next().unwrap_or(program).to_string();
        let call = Call {
            args,
            stdin,
            env,
            background,
            log_path,
        };
        if let Some(out) = self.builtin(&program, &call) {
            return out;
        }
        if let Some(out) = self.image_program(&program, &call) {
            return out;
        }
        Out::err(127, format!("sh: 1: {program}: not found\n"))
    }

    /// Run `args` as a new simple command with the same stdin, env and redirection.
    fn run_args(
        &mut self,
        call: &Call<'_>,
        args: &[String],
        env: &BTreeMap<String, String>,
    ) -> Out {
        self.simple(
            args,
            call.stdin,
            env,
            call.background,
            call.log_path.clone(),
        )
    }

    fn builtin(&mut self, program: &str, call: &Call<'_>) -> Option<Out> {
        let args = call.args;
        let out = match program {
            "true" | ":" | "sleep" => Out::default(),
            "false" => Out::err(1, ""),
            "exit" => {
                self.exiting = true;
                let code = args
                    .first()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(self.last_code);
                Out {
                    code,
                    ..Out::default()
                }
            }
            "echo" => {
                let (newline, words) = match args.first().map(|s| s.as_str()) {
                    Some("-n") => (false, &args[1..]),
                    _ => (true, args),
                };
                Out::ok(format!(
                    "{}{}",
                    words.join(" "),
                    if newline { "\n" } else { "" }
                ))
            }
            "printenv" => printenv(call),
            "env" => self.env(call),
            "read" => self.read(call),
            "export" => self.export(args),
            "unset" => {
                for name in args {
                    self.vars.remove(name);
                    self.exported.remove(name);
                }
                Out::default()
            }
            "cat" => self.cat(call),
            "tail" | "head" => self.head_or_tail(program, call),
            "xargs" => self.xargs(call),
            "sort" => {
                let mut lines: Vec<&str> = call.stdin.lines().collect();
                lines.sort();
                lines_out(lines)
            }
            "grep" => grep(call),
            "base64" => base64_tool(call),
            "exec" | "command" if args.is_empty() => Out::default(),
            "exec" | "command" => self.run_args(call, args, call.env),
            "nohup" if args.is_empty() => Out::err(125, "nohup: missing operand\n"),
            "nohup" => self.run_args(call, args, call.env),
            // util-linux `setsid(1)`: the program in a new session, so it outlives the exec's session;
            // here it simply runs (a background job's work continues in simulated time anyway).
            "setsid" if args.is_empty() => Out::err(1, "setsid: no command specified\n"),
            "setsid" => self.run_args(call, args, call.env),
            "sh" | "bash" | "dash" if args.first().map(|s| s.as_str()) == Some("-c") => {
                self.subshell(call)
            }
            "hostname" => Out::ok(format!("{}\n", self.context.machine)),
            "date" => date(args, self.context.now),
            _ => return None,
        };
        Some(out)
    }

    /// `env [NAME=value…] [program args…]`.
    fn env(&mut self, call: &Call<'_>) -> Out {
        let null = call.args.first().is_some_and(|a| is_null_flag(a));
        let args = if null { &call.args[1..] } else { call.args };
        if args.is_empty() {
            return env_listing(call.env, null);
        }
        let mut env = call.env.clone();
        let mut index = 0;
        while let Some((name, value)) = args.get(index).and_then(|a| a.split_once('=')) {
            env.insert(name.into(), value.into());
            index += 1;
        }
        if index >= args.len() {
            return env_listing(&env, null);
        }
        self.run_args(call, &args[index..], &env)
    }

    /// `export NAME=value` or `export NAME` (moves a shell variable to the environment).
    fn export(&mut self, args: &[String]) -> Out {
        for arg in args {
            match arg.split_once('=') {
                Some((name, value)) => {
                    self.vars.remove(name);
                    self.exported.insert(name.to_string(), value.to_string());
                }
                None => {
                    if let Some(value) = self.vars.remove(arg) {
                        self.exported.insert(arg.clone(), value);
                    }
                }
            }
        }
        Out::default()
    }

    /// `read [-r] NAME…` (POSIX `read`): the first line of stdin into shell variables. With `IFS=`
    /// (`IFS= read -r NAME`) the line is kept whole, leading and trailing blanks included; otherwise
    /// it is split on blanks and the last name takes the rest. Exit 1 at end of input without a
    /// newline-ended line, as dash and bash do. Without `-r` a backslash escapes the next character.
    fn read(&mut self, call: &Call<'_>) -> Out {
        let raw = call.args.iter().any(|a| a == "-r");
        let names: Vec<&String> = call.args.iter().filter(|a| !a.starts_with('-')).collect();
        let Some((line, _rest)) = call.stdin.split_once('\n') else {
            for name in &names {
                self.vars.insert(name.to_string(), String::new());
            }
            return Out::err(1, "");
        };
        let line = if raw {
            line.to_string()
        } else {
            let mut unescaped = String::new();
            let mut chars = line.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => unescaped.extend(chars.next()),
                    c => unescaped.push(c),
                }
            }
            unescaped
        };
        let whole = call.env.get("IFS").is_some_and(|ifs| ifs.is_empty());
        let mut values: Vec<String> = Vec::new();
        if whole || names.len() <= 1 {
            values.push(if whole {
                line
            } else {
                line.trim_matches([' ', '\t']).to_string()
            });
        } else {
            let mut rest = line.trim_matches([' ', '\t']);
            for _ in 1..names.len() {
                match rest.split_once([' ', '\t']) {
                    Some((word, tail)) => {
                        values.push(word.to_string());
                        rest = tail.trim_start_matches([' ', '\t']);
                    }
                    None => {
                        values.push(rest.to_string());
                        rest = "";
                    }
                }
            }
            values.push(rest.to_string());
        }
        for (index, name) in names.iter().enumerate() {
            let value = values.get(index).cloned().unwrap_or_default();
            match self.exported.get_mut(name.as_str()) {
                Some(slot) => *slot = value,
                None => {
                    self.vars.insert(name.to_string(), value);
                }
            }
        }
        Out::default()
    }

    fn cat(&mut self, call: &Call<'_>) -> Out {
        if call.args.is_empty() {
            return Out::ok(call.stdin);
        }
        let mut text = String::new();
        for path in call.args {
            match self.read_file(path) {
                Some(content) => text.push_str(&content),
                None => {
                    return Out {
                        code: 1,
                        stdout: text,
                        stderr: format!("cat: {path}: No such file or directory\n"),
                        ..Out::default()
                    }
                }
            }
        }
        Out::ok(text)
    }

    /// `head`/`tail` with `-n N`, `-nN` or `-N`, on a file or stdin.
    fn head_or_tail(&mut self, program: &str, call: &Call<'_>) -> Out {
        let args = call.args;
        let mut count = 10usize;
        let mut file = None;
        let mut index = 0;
        while index < args.len() {
            if args[index] == "-n" {
                count = args
                    .get(index + 1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(10);
                index += 1;
            } else if let Some(value) = args[index].strip_prefix("-n") {
                count = value.parse().unwrap_or(10);
            } else if let Some(value) = args[index].strip_prefix('-') {
                count = value.parse().unwrap_or(10);
            } else {
                file = Some(args[index].clone());
            }
            index += 1;
        }
        let text = match file {
            Some(path) => match self.read_file(&path) {
                Some(text) => text,
                None => {
                    return Out::err(
                        1,
                        format!(
                        "{program}: cannot open '{path}' for reading: No such file or directory\n"
                    ),
                    )
                }
            },
            None => call.stdin.to_string(),
        };
        let lines: Vec<&str> = text.lines().collect();
        if program == "tail" {
            lines_out(lines[lines.len().saturating_sub(count)..].to_vec())
        } else {
            lines_out(lines.into_iter().take(count))
        }
    }

    fn xargs(&mut self, call: &Call<'_>) -> Out {
        let words: Vec<&str> = call.stdin.split_whitespace().collect();
        if call.args.is_empty() || call.args[0] == "echo" {
            return Out::ok(format!("{}\n", words.join(" ")));
        }
        let mut argv: Vec<String> = call.args.to_vec();
        argv.extend(words.iter().map(|s| s.to_string()));
        self.simple(&argv, "", call.env, call.background, call.log_path.clone())
    }

    /// `sh -c SCRIPT [$0 ARGS…]`: a nested shell with its own variables and positional arguments.
    fn subshell(&mut self, call: &Call<'_>) -> Out {
        let script = call.args.get(1).cloned().unwrap_or_default();
        let saved = (
            self.positional.clone(),
            self.exported.clone(),
            self.vars.clone(),
        );
        self.positional = call.args.iter().skip(3).cloned().collect(); // args[2] is $0
        self.exported = call.env.clone();
        self.vars.clear();
        let out = self.script(&script, call.stdin);
        (self.positional, self.exported, self.vars) = saved;
        out
    }

    /// The Stolon image's binaries.
    fn image_program(&mut self, program: &str, call: &Call<'_>) -> Option<Out> {
        let out = match program {
            "stolonctl" => stolon::stolonctl(self.context, call.args, call.env, call.stdin),
            "stolonctl-run" => stolon::stolonctl_run(self.context, call.args, call.env),
            "psql" => stolon::psql(self.context, call.args, call.env),
            "wal-g" => self.walg(call),
            "pg-role" => {
                let role = self.context.state.apps.get(&self.context.app).and_then(|a| {
                    a.machines
                        .get(&self.context.machine)
                        .map(|m| stolon::role_of(a, m))
                });
                match role.and_then(|r| r.role) {
                    Some(role) => Out::ok(format!("{role}\n")),
                    None => Out::err(1, "failed to connect to local node\n"),
                }
            }
            "ps" => Out::ok("  PID TTY          TIME CMD\n    1 ?        00:00:00 init\n  310 ?        00:00:01 start\n  321 ?        00:00:04 stolon-keeper\n  322 ?        00:00:02 stolon-sentinel\n  330 ?        00:00:00 haproxy\n"),
            _ => return None,
        };
        Some(out)
    }

    /// `wal-g backup-list|backup-push|version`.
    fn walg(&mut self, call: &Call<'_>) -> Out {
        let (command, rest) = match call.args.split_first() {
            Some((command, rest)) => (command.as_str(), rest),
            None => ("", &[][..]),
        };
        match command {
            "backup-list" => crate::walg::backup_list(rest, call.env, self.context.now),
            "backup-push" => {
                let (out, deadline) = crate::walg::backup_push(
                    self.context,
                    rest,
                    call.env,
                    call.background,
                    call.log_path.clone(),
                    self.timeout_s,
                );
                if deadline {
                    self.deadline = true;
                }
                out
            }
            "--version" | "version" => {
                Out::ok("wal-g version v2.0.0\t1eb88a5\t2022.05.20_10:45:57\tPostgreSQL\n")
            }
            "" => Out::ok("PostgreSQL backup tool\n\nUsage:\n  wal-g [command]\n"),
            other => Out::err(
                1,
                format!(
                    "flysim: `wal-g {other}` is not emulated (backup-list and backup-push are)\n"
                ),
            ),
        }
    }
}

/// `printenv [-0] [NAME…]` (exit 1 if any is unset).
fn printenv(call: &Call<'_>) -> Out {
    let null = call.args.first().is_some_and(|a| is_null_flag(a));
    let names = if null { &call.args[1..] } else { call.args };
    if names.is_empty() {
        return env_listing(call.env, null);
    }
    let mut text = String::new();
    let mut code = 0;
    for name in names {
        match call.env.get(name) {
            Some(value) => {
                text.push_str(value);
                text.push(if null { '\0' } else { '\n' });
            }
            None => code = 1,
        }
    }
    Out {
        code,
        stdout: text,
        ..Out::default()
    }
}

/// `grep [-v] PATTERN` on stdin (fixed strings).
fn grep(call: &Call<'_>) -> Out {
    let pattern = call
        .args
        .iter()
        .find(|a| !a.starts_with('-'))
        .cloned()
        .unwrap_or_default();
    let invert = call.args.iter().any(|a| a == "-v");
    let matched: String = call
        .stdin
        .lines()
        .filter(|l| l.contains(&pattern) != invert)
        .map(|l| format!("{l}\n"))
        .collect();
    Out {
        code: if matched.is_empty() { 1 } else { 0 },
        stdout: matched,
        ..Out::default()
    }
}

/// `base64 [-d]` on stdin.
fn base64_tool(call: &Call<'_>) -> Out {
    let engine = base64::engine::general_purpose::STANDARD;
    if call.args.iter().any(|a| a == "-d" || a == "--decode") {
        match engine.decode(call.stdin.trim()) {
            Ok(bytes) => Out::ok(String::from_utf8_lossy(&bytes).to_string()),
            Err(_) => Out::err(1, "base64: invalid input\n"),
        }
    } else {
        Out::ok(format!("{}\n", engine.encode(call.stdin)))
    }
}
