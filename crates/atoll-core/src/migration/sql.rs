//! Just enough SQL lexing to split a migration file into statements and to recognise the
//! statements that matter to a migration run: destructive ones (flagged as unsafe) and
//! `CREATE/DROP INDEX CONCURRENTLY` (which cannot run inside a transaction).
//!
//! Comments, string literals, quoted identifiers and dollar-quoted bodies are skipped, so a
//! `DROP TABLE` inside a function body or a comment is not mistaken for a statement.

/// One lexical token of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A keyword or unquoted identifier, upper-cased.
    Word(String),
    /// A double-quoted identifier, as written between the quotes.
    Quoted(String),
    /// A literal (string, number, dollar-quoted body): its content never matters here.
    Literal,
    /// Any other character: punctuation and operators.
    Punct(char),
}

/// One statement: its text (trimmed, without the `;`) and its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub text: String,
    pub tokens: Vec<Token>,
}

/// Splits SQL into statements at top-level semicolons; empty statements are dropped.
pub fn statements(sql: &str) -> Vec<Statement> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut tokens = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut flush = |from: usize, to: usize, tokens: &mut Vec<Token>| {
        let text: String = chars[from..to]
            .iter()
            .collect::<String>()
            .trim()
            .to_string();
        if !tokens.is_empty() {
            out.push(Statement {
                text,
                tokens: std::mem::take(tokens),
            });
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            ';' => {
                flush(start, i, &mut tokens);
                start = i + 1;
                i += 1;
            }
            '-' if next == Some('-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                // Block comments nest in PostgreSQL.
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            '\'' => {
                let escapes = i > 0 && matches!(chars[i - 1], 'e' | 'E');
                i = skip_quoted(&chars, i, '\'', escapes);
                tokens.push(Token::Literal);
            }
            '"' => {
                let end = skip_quoted(&chars, i, '"', false);
                let inner: String = chars[i + 1..end.saturating_sub(1).max(i + 1)]
                    .iter()
                    .collect();
                tokens.push(Token::Quoted(inner.replace("\"\"", "\"")));
                i = end;
            }
            '$' if dollar_tag(&chars, i).is_some() => {
                let tag = dollar_tag(&chars, i).unwrap_or_default();
                let body = i + tag.len();
                i = find(&chars, body, &tag).map_or(chars.len(), |p| p + tag.len());
                tokens.push(Token::Literal);
            }
            c if c.is_alphabetic() || c == '_' => {
                let from = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
                {
                    i += 1;
                }
                // `E'...'`: the E is a prefix of the literal, not a word.
                if i - from == 1 && matches!(c, 'e' | 'E') && chars.get(i) == Some(&'\'') {
                    continue;
                }
                let w: String = chars[from..i].iter().collect();
                tokens.push(Token::Word(w.to_uppercase()));
            }
            c if c.is_ascii_digit() => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                tokens.push(Token::Literal);
            }
            c if c.is_whitespace() => i += 1,
            c => {
                tokens.push(Token::Punct(c));
                i += 1;
            }
        }
    }
    flush(start, chars.len(), &mut tokens);
    out
}

/// Index just past a literal or identifier quoted with `q` that starts at `i`.
fn skip_quoted(chars: &[char], mut i: usize, q: char, backslash: bool) -> usize {
    i += 1;
    while i < chars.len() {
        if backslash && chars[i] == '\\' {
            i += 2;
            continue;
        }
        if chars[i] == q {
            if chars.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    chars.len()
}

/// `$tag$` or `$$` starting at `i`, if that is what is there.
fn dollar_tag(chars: &[char], i: usize) -> Option<String> {
    let mut j = i + 1;
    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
        j += 1;
    }
    if chars.get(j) == Some(&'$') && !chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
        Some(chars[i..=j].iter().collect())
    } else {
        None
    }
}

fn find(chars: &[char], from: usize, needle: &str) -> Option<usize> {
    let n: Vec<char> = needle.chars().collect();
    (from..chars.len().saturating_sub(n.len() - 1)).find(|&p| chars[p..p + n.len()] == n[..])
}

impl Statement {
    fn word(&self, i: usize) -> Option<&str> {
        match self.tokens.get(i) {
            Some(Token::Word(w)) => Some(w),
            _ => None,
        }
    }

    fn words_at(&self, i: usize, ws: &[&str]) -> bool {
        ws.iter()
            .enumerate()
            .all(|(k, w)| self.word(i + k) == Some(w))
    }

    /// Why this statement can destroy data, if it can: `DROP TABLE`, `DROP SCHEMA`,
    /// `TRUNCATE`, `ALTER TABLE ... DROP [COLUMN]` and column type changes.
    pub fn unsafe_reason(&self) -> Option<&'static str> {
        if self.words_at(0, &["DROP", "TABLE"]) {
            return Some("DROP TABLE");
        }
        if self.words_at(0, &["DROP", "SCHEMA"]) {
            return Some("DROP SCHEMA");
        }
        if self.word(0) == Some("TRUNCATE") {
            return Some("TRUNCATE");
        }
        if !self.words_at(0, &["ALTER", "TABLE"]) {
            return None;
        }
        // Actions of ALTER TABLE are separated by top-level commas.
        let mut depth = 0i32;
        let mut action_start = 2;
        for (i, t) in self.tokens.iter().enumerate().skip(2) {
            match t {
                Token::Punct('(') => depth += 1,
                Token::Punct(')') => depth -= 1,
                Token::Word(w) if depth == 0 && w == "DROP" => {
                    // `DROP CONSTRAINT` loses no data; `ALTER COLUMN c DROP DEFAULT` and
                    // friends are inside an ALTER action, not a DROP action.
                    let in_alter = self.tokens[action_start..i]
                        .iter()
                        .any(|t| *t == Token::Word("ALTER".into()));
                    if !in_alter && self.word(i + 1) != Some("CONSTRAINT") {
                        return Some("DROP COLUMN");
                    }
                }
                Token::Word(w) if depth == 0 && w == "TYPE" => {
                    let in_alter = self.tokens[action_start..i]
                        .iter()
                        .any(|t| *t == Token::Word("ALTER".into()));
                    if in_alter {
                        return Some("ALTER COLUMN ... TYPE");
                    }
                }
                Token::Punct(',') if depth == 0 => action_start = i + 1,
                _ => {}
            }
        }
        None
    }

    /// The index operation of a `CREATE [UNIQUE] INDEX CONCURRENTLY` or
    /// `DROP INDEX CONCURRENTLY` statement.
    pub fn concurrent_index(&self) -> Option<ConcurrentIndex> {
        let (create, mut i) = if self.words_at(0, &["CREATE", "INDEX", "CONCURRENTLY"]) {
            (true, 3)
        } else if self.words_at(0, &["CREATE", "UNIQUE", "INDEX", "CONCURRENTLY"]) {
            (true, 4)
        } else if self.words_at(0, &["DROP", "INDEX", "CONCURRENTLY"]) {
            (false, 3)
        } else {
            return None;
        };
        if create && self.words_at(i, &["IF", "NOT", "EXISTS"]) {
            i += 3;
        }
        if !create && self.words_at(i, &["IF", "EXISTS"]) {
            i += 2;
        }
        // A schema-qualified name: the index lives in the shard's schema anyway.
        if self.tokens.get(i + 1) == Some(&Token::Punct('.')) {
            i += 2;
        }
        let name = match self.tokens.get(i) {
            Some(Token::Word(w)) if !(create && w == "ON") => Some(w.to_lowercase()),
            Some(Token::Quoted(q)) => Some(q.clone()),
            _ => None,
        };
        Some(ConcurrentIndex {
            create,
            name,
            sql: self.text.clone(),
        })
    }

    /// Whether this statement mentions CONCURRENTLY at all (to refuse mixing).
    pub fn mentions_concurrently(&self) -> bool {
        self.tokens
            .iter()
            .any(|t| *t == Token::Word("CONCURRENTLY".into()))
    }
}

/// A `CREATE/DROP INDEX CONCURRENTLY` statement: run outside a transaction, with the
/// index name known so that an invalid index left by a failed build can be dropped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConcurrentIndex {
    pub create: bool,
    /// The index name as stored in the catalog (unquoted names are folded to lower case).
    pub name: Option<String>,
    pub sql: String,
}

/// A short stable checksum of a file's text (FNV-1a, 64 bits, hex), stored with every
/// applied version so a file edited after it ran can be recognised.
pub fn checksum(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// `text` as an SQL string literal.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `name` as an SQL identifier, always quoted.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
