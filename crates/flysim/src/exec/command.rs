//! One simple command of a pipeline: its redirections (`>`, `>>`, `2>`, `2>&1`, `<`), leading
//! `VAR=value` assignments, and the files it reads and writes (only `/data`, the volume, persists).

use std::collections::BTreeMap;

use super::tokenize::Tok;
use super::{Out, Shell};
use crate::stolon;

/// What the redirections of a command ask for.
#[derive(Default)]
struct Redirections {
    /// `> path` or `>> path` (append).
    stdout_to: Option<(String, bool)>,
    stderr_to_stdout: bool,
    stderr_discarded: bool,
}

/// `NAME=value` with a valid shell name.
fn assignment(word: &str) -> Option<(String, String)> {
    let (name, value) = word.split_once('=')?;
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    valid.then(|| (name.to_string(), value.to_string()))
}

impl Shell<'_, '_> {
    pub(super) fn command(&mut self, tokens: &[Tok], stdin: &str, background: bool) -> Out {
        let mut input = stdin.to_string();
        let (words, redirections) = match self.redirections(tokens, &mut input) {
            Ok(parsed) => parsed,
            Err(refused) => return refused,
        };
        let assignments: Vec<(String, String)> =
            words.iter().map_while(|word| assignment(word)).collect();
        let argv = &words[assignments.len()..];
        if argv.is_empty() {
            // Plain assignments set shell variables (or update exported ones).
            for (name, value) in assignments {
                match self.exported.get_mut(&name) {
                    Some(slot) => *slot = value,
                    None => {
                        self.vars.insert(name, value);
                    }
                }
            }
            return Out::default();
        }
        let mut env = self.exported.clone();
        env.extend(assignments);
        let log_path = redirections
            .stdout_to
            .as_ref()
            .map(|(path, _)| path.clone());
        let out = self.simple(argv, &input, &env, background, log_path);
        self.redirect(out, redirections)
    }

    /// Words and redirections of a command; `<` reads its file into `input`.
    fn redirections(
        &mut self,
        tokens: &[Tok],
        input: &mut String,
    ) -> Result<(Vec<String>, Redirections), Out> {
        let mut words: Vec<String> = Vec::new();
        let mut redirections = Redirections::default();
        let mut index = 0;
        while index < tokens.len() {
            match &tokens[index] {
                Tok::Word(fields) => words.extend(fields.iter().cloned()),
                Tok::Op(op) => {
                    let target = match tokens.get(index + 1) {
                        Some(Tok::Word(fields)) => fields.join(" "),
                        _ => String::new(),
                    };
                    match op.as_str() {
                        ">" | "1>" | ">>" | "1>>" => {
                            redirections.stdout_to = Some((target, op.ends_with(">>")));
                            index += 1;
                        }
                        "2>" | "2>>" => {
                            redirections.stderr_discarded = true;
                            index += 1;
                        }
                        "2>&1" => redirections.stderr_to_stdout = true,
                        ">&2" | "1>&2" => {}
                        "<" => {
                            *input = self.read_file(&target).unwrap_or_default();
                            index += 1;
                        }
                        _ => {
                            return Err(Out::err(
                                2,
                                format!("sh: 1: Syntax error: \"{op}\" unexpected\n"),
                            ));
                        }
                    }
                }
            }
            index += 1;
        }
        Ok((words, redirections))
    }

    /// Apply the redirections to a finished command's output.
    fn redirect(&mut self, mut out: Out, redirections: Redirections) -> Out {
        if redirections.stderr_to_stdout {
            out.stdout.push_str(&std::mem::take(&mut out.stderr));
        }
        if redirections.stderr_discarded {
            out.stderr.clear();
        }
        if let Some((path, append)) = redirections.stdout_to {
            let text = std::mem::take(&mut out.stdout);
            if path != "/dev/null" {
                self.write_file(&path, &text, append);
            }
        }
        out
    }

    fn volume_files(&mut self) -> Option<&mut BTreeMap<String, String>> {
        let owner = self.context.state.apps.get_mut(&self.context.app)?;
        let volume = owner.machines.get(&self.context.machine)?.volume.clone()?;
        owner.volumes.get_mut(&volume).map(|v| &mut v.files)
    }

    pub(super) fn read_file(&mut self, path: &str) -> Option<String> {
        if path == "/fly/cluster-spec.json" {
            let owner = self.context.state.apps.get(&self.context.app)?;
            let member = owner.machines.get(&self.context.machine)?;
            let sizing = stolon::Sizing::of(owner, member);
            return Some(stolon::init_config(sizing).to_string());
        }
        self.volume_files()?.get(path).cloned()
    }

    fn write_file(&mut self, path: &str, text: &str, append: bool) {
        if !path.starts_with("/data/") {
            return; // the rootfs is ephemeral; flysim keeps only /data
        }
        if let Some(files) = self.volume_files() {
            let file = files.entry(path.to_string()).or_default();
            if !append {
                file.clear();
            }
            file.push_str(text);
        }
    }
}
