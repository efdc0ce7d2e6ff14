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
//! - regular expressions between `%` signs: `%[Ee]rror|[Ff]ail%` on its own (the whole message is
//!   searched), or as a value in JSON (`{ $.path = %^/api/% }`) and space-delimited
//!   (`[ip = %^10\.%, ...]`) patterns. CloudWatch's subset is enforced: ASCII letters and digits,
//!   the symbols `:_#=@/;,-`, the operators `^$?[]{}|\*+.`, escapes `\d \D \w \W \s \S` (ASCII
//!   classes) and `\` before an operator or symbol; no `( )` groups, no multi-byte characters,
//!   and at most two regular expressions per pattern. Matching is a case-sensitive search
//!   (anchor with `^`/`$`).

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
    /// `%regex%`: the message contains a match.
    Regex(Re),
}

/// Most regular expressions one filter pattern may hold (CloudWatch's documented limit).
pub const MAX_REGEXES: usize = 2;

/// A compiled `%…%` regular expression (compared by its source text).
#[derive(Debug, Clone)]
pub struct Re {
    src: String,
    re: regex::Regex,
}

impl PartialEq for Re {
    fn eq(&self, other: &Self) -> bool {
        self.src == other.src
    }
}

impl Re {
    /// Compiles the text between the `%` signs, enforcing CloudWatch's regex subset.
    pub fn new(src: &str) -> Result<Re, LogError> {
        let bad =
            |why: String| LogError::Pattern(format!("invalid regular expression %{src}%: {why}"));
        if src.is_empty() {
            return Err(bad("it is empty".into()));
        }
        const SYMBOLS: &str = ":_#=@/;,-";
        const OPERATORS: &str = "^$?[]{}|\\*+.";
        let allowed =
            |c: char| c.is_ascii_alphanumeric() || SYMBOLS.contains(c) || OPERATORS.contains(c);
        let mut out = String::with_capacity(src.len() + 16);
        let mut in_class = false;
        let mut chars = src.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '(' || c == ')' {
                return Err(bad("( ) groups are not supported".into()));
            }
            if !c.is_ascii() {
                return Err(bad("multi-byte characters are not supported".into()));
            }
            if !allowed(c) {
                return Err(bad(format!("the character {c:?} is not supported")));
            }
            match c {
                '\\' => {
                    let Some(e) = chars.next() else {
                        return Err(bad("it ends with a lone \\".into()));
                    };
                    let class = |neg: bool, set: &str| {
                        if in_class {
                            set.to_string()
                        } else if neg {
                            format!("[^{set}]")
                        } else {
                            format!("[{set}]")
                        }
                    };
                    match e {
                        'd' => out.push_str(&class(false, "0-9")),
                        'w' => out.push_str(&class(false, "0-9A-Za-z_")),
                        's' => out.push_str(&class(false, "\\t\\n\\x0B\\x0C\\r ")),
                        'D' if !in_class => out.push_str(&class(true, "0-9")),
                        'W' if !in_class => out.push_str(&class(true, "0-9A-Za-z_")),
                        'S' if !in_class => out.push_str(&class(true, "\\t\\n\\x0B\\x0C\\r ")),
                        'D' | 'W' | 'S' => {
                            out.push('\\');
                            out.push(e);
                        }
                        e if e.is_ascii_alphanumeric() => {
                            return Err(bad(format!("the escape \\{e} is not supported")))
                        }
                        e if allowed(e) || e == '%' => {
                            out.push('\\');
                            out.push(e);
                        }
                        e => return Err(bad(format!("the character {e:?} is not supported"))),
                    }
                }
                '[' if !in_class => {
                    in_class = true;
                    out.push('[');
                    if chars.peek() == Some(&'^') {
                        out.push('^');
                        chars.next();
                    }
                    if chars.peek() == Some(&']') {
                        out.push_str("\\]");
                        chars.next();
                    }
                }
                ']' if in_class => {
                    in_class = false;
                    out.push(']');
                }
                // Inside a class the regex crate would start a nested class; CloudWatch's subset
                // has none, so take `[` literally.
                '[' => out.push_str("\\["),
                c => out.push(c),
            }
        }
        if in_class {
            return Err(bad("unclosed [".into()));
        }
        let re = regex::RegexBuilder::new(&out)
            .size_limit(1 << 20)
            .dfa_size_limit(1 << 20)
            .build()
            .map_err(|e| {
                bad(e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or("")
                    .trim()
                    .to_string())
            })?;
        Ok(Re {
            src: src.to_string(),
            re,
        })
    }

    /// The text between the `%` signs.
    pub fn as_str(&self) -> &str {
        &self.src
    }

    /// Does `s` contain a match?
    pub fn is_match(&self, s: &str) -> bool {
        self.re.is_match(s)
    }
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
    /// `%regex%` (only with `=` and `!=`).
    Regex(Re),
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
            let n = toks.iter().filter(|t| matches!(t, Tok::Regex(_))).count();
            check_regex_count(n)?;
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
            return Re::new(&s[1..s.len() - 1]).map(Pattern::Regex);
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
            Pattern::Regex(re) => re.is_match(message),
        }
    }
}

fn check_regex_count(n: usize) -> Result<(), LogError> {
    if n > MAX_REGEXES {
        return Err(LogError::Pattern(format!(
            "a filter pattern may contain at most {MAX_REGEXES} regular expressions, found {n}"
        )));
    }
    Ok(())
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
    Regex(Re),
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
            '%' => {
                let (body, next) = regex_body(&chars, i)?;
                out.push(Tok::Regex(Re::new(&body)?));
                i = next;
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

/// The text of the `%…%` regex starting at `chars[start]` (a `%`), and the index after it.
fn regex_body(chars: &[char], start: usize) -> Result<(String, usize), LogError> {
    let mut i = start + 1;
    let mut body = String::new();
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                body.push('\\');
                body.push(chars[i + 1]);
                i += 2;
            }
            '%' => return Ok((body, i + 1)),
            c => {
                body.push(c);
                i += 1;
            }
        }
    }
    Err(LogError::Pattern(
        "unterminated %regular expression%".into(),
    ))
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
                    Some(Tok::Regex(r)) => Literal::Regex(r),
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
                check_op(op, &lit)?;
                Ok(JsonExpr::Cmp(path, op, lit))
            }
            other => Err(LogError::Pattern(format!(
                "expected a selector like $.field, found {other:?}"
            ))),
        }
    }
}

fn check_op(op: CmpOp, lit: &Literal) -> Result<(), LogError> {
    let numeric = matches!(op, CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge);
    match lit {
        Literal::Num(_) => Ok(()),
        Literal::Regex(_) if numeric => Err(LogError::Pattern(
            "regular expressions can only be compared with = and !=".into(),
        )),
        _ if numeric => Err(LogError::Pattern(
            "numeric comparisons need a number on the right".into(),
        )),
        _ => Ok(()),
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
        (Literal::Regex(re), v) => {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(x) => x.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return false,
            };
            match op {
                CmpOp::Eq => re.is_match(&text),
                CmpOp::Ne => !re.is_match(&text),
                _ => false,
            }
        }
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
    for raw in &split_specs(inner)? {
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
                let lit = if val.len() >= 2 && val.starts_with('%') && val.ends_with('%') {
                    Literal::Regex(Re::new(&val[1..val.len() - 1])?)
                } else if let Some(q) = val.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                    Literal::Str(q.to_string())
                } else {
                    match val.parse::<f64>() {
                        Ok(n) if n.is_finite() => Literal::Num(n),
                        _ => Literal::Str(val.to_string()),
                    }
                };
                check_op(op, &lit)?;
                spec = FieldSpec::Cond(op, lit);
                break;
            }
        }
        out.push(spec);
    }
    let n = out
        .iter()
        .filter(|f| matches!(f, FieldSpec::Cond(_, Literal::Regex(_))))
        .count();
    check_regex_count(n)?;
    Ok(out)
}

/// Splits the inside of `[ … ]` at commas that are not inside `"…"` or `%…%`.
fn split_specs(inner: &str) -> Result<Vec<String>, LogError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(_), '\\') => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            (None, '"') | (None, '%') => {
                quote = Some(c);
                cur.push(c);
            }
            (None, ',') => out.push(std::mem::take(&mut cur)),
            (_, c) => cur.push(c),
        }
    }
    if quote.is_some() {
        return Err(LogError::Pattern(
            "unterminated quote or %regular expression% in space-delimited pattern".into(),
        ));
    }
    out.push(cur);
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
            ("%AUTHORIZED%", "[ERROR 401] UNAUTHORIZED REQUEST", true),
            ("%AUTHORIZED%", "[SUCCESS 200] AUTHORIZED REQUEST", true),
            ("%AUTHORIZED%", "authorized", false),
            ("%[Ee]rror|[Ff]ail%", "disk failure", true),
            ("%[Ee]rror|[Ff]ail%", "Error 42", true),
            ("%[Ee]rror|[Ff]ail%", "ok", false),
            (
                r"%\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}%",
                "from 10.0.12.7 port 22",
                true,
            ),
            (
                r"%\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}%",
                "from 10.0.x.7",
                false,
            ),
            ("%^[hc]at%", "hat trick", true),
            ("%^[hc]at%", "that", false),
            ("%[hc]at$%", "that", true),
            ("%colou?r%", "color", true),
            ("%colou?r%", "colour", true),
            ("%a{3,5}%", "baab", false),
            ("%a{3,5}%", "baaab", true),
            ("%[^0-9]x%", "1x", false),
            ("%[^0-9]x%", "ax", true),
            (r"%\s\w+=%", "GET user=5", true),
            (r"%\s\w+=%", "GET =5", false),
            (r"%\d%", "١", false),
            (r"%a\.b%", "axb", false),
            (r"%a.b%", "axb", true),
            ("%ERROR%", "error", false),
            ("{ $.path = %^/api/% }", r#"{"path":"/api/users"}"#, true),
            ("{ $.path = %^/api/% }", r#"{"path":"/web/api/"}"#, false),
            ("{ $.path != %^/api/% }", r#"{"path":"/web"}"#, true),
            (r"{ $.code = %^5\d\d$% }", r#"{"code":503}"#, true),
            ("{ $.a = %x% && $.b = %y% }", r#"{"a":"xx","b":"yy"}"#, true),
            (
                r"[ip = %^10\.%, user, ..., status = %^4%, bytes]",
                "10.1.2.3 frank [10/Oct/2000] \"GET /x\" 404 1534",
                true,
            ),
            (
                r"[ip = %^10\.%, user, ..., status = %^4%, bytes]",
                "11.1.2.3 frank [10/Oct/2000] \"GET /x\" 404 1534",
                false,
            ),
            ("[a = %x{1,2}%, b]", "xx y", true),
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
            "%%",
            "%a(b)%",
            "%a!%",
            "%é%",
            "%a\\1%",
            "%[a-%",
            "{ $.a = %x% && $.b = %y% && $.c = %z% }",
            "{ $.a > %1% }",
            "[a = %x%, b = %y%, c = %z%]",
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
