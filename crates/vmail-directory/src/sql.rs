//! Backend-neutral SQL values and statements with named parameters.
//!
//! Operators write `%s`, `%u`, `%d` (as in Postfix's `mysql_table(5)`); we turn each into a
//! positional `?` and bind the value. Nothing a client sends is ever spliced into SQL text.

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Int(b as i64)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(o: Option<T>) -> Self {
        o.map_or(Value::Null, Into::into)
    }
}

/// One result row: column names are kept so that custom user queries can return their
/// columns in any order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    pub columns: Vec<(String, Option<String>)>,
}

impl Row {
    /// The first column's value.
    pub fn first(&self) -> Option<&str> {
        self.columns.first().and_then(|(_, v)| v.as_deref())
    }
    /// A column by (case-insensitive) name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.columns
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_deref())
    }
    pub fn has(&self, name: &str) -> bool {
        self.columns
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}

/// Which named parameter goes into each `?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// `%s`: the whole key.
    Key,
    /// `%u`: local part.
    Local,
    /// `%d`: domain.
    Domain,
}

/// A lookup statement compiled from a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub sql: String,
    pub params: Vec<Param>,
}

impl Lookup {
    /// Compiles `SELECT ... WHERE email = %s` (or `'%s'`) into positional form. Anything else
    /// after a `%` (Postfix's `%[1-9]`, `%S`...) is refused, so a template never silently
    /// means something else than the operator expects.
    pub fn compile(template: &str) -> Result<Lookup> {
        let mut sql = String::with_capacity(template.len());
        let mut params = Vec::new();
        let b = template.as_bytes();
        let mut i = 0;
        while i < b.len() {
            // `'%s'`: the quotes belong to the old spliced style; the parameter replaces them.
            let quoted = b[i] == b'\'' && i + 3 < b.len() && b[i + 1] == b'%' && b[i + 3] == b'\'';
            let (at, width) = if quoted { (i + 1, 4) } else { (i, 2) };
            if b[at] == b'%' {
                let p = match b.get(at + 1) {
                    Some(b's') => Param::Key,
                    Some(b'u') => Param::Local,
                    Some(b'd') => Param::Domain,
                    Some(b'%') if !quoted => {
                        sql.push('%');
                        i += 2;
                        continue;
                    }
                    _ => {
                        return Err(Error::Config(format!(
                            "query {template:?}: only %s, %u, %d and %% may follow '%'"
                        )))
                    }
                };
                params.push(p);
                sql.push('?');
                i += width;
                continue;
            }
            // Copy one UTF-8 character.
            let ch_len = template[i..].chars().next().map_or(1, char::len_utf8);
            sql.push_str(&template[i..i + ch_len]);
            i += ch_len;
        }
        if params.is_empty() {
            return Err(Error::Config(format!(
                "query {template:?} uses no parameter (%s, %u or %d)"
            )));
        }
        Ok(Lookup { sql, params })
    }

    /// The values to bind for a key split into local part and domain.
    pub fn bind(&self, key: &str, local: &str, domain: &str) -> Vec<Value> {
        self.params
            .iter()
            .map(|p| {
                Value::from(match p {
                    Param::Key => key,
                    Param::Local => local,
                    Param::Domain => domain,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_named_and_quoted_params() {
        let l = Lookup::compile("SELECT destination FROM forwardings WHERE source='%s'").unwrap();
        assert_eq!(l.sql, "SELECT destination FROM forwardings WHERE source=?");
        assert_eq!(l.params, [Param::Key]);
        let l = Lookup::compile(
            "SELECT 1 FROM m WHERE local_part = %u AND domain = %d AND x LIKE '10%%'",
        )
        .unwrap();
        assert_eq!(
            l.sql,
            "SELECT 1 FROM m WHERE local_part = ? AND domain = ? AND x LIKE '10%'"
        );
        assert_eq!(l.params, [Param::Local, Param::Domain]);
        assert_eq!(
            l.bind("a@b", "a", "b"),
            [Value::from("a"), Value::from("b")]
        );
    }

    #[test]
    fn refuses_unknown_or_missing_params() {
        assert!(Lookup::compile("SELECT 1 FROM t WHERE a = %1").is_err());
        assert!(Lookup::compile("SELECT 1 FROM t WHERE a = '%S'").is_err());
        assert!(Lookup::compile("SELECT 1 FROM t").is_err());
        assert!(Lookup::compile("SELECT 1 FROM t WHERE a = %").is_err());
    }

    #[test]
    fn keeps_utf8_intact() {
        let l = Lookup::compile("SELECT 'ünï' FROM t WHERE a = %s").unwrap();
        assert_eq!(l.sql, "SELECT 'ünï' FROM t WHERE a = ?");
    }
}
