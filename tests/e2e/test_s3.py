"""berth's S3 subset through real clients (the aws CLI's `s3`/`s3api` and boto3): the store ECS
task `environmentFiles` are read from."""

import json
import subprocess

import botocore.exceptions
import pytest

from conftest import BERTH_BIN


def aws_error(berth, *args):
    p = berth.aws(*args, check=False)
    assert p.returncode != 0, f"{args} unexpectedly succeeded: {p.stdout}"
    return p.stderr


def test_buckets_objects_and_listing(berth, tmp_path):
    s3 = berth.client("s3")
    s3.create_bucket(Bucket="env-files")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["env-files"]
    s3.head_bucket(Bucket="env-files")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.create_bucket(Bucket="Bad_Name")
    assert e.value.response["Error"]["Code"] == "InvalidBucketName"

    put = s3.put_object(Bucket="env-files", Key="app/prod.env", Body=b"A=1\nB=two\n", ContentType="text/plain",
                        Metadata={"owner": "web"})
    assert put["ETag"] == '"' + __import__("hashlib").md5(b"A=1\nB=two\n").hexdigest() + '"'
    got = s3.get_object(Bucket="env-files", Key="app/prod.env")
    assert got["Body"].read() == b"A=1\nB=two\n" and got["ContentType"] == "text/plain"
    assert got["Metadata"] == {"owner": "web"} and got["ContentLength"] == 10
    head = s3.head_object(Bucket="env-files", Key="app/prod.env")
    assert head["ETag"] == put["ETag"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket="env-files", Key="nope")
    assert e.value.response["Error"]["Code"] == "NoSuchKey"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.get_object(Bucket="no-such-bucket", Key="x")
    assert e.value.response["Error"]["Code"] == "NoSuchBucket"

    # The aws CLI's high-level commands: cp up and down, ls with prefixes, rm.
    src = tmp_path / "x y.env"
    src.write_text("C=3\n")
    berth.aws("s3", "cp", str(src), "s3://env-files/app/x y.env")
    berth.aws("s3", "cp", str(src), "s3://env-files/other/z.env")
    out = berth.aws("s3", "ls", "s3://env-files/")
    assert "PRE app/" in out and "PRE other/" in out, out
    out = berth.aws("s3", "ls", "s3://env-files/app/")
    assert "prod.env" in out and "x y.env" in out, out
    dst = tmp_path / "back.env"
    berth.aws("s3", "cp", "s3://env-files/app/x y.env", str(dst))
    assert dst.read_text() == "C=3\n"
    keys = [o["Key"] for o in s3.get_paginator("list_objects_v2").paginate(
        Bucket="env-files", PaginationConfig={"PageSize": 1}).build_full_result()["Contents"]]
    assert keys == ["app/prod.env", "app/x y.env", "other/z.env"]
    v1 = s3.list_objects(Bucket="env-files", Prefix="app/", MaxKeys=1)
    assert [o["Key"] for o in v1["Contents"]] == ["app/prod.env"] and v1["IsTruncated"]
    grouped = s3.list_objects_v2(Bucket="env-files", Delimiter="/")
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["app/", "other/"] and "Contents" not in grouped

    empty = s3.list_objects_v2(Bucket="env-files", MaxKeys=0)
    assert empty["KeyCount"] == 0 and not empty["IsTruncated"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.delete_bucket(Bucket="env-files")
    assert e.value.response["Error"]["Code"] == "BucketNotEmpty"
    berth.aws("s3", "rm", "s3://env-files/other/z.env")
    for k in ("app/prod.env", "app/x y.env"):
        s3.delete_object(Bucket="env-files", Key=k)
    s3.delete_bucket(Bucket="env-files")
    assert s3.list_buckets()["Buckets"] == []
    with pytest.raises(botocore.exceptions.ClientError) as e:
        s3.put_object(Bucket="env-files", Key="late", Body=b"x")
    assert e.value.response["Error"]["Code"] == "NoSuchBucket"


def test_s3_requests_are_signed_and_authorized(berth):
    s3 = berth.client("s3")
    s3.create_bucket(Bucket="secure")
    s3.put_object(Bucket="secure", Key="k", Body=b"v")
    bad = berth.client("s3", secret="wrong" * 8)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bad.get_object(Bucket="secure", Key="k")
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    unknown = berth.client("s3", akid="AKIAUNKNOWNUNKNOWN00")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        unknown.list_buckets()
    assert e.value.response["Error"]["Code"] == "InvalidAccessKeyId"

    def key(role):
        k = json.loads(subprocess.run([str(BERTH_BIN), "keys", "create", "--role", role, "--endpoint", berth.endpoint],
                                      capture_output=True, text=True, env=berth.env(), check=True,
                                      timeout=30).stdout)["accessKey"]
        return berth.client("s3", akid=k["accessKeyId"], secret=k["secretAccessKey"])

    ro = key("readonly")
    assert ro.get_object(Bucket="secure", Key="k")["Body"].read() == b"v"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ro.put_object(Bucket="secure", Key="k2", Body=b"x")
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    agent = key("agent")
    assert agent.get_object(Bucket="secure", Key="k")["Body"].read() == b"v"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        agent.list_objects_v2(Bucket="secure")
    assert e.value.response["Error"]["Code"] == "AccessDenied"
