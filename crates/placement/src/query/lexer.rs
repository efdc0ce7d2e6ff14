//! Tokens of the cluster query language.

use crate::error::PlacementError;

/// A token kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    LParen,
    RParen,
    LBrack,
    RBrack,
    Comma,
    /// A symbolic operator: `==`, `!=`, `>=`, `<=`, `>`, `<`, `=~`, `!~`, `&&`, `||`.
    Sym(&'static str),
    /// A lone `!` (boolean not, or the start of `!exists` / `!in`).
    Bang,
    /// A bare word: a subject, a keyword operator or an unquoted value.
    Word(String),
    /// A single- or double-quoted value, quotes removed.
    Quoted(String),
    Eof,
}

/// A token and its 1-based character position in the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: usize,
}

pub(crate) fn syntax_error(source: &str, pos: usize, detail: &str) -> PlacementError {
    PlacementError::invalid_parameter(format!(
        "Invalid expression '{source}': {detail} at position {pos}."
    ))
}

fn is_stop(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '(' | ')' | '[' | ']' | ',' | '\'' | '"' | '=' | '!' | '<' | '>' | '&' | '|'
        )
}

/// Splits `source` into tokens, ending with [`Tok::Eof`].
pub(crate) fn tokenize(source: &str) -> Result<Vec<Token>, PlacementError> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pos = i + 1;
        let next = chars.get(i + 1).copied();
        let single = |tok| Token { tok, pos };
        match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => out.push(single(Tok::LParen)),
            ')' => out.push(single(Tok::RParen)),
            '[' => out.push(single(Tok::LBrack)),
            ']' => out.push(single(Tok::RBrack)),
            ',' => out.push(single(Tok::Comma)),
            '\'' | '"' => {
                let quote = c;
                let mut value = String::new();
                let mut j = i + 1;
                let mut closed = false;
                while j < chars.len() {
                    let d = chars[j];
                    if d == '\\'
                        && j + 1 < chars.len()
                        && (chars[j + 1] == quote || chars[j + 1] == '\\')
                    {
                        value.push(chars[j + 1]);
                        j += 2;
                        continue;
                    }
                    if d == quote {
                        closed = true;
                        break;
                    }
                    value.push(d);
                    j += 1;
                }
                if !closed {
                    return Err(syntax_error(source, pos, "unterminated quoted value"));
                }
                out.push(single(Tok::Quoted(value)));
                i = j + 1;
                continue;
            }
            '=' => match next {
                Some('=') => {
                    out.push(single(Tok::Sym("==")));
                    i += 2;
                    continue;
                }
                Some('~') => {
                    out.push(single(Tok::Sym("=~")));
                    i += 2;
                    continue;
                }
                _ => {
                    return Err(syntax_error(
                        source,
                        pos,
                        "unexpected '=' (use '==' or 'equals')",
                    ))
                }
            },
            '!' => match next {
                Some('=') => {
                    out.push(single(Tok::Sym("!=")));
                    i += 2;
                    continue;
                }
                Some('~') => {
                    out.push(single(Tok::Sym("!~")));
                    i += 2;
                    continue;
                }
                _ => out.push(single(Tok::Bang)),
            },
            '>' | '<' => {
                let two = next == Some('=');
                let sym = match (c, two) {
                    ('>', true) => ">=",
                    ('>', false) => ">",
                    ('<', true) => "<=",
                    _ => "<",
                };
                out.push(single(Tok::Sym(sym)));
                i += if two { 2 } else { 1 };
                continue;
            }
            '&' | '|' => {
                if next != Some(c) {
                    return Err(syntax_error(
                        source,
                        pos,
                        if c == '&' {
                            "unexpected '&' (use '&&' or 'and')"
                        } else {
                            "unexpected '|' (use '||' or 'or')"
                        },
                    ));
                }
                out.push(single(Tok::Sym(if c == '&' { "&&" } else { "||" })));
                i += 2;
                continue;
            }
            _ => {
                let mut j = i;
                while j < chars.len() && !is_stop(chars[j]) {
                    j += 1;
                }
                out.push(single(Tok::Word(chars[i..j].iter().collect())));
                i = j;
                continue;
            }
        }
        i += 1;
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: chars.len() + 1,
    });
    Ok(out)
}
