//! Opaque pagination tokens and one-page cuts of key-sorted listings, shared by every service.

use crate::error::ApiError;

/// Pagination tokens are opaque to clients: the hex of the last key returned.
pub fn encode_token(key: &str) -> String {
    hex::encode(key)
}

pub fn decode_token(token: Option<&str>) -> Result<Option<String>, ApiError> {
    match token {
        None | Some("") => Ok(None),
        Some(t) => hex::decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(Some)
            .ok_or_else(|| ApiError::invalid_parameter("Invalid nextToken.")),
    }
}

/// Cuts `items` (sorted by their keys, ascending or — `descending` — descending) to one page of the
/// items that come after the key `after`. Robust to the `after` item having been deleted meanwhile.
pub fn paginate<T>(
    items: Vec<(String, T)>,
    after: Option<&str>,
    limit: usize,
    descending: bool,
) -> (Vec<T>, Option<String>) {
    let mut out = Vec::new();
    let mut last = None;
    let mut more = false;
    for (k, v) in items {
        if let Some(a) = after {
            let past = if descending {
                k.as_str() < a
            } else {
                k.as_str() > a
            };
            if !past {
                continue;
            }
        }
        if out.len() == limit {
            more = true;
            break;
        }
        last = Some(k);
        out.push(v);
    }
    let token = if more {
        last.map(|k| encode_token(&k))
    } else {
        None
    };
    (out, token)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn pages() {
        let items: Vec<(String, u32)> = (0..5).map(|i| (format!("k{i}"), i)).collect();
        let (p1, t1) = paginate(items.clone(), None, 2, false);
        assert_eq!(p1, vec![0, 1]);
        let after = decode_token(t1.as_deref()).unwrap();
        let (p2, t2) = paginate(items.clone(), after.as_deref(), 2, false);
        assert_eq!(p2, vec![2, 3]);
        let after = decode_token(t2.as_deref()).unwrap();
        let (p3, t3) = paginate(items, after.as_deref(), 2, false);
        assert_eq!(p3, vec![4]);
        assert!(t3.is_none());
        assert!(decode_token(Some("zz")).is_err());
    }
}
