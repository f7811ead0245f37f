//! Exec: the request's `command` is argv. A program is run directly; `sh -c SCRIPT [ARG0 ARGS…]` runs
//! SCRIPT through a small POSIX-ish interpreter (quotes, `$VAR`, `"$@"`, `$(…)`, `|`, `&&`, `||`, `;`,
//! redirections, a trailing `&`, `VAR=value cmd`, `export`). Nothing is ever split on spaces blindly.

use std::collections::BTreeMap;

use crate::image::ExecContext;
use crate::sim::machine_env;
use crate::stolon;

#[derive(Debug, Clone, Default)]
pub struct Out {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
    /// The command outlived the exec timeout (answer 408 deadline_exceeded; the work continues).
    pub deadline: bool,
}

impl Out {
    pub fn ok(s: impl Into<String>) -> Self {
        Self {
            code: 0,
            stdout: s.into(),
            ..Self::default()
        }
    }
    pub fn err(code: i64, s: impl Into<String>) -> Self {
        Self {
            code,
            stderr: s.into(),
            ..Self::default()
        }
    }
}

pub(crate) struct Shell<'a, 'b> {
    pub context: &'a mut ExecContext<'b>,
    pub exported: BTreeMap<String, String>,
    pub vars: BTreeMap<String, String>,
    pub positional: Vec<String>,
    pub timeout_s: u64,
    pub deadline: bool,
    pub last_code: i64,
    pub exiting: bool,
    /// Nesting of `sh -c` and `$(…)`; bounded so a self-invoking script cannot overflow the stack.
    pub depth: u32,
}

const MAX_DEPTH: u32 = 16;

/// Run an exec request's argv on the Machine.
pub(crate) fn run(
    context: &mut ExecContext<'_>,
    argv: &[String],
    stdin: &str,
    timeout_s: u64,
) -> Out {
    let env = {
        let a = context.state.apps.get(&context.app);
        let m = a.and_then(|a| a.machines.get(&context.machine));
        match (a, m) {
            (Some(a), Some(m)) => machine_env(a, m),
            _ => BTreeMap::new(),
        }
    };
    let mut sh = Shell {
        context,
        exported: env,
        vars: BTreeMap::new(),
        positional: Vec::new(),
        timeout_s,
        deadline: false,
        last_code: 0,
        exiting: false,
        depth: 0,
    };
    let Some(prog) = argv.first() else {
        return Out::err(1, "exec: no command given\n");
    };
    let base = prog.rsplit('/').next().unwrap_or(prog);
    let mut out = if matches!(base, "sh" | "bash" | "dash") {
        match argv.get(1).map(|s| s.as_str()) {
            Some("-c") => {
                let script = argv.get(2).cloned().unwrap_or_default();
                sh.positional = argv.iter().skip(4).cloned().collect();
                sh.script(&script, stdin)
            }
            _ => Out::err(
                2,
                format!("{base}: flysim runs `{base} -c SCRIPT` only (no interactive shell)\n"),
            ),
        }
    } else {
        let env = sh.exported.clone();
        sh.simple(argv, stdin, &env, false, None)
    };
    out.deadline |= sh.deadline;
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(Vec<String>),
    Op(String),
}

impl Shell<'_, '_> {
    fn lookup(&self, name: &str) -> String {
        if let Ok(n) = name.parse::<usize>() {
            if n == 0 {
                return "sh".into();
            }
            return self.positional.get(n - 1).cloned().unwrap_or_default();
        }
        if name == "?" {
            return self.last_code.to_string();
        }
        if name == "#" {
            return self.positional.len().to_string();
        }
        self.vars
            .get(name)
            .or_else(|| self.exported.get(name))
            .cloned()
            .unwrap_or_default()
    }

    /// Tokenise with quoting and expansion. `$@` in double quotes yields one word per argument.
    fn tokenize(&mut self, s: &str, stdin: &str) -> Result<Vec<Tok>, String> {
        let chars: Vec<char> = s.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        // A word under construction: list of fields (for "$@"); `has` = something was quoted/expanded.
        let mut fields: Vec<String> = vec![String::new()];
        let mut has = false;
        let flush = |toks: &mut Vec<Tok>, fields: &mut Vec<String>, has: &mut bool| {
            if *has || fields.len() > 1 || !fields[0].is_empty() {
                toks.push(Tok::Word(std::mem::take(fields)));
            }
            *fields = vec![String::new()];
            *has = false;
        };
        while i < chars.len() {
            let c = chars[i];
            match c {
                ' ' | '\t' | '\n' => {
                    flush(&mut toks, &mut fields, &mut has);
                    if c == '\n' {
                        toks.push(Tok::Op(";".into()));
                    }
                    i += 1;
                }
                '#' if !has && fields.len() == 1 && fields[0].is_empty() => {
                    while i < chars.len() && chars[i] != '\n' {
                        i += 1;
                    }
                }
                '\'' => {
                    has = true;
                    i += 1;
                    while i < chars.len() && chars[i] != '\'' {
                        if let Some(f) = fields.last_mut() {
                            f.push(chars[i]);
                        }
                        i += 1;
                    }
                    if i >= chars.len() {
                        return Err("Syntax error: Unterminated quoted string".into());
                    }
                    i += 1;
                }
                '"' => {
                    has = true;
                    i += 1;
                    loop {
                        if i >= chars.len() {
                            return Err("Syntax error: Unterminated quoted string".into());
                        }
                        let d = chars[i];
                        if d == '"' {
                            i += 1;
                            break;
                        }
                        if d == '\\'
                            && i + 1 < chars.len()
                            && matches!(chars[i + 1], '"' | '\\' | '$' | '`')
                        {
                            if let Some(f) = fields.last_mut() {
                                f.push(chars[i + 1]);
                            }
                            i += 2;
                            continue;
                        }
                        if d == '$' {
                            if chars.get(i + 1) == Some(&'@') {
                                // "$@": one field per positional argument.
                                i += 2;
                                let args = self.positional.clone();
                                if args.is_empty() {
                                    continue;
                                }
                                let last = fields.len() - 1;
                                fields[last].push_str(&args[0]);
                                for a in &args[1..] {
                                    fields.push(a.clone());
                                }
                                continue;
                            }
                            let (val, n) = self.expand_dollar(&chars[i..], stdin)?;
                            if let Some(f) = fields.last_mut() {
                                f.push_str(&val);
                            }
                            i += n;
                            continue;
                        }
                        if let Some(f) = fields.last_mut() {
                            f.push(d);
                        }
                        i += 1;
                    }
                }
                '\\' => {
                    if let Some(n) = chars.get(i + 1) {
                        if *n != '\n' {
                            if let Some(f) = fields.last_mut() {
                                f.push(*n);
                            }
                            has = true;
                        }
                    }
                    i += 2;
                }
                '$' => {
                    if chars.get(i + 1) == Some(&'@') || chars.get(i + 1) == Some(&'*') {
                        // unquoted $@: fields split
                        i += 2;
                        let args = self.positional.clone();
                        for (k, a) in args.iter().enumerate() {
                            if k == 0 {
                                if let Some(f) = fields.last_mut() {
                                    f.push_str(a);
                                }
                            } else {
                                fields.push(a.clone());
                            }
                        }
                        has = has || !args.is_empty();
                        continue;
                    }
                    let (val, n) = self.expand_dollar(&chars[i..], stdin)?;
                    i += n;
                    // Unquoted expansion: field splitting on whitespace.
                    let mut parts = val.split_whitespace();
                    if let Some(first) = parts.next() {
                        if let Some(f) = fields.last_mut() {
                            f.push_str(first);
                        }
                        for p in parts {
                            fields.push(p.to_string());
                        }
                        has = true;
                    }
                }
                '&' | '|' | ';' | '>' | '<' => {
                    // `2>&1` / `2>`: a digit right before '>' belongs to the operator.
                    let mut op = String::new();
                    if c == '>'
                        && !has
                        && fields.len() == 1
                        && (fields[0] == "2" || fields[0] == "1")
                    {
                        op.push_str(&fields[0]);
                        fields[0].clear();
                    } else {
                        flush(&mut toks, &mut fields, &mut has);
                    }
                    op.push(c);
                    i += 1;
                    if let Some(&n) = chars.get(i) {
                        if (c == '&' && n == '&')
                            || (c == '|' && n == '|')
                            || (c == '>' && n == '>')
                        {
                            op.push(n);
                            i += 1;
                        } else if c == '>' && n == '&' {
                            op.push(n);
                            i += 1;
                            while let Some(&d) = chars.get(i) {
                                if d.is_ascii_digit() {
                                    op.push(d);
                                    i += 1;
                                } else {
                                    break;
                                }
                            }
                        }
                    }
                    toks.push(Tok::Op(op));
                }
                _ => {
                    if let Some(f) = fields.last_mut() {
                        f.push(c);
                    }
                    i += 1;
                }
            }
        }
        flush(&mut toks, &mut fields, &mut has);
        Ok(toks)
    }

    /// `$NAME`, `${NAME}`, `$1`, `$?`, `$(cmd)`. Returns (value, chars consumed).
    fn expand_dollar(&mut self, rest: &[char], stdin: &str) -> Result<(String, usize), String> {
        match rest.get(1) {
            Some('(') => {
                let mut depth = 0;
                let mut j = 1;
                while j < rest.len() {
                    match rest[j] {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                if j >= rest.len() {
                    return Err("Syntax error: end of file unexpected (expecting \")\")".into());
                }
                let inner: String = rest[2..j].iter().collect();
                let out = self.script(&inner, stdin);
                Ok((out.stdout.trim_end_matches('\n').to_string(), j + 1))
            }
            Some('{') => {
                let end = rest
                    .iter()
                    .position(|c| *c == '}')
                    .ok_or("Bad substitution")?;
                let name: String = rest[2..end].iter().collect();
                Ok((self.lookup(&name), end + 1))
            }
            Some(c) if c.is_ascii_digit() || *c == '?' || *c == '#' => {
                Ok((self.lookup(&c.to_string()), 2))
            }
            Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                let name: String = rest[1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .collect();
                let n = name.chars().count() + 1;
                Ok((self.lookup(&name), n))
            }
            _ => Ok(("$".into(), 1)),
        }
    }

    pub(crate) fn script(&mut self, script: &str, stdin: &str) -> Out {
        if self.depth >= MAX_DEPTH {
            return Out::err(2, "sh: flysim: nesting too deep\n");
        }
        self.depth += 1;
        let out = self.script_inner(script, stdin);
        self.depth -= 1;
        out
    }

    fn script_inner(&mut self, script: &str, stdin: &str) -> Out {
        let toks = match self.tokenize(script, stdin) {
            Ok(t) => t,
            Err(e) => return Out::err(2, format!("sh: 1: {e}\n")),
        };
        // Split into and-or lists separated by ';' or '&'.
        let mut out = Out::default();
        let mut list: Vec<Tok> = Vec::new();
        let mut lists: Vec<(Vec<Tok>, bool)> = Vec::new();
        for t in toks {
            match &t {
                Tok::Op(op) if op == ";" || op == "&" => {
                    lists.push((std::mem::take(&mut list), op == "&"));
                }
                _ => list.push(t),
            }
        }
        if !list.is_empty() {
            lists.push((list, false));
        }
        for (l, background) in lists {
            if l.is_empty() {
                continue;
            }
            let r = self.and_or(&l, stdin, background);
            out.stdout.push_str(&r.stdout);
            out.stderr.push_str(&r.stderr);
            out.code = if background { 0 } else { r.code };
            out.deadline |= r.deadline;
            self.last_code = out.code;
            if self.exiting {
                break;
            }
        }
        out
    }

    fn and_or(&mut self, toks: &[Tok], stdin: &str, background: bool) -> Out {
        let mut out = Out::default();
        let mut segs: Vec<(String, Vec<Tok>)> = vec![(String::new(), Vec::new())];
        for t in toks {
            match t {
                Tok::Op(op) if op == "&&" || op == "||" => segs.push((op.clone(), Vec::new())),
                _ => {
                    if let Some(s) = segs.last_mut() {
                        s.1.push(t.clone())
                    }
                }
            }
        }
        let mut code = 0;
        for (i, (op, seg)) in segs.iter().enumerate() {
            if self.exiting {
                break;
            }
            if i > 0 && ((op == "&&" && code != 0) || (op == "||" && code == 0)) {
                continue;
            }
            let r = self.pipeline(seg, stdin, background);
            out.stdout.push_str(&r.stdout);
            out.stderr.push_str(&r.stderr);
            out.deadline |= r.deadline;
            code = r.code;
            self.last_code = code;
        }
        out.code = code;
        out
    }

    fn pipeline(&mut self, toks: &[Tok], stdin: &str, background: bool) -> Out {
        let mut cmds: Vec<Vec<Tok>> = vec![Vec::new()];
        for t in toks {
            match t {
                Tok::Op(op) if op == "|" => cmds.push(Vec::new()),
                _ => {
                    if let Some(c) = cmds.last_mut() {
                        c.push(t.clone())
                    }
                }
            }
        }
        let mut input = stdin.to_string();
        let mut out = Out::default();
        for c in cmds {
            let r = self.command(&c, &input, background);
            input = r.stdout.clone();
            out.stderr.push_str(&r.stderr);
            out.deadline |= r.deadline;
            out.code = r.code;
        }
        out.stdout = input;
        out
    }

    fn command(&mut self, toks: &[Tok], stdin: &str, background: bool) -> Out {
        let mut words: Vec<String> = Vec::new();
        let mut redirect_out: Option<(String, bool)> = None;
        let mut err_to_out = false;
        let mut err_null = false;
        let mut input = stdin.to_string();
        let mut i = 0;
        while i < toks.len() {
            match &toks[i] {
                Tok::Word(f) => words.extend(f.iter().cloned()),
                Tok::Op(op) => {
                    let target = match toks.get(i + 1) {
                        Some(Tok::Word(f)) => f.join(" "),
                        _ => String::new(),
                    };
                    match op.as_str() {
                        ">" | "1>" | ">>" | "1>>" => {
                            redirect_out = Some((target, op.ends_with(">>")));
                            i += 1;
                        }
                        "2>" | "2>>" => {
                            err_null = true;
                            i += 1;
                        }
                        "2>&1" => err_to_out = true,
                        ">&2" | "1>&2" => {}
                        "<" => {
                            input = self.read_file(&target).unwrap_or_default();
                            i += 1;
                        }
                        _ => {
                            return Out::err(
                                2,
                                format!("sh: 1: Syntax error: \"{op}\" unexpected\n"),
                            );
                        }
                    }
                }
            }
            i += 1;
        }
        // Leading VAR=value assignments.
        let mut env = self.exported.clone();
        let mut k = 0;
        let mut assigns = Vec::new();
        while k < words.len() {
            match words[k].split_once('=') {
                Some((n, v))
                    if !n.is_empty()
                        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !n.starts_with(|c: char| c.is_ascii_digit()) =>
                {
                    assigns.push((n.to_string(), v.to_string()));
                    k += 1;
                }
                _ => break,
            }
        }
        let argv: Vec<String> = words[k..].to_vec();
        if argv.is_empty() {
            for (n, v) in assigns {
                if let Some(slot) = self.exported.get_mut(&n) {
                    *slot = v;
                } else {
                    self.vars.insert(n, v);
                }
            }
            return Out::default();
        }
        for (n, v) in assigns {
            env.insert(n, v);
        }
        let log_path = redirect_out.as_ref().map(|(p, _)| p.clone());
        let mut r = self.simple(&argv, &input, &env, background, log_path);
        if err_to_out {
            r.stdout.push_str(&std::mem::take(&mut r.stderr));
        }
        if err_null {
            r.stderr.clear();
        }
        if let Some((path, append)) = redirect_out {
            let text = std::mem::take(&mut r.stdout);
            if path != "/dev/null" {
                self.write_file(&path, &text, append);
            }
        }
        r
    }

    fn volume_files(&mut self) -> Option<&mut BTreeMap<String, String>> {
        let app = self.context.app.clone();
        let machine = self.context.machine.clone();
        let a = self.context.state.apps.get_mut(&app)?;
        let vol = a.machines.get(&machine)?.volume.clone()?;
        a.volumes.get_mut(&vol).map(|v| &mut v.files)
    }

    fn read_file(&mut self, path: &str) -> Option<String> {
        if path == "/fly/cluster-spec.json" {
            return Some(stolon::default_spec().to_string());
        }
        self.volume_files()?.get(path).cloned()
    }

    fn write_file(&mut self, path: &str, text: &str, append: bool) {
        if !path.starts_with("/data/") {
            return; // the rootfs is ephemeral; flysim keeps only /data
        }
        if let Some(files) = self.volume_files() {
            let e = files.entry(path.to_string()).or_default();
            if !append {
                e.clear();
            }
            e.push_str(text);
        }
    }

    /// One program with its argv. Builtins, then the image's binaries.
    pub(crate) fn simple(
        &mut self,
        argv: &[String],
        stdin: &str,
        env: &BTreeMap<String, String>,
        background: bool,
        log_path: Option<String>,
    ) -> Out {
        let prog = argv[0].rsplit('/').next().unwrap_or(&argv[0]).to_string();
        let args = &argv[1..];
        match prog.as_str() {
            "true" | ":" | "sleep" => Out::default(),
            "false" => Out::err(1, ""),
            "exit" => {
                self.exiting = true;
                let code = args.first().and_then(|s| s.parse().ok()).unwrap_or(self.last_code);
                Out { code, ..Out::default() }
            }
            "echo" => {
                let (nl, rest) = match args.first().map(|s| s.as_str()) {
                    Some("-n") => (false, &args[1..]),
                    _ => (true, args),
                };
                Out::ok(format!("{}{}", rest.join(" "), if nl { "\n" } else { "" }))
            }
            "printenv" => {
                if args.is_empty() {
                    Out::ok(env.iter().map(|(k, v)| format!("{k}={v}\n")).collect::<String>())
                } else {
                    let mut s = String::new();
                    let mut code = 0;
                    for a in args {
                        match env.get(a) {
                            Some(v) => {
                                s.push_str(v);
                                s.push('\n');
                            }
                            None => code = 1,
                        }
                    }
                    Out { code, stdout: s, ..Out::default() }
                }
            }
            "env" => {
                if args.is_empty() {
                    Out::ok(env.iter().map(|(k, v)| format!("{k}={v}\n")).collect::<String>())
                } else {
                    let mut env2 = env.clone();
                    let mut k = 0;
                    while k < args.len() {
                        match args[k].split_once('=') {
                            Some((n, v)) => {
                                env2.insert(n.into(), v.into());
                                k += 1;
                            }
                            None => break,
                        }
                    }
                    if k >= args.len() {
                        return Out::ok(env2.iter().map(|(k, v)| format!("{k}={v}\n")).collect::<String>());
                    }
                    self.simple(&args[k..], stdin, &env2, background, log_path)
                }
            }
            "export" => {
                for a in args {
                    match a.split_once('=') {
                        Some((n, v)) => {
                            self.vars.remove(n);
                            self.exported.insert(n.to_string(), v.to_string());
                        }
                        None => {
                            if let Some(v) = self.vars.remove(a) {
                                self.exported.insert(a.clone(), v);
                            }
                        }
                    }
                }
                Out::default()
            }
            "unset" => {
                for a in args {
                    self.vars.remove(a);
                    self.exported.remove(a);
                }
                Out::default()
            }
            "cat" => {
                if args.is_empty() {
                    return Out::ok(stdin);
                }
                let mut s = String::new();
                for a in args {
                    match self.read_file(a) {
                        Some(t) => s.push_str(&t),
                        None => return Out { code: 1, stdout: s, stderr: format!("cat: {a}: No such file or directory\n"), ..Out::default() },
                    }
                }
                Out::ok(s)
            }
            "tail" | "head" => {
                let mut n = 10usize;
                let mut file = None;
                let mut k = 0;
                while k < args.len() {
                    if args[k] == "-n" {
                        n = args.get(k + 1).and_then(|s| s.parse().ok()).unwrap_or(10);
                        k += 1;
                    } else if let Some(v) = args[k].strip_prefix("-n") {
                        n = v.parse().unwrap_or(10);
                    } else if let Some(v) = args[k].strip_prefix('-') {
                        n = v.parse().unwrap_or(10);
                    } else {
                        file = Some(args[k].clone());
                    }
                    k += 1;
                }
                let text = match file {
                    Some(f) => match self.read_file(&f) {
                        Some(t) => t,
                        None => return Out::err(1, format!("{prog}: cannot open '{f}' for reading: No such file or directory\n")),
                    },
                    None => stdin.to_string(),
                };
                let lines: Vec<&str> = text.lines().collect();
                let pick: Vec<&str> = if prog == "tail" {
                    lines[lines.len().saturating_sub(n)..].to_vec()
                } else {
                    lines.into_iter().take(n).collect()
                };
                Out::ok(pick.iter().map(|l| format!("{l}\n")).collect::<String>())
            }
            "xargs" => {
                let words: Vec<&str> = stdin.split_whitespace().collect();
                if args.is_empty() || args[0] == "echo" {
                    Out::ok(format!("{}\n", words.join(" ")))
                } else {
                    let mut argv2: Vec<String> = args.to_vec();
                    argv2.extend(words.iter().map(|s| s.to_string()));
                    self.simple(&argv2, "", env, background, log_path)
                }
            }
            "sort" => {
                let mut lines: Vec<&str> = stdin.lines().collect();
                lines.sort();
                Out::ok(lines.iter().map(|l| format!("{l}\n")).collect::<String>())
            }
            "grep" => {
                let pat = args.iter().find(|a| !a.starts_with('-')).cloned().unwrap_or_default();
                let invert = args.iter().any(|a| a == "-v");
                let m: String = stdin
                    .lines()
                    .filter(|l| l.contains(&pat) != invert)
                    .map(|l| format!("{l}\n"))
                    .collect();
                Out { code: if m.is_empty() { 1 } else { 0 }, stdout: m, ..Out::default() }
            }
            "base64" => {
                use base64::Engine as _;
                if args.iter().any(|a| a == "-d" || a == "--decode") {
                    match base64::engine::general_purpose::STANDARD.decode(stdin.trim()) {
                        Ok(b) => Out::ok(String::from_utf8_lossy(&b).to_string()),
                        Err(_) => Out::err(1, "base64: invalid input\n"),
                    }
                } else {
                    Out::ok(format!("{}\n", base64::engine::general_purpose::STANDARD.encode(stdin)))
                }
            }
            "exec" | "command" => {
                if args.is_empty() {
                    return Out::default();
                }
                self.simple(args, stdin, env, background, log_path)
            }
            "nohup" => {
                if args.is_empty() {
                    return Out::err(125, "nohup: missing operand\n");
                }
                self.simple(args, stdin, env, background, log_path)
            }
            "sh" | "bash" | "dash" if args.first().map(|s| s.as_str()) == Some("-c") => {
                let script = args.get(1).cloned().unwrap_or_default();
                let saved = (self.positional.clone(), self.exported.clone(), self.vars.clone());
                self.positional = args.iter().skip(3).cloned().collect(); // args[2] is $0
                self.exported = env.clone();
                self.vars.clear();
                let r = self.script(&script, stdin);
                (self.positional, self.exported, self.vars) = saved;
                r
            }
            "stolonctl" => stolon::stolonctl(self.context, args, env, stdin),
            "stolonctl-run" => stolon::stolonctl_run(self.context, args, env),
            "psql" => stolon::psql(self.context, args, env),
            "wal-g" => self.walg(args, env, background, log_path),
            "pg-role" => {
                let (app, machine) = (self.context.app.clone(), self.context.machine.clone());
                let role = self
                    .context
                    .state
                    .apps
                    .get(&app)
                    .and_then(|a| a.machines.get(&machine).map(|m| stolon::role_of(a, m)));
                match role.and_then(|r| r.role) {
                    Some(r) => Out::ok(format!("{r}\n")),
                    None => Out::err(1, "failed to connect to local node\n"),
                }
            }
            "hostname" => Out::ok(format!("{}\n", self.context.machine)),
            "date" => Out::ok(format!("{}\n", crate::clock::rfc3339(self.context.now))),
            "ps" => Out::ok("  PID TTY          TIME CMD\n    1 ?        00:00:00 init\n  310 ?        00:00:01 start\n  321 ?        00:00:04 stolon-keeper\n  322 ?        00:00:02 stolon-sentinel\n  330 ?        00:00:00 haproxy\n"),
            other => Out::err(127, format!("sh: 1: {other}: not found\n")),
        }
    }

    fn walg(
        &mut self,
        args: &[String],
        env: &BTreeMap<String, String>,
        background: bool,
        log_path: Option<String>,
    ) -> Out {
        let sub = args.first().map(|s| s.as_str()).unwrap_or("");
        let rest = if args.is_empty() { &[][..] } else { &args[1..] };
        match sub {
            "backup-list" => crate::walg::backup_list(rest, env, self.context.now),
            "backup-push" => {
                let (out, deadline) = crate::walg::backup_push(
                    self.context,
                    rest,
                    env,
                    background,
                    log_path,
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
