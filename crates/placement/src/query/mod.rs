//! The cluster query language: the expressions of `memberOf` constraints and of
//! ListContainerInstances `filter`.
//!
//! Syntax, as the ECS developer guide documents it: `subject operator [argument]`, combined with
//! `and`/`&&`, `or`/`||`, `not`/`!` and parentheses. Subjects are `attribute:<name>`,
//! `ec2InstanceId`, `agentConnected`, `agentVersion`, `registeredAt`, `runningTasksCount` and
//! `task:group`. `matches`/`not_matches` take a (Java-style) regular expression that must match
//! the whole value. Precedence: `not` binds tighter than `and`, which binds tighter than `or`.
//!
//! Modules: `lexer` (tokens), `parser` (AST and typed arguments), `eval` (interpreter over
//! one [`InstanceView`](crate::InstanceView)), `compiled` (evaluation against a
//! [`ClusterIndex`](crate::ClusterIndex) without string work per instance).

pub(crate) mod compiled;
pub(crate) mod eval;
pub(crate) mod lexer;
pub(crate) mod parser;

use std::cmp::Ordering;

use regex::Regex;

use crate::error::PlacementError;

/// The maximum length of an expression, in characters.
pub const MAX_EXPRESSION_LEN: usize = 2000;

/// A parsed cluster query language expression.
#[derive(Debug, Clone)]
pub struct Expression {
    source: String,
    pub(crate) root: Node,
}

impl Expression {
    /// Parses `source`. Errors are `InvalidParameterException`s whose message names the
    /// 1-based character position of the problem.
    pub fn parse(source: &str) -> Result<Expression, PlacementError> {
        let root = parser::parse(source)?;
        Ok(Expression {
            source: source.to_string(),
            root,
        })
    }

    /// The text the expression was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression refers to state that changes as tasks are placed
    /// (`task:group`, `runningTasksCount`).
    pub fn is_dynamic(&self) -> bool {
        self.root.is_dynamic()
    }
}

impl std::fmt::Display for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

/// What an expression leaf looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Subject {
    Attribute(String),
    Ec2InstanceId,
    AgentConnected,
    AgentVersion,
    RegisteredAt,
    RunningTasksCount,
    TaskGroup,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            CmpOp::Eq => ord == Ordering::Equal,
            CmpOp::Lt => ord == Ordering::Less,
            CmpOp::Le => ord != Ordering::Greater,
            CmpOp::Gt => ord == Ordering::Greater,
            CmpOp::Ge => ord != Ordering::Less,
        }
    }
}

/// A positive condition on one value of the subject.
#[derive(Debug, Clone)]
pub(crate) enum Cond {
    StrEq(String),
    StrIn(Vec<String>),
    Regex(Regex),
    /// Numeric when both sides parse as numbers, otherwise lexicographic.
    StrCmp(CmpOp, String),
    Version(CmpOp, Vec<u64>),
    /// `registeredAt` against the interval `[start, end)` the argument denotes.
    Date(CmpOp, f64, f64),
    Int(CmpOp, i64),
}

/// One value of a subject.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Val<'v> {
    /// A string value; `None` for an attribute that is present without a value.
    Str(Option<&'v str>),
    Num(f64),
}

impl Cond {
    pub(crate) fn test(&self, v: Val<'_>) -> bool {
        match (self, v) {
            (Cond::StrEq(a), Val::Str(Some(s))) => s == a,
            (Cond::StrIn(list), Val::Str(Some(s))) => list.iter().any(|a| a == s),
            (Cond::Regex(re), Val::Str(Some(s))) => re.is_match(s),
            (Cond::StrCmp(op, a), Val::Str(Some(s))) => op.holds(compare_str(s, a)),
            (Cond::Version(op, a), Val::Str(Some(s))) => match parse_version(s) {
                Some(v) => op.holds(compare_versions(&v, a)),
                None => false,
            },
            (Cond::Date(op, start, end), Val::Num(t)) => match op {
                CmpOp::Eq => t >= *start && t < *end,
                CmpOp::Lt => t < *start,
                CmpOp::Le => t < *end,
                CmpOp::Gt => t >= *end,
                CmpOp::Ge => t >= *start,
            },
            (Cond::Int(op, a), Val::Num(t)) => {
                op.holds(t.partial_cmp(&(*a as f64)).unwrap_or(Ordering::Less))
            }
            _ => false,
        }
    }
}

/// How a predicate combines the subject's values (a subject may have none, one, or — for
/// `task:group` — many).
#[derive(Debug, Clone)]
pub(crate) enum PredKind {
    /// The subject has at least one value.
    Exists,
    /// The subject has no value.
    NotExists,
    /// Some value satisfies the condition (`==`, `in`, `=~`, `>`, …).
    Pos(Cond),
    /// The subject has a value and none satisfies the condition (`!=`, `not_in`, `!~`).
    Neg(Cond),
}

impl PredKind {
    pub(crate) fn apply<'v>(&self, values: impl Iterator<Item = Val<'v>>) -> bool {
        match self {
            PredKind::Exists => values.into_iter().next().is_some(),
            PredKind::NotExists => values.into_iter().next().is_none(),
            PredKind::Pos(c) => values.into_iter().any(|v| c.test(v)),
            PredKind::Neg(c) => {
                let mut any = false;
                for v in values {
                    any = true;
                    if c.test(v) {
                        return false;
                    }
                }
                any
            }
        }
    }

    pub(crate) fn cond(&self) -> Option<&Cond> {
        match self {
            PredKind::Pos(c) | PredKind::Neg(c) => Some(c),
            _ => None,
        }
    }
}

/// `subject operator [argument]`.
#[derive(Debug, Clone)]
pub(crate) struct Predicate {
    pub subject: Subject,
    pub kind: PredKind,
}

/// The expression tree.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Pred(Predicate),
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
}

impl Node {
    fn is_dynamic(&self) -> bool {
        match self {
            Node::Pred(p) => matches!(p.subject, Subject::TaskGroup | Subject::RunningTasksCount),
            Node::Not(n) => n.is_dynamic(),
            Node::And(a, b) | Node::Or(a, b) => a.is_dynamic() || b.is_dynamic(),
        }
    }
}

fn compare_str(value: &str, arg: &str) -> Ordering {
    match (value.trim().parse::<f64>(), arg.trim().parse::<f64>()) {
        (Ok(a), Ok(b)) if a.is_finite() && b.is_finite() => {
            a.partial_cmp(&b).unwrap_or(Ordering::Equal)
        }
        _ => value.cmp(arg),
    }
}

/// Parses an agent version such as `1.14.5` (a leading `v` and any suffix after the numeric
/// dotted part, like `-beta`, are ignored).
pub(crate) fn parse_version(s: &str) -> Option<Vec<u64>> {
    let s = s.trim();
    let s = s
        .strip_prefix('v')
        .or_else(|| s.strip_prefix('V'))
        .unwrap_or(s);
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let core = &s[..end];
    if core.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    for p in core.split('.') {
        if p.is_empty() || p.len() > 18 {
            return None;
        }
        parts.push(p.parse().ok()?);
    }
    Some(parts)
}

pub(crate) fn compare_versions(a: &[u64], b: &[u64]) -> Ordering {
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        match x.cmp(&y) {
            Ordering::Equal => continue,
            o => return o,
        }
    }
    Ordering::Equal
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn digits(s: &str, n: usize) -> Option<i64> {
    if s.len() == n && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Parses one of the documented `registeredAt` formats (`2018-06-18T22:28:28+00:00`,
/// `2018-06-18T22:28:28Z`, `2018-06-18T22:28:28`, `2018-06-18`) into the interval of epoch
/// seconds it denotes: a whole UTC day for a date, one second for a date-time.
pub(crate) fn parse_date_interval(s: &str) -> Option<(f64, f64)> {
    if !s.is_ascii() || s.len() < 10 {
        return None;
    }
    let (date, rest) = s.split_at(10);
    let b = date.as_bytes();
    if b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = digits(&date[0..4], 4)?;
    let m = digits(&date[5..7], 2)?;
    let d = digits(&date[8..10], 2)?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let day = days_from_civil(y, m, d) * 86_400;
    if rest.is_empty() {
        return Some((day as f64, (day + 86_400) as f64));
    }
    let rest = rest.strip_prefix('T')?;
    if rest.len() < 8 {
        return None;
    }
    let (time, tz) = rest.split_at(8);
    let tb = time.as_bytes();
    if tb[2] != b':' || tb[5] != b':' {
        return None;
    }
    let hh = digits(&time[0..2], 2)?;
    let mm = digits(&time[3..5], 2)?;
    let ss = digits(&time[6..8], 2)?;
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let offset = match tz {
        "" | "Z" => 0,
        _ => {
            let sign = match tz.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let z = &tz[1..];
            if z.len() != 5 || z.as_bytes()[2] != b':' {
                return None;
            }
            let oh = digits(&z[0..2], 2)?;
            let om = digits(&z[3..5], 2)?;
            sign * (oh * 3600 + om * 60)
        }
    };
    let t = day + hh * 3600 + mm * 60 + ss - offset;
    Some((t as f64, (t + 1) as f64))
}
