//! Recursive-descent parser: tokens → [`Node`] tree with typed, pre-validated arguments.

use regex::{Regex, RegexBuilder};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Compiled `=~` patterns by source text. Compiling a pattern costs tens of microseconds — more
/// than a whole placement — and the same few expressions arrive with every RunTask and every
/// service placement, so they are compiled once. Bounded (a compiled pattern may take up to
/// 1 MiB): at most CAPACITY patterns of at most MAX_CACHED bytes, cleared when full.
fn compiled_pattern(pattern: &str) -> Option<Regex> {
    const CAPACITY: usize = 64;
    const MAX_CACHED: usize = 256;
    static CACHE: OnceLock<Mutex<HashMap<String, Regex>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(re) = cache.lock().ok().and_then(|c| c.get(pattern).cloned()) {
        return Some(re);
    }
    let re = RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .ok()?;
    if pattern.len() > MAX_CACHED {
        return Some(re);
    }
    if let Ok(mut c) = cache.lock() {
        if c.len() >= CAPACITY {
            c.clear();
        }
        c.insert(pattern.to_string(), re.clone());
    }
    Some(re)
}

use super::lexer::{syntax_error, tokenize, Tok, Token};
use super::{
    parse_date_interval, parse_version, CmpOp, Cond, Node, PredKind, Predicate, Subject,
    MAX_EXPRESSION_LEN,
};
use crate::error::PlacementError;

const MAX_DEPTH: usize = 64;

/// An operator as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equals,
    NotEquals,
    GreaterThan,
    GreaterThanEqual,
    LessThan,
    LessThanEqual,
    Exists,
    NotExists,
    In,
    NotIn,
    Matches,
    NotMatches,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Equals => "equals (==)",
            Op::NotEquals => "not_equals (!=)",
            Op::GreaterThan => "greater_than (>)",
            Op::GreaterThanEqual => "greater_than_equal (>=)",
            Op::LessThan => "less_than (<)",
            Op::LessThanEqual => "less_than_equal (<=)",
            Op::Exists => "exists",
            Op::NotExists => "not_exists (!exists)",
            Op::In => "in",
            Op::NotIn => "not_in (!in)",
            Op::Matches => "matches (=~)",
            Op::NotMatches => "not_matches (!~)",
        }
    }
}

struct Parser<'s> {
    source: &'s str,
    toks: Vec<Token>,
    at: usize,
}

pub(crate) fn parse(source: &str) -> Result<Node, PlacementError> {
    let len = source.chars().count();
    if len > MAX_EXPRESSION_LEN {
        return Err(PlacementError::invalid_parameter(format!(
            "Invalid expression: the expression is {len} characters long; the maximum is {MAX_EXPRESSION_LEN}."
        )));
    }
    let toks = tokenize(source)?;
    let mut p = Parser {
        source,
        toks,
        at: 0,
    };
    if p.peek().tok == Tok::Eof {
        return Err(syntax_error(source, 1, "empty expression"));
    }
    let node = p.parse_or(0)?;
    let t = p.peek();
    if t.tok != Tok::Eof {
        return Err(p.err(t.pos, &format!("unexpected {}", describe(&t.tok))));
    }
    Ok(node)
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::LBrack => "'['".into(),
        Tok::RBrack => "']'".into(),
        Tok::Comma => "','".into(),
        Tok::Sym(s) => format!("'{s}'"),
        Tok::Bang => "'!'".into(),
        Tok::Word(w) => format!("'{w}'"),
        Tok::Quoted(w) => format!("'{w}'"),
        Tok::Eof => "end of expression".into(),
    }
}

impl<'s> Parser<'s> {
    fn peek(&self) -> Token {
        self.toks.get(self.at).cloned().unwrap_or(Token {
            tok: Tok::Eof,
            pos: self.source.chars().count() + 1,
        })
    }

    fn bump(&mut self) -> Token {
        let t = self.peek();
        if self.at < self.toks.len() {
            self.at += 1;
        }
        t
    }

    fn err(&self, pos: usize, detail: &str) -> PlacementError {
        syntax_error(self.source, pos, detail)
    }

    fn is_word(t: &Tok, w: &str) -> bool {
        matches!(t, Tok::Word(x) if x == w)
    }

    fn parse_or(&mut self, depth: usize) -> Result<Node, PlacementError> {
        let mut left = self.parse_and(depth)?;
        loop {
            let t = self.peek().tok;
            if t == Tok::Sym("||") || Self::is_word(&t, "or") {
                self.bump();
                let right = self.parse_and(depth)?;
                left = Node::Or(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn parse_and(&mut self, depth: usize) -> Result<Node, PlacementError> {
        let mut left = self.parse_unary(depth)?;
        loop {
            let t = self.peek().tok;
            if t == Tok::Sym("&&") || Self::is_word(&t, "and") {
                self.bump();
                let right = self.parse_unary(depth)?;
                left = Node::And(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn parse_unary(&mut self, depth: usize) -> Result<Node, PlacementError> {
        let t = self.peek();
        if depth > MAX_DEPTH {
            return Err(self.err(t.pos, "expression nested too deeply"));
        }
        if t.tok == Tok::Bang || Self::is_word(&t.tok, "not") {
            self.bump();
            let inner = self.parse_unary(depth + 1)?;
            return Ok(Node::Not(Box::new(inner)));
        }
        if t.tok == Tok::LParen {
            self.bump();
            let inner = self.parse_or(depth + 1)?;
            let close = self.bump();
            if close.tok != Tok::RParen {
                return Err(self.err(
                    close.pos,
                    &format!("expected ')' but found {}", describe(&close.tok)),
                ));
            }
            return Ok(inner);
        }
        self.parse_simple()
    }

    fn parse_subject(&mut self) -> Result<Subject, PlacementError> {
        let t = self.bump();
        let Tok::Word(w) = &t.tok else {
            return Err(self.err(
                t.pos,
                &format!("expected a subject but found {}", describe(&t.tok)),
            ));
        };
        Ok(match w.as_str() {
            "agentConnected" => Subject::AgentConnected,
            "agentVersion" => Subject::AgentVersion,
            "ec2InstanceId" => Subject::Ec2InstanceId,
            "registeredAt" => Subject::RegisteredAt,
            "runningTasksCount" => Subject::RunningTasksCount,
            "task:group" => Subject::TaskGroup,
            other => match other.strip_prefix("attribute:") {
                Some(name) if !name.is_empty() => Subject::Attribute(name.to_string()),
                Some(_) => return Err(self.err(t.pos, "missing attribute name after 'attribute:'")),
                None => {
                    return Err(self.err(
                        t.pos,
                        &format!(
                            "unknown subject '{other}' (valid subjects: agentConnected, agentVersion, \
                             attribute:<attribute-name>, ec2InstanceId, registeredAt, runningTasksCount, task:group)"
                        ),
                    ))
                }
            },
        })
    }

    fn parse_operator(&mut self) -> Result<(Op, usize), PlacementError> {
        let t = self.bump();
        let op = match &t.tok {
            Tok::Sym("==") => Op::Equals,
            Tok::Sym("!=") => Op::NotEquals,
            Tok::Sym(">") => Op::GreaterThan,
            Tok::Sym(">=") => Op::GreaterThanEqual,
            Tok::Sym("<") => Op::LessThan,
            Tok::Sym("<=") => Op::LessThanEqual,
            Tok::Sym("=~") => Op::Matches,
            Tok::Sym("!~") => Op::NotMatches,
            Tok::Bang => {
                let n = self.bump();
                match &n.tok {
                    Tok::Word(w) if w == "exists" => Op::NotExists,
                    Tok::Word(w) if w == "in" => Op::NotIn,
                    other => {
                        return Err(self.err(
                            n.pos,
                            &format!(
                                "expected 'exists' or 'in' after '!' but found {}",
                                describe(other)
                            ),
                        ))
                    }
                }
            }
            Tok::Word(w) => match w.as_str() {
                "equals" => Op::Equals,
                "not_equals" => Op::NotEquals,
                "greater_than" => Op::GreaterThan,
                "greater_than_equal" => Op::GreaterThanEqual,
                "less_than" => Op::LessThan,
                "less_than_equal" => Op::LessThanEqual,
                "exists" => Op::Exists,
                "not_exists" => Op::NotExists,
                "in" => Op::In,
                "not_in" => Op::NotIn,
                "matches" => Op::Matches,
                "not_matches" => Op::NotMatches,
                _ => return Err(self.err(t.pos, &format!("expected an operator but found '{w}'"))),
            },
            other => {
                return Err(self.err(
                    t.pos,
                    &format!("expected an operator but found {}", describe(other)),
                ))
            }
        };
        Ok((op, t.pos))
    }

    fn parse_value(&mut self) -> Result<(String, usize), PlacementError> {
        let t = self.bump();
        match t.tok {
            Tok::Word(w) | Tok::Quoted(w) => Ok((w, t.pos)),
            other => Err(self.err(
                t.pos,
                &format!("expected an argument but found {}", describe(&other)),
            )),
        }
    }

    fn parse_list(&mut self) -> Result<Vec<(String, usize)>, PlacementError> {
        let open = self.bump();
        if open.tok != Tok::LBrack {
            return Err(self.err(
                open.pos,
                &format!(
                    "expected an argument list '[...]' but found {}",
                    describe(&open.tok)
                ),
            ));
        }
        let mut values = Vec::new();
        loop {
            values.push(self.parse_value()?);
            let t = self.bump();
            match t.tok {
                Tok::Comma => continue,
                Tok::RBrack => return Ok(values),
                other => {
                    return Err(self.err(
                        t.pos,
                        &format!("expected ',' or ']' but found {}", describe(&other)),
                    ))
                }
            }
        }
    }

    fn parse_simple(&mut self) -> Result<Node, PlacementError> {
        let subject_pos = self.peek().pos;
        let subject = self.parse_subject()?;
        let (op, op_pos) = self.parse_operator()?;
        let allowed: &[Op] = match subject {
            Subject::AgentConnected | Subject::Ec2InstanceId => &[
                Op::Equals,
                Op::NotEquals,
                Op::In,
                Op::NotIn,
                Op::Matches,
                Op::NotMatches,
            ],
            Subject::AgentVersion | Subject::RegisteredAt | Subject::RunningTasksCount => &[
                Op::Equals,
                Op::NotEquals,
                Op::GreaterThan,
                Op::GreaterThanEqual,
                Op::LessThan,
                Op::LessThanEqual,
            ],
            Subject::Attribute(_) | Subject::TaskGroup => &[
                Op::Equals,
                Op::NotEquals,
                Op::GreaterThan,
                Op::GreaterThanEqual,
                Op::LessThan,
                Op::LessThanEqual,
                Op::Exists,
                Op::NotExists,
                Op::In,
                Op::NotIn,
                Op::Matches,
                Op::NotMatches,
            ],
        };
        if !allowed.contains(&op) {
            let _ = subject_pos;
            return Err(self.err(
                op_pos,
                &format!(
                    "operator {} is not valid for subject {}",
                    op.name(),
                    subject_name(&subject)
                ),
            ));
        }
        let kind = match op {
            Op::Exists => PredKind::Exists,
            Op::NotExists => PredKind::NotExists,
            Op::In | Op::NotIn => {
                let list = self.parse_list()?;
                let mut values = Vec::with_capacity(list.len());
                for (v, pos) in list {
                    values.push(self.check_value(&subject, &v, pos)?);
                }
                let cond = Cond::StrIn(values);
                if op == Op::In {
                    PredKind::Pos(cond)
                } else {
                    PredKind::Neg(cond)
                }
            }
            Op::Matches | Op::NotMatches => {
                let (pattern, pos) = self.parse_value()?;
                let re = compiled_pattern(&pattern)
                    .ok_or_else(|| self.err(pos, &format!("invalid pattern '{pattern}'")))?;
                if op == Op::Matches {
                    PredKind::Pos(Cond::Regex(re))
                } else {
                    PredKind::Neg(Cond::Regex(re))
                }
            }
            _ => {
                let (value, pos) = self.parse_value()?;
                let cmp = match op {
                    Op::GreaterThan => CmpOp::Gt,
                    Op::GreaterThanEqual => CmpOp::Ge,
                    Op::LessThan => CmpOp::Lt,
                    Op::LessThanEqual => CmpOp::Le,
                    _ => CmpOp::Eq,
                };
                let cond = self.typed_cond(&subject, cmp, &value, pos)?;
                if op == Op::NotEquals {
                    PredKind::Neg(cond)
                } else {
                    PredKind::Pos(cond)
                }
            }
        };
        Ok(Node::Pred(Predicate { subject, kind }))
    }

    /// Validates a value used with `==`/`in` on a string-typed subject.
    fn check_value(
        &self,
        subject: &Subject,
        v: &str,
        pos: usize,
    ) -> Result<String, PlacementError> {
        match subject {
            Subject::AgentConnected if v != "true" && v != "false" => Err(self.err(
                pos,
                &format!("agentConnected takes true or false, not '{v}'"),
            )),
            _ => Ok(v.to_string()),
        }
    }

    fn typed_cond(
        &self,
        subject: &Subject,
        cmp: CmpOp,
        v: &str,
        pos: usize,
    ) -> Result<Cond, PlacementError> {
        Ok(match subject {
            Subject::AgentVersion => {
                let ver = parse_version(v)
                    .ok_or_else(|| self.err(pos, &format!("invalid agent version '{v}'")))?;
                Cond::Version(cmp, ver)
            }
            Subject::RegisteredAt => {
                let (s, e) = parse_date_interval(v).ok_or_else(|| {
                    self.err(
                        pos,
                        &format!(
                            "invalid date '{v}' (valid formats: 2018-06-18T22:28:28+00:00, 2018-06-18T22:28:28Z, \
                             2018-06-18T22:28:28, 2018-06-18)"
                        ),
                    )
                })?;
                Cond::Date(cmp, s, e)
            }
            Subject::RunningTasksCount => {
                let n: i64 = v.parse().map_err(|_| {
                    self.err(
                        pos,
                        &format!("runningTasksCount takes an integer, not '{v}'"),
                    )
                })?;
                Cond::Int(cmp, n)
            }
            _ if cmp == CmpOp::Eq => Cond::StrEq(self.check_value(subject, v, pos)?),
            _ => Cond::StrCmp(cmp, v.to_string()),
        })
    }
}

fn subject_name(s: &Subject) -> String {
    match s {
        Subject::Attribute(n) => format!("attribute:{n}"),
        Subject::Ec2InstanceId => "ec2InstanceId".into(),
        Subject::AgentConnected => "agentConnected".into(),
        Subject::AgentVersion => "agentVersion".into(),
        Subject::RegisteredAt => "registeredAt".into(),
        Subject::RunningTasksCount => "runningTasksCount".into(),
        Subject::TaskGroup => "task:group".into(),
    }
}
