#!/usr/bin/env python3
"""Generate berth's wire types from an AWS service model shipped in botocore.

Usage: scripts/codegen.py <service> <api-version> <output.rs>
       e.g. scripts/codegen.py ecs 2014-11-13 crates/wire/src/ecs.rs

The model (botocore/data/<service>/<version>/service-2.json[.gz]) is the machine-readable truth for every
shape, member, enum and required flag. The generated module is committed; `scripts/test` regenerates it
and fails on any difference, so the wire types can never drift from the pinned botocore.

Mapping rules (awsJson1_1):
  structure  -> struct, every member `Option<T>` except non-boxed integer/long/double/boolean members,
                which AWS always emits (e.g. `"cpu": 0`), so they are plain values defaulting to 0/false.
  string+enum-> enum with the exact wire strings; `as_str()`; unknown values are rejected by serde.
  string     -> String, blob -> String (base64), timestamp -> f64 (epoch seconds, fractional)
  list       -> Vec<T>, map -> BTreeMap<String, T>
  document   -> serde_json::Value (a structure the model marks `document`: any JSON value)
  exceptions -> not generated as structs; their names go into `EXCEPTIONS`.
  eventstream-> not generated (awsJson1_1 event streams, e.g. Logs' StartLiveTail, need a streaming
                transport these request/response types cannot describe); members that target an event
                stream are left out of their structure. The operation itself is still listed.
"""
import gzip
import json
import keyword
import os
import re
import sys

RUST_KEYWORDS = set(
    "as break const continue crate else enum extern false fn for if impl in let loop match mod move mut pub ref "
    "return self Self static struct super trait true type unsafe use where while async await dyn abstract become "
    "box do final macro override priv typeof unsized virtual yield try".split()
)


def load_model(service, version):
    import botocore  # noqa: the venv created by scripts/test has it

    base = os.path.join(os.path.dirname(botocore.__file__), "data", service, version, "service-2.json")
    if os.path.exists(base):
        with open(base) as f:
            return json.load(f), botocore.__version__
    with gzip.open(base + ".gz") as f:
        return json.load(f), botocore.__version__


def snake(name):
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    s = s.replace("-", "_").replace(".", "_").lower()
    if s in RUST_KEYWORDS:
        s = s + "_"
    if s[0].isdigit():
        s = "n" + s
    return s


def variant(value):
    parts = re.split(r"[^A-Za-z0-9]+", value)
    # ALL_CAPS words become Camel case ("DELETE_IN_PROGRESS" -> DeleteInProgress, "EC2" -> Ec2);
    # mixed-case words keep their inner capitals ("fargateFIPSMode" -> FargateFIPSMode).
    v = "".join((p.capitalize() if p.isupper() else p[:1].upper() + p[1:]) for p in parts if p)
    if not v:
        v = "Empty"
    if v[0].isdigit():
        v = "V" + v
    return v


def enum_variants(values):
    """`(wire value, Rust variant)` for each enum value; clashing names get a trailing `_`."""
    out, used = [], set()
    for v in values:
        var = variant(v)
        while var in used:
            var += "_"
        used.add(var)
        out.append((v, var))
    return out


PRIMS = {"integer": "i32", "long": "i64", "double": "f64", "float": "f64", "boolean": "bool"}


def rust_type(shapes, shape_name):
    """The Rust type of a member of shape `shape_name` (see the mapping rules above)."""
    s = shapes[shape_name]
    t = s["type"]
    if t == "structure":
        # A document member holds any JSON value (e.g. ECS's lifecycle-hook `hookDetails`).
        return "serde_json::Value" if s.get("document") else shape_name
    if t == "string":
        return shape_name if "enum" in s else "String"
    if t in PRIMS:
        return PRIMS[t]
    if t == "timestamp":
        return "f64"
    if t == "blob":
        return "String"
    if t == "list":
        return "Vec<%s>" % rust_type(shapes, s["member"]["shape"])
    if t == "map":
        return "BTreeMap<String, %s>" % rust_type(shapes, s["value"]["shape"])
    raise SystemExit("unsupported shape type %s for %s" % (t, shape_name))


def reaches(shapes, start, target, seen):
    """Whether shape `start` can reach `target` (recursive structures need boxing)."""
    s = shapes[start]
    kids = []
    if s["type"] == "structure":
        kids = [m["shape"] for m in s.get("members", {}).values()]
    elif s["type"] == "list":
        kids = [s["member"]["shape"]]
    elif s["type"] == "map":
        kids = [s["value"]["shape"]]
    for k in kids:
        if k == target:
            return True
        if k not in seen:
            seen.add(k)
            if reaches(shapes, k, target, seen):
                return True
    return False


def main():
    service, version, out = sys.argv[1], sys.argv[2], sys.argv[3]
    model, botocore_version = load_model(service, version)
    shapes = model["shapes"]
    meta = model["metadata"]

    lines = []
    w = lines.append
    w("// @generated by scripts/codegen.py from botocore %s data/%s/%s/service-2.json." % (botocore_version, service, version))
    w("// Do not edit by hand: change the generator and rerun it (scripts/test checks this file is current).")
    w("#![allow(clippy::all, non_camel_case_types, missing_docs)]")
    w("")
    w("use serde::{Deserialize, Serialize};")
    w("use std::collections::BTreeMap;")
    w("")
    w('pub const TARGET_PREFIX: &str = "%s";' % meta.get("targetPrefix", ""))
    w('pub const SIGNING_NAME: &str = "%s";' % meta.get("signingName", meta["endpointPrefix"]))
    w('pub const BOTOCORE_VERSION: &str = "%s";' % botocore_version)
    w("")

    exceptions = sorted(n for n, s in shapes.items() if s.get("exception"))
    w("/// Every error shape of the service (its `__type` values).")
    w("pub const EXCEPTIONS: &[&str] = &[%s];" % ", ".join('"%s"' % e for e in exceptions))
    w("")

    # Operations
    ops = sorted(model["operations"].items())
    w("/// The service's operations, named as in `X-Amz-Target: <prefix>.<Operation>`.")
    w("#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]")
    w("pub enum Operation {")
    for name, _ in ops:
        w("    %s," % name)
    w("}")
    w("")
    w("impl Operation {")
    w("    pub const ALL: &'static [Operation] = &[%s];" % ", ".join("Operation::%s" % n for n, _ in ops))
    w("    pub fn as_str(&self) -> &'static str {")
    w("        match self {")
    for name, _ in ops:
        w('            Operation::%s => "%s",' % (name, name))
    w("        }")
    w("    }")
    w("    pub fn from_name(name: &str) -> Option<Operation> {")
    w("        match name {")
    for name, _ in ops:
        w('            "%s" => Some(Operation::%s),' % (name, name))
    w("            _ => None,")
    w("        }")
    w("    }")
    w("    /// The error shapes the model lists for this operation.")
    w("    pub fn errors(&self) -> &'static [&'static str] {")
    w("        match self {")
    for name, op in ops:
        errs = ", ".join('"%s"' % e["shape"] for e in op.get("errors", []))
        w("            Operation::%s => &[%s]," % (name, errs))
    w("        }")
    w("    }")
    w("}")
    w("")

    for name in sorted(shapes):
        s = shapes[name]
        t = s["type"]
        if t == "string" and "enum" in s:
            values = s["enum"]
            w("#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]")
            w("pub enum %s {" % name)
            for v, var in enum_variants(values):
                w('    #[serde(rename = "%s")]' % v)
                w("    %s," % var)
            w("}")
            w("impl %s {" % name)
            w("    pub const VALUES: &'static [&'static str] = &[%s];" % ", ".join('"%s"' % v for v in values))
            w("    pub fn as_str(&self) -> &'static str {")
            w("        match self {")
            for v, var in enum_variants(values):
                w('            %s::%s => "%s",' % (name, var, v))
            w("        }")
            w("    }")
            w("}")
            w("")
        elif t == "structure" and not s.get("exception") and not s.get("eventstream") and not s.get("document"):
            members = {
                k: m for k, m in s.get("members", {}).items() if not shapes[m["shape"]].get("eventstream")
            }
            required = set(s.get("required", []))
            w("#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]")
            w("pub struct %s {" % name)
            validations = []
            for mname, m in members.items():
                mshape = m["shape"]
                ms = shapes[mshape]
                rt = rust_type(shapes, mshape)
                if ms["type"] == "structure" and not ms.get("document") and reaches(shapes, mshape, name, set()):
                    rt = "Box<%s>" % rt
                fname = snake(mname)
                plain = ms["type"] in PRIMS and not ms.get("box") and mname not in required
                if plain:
                    w('    #[serde(rename = "%s", default, deserialize_with = "crate::de::null_as_default")]' % mname)
                    w("    pub %s: %s," % (fname, rt))
                else:
                    w('    #[serde(rename = "%s", default, skip_serializing_if = "Option::is_none")]' % mname)
                    w("    pub %s: Option<%s>," % (fname, rt))
                if mname in required and not plain:
                    validations.append(("req", mname, fname))
                if ms["type"] == "structure" and not ms.get("document"):
                    validations.append(("struct", mname, fname))
                elif ms["type"] == "list" and shapes[ms["member"]["shape"]]["type"] == "structure" \
                        and not shapes[ms["member"]["shape"]].get("document"):
                    validations.append(("list", mname, fname))
            w("}")
            w("impl crate::Validate for %s {" % name)
            w("    fn validate_at(&self, path: &mut crate::Path) -> Result<(), crate::ValidationError> {")
            if not validations:
                w("        let _ = path;")
            for kind, mname, fname in validations:
                if kind == "req":
                    w("        if self.%s.is_none() {" % fname)
                    w('            return Err(crate::ValidationError::missing(path, "%s"));' % mname)
                    w("        }")
                elif kind == "struct":
                    w("        if let Some(v) = &self.%s {" % fname)
                    w('            path.push("%s");' % mname)
                    w("            v.validate_at(path)?;")
                    w("            path.pop();")
                    w("        }")
                else:
                    w("        if let Some(items) = &self.%s {" % fname)
                    w("            for (i, v) in items.iter().enumerate() {")
                    w('                path.push_index("%s", i);' % mname)
                    w("                v.validate_at(path)?;")
                    w("                path.pop();")
                    w("            }")
                    w("        }")
            w("        Ok(())")
            w("    }")
            w("}")
            w("")

    # Operation input/output mapping as a compile-checked table (documentation for the dispatcher).
    w("/// `(operation, input shape, output shape)` as the model declares them.")
    w("pub const OPERATION_SHAPES: &[(&str, &str, &str)] = &[")
    for name, op in ops:
        w('    ("%s", "%s", "%s"),' % (name, op.get("input", {}).get("shape", ""), op.get("output", {}).get("shape", "")))
    w("];")

    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    # The committed modules are rustfmt-formatted (cargo fmt would reformat them anyway), so format
    # here too: regenerating must reproduce the committed file byte for byte.
    import shutil
    import subprocess

    if shutil.which("rustfmt"):
        subprocess.run(["rustfmt", "--edition", "2021", out], check=True)


if __name__ == "__main__":
    main()
