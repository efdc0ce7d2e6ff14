"""Issue 22: the errors the ECS model lists for an operation are the ones berth answers, with AWS's
type, HTTP status and text. For every operation berth implements whose model lists
ClusterNotFoundException, a call naming a cluster that does not exist gets exactly that; for every
one that lists ServiceNotFoundException, a call naming a missing service of an existing cluster gets
that."""

import re
from pathlib import Path

import botocore.exceptions
import pytest

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def implemented():
    """ECS operations the README's (test-checked) compatibility table does not list as `not yet`."""
    section = README.split("### ECS", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| (\w+) \| ([^|]+) \|", section, re.M)
    return {op for op, status in rows if status.strip() != "not yet" and op != "operation"}


def dummy(shape, depth=0):
    """A value of `shape` with its required members set (enough to pass the model's checks)."""
    t = shape.type_name
    if t == "structure":
        return {n: dummy(shape.members[n], depth + 1) for n in shape.required_members} if depth < 6 else {}
    if t == "list":
        return [dummy(shape.member, depth + 1)]
    if t == "map":
        return {}
    if t == "string":
        return shape.enum[0] if shape.enum else "x"
    if t in ("integer", "long"):
        return 1
    if t == "boolean":
        return False
    if t in ("double", "float"):
        return 1.0
    return "x"


def python_name(op):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", op).lower()


def calls(ecs, error, member):
    model = ecs.meta.service_model
    out = []
    for op in sorted(implemented()):
        om = model.operation_model(op)
        if error not in [e.name for e in om.error_shapes] or om.input_shape is None:
            continue
        if member not in om.input_shape.members:
            continue
        out.append(op)
    return out


# Valid values where the model's required members alone would make an invalid request (AWS checks
# the request before it looks the cluster up).
VALID = {
    "UpdateClusterSettings": {"settings": [{"name": "containerInsights", "value": "enabled"}]},
}

# Where berth's answer is deliberately another one, and why.
CLUSTER_EXCEPTIONS = {
    # The ECS agent registers into its configured cluster; berth creates it if missing, so a fresh
    # host joins without a separate CreateCluster (the agent's own behaviour for `default`).
    "RegisterContainerInstance",
}


def answer(ecs, op, params):
    """(code, message, HTTP status) of the call, or None if it succeeded."""
    try:
        getattr(ecs, python_name(op))(**params)
    except botocore.exceptions.ClientError as e:
        err = e.response["Error"]
        return err["Code"], err["Message"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    return None


def test_cluster_not_found_wherever_the_model_lists_it(berth):
    ecs = berth.client("ecs")
    ops = [op for op in calls(ecs, "ClusterNotFoundException", "cluster") if op not in CLUSTER_EXCEPTIONS]
    assert len(ops) >= 20, ops
    model = ecs.meta.service_model
    wrong = {}
    for op in ops:
        params = {**dummy(model.operation_model(op).input_shape), **VALID.get(op, {})}
        params["cluster"] = "no-such-cluster"
        got = answer(ecs, op, params)
        if got != ("ClusterNotFoundException", "Cluster not found.", 400):
            wrong[op] = got
    assert not wrong, wrong


def test_service_not_found_wherever_the_model_lists_it(berth):
    ecs = berth.client("ecs")
    ecs.create_cluster(clusterName="svcless")
    ops = calls(ecs, "ServiceNotFoundException", "service")
    assert {"UpdateService", "DeleteService"} <= set(ops), ops
    model = ecs.meta.service_model
    wrong = {}
    for op in ops:
        params = dummy(model.operation_model(op).input_shape)
        params.update(cluster="svcless", service="no-such-service")
        got = answer(ecs, op, params)
        if got != ("ServiceNotFoundException", "Service not found.", 400):
            wrong[op] = got
    assert not wrong, wrong
