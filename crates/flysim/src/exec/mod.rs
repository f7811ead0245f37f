//! Exec: the request's `command` is argv. A program is run directly; `sh -c SCRIPT [ARG0 ARGS…]` runs
//! SCRIPT through a small POSIX-ish interpreter (quotes, `$VAR`, `"$@"`, `$(…)`, `|`, `&&`, `||`, `;`,
//! redirections, a trailing `&`, `VAR=value cmd`, `export`). Nothing is ever split on spaces blindly.

use std::collections::BTreeMap;

mod command;
mod programs;
mod tokenize;

use tokenize::Tok;

use crate::image::ExecContext;
use crate::sim::machine_env;

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
        let owner = context.state.apps.get(&context.app);
        let member = owner.and_then(|owner| owner.machines.get(&context.machine));
        match (owner, member) {
            (Some(owner), Some(member)) => machine_env(owner, member),
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
        // One list at a time (separated by ';', '&' or a newline), each expanded just before it runs.
        let mut out = Out::default();
        let mut lexer = tokenize::Lexer::new(script);
        loop {
            let (list, background) = match self.next_list(&mut lexer, stdin) {
                Ok(Some(next)) => next,
                Ok(None) => break,
                Err(e) => {
                    out.stderr.push_str(&format!("sh: 1: {e}\n"));
                    out.code = 2;
                    break;
                }
            };
            if list.is_empty() {
                continue;
            }
            let result = self.and_or(&list, stdin, background);
            out.stdout.push_str(&result.stdout);
            out.stderr.push_str(&result.stderr);
            out.code = if background { 0 } else { result.code };
            out.deadline |= result.deadline;
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
            let result = self.pipeline(seg, stdin, background);
            out.stdout.push_str(&result.stdout);
            out.stderr.push_str(&result.stderr);
            out.deadline |= result.deadline;
            code = result.code;
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
            let result = self.command(&c, &input, background);
            input = result.stdout.clone();
            out.stderr.push_str(&result.stderr);
            out.deadline |= result.deadline;
            out.code = result.code;
        }
        out.stdout = input;
        out
    }
}
