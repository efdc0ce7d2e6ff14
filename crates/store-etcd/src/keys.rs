//! Mapping store keys to etcd keys, and folding a transaction's ops into a form etcd accepts.

use std::collections::HashMap;

use berth_store::{KeyValue, Op, StoreError};

/// Where a store's keys live in etcd.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// `prefix/`: store key `k` is etcd key `prefix/k`.
    data: Vec<u8>,
    /// `prefix.meta/wipe`: its mod_revision is the last wipe's revision.
    wipe_marker: Vec<u8>,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            data: format!("{prefix}/").into_bytes(),
            wipe_marker: format!("{prefix}.meta/wipe").into_bytes(),
        }
    }

    /// The etcd key of a store key.
    pub(crate) fn key(&self, key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.data.len() + key.len());
        k.extend_from_slice(&self.data);
        k.extend_from_slice(key.as_bytes());
        k
    }

    /// `[start, end)` of every etcd key under a store prefix.
    pub(crate) fn prefix_range(&self, prefix: &str) -> (Vec<u8>, Vec<u8>) {
        let start = self.key(prefix);
        let end = prefix_end(&start);
        (start, end)
    }

    pub(crate) fn wipe_marker(&self) -> &[u8] {
        &self.wipe_marker
    }

    /// The store key of an etcd key (the prefix stripped).
    pub(crate) fn strip(&self, key: &[u8]) -> Result<String, StoreError> {
        let rest = key.strip_prefix(self.data.as_slice()).ok_or_else(|| {
            StoreError::Backend(format!(
                "etcd returned key {:?} outside the store prefix",
                String::from_utf8_lossy(key)
            ))
        })?;
        String::from_utf8(rest.to_vec()).map_err(|_| {
            StoreError::Backend(format!(
                "etcd key {:?} is not UTF-8",
                String::from_utf8_lossy(key)
            ))
        })
    }

    /// A store [`KeyValue`] from etcd's.
    pub(crate) fn kv(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
        Ok(KeyValue {
            key: self.strip(kv.key())?,
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            version: kv.version(),
        })
    }
}

/// The smallest key greater than every key starting with `prefix` (etcd's `range_end` for a
/// prefix); `\0` (= "to the end of the key space") when there is none.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The smallest key greater than `key`.
pub(crate) fn successor(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

/// One etcd write, with no two writes touching the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EtcdWrite {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    /// Delete `[start, end)`.
    DeleteRange {
        start: Vec<u8>,
        end: Vec<u8>,
    },
}

/// The net effect of `ops` applied in order, as etcd writes that never touch one key twice
/// (etcd rejects a Txn with overlapping writes).
///
/// Each key's final state (put with its last value, or deleted) is exact. What is lost: a key
/// written several times gets one write (its `version` moves by one), and a delete followed by a
/// put of the same key is a plain overwrite (its `create_revision` is kept). Delete-prefixes
/// followed by puts under the prefix are cut into ranges around the put keys. Writes come out in
/// the order each key (or prefix) was first touched.
pub(crate) fn fold_ops(keys: &Keys, ops: Vec<Op>) -> Vec<EtcdWrite> {
    #[derive(Debug)]
    enum Slot {
        /// The final state of one key: `Some(value)` = put, `None` = deleted.
        Key(Vec<u8>, Option<Vec<u8>>),
        /// A delete-prefix range `[start, end)`.
        Range(Vec<u8>, Vec<u8>),
        /// Superseded (a range covered by a later, wider range).
        Gone,
    }
    let mut slots: Vec<Slot> = Vec::new();
    let mut by_key: HashMap<Vec<u8>, usize> = HashMap::new();
    let in_range = |k: &[u8], s: &[u8], e: &[u8]| k >= s && (k < e || e == [0]);

    for op in ops {
        match op {
            Op::Put { key, value } => {
                let k = keys.key(&key);
                match by_key.get(&k) {
                    Some(&i) => slots[i] = Slot::Key(k, Some(value)),
                    None => {
                        by_key.insert(k.clone(), slots.len());
                        slots.push(Slot::Key(k, Some(value)));
                    }
                }
            }
            Op::Delete { key } => {
                let k = keys.key(&key);
                match by_key.get(&k) {
                    Some(&i) => slots[i] = Slot::Key(k, None),
                    None => {
                        by_key.insert(k.clone(), slots.len());
                        slots.push(Slot::Key(k, None));
                    }
                }
            }
            Op::DeletePrefix { prefix } => {
                let (s, e) = keys.prefix_range(&prefix);
                // Every key touched so far under the prefix ends up deleted by the range; a
                // wider range replaces narrower ones it covers.
                let mut covered = false;
                for slot in slots.iter_mut() {
                    match slot {
                        Slot::Key(k, v) if in_range(k, &s, &e) => *v = None,
                        Slot::Range(rs, re) if in_range(rs, &s, &e) => *slot = Slot::Gone,
                        Slot::Range(rs, re) if in_range(&s, rs, re) => covered = true,
                        _ => {}
                    }
                }
                if !covered {
                    slots.push(Slot::Range(s, e));
                }
            }
        }
    }

    let ranges: Vec<(Vec<u8>, Vec<u8>)> = slots
        .iter()
        .filter_map(|s| match s {
            Slot::Range(a, b) => Some((a.clone(), b.clone())),
            _ => None,
        })
        .collect();
    let mut puts: Vec<&Vec<u8>> = slots
        .iter()
        .filter_map(|s| match s {
            Slot::Key(k, Some(_)) => Some(k),
            _ => None,
        })
        .collect();
    puts.sort();

    let mut out = Vec::new();
    for slot in &slots {
        match slot {
            Slot::Key(k, Some(v)) => out.push(EtcdWrite::Put {
                key: k.clone(),
                value: v.clone(),
            }),
            // A single delete inside a range delete is redundant.
            Slot::Key(k, None) => {
                if !ranges.iter().any(|(s, e)| in_range(k, s, e)) {
                    out.push(EtcdWrite::Delete { key: k.clone() });
                }
            }
            Slot::Range(s, e) => {
                // Cut the range around every put key inside it.
                let mut start = s.clone();
                for k in puts.iter().filter(|k| in_range(k, s, e)) {
                    if start.as_slice() < k.as_slice() {
                        out.push(EtcdWrite::DeleteRange {
                            start: start.clone(),
                            end: (*k).clone(),
                        });
                    }
                    start = successor(k);
                }
                if e == &[0] || start.as_slice() < e.as_slice() {
                    out.push(EtcdWrite::DeleteRange {
                        start,
                        end: e.clone(),
                    });
                }
            }
            Slot::Gone => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_store::Txn;

    fn w(ops: Txn) -> Vec<EtcdWrite> {
        fold_ops(&Keys::new("/p"), ops.ops)
    }
    fn put(k: &str, v: &str) -> EtcdWrite {
        EtcdWrite::Put {
            key: k.as_bytes().to_vec(),
            value: v.as_bytes().to_vec(),
        }
    }
    fn del(k: &str) -> EtcdWrite {
        EtcdWrite::Delete {
            key: k.as_bytes().to_vec(),
        }
    }
    fn range(s: &[u8], e: &[u8]) -> EtcdWrite {
        EtcdWrite::DeleteRange {
            start: s.to_vec(),
            end: e.to_vec(),
        }
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/p/"), b"/p0");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }

    #[test]
    fn folds_duplicate_writes() {
        assert_eq!(
            w(Txn::new().put("a", "1").put("b", "2")),
            [put("/p/a", "1"), put("/p/b", "2")]
        );
        assert_eq!(
            w(Txn::new().put("k", "e").put("k", "f")),
            [put("/p/k", "f")]
        );
        assert_eq!(
            w(Txn::new().delete("a").put("a", "again")),
            [put("/p/a", "again")]
        );
        assert_eq!(w(Txn::new().put("a", "x").delete("a")), [del("/p/a")]);
    }

    #[test]
    fn cuts_prefix_deletes_around_puts() {
        assert_eq!(
            w(Txn::new().delete_prefix("d/")),
            [range(b"/p/d/", b"/p/d0")]
        );
        assert_eq!(
            w(Txn::new().put("d/1", "x").delete_prefix("d/")),
            [range(b"/p/d/", b"/p/d0")]
        );
        assert_eq!(
            w(Txn::new()
                .delete_prefix("d/")
                .put("d/2", "x")
                .put("d/1", "y")
                .delete("d/3")),
            [
                range(b"/p/d/", b"/p/d/1"),
                range(b"/p/d/1\0", b"/p/d/2"),
                range(b"/p/d/2\0", b"/p/d0"),
                put("/p/d/2", "x"),
                put("/p/d/1", "y"),
            ]
        );
        // A wider prefix swallows a narrower one, before or after.
        assert_eq!(
            w(Txn::new().delete_prefix("d/a").delete_prefix("d/")),
            [range(b"/p/d/", b"/p/d0")]
        );
        assert_eq!(
            w(Txn::new().delete_prefix("d/").delete_prefix("d/a")),
            [range(b"/p/d/", b"/p/d0")]
        );
        // The empty prefix covers the whole store.
        assert_eq!(
            w(Txn::new().put("x", "1").delete_prefix("")),
            [range(b"/p/", b"/p0")]
        );
    }
}
