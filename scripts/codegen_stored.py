#!/usr/bin/env python3
"""Generate the ECS service's *stored* shapes: the types a record keeps on disk, apart from the wire types.

Usage: scripts/codegen_stored.py generate [out.rs]  # crates/svc-ecs/stored-shapes.json -> crates/svc-ecs/src/stored.rs
       scripts/codegen_stored.py freeze     # the pinned botocore model -> crates/svc-ecs/stored-shapes.json

Why two steps: the wire types (crates/wire) follow the pinned botocore, so a new botocore changes them. What is
on disk must not change with them. The shapes a record embeds (a task definition with its container
definitions, a cluster's configuration and settings, a service's deployment configuration, …) are therefore
frozen in `stored-shapes.json`, a snapshot of those shapes taken once from the model, and the stored types are
generated from the snapshot only. `scripts/test` regenerates `stored.rs` from the snapshot and fails on any
difference.

The generated conversions (`From<ecs::X> for stored::X` and back) destructure every struct without `..` and
match every enum without `_`: when a new botocore adds, removes or retypes a member or an enum value, the
conversions stop compiling, and whoever updates botocore decides what the stored format does about it (usually:
`freeze` again, which adds the member to the snapshot; old records still read, since every member is optional).

Serde renames, optionality and defaults are the wire generator's (scripts/codegen.py), so a stored shape
serializes to the same JSON its wire twin does: records written before the stored types existed read unchanged.
"""
import json
import os
import subprocess
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from codegen import PRIMS, load_model, snake, variant  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNAPSHOT = os.path.join(ROOT, "crates/svc-ecs/stored-shapes.json")
OUT = os.path.join(ROOT, "crates/svc-ecs/src/stored.rs")

# The wire shapes ECS records embed; the snapshot holds these and everything they reach.
ROOTS = [
    "Attachment",
    "CapacityProviderStrategyItem",
    "ClusterConfiguration",
    "ClusterSetting",
    "DeploymentCircuitBreaker",
    "DeploymentConfiguration",
    "LoadBalancer",
    "NetworkBinding",
    "NetworkConfiguration",
    "NetworkInterface",
    "PlacementConstraint",
    "PlacementStrategy",
    "ServiceRegistry",
    "TaskDefinition",
    "TaskOverride",
    "VersionInfo",
]


def freeze():
    model, botocore_version = load_model("ecs", "2014-11-13")
    shapes = model["shapes"]
    keep = {}

    def walk(name):
        if name in keep:
            return
        s = dict(shapes[name])
        for k in ("documentation", "min", "max", "pattern", "sensitive"):
            s.pop(k, None)
        if "members" in s:
            s["members"] = {m: {"shape": v["shape"]} for m, v in s["members"].items()}
        keep[name] = s
        if s["type"] == "structure":
            for m in s.get("members", {}).values():
                walk(m["shape"])
        elif s["type"] == "list":
            walk(s["member"]["shape"])
        elif s["type"] == "map":
            walk(s["value"]["shape"])

    for r in ROOTS:
        walk(r)
    snapshot = {"frozenFrom": "botocore %s data/ecs/2014-11-13/service-2.json" % botocore_version,
                "roots": ROOTS, "shapes": dict(sorted(keep.items()))}
    with open(SNAPSHOT, "w") as f:
        json.dump(snapshot, f, indent=1, sort_keys=False)
        f.write("\n")


def generate(out=OUT):
    with open(SNAPSHOT) as f:
        snapshot = json.load(f)
    shapes = snapshot["shapes"]

    def is_document(name):
        s = shapes[name]
        return s["type"] == "structure" and s.get("document")

    def rust_type(name):
        s = shapes[name]
        t = s["type"]
        if t == "structure":
            return "serde_json::Value" if s.get("document") else name
        if t == "string":
            return name if "enum" in s else "String"
        if t in PRIMS:
            return PRIMS[t]
        if t == "timestamp":
            return "f64"
        if t == "blob":
            return "String"
        if t == "list":
            return "Vec<%s>" % rust_type(s["member"]["shape"])
        if t == "map":
            return "BTreeMap<String, %s>" % rust_type(s["value"]["shape"])
        raise SystemExit("unsupported shape type %s for %s" % (t, name))

    def reaches(start, target, seen):
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
                if reaches(k, target, seen):
                    return True
        return False

    def needs_conversion(name):
        s = shapes[name]
        t = s["type"]
        if t == "structure":
            return not s.get("document")
        if t == "string":
            return "enum" in s
        if t == "list":
            return needs_conversion(s["member"]["shape"])
        if t == "map":
            return needs_conversion(s["value"]["shape"])
        return False

    def convert(name, expr, boxed=False):
        """An expression converting `expr` (of shape `name`, owned) into its twin on the other side."""
        s = shapes[name]
        t = s["type"]
        if not needs_conversion(name):
            return expr
        if t == "structure" and boxed:
            return "Box::new((*%s).into())" % expr
        if t in ("structure", "string"):
            return "%s.into()" % expr
        if t == "list":
            inner = convert(s["member"]["shape"], "v")
            return "%s.into_iter().map(|v| %s).collect()" % (expr, inner)
        inner = convert(s["value"]["shape"], "v")
        return "%s.into_iter().map(|(k, v)| (k, %s)).collect()" % (expr, inner)

    lines = []
    w = lines.append
    w("// @generated by scripts/codegen_stored.py from crates/svc-ecs/stored-shapes.json (%s)." % snapshot["frozenFrom"])
    w("// Do not edit by hand: change the snapshot or the generator and rerun it (scripts/test checks this file).")
    w("//! The shapes ECS records keep on disk, frozen apart from the wire types (see scripts/codegen_stored.py).")
    w("#![allow(clippy::all, non_camel_case_types, missing_docs)]")
    w("")
    w("use berth_wire::ecs;")
    w("use serde::{Deserialize, Serialize};")
    w("use std::collections::BTreeMap;")
    w("")
    w("/// An explicit JSON `null` reads like an absent member.")
    w("fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>")
    w("where")
    w("    D: serde::Deserializer<'de>,")
    w("    T: Default + Deserialize<'de>,")
    w("{")
    w("    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())")
    w("}")
    w("")

    for name in sorted(shapes):
        s = shapes[name]
        t = s["type"]
        if t == "string" and "enum" in s:
            variants = []
            used = set()
            for v in s["enum"]:
                var = variant(v)
                while var in used:
                    var += "_"
                used.add(var)
                variants.append((v, var))
            w("#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]")
            w("pub enum %s {" % name)
            for v, var in variants:
                w('    #[serde(rename = "%s")]' % v)
                w("    %s," % var)
            w("}")
            for src, dst in (("ecs::%s" % name, name), (name, "ecs::%s" % name)):
                w("impl From<%s> for %s {" % (src, dst))
                w("    fn from(v: %s) -> Self {" % src)
                w("        match v {")
                for _, var in variants:
                    w("            %s::%s => %s::%s," % (src, var, dst, var))
                w("        }")
                w("    }")
                w("}")
            w("")
        elif t == "structure" and not s.get("document"):
            members = s.get("members", {})
            required = set(s.get("required", []))
            fields = []
            w("#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]")
            w("pub struct %s {" % name)
            for mname, m in members.items():
                mshape = m["shape"]
                ms = shapes[mshape]
                rt = rust_type(mshape)
                boxed = ms["type"] == "structure" and not ms.get("document") and reaches(mshape, name, set())
                if boxed:
                    rt = "Box<%s>" % rt
                fname = snake(mname)
                plain = ms["type"] in PRIMS and not ms.get("box") and mname not in required
                if plain:
                    w('    #[serde(rename = "%s", default, deserialize_with = "null_as_default")]' % mname)
                    w("    pub %s: %s," % (fname, rt))
                else:
                    w('    #[serde(rename = "%s", default, skip_serializing_if = "Option::is_none")]' % mname)
                    w("    pub %s: Option<%s>," % (fname, rt))
                fields.append((fname, mshape, plain, boxed))
            w("}")
            for src, dst in (("ecs::%s" % name, name), (name, "ecs::%s" % name)):
                w("impl From<%s> for %s {" % (src, dst))
                w("    fn from(v: %s) -> Self {" % src)
                if not fields:
                    w("        let %s {} = v;" % src)
                    w("        %s {}" % dst)
                else:
                    w("        let %s { %s } = v;" % (src, ", ".join(f for f, _, _, _ in fields)))
                    w("        %s {" % dst)
                    for fname, mshape, plain, boxed in fields:
                        if not needs_conversion(mshape):
                            w("            %s," % fname)
                        elif plain:
                            w("            %s: %s," % (fname, convert(mshape, fname, boxed)))
                        else:
                            w("            %s: %s.map(|v| %s)," % (fname, fname, convert(mshape, "v", boxed)))
                    w("        }")
                w("    }")
                w("}")
            w("")

    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    if shutil.which("rustfmt"):
        subprocess.run(["rustfmt", "--edition", "2021", out], check=True)


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "freeze":
        freeze()
    elif len(sys.argv) in (2, 3) and sys.argv[1] == "generate":
        generate(*sys.argv[2:])
    else:
        raise SystemExit(__doc__)
