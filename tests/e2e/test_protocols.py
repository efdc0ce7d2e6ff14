"""The protocol edge: every service answers an unknown operation and a malformed body in its own
protocol's error form, and requests are routed by the SigV4 signing name first."""

import json
import urllib.error
import urllib.request

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest

from conftest import REGION


def send(berth, method, path, body=b"", headers=None, signing_name=None, region=REGION):
    """A hand-built request, SigV4-signed for `signing_name` (unsigned when None)."""
    data = body if isinstance(body, bytes) else body.encode()
    req = botocore.awsrequest.AWSRequest(method=method, url=berth.endpoint + path, data=data, headers=dict(headers or {}))
    if signing_name:
        akid, secret = berth.credentials
        creds = botocore.credentials.Credentials(akid, secret)
        signer = botocore.auth.S3SigV4Auth if signing_name == "s3" else botocore.auth.SigV4Auth
        signer(creds, signing_name, region).add_auth(req)
    r = urllib.request.Request(req.url, data=data if method not in ("GET", "HEAD") else None, headers=dict(req.headers), method=method)
    try:
        with urllib.request.urlopen(r, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


# (signing name, X-Amz-Target prefix, a known operation) of every awsJson1_1 service.
JSON_SERVICES = [
    ("ecs", "AmazonEC2ContainerServiceV20141113", "ListClusters"),
    ("logs", "Logs_20140328", "DescribeLogGroups"),
    ("ecr", "AmazonEC2ContainerRegistry_V20150921", "DescribeRepositories"),
    ("secretsmanager", "secretsmanager", "ListSecrets"),
    ("ssm", "AmazonSSM", "DescribeParameters"),
    ("berth", "BerthAdmin_20261122", "ListAccessKeys"),
]


def json_call(berth, signing_name, target, body):
    return send(
        berth, "POST", "/", body,
        {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target},
        signing_name=signing_name,
    )


@pytest.mark.parametrize("signing_name,prefix,op", JSON_SERVICES)
def test_json_services_answer_in_their_protocol(berth, signing_name, prefix, op):
    status, headers, body = json_call(berth, signing_name, f"{prefix}.{op}", "{}")
    assert status == 200, body
    assert headers["content-type"] == "application/x-amz-json-1.1"
    assert isinstance(json.loads(body), dict)

    # An unknown operation: awsJson's error shape, the code also in x-amzn-ErrorType.
    status, headers, body = json_call(berth, signing_name, f"{prefix}.NoSuchOperation", "{}")
    assert status == 400
    assert headers["content-type"] == "application/x-amz-json-1.1"
    err = json.loads(body)
    assert err["__type"] == "UnknownOperationException"
    assert err["message"] == f"Unknown operation: {prefix}.NoSuchOperation"
    assert headers["x-amzn-errortype"] == "UnknownOperationException"

    # A malformed body: a SerializationException in the same shape.
    status, headers, body = json_call(berth, signing_name, f"{prefix}.{op}", "{not json")
    assert status == 400
    assert headers["content-type"] == "application/x-amz-json-1.1"
    err = json.loads(body)
    assert err["__type"] == "SerializationException", err
    assert isinstance(err["message"], str) and err["message"]
    assert "line" not in err["message"] and "column" not in err["message"]


def test_routing_is_by_signing_name_first(berth):
    # An ECS target signed for Logs is not ECS's to answer.
    status, _, body = json_call(berth, "logs", "AmazonEC2ContainerServiceV20141113.ListClusters", "{}")
    assert status == 400
    assert json.loads(body)["__type"] == "UnknownOperationException"
    # A signing name no service answers.
    status, _, body = json_call(berth, "sts", "AWSSecurityTokenServiceV20110615.GetCallerIdentity", "{}")
    assert status == 400
    assert json.loads(body)["__type"] == "UnknownOperationException"
    # Unsigned: refused in the protocol of the service the target names.
    status, headers, body = send(
        berth, "POST", "/", "{}",
        {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Logs_20140328.DescribeLogGroups"},
    )
    assert status in (400, 403)
    assert headers["content-type"] == "application/x-amz-json-1.1"
    assert json.loads(body)["__type"] in ("MissingAuthenticationTokenException", "IncompleteSignatureException", "UnrecognizedClientException")


def xml_error(body):
    import xml.etree.ElementTree as ET

    root = ET.fromstring(body)
    assert root.tag == "Error", body
    return root.findtext("Code"), root.findtext("Message")


def test_s3_answers_in_rest_xml(berth):
    s3 = berth.client("s3")
    s3.create_bucket(Bucket="protocols")
    # An operation berth's S3 does not serve: S3's XML error, NotImplemented.
    status, headers, body = send(berth, "POST", "/protocols?uploads", b"", signing_name="s3")
    assert status == 501, body
    assert "xml" in headers["content-type"]
    code, message = xml_error(body)
    assert code == "NotImplemented" and message
    assert headers.get("x-amz-request-id")
    # A malformed request: a Content-MD5 that is not the body's.
    status, headers, body = send(
        berth, "PUT", "/protocols/key", b"hello", {"Content-MD5": "not-an-md5=="}, signing_name="s3"
    )
    assert status == 400
    code, _ = xml_error(body)
    assert code == "BadDigest"
    # Unsigned path requests still reach S3 (its own AccessDenied form).
    status, _, body = send(berth, "GET", "/protocols")
    assert status == 403
    assert xml_error(body)[0] == "AccessDenied"


def test_the_answer_checker_catches_what_leaves_the_model():
    """The check every boto3 client of the e2e suite runs on JSON answers (conftest's
    `check_answer_against_model`) finds unknown members, wrong types and values outside an enum."""
    import botocore.session

    from conftest import shape_violations

    model = botocore.session.get_session().get_service_model("ecs")
    out = model.operation_model("DescribeClusters").output_shape
    good = {"clusters": [{"clusterName": "c", "registeredContainerInstancesCount": 0, "tags": []}], "failures": []}
    assert shape_violations(out, good) == []
    bad = {"clusters": [{"clusterName": 5, "extra": 1, "registeredContainerInstancesCount": "0"}]}
    assert sorted(shape_violations(out, bad)) == [
        "$.clusters[0].clusterName: int where a string belongs",
        "$.clusters[0].extra: not a member of Cluster",
        "$.clusters[0].registeredContainerInstancesCount: '0' where an integer belongs",
    ]
    task = model.operation_model("DescribeTasks").output_shape
    assert shape_violations(task, {"tasks": [{"launchType": "Fargate"}]}) == [
        "$.tasks[0].launchType: 'Fargate' is not one of LaunchType's values"
    ]
