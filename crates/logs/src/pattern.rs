//! The CloudWatch Logs filter-pattern language (FilterLogEvents' `filterPattern`).
//!
//! Supported forms:
//! - empty (or `""`): every event;
//! - terms: `ERROR`, `"Internal Server Error"` (quoted phrase), `ERROR -Exiting` (exclusion),
//!   `?ERROR ?WARN` (optional terms: at least one must match). Plain terms must all match; excluded
//!   terms must not; matching is case-sensitive substring search;
//! - JSON: `{ $.level = "error" }`, `{ $.latency > 100 }`, `{ $.user.id != "x*" }` (`*` wildcards
//!   in strings), `{ $.a[0] = 1 }`, `{ $.ok IS TRUE }`, `IS FALSE`, `IS NULL`, `EXISTS`,
//!   `NOT EXISTS`, combined with `&&`, `||` and parentheses (`&&` binds tighter). Non-JSON messages
//!   never match a JSON pattern;
//! - space-delimited: `[ip, user, ..., status = 404, bytes > 1000]` with `=`, `!=`, `<`, `<=`, `>`,
//!   `>=`, `*` wildcards, and `...` for any number of fields. A field is a whitespace-separated word,
//!   or text inside `"…"` or `[…]`.
//!
//! Regular-expression patterns (`%…%`) are rejected as unsupported.

use crate::error::LogError;
use serde_json::Value;

/// A parsed filter pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// Matches everything.
    All,
    Terms(Terms),
    Json(JsonExpr),
    Delimited(Vec<FieldSpec>),
}

/// Unstructured term matching.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Terms {
    pub required: Vec<String>,
    pub optional: Vec<String>,
    pub excluded: Vec<String>,
}

/// A boolean expression over a JSON message.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonExpr {
    And(Box<JsonExpr>, Box<JsonExpr>),
    Or(Box<JsonExpr>, Box<JsonExpr>),
    Cmp(Vec<PathPart>, CmpOp, Literal),
    IsTrue(Vec<PathPart>),
    IsFalse(Vec<PathPart>),
    IsNull(Vec<PathPart>),
    Exists(Vec<PathPart>),
    NotExists(Vec<PathPart>),
}

/// One step of a `$.a.b[0]` selector.
#[derive(Debug, Clone, PartialEq)]
pub enum PathPart {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Num(f64),
}

/// One field of a space-delimited pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldSpec {
    /// A named field without a condition (matches any value).
    Any,
    /// `...`: any number of fields.
    Ellipsis,
    Cond(CmpOp, Literal),
}

impl Pattern {
    /// Parses a filter pattern.
    pub fn parse(src: &str) -> Result<Pattern, LogError> {
        let s = src.trim();
        if s.is_empty() || s == "\"\"" {
            return Ok(Pattern::All);
        }
        if s.starts_with('{') {
            let inner = s
                .strip_prefix('{')
                .and_then(|x| x.strip_suffix('}'))
                .ok_or_else(|| LogError::Pattern("unbalanced { } in JSON pattern".into()))?;
            let toks = lex_json(inner)?;
            let mut p = JsonParser { toks, pos: 0 };
            let e = p.or()?;
            if p.pos != p.toks.len() {
                return Err(LogError::Pattern(format!(
                    "unexpected {:?} in JSON pattern",
                    p.toks[p.pos]
                )));
            }
            return Ok(Pattern::Json(e));
        }
        if s.starts_with('[') {
            return parse_delimited(s).map(Pattern::Delimited);
        }
        if s.len() >= 2 && s.starts_with('%') && s.ends_with('%') {
            return Err(LogError::Pattern(
                "regular expression filter patterns are not supported by berth".into(),
            ));
        }
        parse_terms(s).map(Pattern::Terms)
    }

    /// Does `message` match?
    pub fn matches(&self, message: &str) -> bool {
        match self {
            Pattern::All => true,
            Pattern::Terms(t) => {
                t.required.iter().all(|x| message.contains(x.as_str()))
                    && !t.excluded.iter().any(|x| message.contains(x.as_str()))
                    && (t.optional.is_empty()
                        || t.optional.iter().any(|x| message.contains(x.as_str())))
            }
            Pattern::Json(e) => {
                let t = message.trim_start();
                if !t.starts_with('{') && !t.starts_with('[') {
                    return false;
                }
                match serde_json::from_str::<Value>(t) {
                    Ok(v) => eval(e, &v),
                    Err(_) => false,
                }
            }
            Pattern::Delimited(specs) => {
                let fields = split_fields(message);
                match_fields(specs, &fields)
            }
        }
    }
}

fn parse_terms(s: &str) -> Result<Terms, LogError> {
    let mut t = Terms::default();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let mut kind = 0; // 0 required, 1 optional, 2 excluded
        if chars[i] == '?' {
            kind = 1;
            i += 1;
        } else if chars[i] == '-' && i + 1 < chars.len() && !chars[i + 1].is_whitespace() {
            kind = 2;
            i += 1;
        }
        let mut term = String::new();
        if i < chars.len() && chars[i] == '"' {
            i += 1;
            let mut closed = false;
            while i < chars.len() {
                match chars[i] {
                    '\\' if i + 1 < chars.len() => {
                        term.push(chars[i + 1]);
                        i += 2;
                    }
                    '"' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    c => {
                        term.push(c);
                        i += 1;
                    }
                }
            }
            if !closed {
                return Err(LogError::Pattern("unterminated quoted term".into()));
            }
        } else {
            while i < chars.len() && !chars[i].is_whitespace() {
                term.push(chars[i]);
                i += 1;
            }
        }
        if term.is_empty() {
            if kind == 1 {
                return Err(LogError::Pattern("'?' must be followed by a term".into()));
            }
            continue;
        }
        match kind {
            1 => t.optional.push(term),
            2 => t.excluded.push(term),
            _ => t.required.push(term),
        }
    }
    Ok(t)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    And,
    Or,
    Op(CmpOp),
    Selector(Vec<PathPart>),
    Str(String),
    Word(String),
}

fn parse_selector(s: &str) -> Result<Vec<PathPart>, LogError> {
    let bad = || LogError::Pattern(format!("invalid selector {s:?}"));
    let rest = s.strip_prefix('$').ok_or_else(bad)?;
    let mut parts = Vec::new();
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'.' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j] != b'.' && b[j] != b'[' {
                    j += 1;
                }
                if j == start {
                    return Err(bad());
                }
                parts.push(PathPart::Key(rest[start..j].to_string()));
                i = j;
            }
            b'[' => {
                let close = rest[i..].find(']').ok_or_else(bad)? + i;
                let n: usize = rest[i + 1..close].trim().parse().map_err(|_| bad())?;
                parts.push(PathPart::Index(n));
                i = close + 1;
            }
            _ => return Err(bad()),
        }
    }
    if parts.is_empty() {
        return Err(bad());
    }
    Ok(parts)
}

fn lex_json(s: &str) -> Result<Vec<Tok>, LogError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let is_delim = |c: char| c.is_whitespace() || "()=!<>&|".contains(c);
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            '&' if next == Some('&') => {
                out.push(Tok::And);
                i += 2
            }
            '|' if next == Some('|') => {
                out.push(Tok::Or);
                i += 2
            }
            '=' => {
                out.push(Tok::Op(CmpOp::Eq));
                i += if next == Some('=') { 2 } else { 1 }
            }
            '!' if next == Some('=') => {
                out.push(Tok::Op(CmpOp::Ne));
                i += 2
            }
            '<' if next == Some('=') => {
                out.push(Tok::Op(CmpOp::Le));
                i += 2
            }
            '>' if next == Some('=') => {
                out.push(Tok::Op(CmpOp::Ge));
                i += 2
            }
            '<' => {
                out.push(Tok::Op(CmpOp::Lt));
                i += 1
            }
            '>' => {
                out.push(Tok::Op(CmpOp::Gt));
                i += 1
            }
            '"' => {
                i += 1;
                let mut v = String::new();
                let mut closed = false;
                while i < chars.len() {
                    match chars[i] {
                        '\\' if i + 1 < chars.len() => {
                            v.push(chars[i + 1]);
                            i += 2
                        }
                        '"' => {
                            closed = true;
                            i += 1;
                            break;
                        }
                        c => {
                            v.push(c);
                            i += 1
                        }
                    }
                }
                if !closed {
                    return Err(LogError::Pattern("unterminated string".into()));
                }
                out.push(Tok::Str(v));
            }
            _ => {
                let start = i;
                // Selectors may contain brackets; words stop at delimiters.
                while i < chars.len() && !is_delim(chars[i]) {
                    i += 1;
                }
                if i == start {
                    return Err(LogError::Pattern(format!("unexpected {c:?}")));
                }
                let w: String = chars[start..i].iter().collect();
                if w.starts_with('$') {
                    out.push(Tok::Selector(parse_selector(&w)?));
                } else {
                    out.push(Tok::Word(w));
                }
            }
        }
    }
    Ok(out)
}

struct JsonParser {
    toks: Vec<Tok>,
    pos: usize,
}

impl JsonParser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn or(&mut self) -> Result<JsonExpr, LogError> {
        let mut l = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            let r = self.and()?;
            l = JsonExpr::Or(Box::new(l), Box::new(r));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<JsonExpr, LogError> {
        let mut l = self.unary()?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            let r = self.unary()?;
            l = JsonExpr::And(Box::new(l), Box::new(r));
        }
        Ok(l)
    }
    fn word_is(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }
    fn unary(&mut self) -> Result<JsonExpr, LogError> {
        match self.next() {
            Some(Tok::LParen) => {
                let e = self.or()?;
                match self.next() {
                    Some(Tok::RParen) => Ok(e),
                    _ => Err(LogError::Pattern("missing ')'".into())),
                }
            }
            Some(Tok::Selector(path)) => {
                if self.word_is("IS") {
                    self.pos += 1;
                    let e = if self.word_is("TRUE") {
                        JsonExpr::IsTrue(path)
                    } else if self.word_is("FALSE") {
                        JsonExpr::IsFalse(path)
                    } else if self.word_is("NULL") {
                        JsonExpr::IsNull(path)
                    } else {
                        return Err(LogError::Pattern(
                            "IS must be followed by TRUE, FALSE or NULL".into(),
                        ));
                    };
                    self.pos += 1;
                    return Ok(e);
                }
                if self.word_is("NOT") {
                    self.pos += 1;
                    if self.word_is("EXISTS") {
                        self.pos += 1;
                        return Ok(JsonExpr::NotExists(path));
                    }
                    return Err(LogError::Pattern("NOT must be followed by EXISTS".into()));
                }
                if self.word_is("EXISTS") {
                    self.pos += 1;
                    return Ok(JsonExpr::Exists(path));
                }
                let op = match self.next() {
                    Some(Tok::Op(op)) => op,
                    other => {
                        return Err(LogError::Pattern(format!(
                            "expected a comparison operator, found {other:?}"
                        )))
                    }
                };
                let lit = match self.next() {
                    Some(Tok::Str(s)) => Literal::Str(s),
                    Some(Tok::Word(w)) => match w.parse::<f64>() {
                        Ok(n) if n.is_finite() => Literal::Num(n),
                        _ => Literal::Str(w),
                    },
                    other => {
                        return Err(LogError::Pattern(format!(
                            "expected a value, found {other:?}"
                        )))
                    }
                };
                if matches!(op, CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge)
                    && !matches!(lit, Literal::Num(_))
                {
                    return Err(LogError::Pattern(
                        "numeric comparisons need a number on the right".into(),
                    ));
                }
                Ok(JsonExpr::Cmp(path, op, lit))
            }
            other => Err(LogError::Pattern(format!(
                "expected a selector like $.field, found {other:?}"
            ))),
        }
    }
}

fn resolve<'a>(v: &'a Value, path: &[PathPart]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = match p {
            PathPart::Key(k) => cur.as_object()?.get(k)?,
            PathPart::Index(i) => cur.as_array()?.get(*i)?,
        };
    }
    Some(cur)
}

/// `*` matches any run of characters.
fn glob(pattern: &str, s: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == s;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = s;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

fn cmp_num(op: CmpOp, a: f64, b: f64) -> bool {
    match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
    }
}

fn cmp_value(v: &Value, op: CmpOp, lit: &Literal) -> bool {
    match (lit, v) {
        (Literal::Num(n), Value::Number(x)) => x.as_f64().is_some_and(|x| cmp_num(op, x, *n)),
        (Literal::Num(n), Value::String(s)) => s.parse::<f64>().is_ok_and(|x| cmp_num(op, x, *n)),
        (Literal::Str(p), Value::String(s)) => match op {
            CmpOp::Eq => glob(p, s),
            CmpOp::Ne => !glob(p, s),
            _ => false,
        },
        (Literal::Str(p), Value::Bool(b)) => match op {
            CmpOp::Eq => glob(p, if *b { "true" } else { "false" }),
            CmpOp::Ne => !glob(p, if *b { "true" } else { "false" }),
            _ => false,
        },
        (Literal::Str(p), Value::Number(x)) => match op {
            CmpOp::Eq => glob(p, &x.to_string()),
            CmpOp::Ne => !glob(p, &x.to_string()),
            _ => false,
        },
        _ => false,
    }
}

fn eval(e: &JsonExpr, v: &Value) -> bool {
    match e {
        JsonExpr::And(a, b) => eval(a, v) && eval(b, v),
        JsonExpr::Or(a, b) => eval(a, v) || eval(b, v),
        JsonExpr::Cmp(p, op, lit) => resolve(v, p).is_some_and(|x| cmp_value(x, *op, lit)),
        JsonExpr::IsTrue(p) => resolve(v, p) == Some(&Value::Bool(true)),
        JsonExpr::IsFalse(p) => resolve(v, p) == Some(&Value::Bool(false)),
        JsonExpr::IsNull(p) => resolve(v, p) == Some(&Value::Null),
        JsonExpr::Exists(p) => resolve(v, p).is_some(),
        JsonExpr::NotExists(p) => resolve(v, p).is_none(),
    }
}

fn parse_delimited(s: &str) -> Result<Vec<FieldSpec>, LogError> {
    let inner = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .ok_or_else(|| LogError::Pattern("unbalanced [ ] in space-delimited pattern".into()))?;
    let mut out = Vec::new();
    for raw in inner.split(',') {
        let f = raw.trim();
        if f.is_empty() {
            return Err(LogError::Pattern(
                "empty field in space-delimited pattern".into(),
            ));
        }
        if f == "..." {
            out.push(FieldSpec::Ellipsis);
            continue;
        }
        let ops: [(&str, CmpOp); 6] = [
            ("!=", CmpOp::Ne),
            ("<=", CmpOp::Le),
            (">=", CmpOp::Ge),
            ("=", CmpOp::Eq),
            ("<", CmpOp::Lt),
            (">", CmpOp::Gt),
        ];
        let mut spec = FieldSpec::Any;
        for (sym, op) in ops {
            if let Some(at) = f.find(sym) {
                let name = f[..at].trim();
                let val = f[at + sym.len()..].trim();
                if name.is_empty() || val.is_empty() {
                    return Err(LogError::Pattern(format!("invalid field condition {f:?}")));
                }
                let lit = if let Some(q) = val.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                    Literal::Str(q.to_string())
                } else {
                    match val.parse::<f64>() {
                        Ok(n) if n.is_finite() => Literal::Num(n),
                        _ => Literal::Str(val.to_string()),
                    }
                };
                if matches!(op, CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge)
                    && !matches!(lit, Literal::Num(_))
                {
                    return Err(LogError::Pattern(
                        "numeric comparisons need a number on the right".into(),
                    ));
                }
                spec = FieldSpec::Cond(op, lit);
                break;
            }
        }
        out.push(spec);
    }
    Ok(out)
}

fn split_fields(msg: &str) -> Vec<&str> {
    let b = msg.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let (open, close) = match b[i] {
            b'"' => (true, b'"'),
            b'[' => (true, b']'),
            _ => (false, b' '),
        };
        if open {
            let start = i + 1;
            let end = msg[start..].find(close as char).map(|x| x + start);
            match end {
                Some(e) => {
                    out.push(&msg[start..e]);
                    i = e + 1;
                }
                None => {
                    out.push(&msg[start..]);
                    i = b.len();
                }
            }
        } else {
            let start = i;
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            out.push(&msg[start..i]);
        }
    }
    out
}

fn field_ok(spec: &FieldSpec, f: &str) -> bool {
    match spec {
        FieldSpec::Any | FieldSpec::Ellipsis => true,
        FieldSpec::Cond(op, lit) => cmp_value(&Value::String(f.to_string()), *op, lit),
    }
}

fn match_fields(specs: &[FieldSpec], fields: &[&str]) -> bool {
    match specs.first() {
        None => fields.is_empty(),
        Some(FieldSpec::Ellipsis) => {
            (0..=fields.len()).any(|skip| match_fields(&specs[1..], &fields[skip..]))
        }
        Some(spec) => match fields.first() {
            Some(f) if field_ok(spec, f) => match_fields(&specs[1..], &fields[1..]),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, msg: &str) -> bool {
        Pattern::parse(p).unwrap().matches(msg)
    }

    #[test]
    fn table() {
        let cases: &[(&str, &str, bool)] = &[
            ("", "anything", true),
            ("\"\"", "anything", true),
            ("ERROR", "[ERROR] boom", true),
            ("ERROR", "[error] boom", false),
            ("ERROR boom", "[ERROR] boom", true),
            ("ERROR bang", "[ERROR] boom", false),
            (
                "\"Internal Server Error\"",
                "500 Internal Server Error",
                true,
            ),
            ("\"Internal Server Error\"", "Internal Error Server", false),
            ("?ERROR ?WARN", "WARN disk", true),
            ("?ERROR ?WARN", "INFO ok", false),
            ("ERROR -Exiting", "ERROR and Exiting", false),
            ("ERROR -Exiting", "ERROR only", true),
            ("-\"no way\"", "there is no way", false),
            ("{ $.level = \"error\" }", r#"{"level":"error"}"#, true),
            ("{ $.level = \"error\" }", r#"{"level":"info"}"#, false),
            ("{ $.level = \"err*\" }", r#"{"level":"error"}"#, true),
            ("{ $.level = error }", r#"{"level":"error"}"#, true),
            ("{ $.level != \"error\" }", r#"{"level":"info"}"#, true),
            ("{ $.level != \"error\" }", r#"{"x":1}"#, false),
            ("{ $.latency > 100 }", r#"{"latency":150}"#, true),
            ("{ $.latency > 100 }", r#"{"latency":50}"#, false),
            ("{ $.latency >= 100 }", r#"{"latency":100}"#, true),
            ("{ $.latency < 100 }", r#"{"latency":"fast"}"#, false),
            ("{ $.status = 200 }", r#"{"status":200}"#, true),
            ("{ $.a.b[1] = 7 }", r#"{"a":{"b":[6,7]}}"#, true),
            (
                "{ ($.level = \"error\") && ($.latency > 100) }",
                r#"{"level":"error","latency":101}"#,
                true,
            ),
            (
                "{ $.level = \"error\" && $.latency > 100 }",
                r#"{"level":"error","latency":99}"#,
                false,
            ),
            (
                "{ $.level = \"error\" || $.latency > 100 }",
                r#"{"level":"info","latency":101}"#,
                true,
            ),
            (
                "{ $.a = 1 || $.b = 1 && $.c = 1 }",
                r#"{"a":1,"b":0,"c":0}"#,
                true,
            ),
            (
                "{ ($.a = 1 || $.b = 1) && $.c = 1 }",
                r#"{"a":1,"b":0,"c":0}"#,
                false,
            ),
            ("{ $.ok IS TRUE }", r#"{"ok":true}"#, true),
            ("{ $.ok IS FALSE }", r#"{"ok":true}"#, false),
            ("{ $.x IS NULL }", r#"{"x":null}"#, true),
            ("{ $.x NOT EXISTS }", r#"{"y":1}"#, true),
            ("{ $.x EXISTS }", r#"{"y":1}"#, false),
            ("{ $.level = \"error\" }", "not json at all", false),
            ("{ $.level = \"error\" }", "{broken json", false),
            (
                "[ip, user, ..., status = 404, bytes]",
                "127.0.0.1 frank [10/Oct/2000:13:25:15 -0700] \"GET /x HTTP/1.0\" 404 1534",
                true,
            ),
            (
                "[ip, user, ..., status = 404, bytes]",
                "127.0.0.1 frank [10/Oct/2000] \"GET /x\" 200 1534",
                false,
            ),
            ("[a, b > 10]", "x 11", true),
            ("[a, b > 10]", "x 9", false),
            ("[a, b = 4*]", "x 404", true),
            ("[a, b]", "x y z", false),
        ];
        for (p, msg, want) in cases {
            assert_eq!(m(p, msg), *want, "pattern {p:?} on {msg:?}");
        }
    }

    #[test]
    fn errors() {
        for p in [
            "{ $.a = }",
            "{ $.a > \"x\" }",
            "{ $.a = 1",
            "{ a = 1 }",
            "{ ($.a = 1 }",
            "\"unterminated",
            "%regex%",
            "[a, , b]",
            "{ $.a IS MAYBE }",
        ] {
            assert!(Pattern::parse(p).is_err(), "{p:?} should not parse");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(p in ".{0,40}", msg in ".{0,40}") {
            if let Ok(pat) = Pattern::parse(&p) {
                let _ = pat.matches(&msg);
            }
        }
    }
}
