//! ECR lifecycle policies: parsing and validating the policy document, and deciding which images a
//! policy expires. Pure: no IO, no clock (`now` is a parameter).
//!
//! Evaluation follows ECR's documented rules ("How lifecycle policies work"):
//! - rules are applied in ascending `rulePriority`;
//! - a rule *selects* images by `tagStatus` (`tagged` with `tagPrefixList` or `tagPatternList`,
//!   `untagged`, `any`); with several prefixes (or patterns) an image is selected only when each
//!   one is matched by one of its tags; patterns use `*` as a wildcard (at most four per pattern);
//! - `imageCountMoreThan N` keeps the N most recently pushed selected images and expires the
//!   rest; `sinceImagePushed N days` expires selected images pushed more than N days ago;
//!   expiration always takes older images before newer ones;
//! - an image is expired by at most one rule, and an image selected by a higher-priority rule is
//!   never expired by a lower-priority one — but lower-priority rules still *see* (count) it, as
//!   if it had not been expired.

use serde_json::{Map, Value};
use std::collections::HashSet;

/// The prefix of every validation message, as ECR words it (inside the InvalidParameterException
/// text `Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: '…'`).
pub const VALIDATION_FAILURE: &str = "Lifecycle policy validation failure: ";

const SECONDS_PER_DAY: f64 = 86_400.0;
const MAX_WILDCARDS: usize = 4;

/// A policy that failed validation; the message is ECR's (without [`VALIDATION_FAILURE`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{VALIDATION_FAILURE}{0}")]
pub struct PolicyError(pub String);

/// Which images a rule looks at, by tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagStatus {
    Tagged,
    Untagged,
    Any,
}

/// How a `tagged` rule matches tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagFilter {
    /// Every prefix must start one of the image's tags.
    Prefixes(Vec<String>),
    /// Every pattern (`*` = any run of characters) must match one of the image's tags.
    Patterns(Vec<String>),
}

/// When selected images expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountRule {
    /// Keep the N most recently pushed, expire the rest.
    ImageCountMoreThan(u32),
    /// Expire images pushed more than N days ago.
    SinceImagePushedDays(u32),
}

/// One rule of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub priority: i64,
    pub description: Option<String>,
    pub tag_status: TagStatus,
    pub filter: Option<TagFilter>,
    pub count: CountRule,
}

/// A validated policy; rules in ascending priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

/// What evaluation needs to know about an image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFacts {
    pub digest: String,
    pub tags: Vec<String>,
    /// Epoch seconds.
    pub pushed_at: f64,
}

/// An image a policy expires, and the rule that expires it.
#[derive(Debug, Clone, PartialEq)]
pub struct Expiry {
    pub digest: String,
    pub rule_priority: i64,
}

fn fail<T>(msg: impl Into<String>) -> Result<T, PolicyError> {
    Err(PolicyError(msg.into()))
}

/// JSON-schema style type name, as ECR's validator reports it.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn quoted_list(items: &[&str]) -> String {
    let q: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", q.join(","))
}

/// Checks required and allowed members of one object of the policy.
fn check_members(
    obj: &Map<String, Value>,
    required: &[&str],
    allowed: &[&str],
) -> Result<(), PolicyError> {
    let mut missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|k| !obj.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        missing.sort_unstable();
        return fail(format!(
            "object has missing required properties ({})",
            quoted_list(&missing)
        ));
    }
    let mut extra: Vec<&str> = obj
        .keys()
        .map(String::as_str)
        .filter(|k| !required.contains(k) && !allowed.contains(k))
        .collect();
    if !extra.is_empty() {
        extra.sort_unstable();
        return fail(format!(
            "object instance has properties which are not allowed by the schema: ({})",
            quoted_list(&extra)
        ));
    }
    Ok(())
}

fn object(v: &Value) -> Result<&Map<String, Value>, PolicyError> {
    v.as_object().ok_or_else(|| {
        PolicyError(format!(
            "instance type ({}) does not match any allowed primitive type (allowed: [\"object\"])",
            type_name(v)
        ))
    })
}

fn enum_value<'a>(v: &'a Value, allowed: &[&str]) -> Result<&'a str, PolicyError> {
    match v.as_str() {
        Some(s) if allowed.contains(&s) => Ok(s),
        Some(s) => fail(format!(
            "instance value (\"{s}\") not found in enum (possible values: {})",
            quoted_list(allowed)
        )),
        None => fail(format!(
            "instance type ({}) does not match any allowed primitive type (allowed: [\"string\"])",
            type_name(v)
        )),
    }
}

fn integer(v: &Value, minimum: i64) -> Result<i64, PolicyError> {
    let Some(n) = v.as_i64() else {
        return fail(format!(
            "instance type ({}) does not match any allowed primitive type (allowed: [\"integer\"])",
            type_name(v)
        ));
    };
    if n < minimum {
        return fail(format!(
            "numeric instance is lower than the required minimum (minimum: {minimum}, found: {n})"
        ));
    }
    Ok(n)
}

fn string_list(v: &Value) -> Result<Vec<String>, PolicyError> {
    let Some(items) = v.as_array() else {
        return fail(format!(
            "instance type ({}) does not match any allowed primitive type (allowed: [\"array\"])",
            type_name(v)
        ));
    };
    if items.is_empty() {
        return fail(
            "array is too short: must have at least 1 elements but instance has 0 elements",
        );
    }
    let mut out = Vec::new();
    for i in items {
        match i.as_str() {
            Some(s) if !s.is_empty() => out.push(s.to_string()),
            Some(_) => return fail("string \"\" is too short (length: 0, required minimum: 1)"),
            None => {
                return fail(format!(
                    "instance type ({}) does not match any allowed primitive type (allowed: [\"string\"])",
                    type_name(i)
                ))
            }
        }
    }
    Ok(out)
}

/// Parses and validates a lifecycle policy document as ECR does.
pub fn parse(text: &str) -> Result<Policy, PolicyError> {
    let doc: Value = match serde_json::from_str(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => return fail("Could not map policyString into LifecyclePolicy."),
    };
    let Some(rules_v) = doc.get("rules") else {
        return fail("object has missing required properties ([\"rules\"])");
    };
    let Some(rules_a) = rules_v.as_array() else {
        return fail(format!(
            "instance type ({}) does not match any allowed primitive type (allowed: [\"array\"])",
            type_name(rules_v)
        ));
    };
    if rules_a.is_empty() {
        return fail(
            "array is too short: must have at least 1 elements but instance has 0 elements",
        );
    }
    let mut rules = Vec::new();
    for r in rules_a {
        rules.push(parse_rule(r)?);
    }
    rules.sort_by_key(|r| r.priority);
    let mut seen = HashSet::new();
    for r in &rules {
        if !seen.insert(r.priority) {
            return fail(format!(
                "Rule priority {} is used by more than one rule: rulePriority must be unique",
                r.priority
            ));
        }
    }
    if rules
        .iter()
        .filter(|r| r.tag_status == TagStatus::Untagged)
        .count()
        > 1
    {
        return fail("Only one rule can select Untagged images per storage class");
    }
    let last = rules.len() - 1;
    if rules
        .iter()
        .enumerate()
        .any(|(i, r)| r.tag_status == TagStatus::Any && i != last)
    {
        return fail("Rule for tagStatus=ANY must have the lowest priority per storage class");
    }
    Ok(Policy { rules })
}

fn parse_rule(v: &Value) -> Result<Rule, PolicyError> {
    let r = object(v)?;
    check_members(
        r,
        &["rulePriority", "selection", "action"],
        &["description"],
    )?;
    let priority = integer(&r["rulePriority"], 1)?;
    let description = match r.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return fail(format!(
            "instance type ({}) does not match any allowed primitive type (allowed: [\"string\"])",
            type_name(other)
        ))
        }
    };
    let action = object(&r["action"])?;
    check_members(action, &["type"], &[])?;
    enum_value(&action["type"], &["expire"])?;

    let s = object(&r["selection"])?;
    check_members(
        s,
        &["tagStatus", "countType", "countNumber"],
        &["tagPrefixList", "tagPatternList", "countUnit"],
    )?;
    let tag_status = match enum_value(&s["tagStatus"], &["tagged", "untagged", "any"])? {
        "tagged" => TagStatus::Tagged,
        "untagged" => TagStatus::Untagged,
        _ => TagStatus::Any,
    };
    let count_type = enum_value(&s["countType"], &["imageCountMoreThan", "sinceImagePushed"])
        .map_err(|_| {
            PolicyError("instance failed to match exactly one schema (matched 0 out of 2)".into())
        })?;
    let count_number = integer(&s["countNumber"], 1)?;
    let count_number = u32::try_from(count_number).map_err(|_| {
        PolicyError(format!(
            "numeric instance is greater than the required maximum (maximum: {}, found: {count_number})",
            u32::MAX
        ))
    })?;
    let count = match (count_type, s.get("countUnit")) {
        ("imageCountMoreThan", None) => CountRule::ImageCountMoreThan(count_number),
        ("sinceImagePushed", Some(Value::String(u))) if u == "days" => {
            CountRule::SinceImagePushedDays(count_number)
        }
        _ => return fail("instance failed to match exactly one schema (matched 0 out of 2)"),
    };
    let prefixes = s.get("tagPrefixList").map(string_list).transpose()?;
    let patterns = s.get("tagPatternList").map(string_list).transpose()?;
    let filter = match (tag_status, prefixes, patterns) {
        (_, Some(_), Some(_)) => {
            return fail("tagPrefixList and tagPatternList cannot both be specified in a rule")
        }
        (TagStatus::Tagged, None, None) => {
            return fail("Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED.")
        }
        (TagStatus::Tagged, Some(p), None) => Some(TagFilter::Prefixes(p)),
        (TagStatus::Tagged, None, Some(p)) => {
            if let Some(bad) = p.iter().find(|p| p.matches('*').count() > MAX_WILDCARDS) {
                return fail(format!(
                    "tagPatternList entry '{bad}' has more than {MAX_WILDCARDS} wildcards (*)"
                ));
            }
            Some(TagFilter::Patterns(p))
        }
        (_, None, None) => None,
        (_, _, _) => {
            return fail(
                "tagPrefixList and tagPatternList can only be specified when tagStatus=TAGGED.",
            )
        }
    };
    Ok(Rule {
        priority,
        description,
        tag_status,
        filter,
        count,
    })
}

/// Does `tag` match `pattern` (`*` matches any run of characters, including none)?
pub fn wildcard_match(pattern: &str, tag: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == tag;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if tag.len() < first.len() + last.len() || !tag.starts_with(first) || !tag.ends_with(last) {
        return false;
    }
    let mut rest = &tag[first.len()..tag.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

impl Rule {
    /// Does this rule's tag selection include `image`?
    pub fn selects(&self, image: &ImageFacts) -> bool {
        match self.tag_status {
            TagStatus::Any => true,
            TagStatus::Untagged => image.tags.is_empty(),
            TagStatus::Tagged => {
                !image.tags.is_empty()
                    && match &self.filter {
                        Some(TagFilter::Prefixes(ps)) => ps
                            .iter()
                            .all(|p| image.tags.iter().any(|t| t.starts_with(p.as_str()))),
                        Some(TagFilter::Patterns(ps)) => ps
                            .iter()
                            .all(|p| image.tags.iter().any(|t| wildcard_match(p, t))),
                        None => false,
                    }
            }
        }
    }
}

/// The images `policy` expires at time `now` (epoch seconds), oldest first within each rule, in
/// rule-priority order.
pub fn evaluate(policy: &Policy, images: &[ImageFacts], now: f64) -> Vec<Expiry> {
    let mut claimed: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    for rule in &policy.rules {
        // Newest first (ties: digest, for a deterministic answer).
        let mut selected: Vec<&ImageFacts> = images.iter().filter(|i| rule.selects(i)).collect();
        selected.sort_by(|a, b| {
            b.pushed_at
                .total_cmp(&a.pushed_at)
                .then_with(|| a.digest.cmp(&b.digest))
        });
        let mut expiring: Vec<&ImageFacts> = match rule.count {
            CountRule::ImageCountMoreThan(n) => selected.iter().skip(n as usize).copied().collect(),
            CountRule::SinceImagePushedDays(d) => {
                let cutoff = now - f64::from(d) * SECONDS_PER_DAY;
                selected
                    .iter()
                    .filter(|i| i.pushed_at < cutoff)
                    .copied()
                    .collect()
            }
        };
        expiring.reverse(); // oldest first
        for i in expiring {
            if !claimed.contains(i.digest.as_str()) {
                out.push(Expiry {
                    digest: i.digest.clone(),
                    rule_priority: rule.priority,
                });
            }
        }
        claimed.extend(selected.iter().map(|i| i.digest.as_str()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: f64 = SECONDS_PER_DAY;
    const NOW: f64 = 1_000.0 * DAY;

    fn img(digest: &str, tags: &[&str], age_days: f64) -> ImageFacts {
        ImageFacts {
            digest: digest.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            pushed_at: NOW - age_days * DAY,
        }
    }

    fn policy(rules: &str) -> Policy {
        parse(&format!("{{\"rules\": [{rules}]}}")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn rule(priority: i64, selection: &str) -> String {
        format!(
            "{{\"rulePriority\": {priority}, \"selection\": {{{selection}}}, \"action\": {{\"type\": \"expire\"}}}}"
        )
    }

    fn expired(p: &Policy, images: &[ImageFacts]) -> Vec<(String, i64)> {
        evaluate(p, images, NOW)
            .into_iter()
            .map(|e| (e.digest, e.rule_priority))
            .collect()
    }

    fn e(d: &str, p: i64) -> (String, i64) {
        (d.to_string(), p)
    }

    #[test]
    fn wildcards() {
        let cases = [
            ("prod*", "prod", true),
            ("prod*", "prod1", true),
            ("prod*", "xprod", false),
            ("*prod", "xprod", true),
            ("*prod*", "aprodb", true),
            ("prod", "prod", true),
            ("prod", "prod1", false),
            ("*", "anything", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "acb", false),
            ("*test*1*2*3", "mytest-1-2-3", true),
            ("ab*ba", "aba", false),
            ("v*-rc*", "v1.2-rc3", true),
        ];
        for (p, t, want) in cases {
            assert_eq!(wildcard_match(p, t), want, "{p} vs {t}");
        }
    }

    #[test]
    fn evaluation_table() {
        let images = vec![
            img("u1", &[], 30.0),
            img("u2", &[], 20.0),
            img("u3", &[], 10.0),
            img("p1", &["prod1"], 40.0),
            img("p2", &["prod2"], 5.0),
            img("p3", &["prod3", "latest"], 1.0),
            img("d1", &["dev-1"], 50.0),
            img("d2", &["dev-2"], 2.0),
        ];
        struct Case {
            name: &'static str,
            rules: Vec<String>,
            want: Vec<(String, i64)>,
        }
        let cases = vec![
            Case {
                name: "untagged: keep the newest one",
                rules: vec![rule(1, r#""tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1"#)],
                want: vec![e("u1", 1), e("u2", 1)],
            },
            Case {
                name: "untagged older than 15 days",
                rules: vec![rule(1, r#""tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":15"#)],
                want: vec![e("u1", 1), e("u2", 1)],
            },
            Case {
                name: "tag prefix, count",
                rules: vec![rule(1, r#""tagStatus":"tagged","tagPrefixList":["prod"],"countType":"imageCountMoreThan","countNumber":2"#)],
                want: vec![e("p1", 1)],
            },
            Case {
                name: "tag pattern with wildcard, age",
                rules: vec![rule(1, r#""tagStatus":"tagged","tagPatternList":["dev-*"],"countType":"sinceImagePushed","countUnit":"days","countNumber":3"#)],
                want: vec![e("d1", 1)],
            },
            Case {
                name: "several prefixes: the image needs all of them",
                rules: vec![rule(1, r#""tagStatus":"tagged","tagPrefixList":["prod","lat"],"countType":"sinceImagePushed","countUnit":"days","countNumber":1"#)],
                want: vec![],
            },
            Case {
                name: "several patterns: all must match some tag",
                rules: vec![rule(1, r#""tagStatus":"tagged","tagPatternList":["prod*","latest"],"countType":"imageCountMoreThan","countNumber":1"#)],
                want: vec![],
            },
            Case {
                name: "any: keep the 3 newest images of all",
                rules: vec![rule(1, r#""tagStatus":"any","countType":"imageCountMoreThan","countNumber":3"#)],
                want: vec![e("d1", 1), e("p1", 1), e("u1", 1), e("u2", 1), e("u3", 1)],
            },
            Case {
                name: "a higher-priority rule protects what it selects, but lower rules still count it",
                rules: vec![
                    rule(1, r#""tagStatus":"tagged","tagPrefixList":["prod"],"countType":"imageCountMoreThan","countNumber":9999"#),
                    rule(2, r#""tagStatus":"any","countType":"imageCountMoreThan","countNumber":3"#),
                ],
                // newest: p3 p2 d2 | u3 u1.. : p3, p2, d2 are the 3 kept; of the rest p1 is protected.
                want: vec![e("d1", 2), e("u1", 2), e("u2", 2), e("u3", 2)],
            },
            Case {
                name: "an image is expired by one rule only (the highest priority)",
                rules: vec![
                    rule(1, r#""tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":25"#),
                    rule(5, r#""tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":15"#),
                ],
                want: vec![e("u1", 1), e("d1", 5), e("p1", 5)],
            },
            Case {
                name: "rules apply in priority order, not document order",
                rules: vec![
                    rule(20, r#""tagStatus":"tagged","tagPatternList":["*"],"countType":"imageCountMoreThan","countNumber":1"#),
                    rule(10, r#""tagStatus":"tagged","tagPrefixList":["dev"],"countType":"imageCountMoreThan","countNumber":1"#),
                ],
                // rule 10: dev-2 kept, dev-1 expired (by 10). rule 20 keeps p3 only; p1, p2
                // expire by 20; dev images are protected by rule 10.
                want: vec![e("d1", 10), e("p1", 20), e("p2", 20)],
            },
            Case {
                name: "nothing old enough",
                rules: vec![rule(1, r#""tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":365"#)],
                want: vec![],
            },
        ];
        for c in cases {
            let p = policy(&c.rules.join(","));
            assert_eq!(expired(&p, &images), c.want, "{}", c.name);
        }
    }

    #[test]
    fn validation_table() {
        let ok_sel = r#""tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1"#;
        let cases: Vec<(String, &str)> = vec![
            ("not json".into(), "Could not map policyString into LifecyclePolicy."),
            ("[]".into(), "Could not map policyString into LifecyclePolicy."),
            ("{}".into(), "object has missing required properties ([\"rules\"])"),
            ("{\"rules\": []}".into(), "array is too short: must have at least 1 elements but instance has 0 elements"),
            ("{\"rules\": [1]}".into(), "instance type (integer) does not match any allowed primitive type (allowed: [\"object\"])"),
            (
                "{\"rules\": [{\"selection\": {}}]}".into(),
                "object has missing required properties ([\"action\",\"rulePriority\"])",
            ),
            (
                format!("{{\"rules\": [{{\"rulePriority\":1,\"selection\":{{{ok_sel}}},\"action\":{{\"type\":\"expire\"}},\"x\":1}}]}}"),
                "object instance has properties which are not allowed by the schema: ([\"x\"])",
            ),
            (
                format!("{{\"rules\": [{{\"rulePriority\":0,\"selection\":{{{ok_sel}}},\"action\":{{\"type\":\"expire\"}}}}]}}"),
                "numeric instance is lower than the required minimum (minimum: 1, found: 0)",
            ),
            (
                format!("{{\"rules\": [{{\"rulePriority\":1,\"selection\":{{{ok_sel}}},\"action\":{{\"type\":\"delete\"}}}}]}}"),
                "instance value (\"delete\") not found in enum (possible values: [\"expire\"])",
            ),
            (
                format!("{{\"rules\": [{}]}}", rule(1, r#""tagStatus":"some","countType":"imageCountMoreThan","countNumber":1"#)),
                "instance value (\"some\") not found in enum (possible values: [\"tagged\",\"untagged\",\"any\"])",
            ),
            (
                format!("{{\"rules\": [{}]}}", rule(1, r#""tagStatus":"any","countType":"imageCountMoreThan""#)),
                "object has missing required properties ([\"countNumber\"])",
            ),
            (
                format!("{{\"rules\": [{}]}}", rule(1, r#""tagStatus":"any","countType":"sinceImagePulled","countNumber":1"#)),
                "instance failed to match exactly one schema (matched 0 out of 2)",
            ),
            (
                format!("{{\"rules\": [{}]}}", rule(1, r#""tagStatus":"any","countType":"sinceImagePushed","countNumber":1"#)),
                "instance failed to match exactly one schema (matched 0 out of 2)",
            ),
            (
                format!("{{\"rules\": [{}]}}", rule(1, r#""tagStatus":"any","countType":"imageCountMoreThan","countUnit":"days","countNumber":1"#)),
                "instance failed to match exactly one schema (matched 0 out of 2)",
            ),
            (
                format!("{{\"rules\": [{}]}}", rule(1, r#""tagStatus":"any","countType":"imageCountMoreThan","countNumber":0"#)),
                "numeric instance is lower than the required minimum (minimum: 1, found: 0)",
            ),
            (
                format!("{{\"rules\": [{}]}}", rule(1, r#""tagStatus":"tagged","countType":"imageCountMoreThan","countNumber":1"#)),
                "Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED.",
            ),
            (
                format!("{{\"rules\": [{}]}}", rule(1, r#""tagStatus":"untagged","tagPrefixList":["a"],"countType":"imageCountMoreThan","countNumber":1"#)),
                "tagPrefixList and tagPatternList can only be specified when tagStatus=TAGGED.",
            ),
            (
                format!("{{\"rules\": [{}]}}", rule(1, r#""tagStatus":"tagged","tagPrefixList":["a"],"tagPatternList":["a*"],"countType":"imageCountMoreThan","countNumber":1"#)),
                "tagPrefixList and tagPatternList cannot both be specified in a rule",
            ),
            (
                format!("{{\"rules\": [{}]}}", rule(1, r#""tagStatus":"tagged","tagPatternList":["a*b*c*d*e*f"],"countType":"imageCountMoreThan","countNumber":1"#)),
                "tagPatternList entry 'a*b*c*d*e*f' has more than 4 wildcards (*)",
            ),
            (
                format!("{{\"rules\": [{}, {}]}}", rule(1, ok_sel), rule(2, ok_sel)),
                "Only one rule can select Untagged images per storage class",
            ),
            (
                format!(
                    "{{\"rules\": [{}, {}]}}",
                    rule(1, r#""tagStatus":"any","countType":"imageCountMoreThan","countNumber":1"#),
                    rule(2, ok_sel)
                ),
                "Rule for tagStatus=ANY must have the lowest priority per storage class",
            ),
            (
                format!(
                    "{{\"rules\": [{}, {}]}}",
                    rule(3, ok_sel),
                    rule(3, r#""tagStatus":"tagged","tagPrefixList":["a"],"countType":"imageCountMoreThan","countNumber":1"#)
                ),
                "Rule priority 3 is used by more than one rule: rulePriority must be unique",
            ),
        ];
        for (text, want) in cases {
            match parse(&text) {
                Ok(p) => panic!("{text} parsed: {p:?}"),
                Err(e) => assert_eq!(e.0, want, "{text}"),
            }
        }
    }

    #[test]
    fn documented_examples_parse() {
        let p = parse(
            r#"{"rules":[{"rulePriority":1,"description":"Expire images older than 14 days","selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":14},"action":{"type":"expire"}}]}"#,
        )
        .unwrap();
        assert_eq!(p.rules[0].count, CountRule::SinceImagePushedDays(14));
        assert_eq!(
            p.rules[0].description.as_deref(),
            Some("Expire images older than 14 days")
        );
    }
}
