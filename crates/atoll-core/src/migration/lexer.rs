//! PostgreSQL's token rules (`src/backend/parser/scan.l`) as far as they decide where a
//! statement ends and what its words are, with `standard_conforming_strings` on (the
//! default, and what the migration runner sets for each step).
//!
//! Where PostgreSQL versions differ (numbers followed by letters: `1e'x'` is `1` then an
//! `E''` string up to 14, an error from 15), the lexer follows the version that accepts the
//! text: a text PostgreSQL refuses runs nothing, since the server parses a whole simple
//! query before running any of it.

use super::sql::{Statement, Token};
use smol_str::{SmolStrBuilder, StrExt};

/// Something opened and never closed; PostgreSQL refuses the whole text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{what} opened at line {line} is never closed")]
pub struct Unterminated {
    /// What was opened.
    pub what: Opened,
    /// 1-based line where it starts.
    pub line: usize,
}

/// The kinds of text that run until a closing delimiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// `'...'`, `E'...'`, `U&'...'`, `B'...'`, `X'...'`, `N'...'`.
    String,
    /// `"..."` or `U&"..."`.
    QuotedIdentifier,
    /// `$$...$$` or `$tag$...$tag$`.
    DollarQuote,
    /// `/* ... */` (nested).
    Comment,
}

impl std::fmt::Display for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Opened::String => "a quoted string",
            Opened::QuotedIdentifier => "a quoted identifier",
            Opened::DollarQuote => "a dollar-quoted string",
            Opened::Comment => "a /* comment",
        })
    }
}

/// PostgreSQL's whitespace: `[ \t\n\r\f\v]`, nothing else (a no-break space is an
/// identifier character there).
pub(crate) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c' | '\x0b')
}

/// `[A-Za-z\200-\377_]`: every non-ASCII character may start an identifier.
fn ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

/// `[A-Za-z\200-\377_0-9$]`.
fn ident_cont(c: char) -> bool {
    ident_start(c) || c.is_ascii_digit() || c == '$'
}

/// A token and where its text ends; `Semicolon` ends a statement unless inside a body.
enum Lexeme {
    Token(Token),
    Semicolon,
    /// Whitespace or a comment.
    Skip,
}

/// A cursor over a text's bytes. Every delimiter PostgreSQL's lexer knows is ASCII and
/// every non-ASCII character is an identifier character, so a UTF-8 text is scanned byte by
/// byte (bytes of a multi-byte character read as one identifier character, `NON_ASCII`) and
/// tokens and statements are slices of it: no copy of the text per character.
pub(crate) struct Lexer<'a> {
    sql: &'a str,
    bytes: &'a [u8],
    i: usize,
    /// The current statement's comments, as written.
    comments: Vec<String>,
}

/// What a byte of a multi-byte UTF-8 character reads as: an identifier character.
const NON_ASCII: char = '\u{80}';

impl<'a> Lexer<'a> {
    pub(crate) fn new(sql: &'a str) -> Lexer<'a> {
        Lexer {
            sql,
            bytes: sql.as_bytes(),
            i: 0,
            comments: Vec::new(),
        }
    }

    fn at(&self, k: usize) -> Option<char> {
        let b = *self.bytes.get(k)?;
        Some(if b.is_ascii() {
            char::from(b)
        } else {
            NON_ASCII
        })
    }

    /// The text from `from` to `to`. Tokens start and end at ASCII bytes or at the ends
    /// of identifiers (which take every non-ASCII byte), so these are character
    /// boundaries; `get` keeps a mistake from panicking all the same.
    fn text(&self, from: usize, to: usize) -> &'a str {
        self.sql
            .get(from..to.min(self.sql.len()))
            .unwrap_or_default()
    }

    fn unterminated(&self, what: Opened, from: usize) -> Unterminated {
        let line = 1 + self.bytes[..from].iter().filter(|c| **c == b'\n').count();
        Unterminated { what, line }
    }

    /// Splits into statements at top-level semicolons (see [`super::sql::statements`]).
    pub(crate) fn statements(mut self) -> Result<Vec<Statement>, Unterminated> {
        let mut out = Vec::new();
        let mut body = Body::default();
        // Room for a short statement's tokens without growing.
        let mut tokens = Vec::with_capacity(16);
        let mut start = 0;
        while self.i < self.bytes.len() {
            let lexeme = self.lexeme()?;
            match lexeme {
                Lexeme::Semicolon if body.open() => {}
                Lexeme::Semicolon => {
                    self.flush(start, self.i - 1, &mut tokens, &mut out);
                    body = Body::default();
                    start = self.i;
                }
                Lexeme::Token(t) => {
                    body.see(&tokens, &t);
                    tokens.push(t);
                }
                Lexeme::Skip => {}
            }
        }
        self.flush(start, self.bytes.len(), &mut tokens, &mut out);
        Ok(out)
    }

    fn flush(&mut self, from: usize, to: usize, tokens: &mut Vec<Token>, out: &mut Vec<Statement>) {
        if tokens.is_empty() {
            return;
        }
        out.push(Statement {
            text: self.text(from, to).trim_matches(is_space).to_string(),
            tokens: std::mem::take(tokens),
            comments: std::mem::take(&mut self.comments),
        });
    }

    /// The literal that ends at `self.i`, as written.
    fn literal(&self, from: usize) -> Token {
        Token::Literal(self.text(from, self.i).into())
    }

    /// The next lexeme from `self.i`, which it moves past.
    fn lexeme(&mut self) -> Result<Lexeme, Unterminated> {
        let from = self.i;
        let c = self.at(from).unwrap_or(' ');
        let next = self.at(from + 1);
        Ok(match c {
            ';' => {
                self.i += 1;
                Lexeme::Semicolon
            }
            c if is_space(c) => {
                self.i += 1;
                Lexeme::Skip
            }
            '-' if next == Some('-') => {
                self.line_comment();
                // Trailing whitespace is not kept: a statement's text is trimmed, and a
                // text split again must give the same comments.
                let c = self.text(from, self.i);
                self.comments.push(c.trim_end_matches(is_space).to_string());
                Lexeme::Skip
            }
            '/' if next == Some('*') => {
                self.block_comment()?;
                self.comments.push(self.text(from, self.i).to_string());
                Lexeme::Skip
            }
            '\'' => {
                self.string(from, false)?;
                Lexeme::Token(self.literal(from))
            }
            '"' => Lexeme::Token(self.quoted_identifier(from)?),
            '$' if self.dollar_tag(from).is_some() => {
                self.dollar_quoted(from)?;
                Lexeme::Token(self.literal(from))
            }
            c if c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())) => {
                self.number();
                Lexeme::Token(self.literal(from))
            }
            c if ident_start(c) => self.word_or_prefixed(from)?,
            c => {
                self.i += 1;
                Lexeme::Token(Token::Punct(c))
            }
        })
    }

    /// `--` up to the end of the line: `\n` or `\r`, as PostgreSQL ends it.
    fn line_comment(&mut self) {
        while self.i < self.bytes.len() && !matches!(self.bytes[self.i], b'\n' | b'\r') {
            self.i += 1;
        }
    }

    /// `/* ... */`, nested as in PostgreSQL.
    fn block_comment(&mut self) -> Result<(), Unterminated> {
        let from = self.i;
        let mut depth = 0usize;
        while self.i < self.bytes.len() {
            match (self.at(self.i).unwrap_or(' '), self.at(self.i + 1)) {
                ('/', Some('*')) => {
                    depth += 1;
                    self.i += 2;
                }
                ('*', Some('/')) => {
                    depth -= 1;
                    self.i += 2;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => self.i += 1,
            }
        }
        Err(self.unterminated(Opened::Comment, from))
    }

    /// A string whose opening quote is at `self.i`; `backslash`: an `E''` string, where a
    /// backslash escapes the next character. `''` is a quote inside any string. Strings
    /// separated by whitespace holding a newline are one string, in the first one's mode.
    fn string(&mut self, from: usize, backslash: bool) -> Result<(), Unterminated> {
        self.i += 1;
        loop {
            match self.at(self.i) {
                None => return Err(self.unterminated(Opened::String, from)),
                Some('\\') if backslash => self.i += 2,
                Some('\'') if self.at(self.i + 1) == Some('\'') => self.i += 2,
                Some('\'') => {
                    self.i += 1;
                    match self.continuation() {
                        Some(quote) => self.i = quote + 1,
                        None => return Ok(()),
                    }
                }
                Some(_) => self.i += 1,
            }
        }
    }

    /// scan.l's `{whitespace_with_newline}{quote}` after a closing quote: the index of the
    /// quote that continues the string, if there is one.
    fn continuation(&self) -> Option<usize> {
        let mut j = self.i;
        let mut newline = false;
        loop {
            match (self.at(j), self.at(j + 1)) {
                (Some('\n' | '\r'), _) => {
                    newline = true;
                    j += 1;
                }
                (Some(c), _) if is_space(c) => j += 1,
                (Some('-'), Some('-')) => {
                    while self.at(j).is_some_and(|c| !matches!(c, '\n' | '\r')) {
                        j += 1;
                    }
                    // After the newline, a comment counts only with its own newline.
                    if newline && self.at(j).is_none() {
                        return None;
                    }
                }
                (Some('\''), _) if newline => return Some(j),
                _ => return None,
            }
        }
    }

    /// `"..."` (`""` is a quote inside), starting at `from`.
    fn quoted_identifier(&mut self, from: usize) -> Result<Token, Unterminated> {
        self.i += 1;
        let mut name = SmolStrBuilder::new();
        let mut run = self.i;
        loop {
            match self.at(self.i) {
                None => return Err(self.unterminated(Opened::QuotedIdentifier, from)),
                Some('"') if self.at(self.i + 1) == Some('"') => {
                    // The run so far and one quote (the first of the two).
                    name.push_str(self.text(run, self.i + 1));
                    self.i += 2;
                    run = self.i;
                }
                Some('"') => {
                    name.push_str(self.text(run, self.i));
                    self.i += 1;
                    return Ok(Token::Quoted(name.finish()));
                }
                Some(_) => self.i += 1,
            }
        }
    }

    /// The end (past the closing `$`) of a `$tag$` or `$$` starting at `k`, if one is there:
    /// `$` [ident_start [ident_start | digit]*] `$`.
    fn dollar_tag(&self, k: usize) -> Option<usize> {
        let mut j = k + 1;
        if self.at(j).is_some_and(ident_start) {
            j += 1;
            while self
                .at(j)
                .is_some_and(|c| ident_start(c) || c.is_ascii_digit())
            {
                j += 1;
            }
        }
        (self.at(j) == Some('$')).then_some(j + 1)
    }

    /// A dollar-quoted string starting at `from`: up to the next occurrence of its tag.
    fn dollar_quoted(&mut self, from: usize) -> Result<(), Unterminated> {
        let end = self.dollar_tag(from).unwrap_or(from + 1);
        let tag = &self.bytes[from..end.min(self.bytes.len())];
        let close = (end..self.bytes.len().saturating_sub(tag.len().saturating_sub(1)))
            .find(|&p| self.bytes.get(p..p + tag.len()) == Some(tag));
        match close {
            Some(p) => {
                self.i = p + tag.len();
                Ok(())
            }
            None => Err(self.unterminated(Opened::DollarQuote, from)),
        }
    }

    /// `1`, `1.5`, `.5`, `1e-3`: the letters after a number start the next token.
    fn number(&mut self) {
        let digits = |l: &mut Lexer<'_>| {
            while l.at(l.i).is_some_and(|c| c.is_ascii_digit()) {
                l.i += 1;
            }
        };
        digits(self);
        // `1..2` is `1` then `..`.
        if self.at(self.i) == Some('.') && self.at(self.i + 1) != Some('.') {
            self.i += 1;
            digits(self);
        }
        if matches!(self.at(self.i), Some('e' | 'E')) {
            let sign = usize::from(matches!(self.at(self.i + 1), Some('+' | '-')));
            if self
                .at(self.i + 1 + sign)
                .is_some_and(|c| c.is_ascii_digit())
            {
                self.i += 1 + sign;
                digits(self);
            }
        }
    }

    /// An identifier or keyword, or the one-letter prefix of a string (`E'`, `B'`, `X'`,
    /// `N'`, `U&'`) or of a quoted identifier (`U&"`): only a token that is that one letter
    /// is a prefix, so `name'a\'` is the word `name` and a plain string.
    fn word_or_prefixed(&mut self, from: usize) -> Result<Lexeme, Unterminated> {
        while self.at(self.i).is_some_and(ident_cont) {
            self.i += 1;
        }
        if self.i - from == 1 {
            let c = self.at(from).unwrap_or(' ');
            match (c, self.at(self.i), self.at(self.i + 1)) {
                ('e' | 'E' | 'b' | 'B' | 'x' | 'X' | 'n' | 'N', Some('\''), _) => {
                    self.string(from, matches!(c, 'e' | 'E'))?;
                    return Ok(Lexeme::Token(self.literal(from)));
                }
                ('u' | 'U', Some('&'), Some('\'')) => {
                    self.i += 1;
                    self.string(from, false)?;
                    return Ok(Lexeme::Token(self.literal(from)));
                }
                ('u' | 'U', Some('&'), Some('"')) => {
                    self.i += 1;
                    return Ok(Lexeme::Token(self.quoted_identifier(from)?));
                }
                _ => {}
            }
        }
        // Keywords are ASCII and PostgreSQL folds only ASCII letters.
        Ok(Lexeme::Token(Token::Word(
            self.text(from, self.i).to_ascii_uppercase_smolstr(),
        )))
    }
}

/// A SQL-standard function body (`BEGIN ATOMIC ... END`), whose semicolons are not
/// top-level. Only `CREATE [OR REPLACE] FUNCTION|PROCEDURE` has one: elsewhere `begin
/// atomic` can be a column and its alias, and must not hide the statements after it.
#[derive(Default)]
struct Body {
    /// Open bodies, and open `CASE`s inside them (whose `END` is not the body's).
    atomic: usize,
    cases: usize,
}

impl Body {
    fn open(&self) -> bool {
        self.atomic > 0
    }

    /// Updates the depths for `t`, which follows `before` in its statement.
    fn see(&mut self, before: &[Token], t: &Token) {
        let Token::Word(w) = t else {
            return;
        };
        match w.as_str() {
            "ATOMIC"
                if self.atomic == 0
                    && before.last() == Some(&Token::Word("BEGIN".into()))
                    && defines_routine(before) =>
            {
                self.atomic = 1;
            }
            "CASE" if self.atomic > 0 => self.cases += 1,
            "END" if self.atomic > 0 && self.cases > 0 => self.cases -= 1,
            "END" if self.atomic > 0 => self.atomic -= 1,
            _ => {}
        }
    }
}

/// Whether a statement's tokens start with `CREATE [OR REPLACE] FUNCTION|PROCEDURE`.
fn defines_routine(tokens: &[Token]) -> bool {
    let word = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) => w.as_str(),
        _ => "",
    };
    let kind = if word(1) == "OR" && word(2) == "REPLACE" {
        word(3)
    } else {
        word(1)
    };
    word(0) == "CREATE" && matches!(kind, "FUNCTION" | "PROCEDURE")
}
