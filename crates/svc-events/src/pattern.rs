//! EventBridge's event patterns: does an event match a rule's pattern? Pure.
//!
//! A pattern is a JSON object mirroring the event's shape. Each leaf is an array of alternatives;
//! the event's value (or, for an array in the event, any of its elements) must match one of
//! them. An alternative is a literal (string, number, boolean, null: equal) or a matcher object:
//! `prefix`, `suffix` (each also `{"equals-ignore-case": …}`), `equals-ignore-case`,
//! `anything-but` (a value, a list of values, or `{"prefix"|"suffix": …}`), `numeric` (up to two
//! comparisons: `["<", 10]`, `[">=", 0, "<", 5]`, `["=", 3]`), `exists` (true/false), `wildcard`
//! (`*` for any run of characters). `$or` takes a list of patterns, any of which may match.
//! A pattern must be a non-empty object whose leaves are arrays: [`validate`] says what is wrong.

use serde_json::Value;

/// Why a pattern is not one EventBridge takes.
pub fn validate(p: &Value) -> Result<(), String> {
    let Value::Object(m) = p else {
        return Err("the pattern must be a JSON object".into());
    };
    if m.is_empty() {
        return Err("the pattern must not be empty".into());
    }
    for (k, v) in m {
        match (k.as_str(), v) {
            ("$or", Value::Array(alts)) if alts.len() >= 2 => {
                for a in alts {
                    validate(a)?;
                }
            }
            ("$or", _) => return Err("$or takes an array of at least two patterns".into()),
            (_, Value::Object(_)) => validate(v)?,
            (_, Value::Array(alts)) => {
                if alts.is_empty() {
                    return Err(format!("the array of {k} is empty"));
                }
                for a in alts {
                    validate_matcher(k, a)?;
                }
            }
            _ => return Err(format!("the value of {k} must be an object or an array")),
        }
    }
    Ok(())
}

fn validate_matcher(k: &str, a: &Value) -> Result<(), String> {
    let Value::Object(m) = a else {
        return Ok(());
    };
    if m.len() != 1 {
        return Err(format!("a matcher of {k} has one key"));
    }
    let (op, arg) = m.iter().next().expect("one key");
    let ok = match op.as_str() {
        "prefix" | "suffix" => {
            arg.is_string() || arg.get("equals-ignore-case").is_some_and(Value::is_string)
        }
        "equals-ignore-case" | "wildcard" => arg.is_string(),
        "exists" => arg.is_boolean(),
        "anything-but" => match arg {
            Value::Object(o) => {
                o.len() == 1 && (o.contains_key("prefix") || o.contains_key("suffix"))
            }
            Value::Array(v) => !v.is_empty(),
            _ => true,
        },
        "numeric" => numeric_ops(arg).is_some(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("unrecognized match type {op} for {k}"))
    }
}

fn numeric_ops(arg: &Value) -> Option<Vec<(&str, f64)>> {
    let a = arg.as_array()?;
    if a.is_empty() || a.len() % 2 != 0 || a.len() > 4 {
        return None;
    }
    a.chunks(2)
        .map(|c| {
            let op = c[0].as_str()?;
            let n = c[1].as_f64()?;
            matches!(op, "<" | "<=" | "=" | ">" | ">=").then_some((op, n))
        })
        .collect()
}

/// Does `event` match `pattern`?
pub fn matches(pattern: &Value, event: &Value) -> bool {
    let Value::Object(m) = pattern else {
        return false;
    };
    m.iter().all(|(k, p)| {
        if k == "$or" {
            return p
                .as_array()
                .is_some_and(|alts| alts.iter().any(|a| matches(a, event)));
        }
        let field = event.get(k);
        match p {
            // A nested pattern; over an array of objects, any of them.
            Value::Object(_) => match field {
                Some(Value::Array(items)) => items.iter().any(|f| matches(p, f)),
                Some(f) => matches(p, f),
                None => false,
            },
            Value::Array(alts) => alts.iter().any(|a| leaf(a, field)),
            _ => false,
        }
    })
}

fn leaf(alt: &Value, field: Option<&Value>) -> bool {
    if let Value::Object(m) = alt {
        if let Some(Value::Bool(want)) = m.get("exists") {
            return field.is_some_and(|f| !f.is_null() && !f.is_object()) == *want;
        }
    }
    match field {
        None => false,
        Some(Value::Array(items)) => items.iter().any(|v| one(alt, v)),
        Some(v) => one(alt, v),
    }
}

fn one(alt: &Value, v: &Value) -> bool {
    let Value::Object(m) = alt else {
        return literal(alt, v);
    };
    let Some((op, arg)) = m.iter().next() else {
        return false;
    };
    let s = v.as_str();
    match op.as_str() {
        "prefix" => affix(arg, s, |s, p| s.starts_with(p)),
        "suffix" => affix(arg, s, |s, p| s.ends_with(p)),
        "equals-ignore-case" => s
            .zip(arg.as_str())
            .is_some_and(|(s, a)| s.to_lowercase() == a.to_lowercase()),
        "wildcard" => s.zip(arg.as_str()).is_some_and(|(s, w)| wildcard(w, s)),
        "numeric" => v.as_f64().is_some_and(|n| {
            numeric_ops(arg).is_some_and(|ops| {
                ops.iter().all(|(op, x)| match *op {
                    "<" => n < *x,
                    "<=" => n <= *x,
                    "=" => n == *x,
                    ">" => n > *x,
                    _ => n >= *x,
                })
            })
        }),
        "anything-but" => match arg {
            Value::Array(vals) => !vals.iter().any(|x| literal(x, v)),
            Value::Object(o) => {
                let (k, a) = o.iter().next().expect("validated");
                s.is_some_and(|s| {
                    !affix(a, Some(s), |s, p| {
                        if k == "prefix" {
                            s.starts_with(p)
                        } else {
                            s.ends_with(p)
                        }
                    })
                })
            }
            x => !literal(x, v),
        },
        _ => false,
    }
}

fn affix(arg: &Value, s: Option<&str>, f: impl Fn(&str, &str) -> bool) -> bool {
    let Some(s) = s else {
        return false;
    };
    match arg {
        Value::String(p) => f(s, p),
        Value::Object(o) => o
            .get("equals-ignore-case")
            .and_then(Value::as_str)
            .is_some_and(|p| f(&s.to_lowercase(), &p.to_lowercase())),
        _ => false,
    }
}

fn literal(alt: &Value, v: &Value) -> bool {
    match (alt, v) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

/// `*` matches any run of characters; everything else itself.
fn wildcard(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || !s[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task_stopped() -> Value {
        json!({
            "version": "0", "id": "e1", "detail-type": "ECS Task State Change", "source": "aws.ecs",
            "account": "111122223333", "region": "us-east-1",
            "resources": ["arn:aws:ecs:us-east-1:111122223333:task/c/abc"],
            "detail": {"lastStatus": "STOPPED", "desiredStatus": "STOPPED", "stopCode": "EssentialContainerExited",
                       "group": "family:web", "cpu": "256",
                       "containers": [{"name": "web", "exitCode": 1}, {"name": "side", "exitCode": 0}]}
        })
    }

    #[test]
    fn the_issue_pattern_matches_a_stopped_task_only() {
        let p = json!({"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"], "detail": {"lastStatus": ["STOPPED"]}});
        assert!(validate(&p).is_ok());
        assert!(matches(&p, &task_stopped()));
        let mut running = task_stopped();
        running["detail"]["lastStatus"] = json!("RUNNING");
        assert!(!matches(&p, &running));
    }

    #[test]
    fn every_matcher_as_aws_documents_it() {
        let e = task_stopped();
        let yes = [
            json!({"detail": {"group": [{"prefix": "family:"}]}}),
            json!({"detail": {"group": [{"suffix": ":web"}]}}),
            json!({"detail": {"group": [{"prefix": {"equals-ignore-case": "FAMILY:"}}]}}),
            json!({"detail": {"stopCode": [{"equals-ignore-case": "essentialcontainerexited"}]}}),
            json!({"detail": {"stopCode": [{"wildcard": "Essential*Exited"}]}}),
            json!({"detail": {"lastStatus": [{"anything-but": "RUNNING"}]}}),
            json!({"detail": {"lastStatus": [{"anything-but": ["RUNNING", "PENDING"]}]}}),
            json!({"detail": {"group": [{"anything-but": {"prefix": "service:"}}]}}),
            json!({"detail": {"containers": {"exitCode": [{"numeric": [">", 0]}]}}}),
            json!({"detail": {"containers": {"exitCode": [{"numeric": [">=", 0, "<", 1]}]}}}),
            json!({"detail": {"stopCode": [{"exists": true}], "startedBy": [{"exists": false}]}}),
            json!({"resources": ["arn:aws:ecs:us-east-1:111122223333:task/c/abc"]}),
            json!({"$or": [{"source": ["aws.ec2"]}, {"detail": {"lastStatus": ["STOPPED"]}}]}),
        ];
        for p in yes {
            assert!(validate(&p).is_ok(), "{p}");
            assert!(matches(&p, &e), "{p} should match");
        }
        let no = [
            json!({"detail": {"group": [{"prefix": "service:"}]}}),
            json!({"detail": {"lastStatus": [{"anything-but": "STOPPED"}]}}),
            json!({"detail": {"containers": {"exitCode": [{"numeric": [">", 1]}]}}}),
            json!({"detail": {"stopCode": [{"exists": false}]}}),
            json!({"detail": {"missing": ["x"]}}),
            json!({"detail": {"cpu": [256]}}),
            json!({"$or": [{"source": ["aws.ec2"]}, {"source": ["aws.s3"]}]}),
        ];
        for p in no {
            assert!(!matches(&p, &e), "{p} should not match");
        }
    }

    #[test]
    fn patterns_eventbridge_refuses() {
        for p in [
            json!([]),
            json!({}),
            json!({"source": "aws.ecs"}),
            json!({"source": []}),
            json!({"detail": {"x": [{"regex": "a"}]}}),
            json!({"detail": {"x": [{"numeric": ["~", 1]}]}}),
            json!({"$or": [{"source": ["a"]}]}),
        ] {
            assert!(validate(&p).is_err(), "{p}");
        }
    }
}
