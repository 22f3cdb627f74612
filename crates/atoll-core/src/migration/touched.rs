//! Which tables a destructive statement touches, so a plan can say how much data they hold
//! on each shard: `DROP TABLE a, b`, `TRUNCATE [TABLE] [ONLY] a`, `DELETE FROM a`,
//! `ALTER TABLE a ...`. Only unqualified names count (a shard's tables are found through
//! its search path); PostgreSQL folds unquoted names to lower case, and so does this.

use super::sql::{Statement, Token};

impl Statement {
    /// The tables this statement changes or removes, as PostgreSQL names them.
    pub fn touched_tables(&self) -> Vec<String> {
        let w = |i: usize| match self.tokens.get(i) {
            Some(Token::Word(w)) => Some(w.as_str()),
            _ => None,
        };
        let mut i = match (w(0), w(1)) {
            (Some("DROP"), Some("TABLE")) | (Some("ALTER"), Some("TABLE")) => 2,
            (Some("TRUNCATE"), Some("TABLE")) | (Some("DELETE"), Some("FROM")) => 2,
            (Some("TRUNCATE"), _) => 1,
            _ => return Vec::new(),
        };
        let single = w(0) == Some("ALTER") || w(0) == Some("DELETE");
        if w(i) == Some("IF") && w(i + 1) == Some("EXISTS") {
            i += 2;
        }
        let mut out = Vec::new();
        loop {
            if w(i) == Some("ONLY") {
                i += 1;
            }
            let name = match self.tokens.get(i) {
                Some(Token::Word(n)) => n.to_lowercase(),
                Some(Token::Quoted(n)) => n.to_string(),
                _ => break,
            };
            i += 1;
            if self.tokens.get(i) == Some(&Token::Punct('.')) {
                // Qualified: in another schema than the shard's; skip it and what follows.
                i += 2;
            } else {
                out.push(name);
            }
            if single || self.tokens.get(i) != Some(&Token::Punct(',')) {
                break;
            }
            i += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::migration::sql::statements;

    fn touched(sql: &str) -> Vec<String> {
        statements(sql).expect("lexed")[0].touched_tables()
    }

    #[test]
    fn destructive_statements_name_their_tables() {
        assert_eq!(
            touched("drop table if exists Users, \"Orders\" cascade"),
            ["users", "Orders"]
        );
        assert_eq!(
            touched("alter table only users drop column name"),
            ["users"]
        );
        assert_eq!(touched("truncate t1, t2"), ["t1", "t2"]);
        assert_eq!(touched("truncate table only t1"), ["t1"]);
        assert_eq!(touched("delete from users"), ["users"]);
        assert_eq!(touched("drop table public.settings, users"), ["users"]);
        assert!(touched("drop schema x").is_empty());
        assert!(touched("do $$ begin end $$").is_empty());
    }
}
