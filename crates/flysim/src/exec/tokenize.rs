//! The shell's lexer: quoting (`'…'`, `"…"`, `\`), expansion (`$NAME`, `${NAME}`, `$1`, `$?`, `$#`,
//! `$(…)`, `"$@"`), field splitting of unquoted expansions, comments, and operators (`;` `&` `&&` `|`
//! `||` `>` `>>` `<` `2>` `2>&1` …). Expansion happens while lexing, so a word may become several fields.
//! The script is lexed one list at a time (up to a `;`, `&` or newline), each just before it runs, as
//! dash does: `read X; echo "$X"` sees the value `read` set.

use super::Shell;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// A word: one field, or several after `"$@"` or splitting.
    Word(Vec<String>),
    Op(String),
}

/// The lexer's position and the word under construction.
pub(super) struct Lexer {
    chars: Vec<char>,
    position: usize,
    tokens: Vec<Tok>,
    /// Fields of the current word (several after `"$@"`).
    fields: Vec<String>,
    /// Something was quoted or expanded into the current word (so an empty word still counts).
    quoted: bool,
}

impl Lexer {
    pub(super) fn new(text: &str) -> Self {
        Self {
            chars: text.chars().collect(),
            position: 0,
            tokens: Vec::new(),
            fields: vec![String::new()],
            quoted: false,
        }
    }

    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.position + ahead).copied()
    }

    /// Nothing has been added to the current word yet.
    fn word_is_empty(&self) -> bool {
        !self.quoted && self.fields.len() == 1 && self.fields[0].is_empty()
    }

    fn push(&mut self, c: char) {
        if let Some(field) = self.fields.last_mut() {
            field.push(c);
        }
    }

    fn push_str(&mut self, text: &str) {
        if let Some(field) = self.fields.last_mut() {
            field.push_str(text);
        }
    }

    /// Append arguments as separate fields, the first joining the current one.
    fn push_fields(&mut self, values: &[String]) {
        for (index, value) in values.iter().enumerate() {
            if index == 0 {
                self.push_str(value);
            } else {
                self.fields.push(value.clone());
            }
        }
    }

    /// End the current word.
    fn flush(&mut self) {
        if self.quoted || self.fields.len() > 1 || !self.fields[0].is_empty() {
            self.tokens
                .push(Tok::Word(std::mem::take(&mut self.fields)));
        }
        self.fields = vec![String::new()];
        self.quoted = false;
    }

    fn comment(&mut self) {
        while self.peek(0).is_some_and(|c| c != '\n') {
            self.position += 1;
        }
    }

    fn single_quoted(&mut self) -> Result<(), String> {
        self.quoted = true;
        self.position += 1;
        while let Some(c) = self.peek(0).filter(|c| *c != '\'') {
            self.push(c);
            self.position += 1;
        }
        if self.peek(0).is_none() {
            return Err("Syntax error: Unterminated quoted string".into());
        }
        self.position += 1;
        Ok(())
    }

    /// `\c` outside quotes: `c` literally; `\` newline is a line continuation.
    fn escaped(&mut self) {
        if let Some(next) = self.peek(1) {
            if next != '\n' {
                self.push(next);
                self.quoted = true;
            }
        }
        self.position += 2;
    }

    /// An operator; a `1` or `2` right before `>` belongs to it (`2>&1`, `2>`).
    fn operator(&mut self, c: char) {
        let mut op = String::new();
        let descriptor = c == '>'
            && !self.quoted
            && self.fields.len() == 1
            && (self.fields[0] == "2" || self.fields[0] == "1");
        if descriptor {
            op.push_str(&self.fields[0]);
            self.fields[0].clear();
        } else {
            self.flush();
        }
        op.push(c);
        self.position += 1;
        if let Some(next) = self.peek(0) {
            let doubled =
                (c == '&' && next == '&') || (c == '|' && next == '|') || (c == '>' && next == '>');
            if doubled {
                op.push(next);
                self.position += 1;
            } else if c == '>' && next == '&' {
                op.push(next);
                self.position += 1;
                while let Some(digit) = self.peek(0).filter(|d| d.is_ascii_digit()) {
                    op.push(digit);
                    self.position += 1;
                }
            }
        }
        self.tokens.push(Tok::Op(op));
    }
}

impl Shell<'_, '_> {
    /// Lex and expand the next list of the script: its tokens up to a top-level `;`, `&` or newline
    /// (not part of `&&` or a redirection), and whether it ends with `&` (runs in the background).
    /// `None` at the end of the script. `$@` in double quotes yields one word per argument.
    pub(super) fn next_list(
        &mut self,
        lexer: &mut Lexer,
        stdin: &str,
    ) -> Result<Option<(Vec<Tok>, bool)>, String> {
        loop {
            let Some(c) = lexer.peek(0) else {
                lexer.flush();
                if lexer.tokens.is_empty() {
                    return Ok(None);
                }
                return Ok(Some((std::mem::take(&mut lexer.tokens), false)));
            };
            match c {
                ' ' | '\t' | '\n' => {
                    lexer.flush();
                    if c == '\n' {
                        lexer.tokens.push(Tok::Op(";".into()));
                    }
                    lexer.position += 1;
                }
                '#' if lexer.word_is_empty() => lexer.comment(),
                '\'' => lexer.single_quoted()?,
                '"' => self.double_quoted(lexer, stdin)?,
                '\\' => lexer.escaped(),
                '$' => self.unquoted_dollar(lexer, stdin)?,
                '&' | '|' | ';' | '>' | '<' => lexer.operator(c),
                _ => {
                    lexer.push(c);
                    lexer.position += 1;
                }
            }
            let ends = matches!(lexer.tokens.last(), Some(Tok::Op(op)) if op == ";" || op == "&");
            if ends {
                let background = matches!(lexer.tokens.pop(), Some(Tok::Op(op)) if op == "&");
                return Ok(Some((std::mem::take(&mut lexer.tokens), background)));
            }
        }
    }

    /// `"…"`: `\` escapes `"` `\` `$` `` ` ``; `$` expands; `"$@"` gives one field per argument.
    fn double_quoted(&mut self, lexer: &mut Lexer, stdin: &str) -> Result<(), String> {
        lexer.quoted = true;
        lexer.position += 1;
        loop {
            let Some(c) = lexer.peek(0) else {
                return Err("Syntax error: Unterminated quoted string".into());
            };
            if c == '"' {
                lexer.position += 1;
                return Ok(());
            }
            match (c, lexer.peek(1)) {
                ('\\', Some(next)) if matches!(next, '"' | '\\' | '$' | '`') => {
                    lexer.push(next);
                    lexer.position += 2;
                }
                ('$', Some('@')) => {
                    lexer.position += 2;
                    let arguments = self.positional.clone();
                    lexer.push_fields(&arguments);
                }
                ('$', _) => {
                    let (value, consumed) =
                        self.expand_dollar(&lexer.chars[lexer.position..], stdin)?;
                    lexer.push_str(&value);
                    lexer.position += consumed;
                }
                _ => {
                    lexer.push(c);
                    lexer.position += 1;
                }
            }
        }
    }

    /// `$…` outside quotes: `$@`/`$*` give one field per argument; other expansions split on whitespace.
    fn unquoted_dollar(&mut self, lexer: &mut Lexer, stdin: &str) -> Result<(), String> {
        if matches!(lexer.peek(1), Some('@' | '*')) {
            lexer.position += 2;
            let arguments = self.positional.clone();
            lexer.push_fields(&arguments);
            lexer.quoted = lexer.quoted || !arguments.is_empty();
            return Ok(());
        }
        let (value, consumed) = self.expand_dollar(&lexer.chars[lexer.position..], stdin)?;
        lexer.position += consumed;
        let mut parts = value.split_whitespace();
        if let Some(first) = parts.next() {
            lexer.push_str(first);
            for part in parts {
                lexer.fields.push(part.to_string());
            }
            lexer.quoted = true;
        }
        Ok(())
    }

    /// `$NAME`, `${NAME}`, `$1`, `$?`, `$(cmd)`. Returns (value, chars consumed).
    fn expand_dollar(&mut self, rest: &[char], stdin: &str) -> Result<(String, usize), String> {
        match rest.get(1) {
            Some('(') => {
                let mut depth = 0;
                let mut end = 1;
                while end < rest.len() {
                    match rest[end] {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    end += 1;
                }
                if end >= rest.len() {
                    return Err("Syntax error: end of file unexpected (expecting \")\")".into());
                }
                let inner: String = rest[2..end].iter().collect();
                let out = self.script(&inner, stdin);
                Ok((out.stdout.trim_end_matches('\n').to_string(), end + 1))
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
                let consumed = name.chars().count() + 1;
                Ok((self.lookup(&name), consumed))
            }
            _ => Ok(("$".into(), 1)),
        }
    }
}
