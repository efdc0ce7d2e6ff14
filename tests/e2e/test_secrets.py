"""Secrets Manager and SSM Parameter Store through real clients (the aws CLI and boto3) against a
real berth server: the stores ECS task `secrets` are read from."""

import json
import subprocess

import botocore.exceptions
import pytest

from conftest import BERTH_BIN


def aws_error(berth, *args):
    p = berth.aws(*args, check=False)
    assert p.returncode != 0, f"{args} unexpectedly succeeded: {p.stdout}"
    return p.stderr


def test_secret_lifecycle_with_versions_and_stages(berth):
    out = berth.aws("secretsmanager", "create-secret", "--name", "prod/db", "--secret-string",
                    '{"user":"app","password":"s3cret"}', "--description", "db creds",
                    "--tags", "Key=team,Value=web")
    arn = out["ARN"]
    assert arn.startswith("arn:aws:secretsmanager:us-east-1:000000000000:secret:prod/db-") and len(arn.rsplit("-", 1)[1]) == 6
    assert out["Name"] == "prod/db" and out["VersionId"]
    first = out["VersionId"]
    assert "ResourceExistsException" in aws_error(berth, "secretsmanager", "create-secret", "--name", "prod/db",
                                                  "--secret-string", "x")
    # By name, full ARN and partial ARN.
    for sid in ("prod/db", arn, arn[:-7]):
        v = berth.aws("secretsmanager", "get-secret-value", "--secret-id", sid)
        assert json.loads(v["SecretString"])["password"] == "s3cret" and v["VersionStages"] == ["AWSCURRENT"], sid
        assert v["ARN"] == arn and v["VersionId"] == first
    assert "ResourceNotFoundException" in aws_error(berth, "secretsmanager", "get-secret-value", "--secret-id",
                                                    arn[:-6] + "zzzzzz")

    put = berth.aws("secretsmanager", "put-secret-value", "--secret-id", "prod/db", "--secret-string", "v2")
    assert put["VersionStages"] == ["AWSCURRENT"] and put["VersionId"] != first
    assert berth.aws("secretsmanager", "get-secret-value", "--secret-id", "prod/db")["SecretString"] == "v2"
    prev = berth.aws("secretsmanager", "get-secret-value", "--secret-id", "prod/db", "--version-stage", "AWSPREVIOUS")
    assert prev["VersionId"] == first and "s3cret" in prev["SecretString"]
    d = berth.aws("secretsmanager", "describe-secret", "--secret-id", arn)
    assert d["Description"] == "db creds" and d["Tags"] == [{"Key": "team", "Value": "web"}]
    assert d["VersionIdsToStages"] == {first: ["AWSPREVIOUS"], put["VersionId"]: ["AWSCURRENT"]}
    up = berth.aws("secretsmanager", "update-secret", "--secret-id", "prod/db", "--description", "new")
    assert "VersionId" not in up
    assert berth.aws("secretsmanager", "describe-secret", "--secret-id", "prod/db")["Description"] == "new"

    # Binary secrets round-trip through boto3.
    sm = berth.client("secretsmanager")
    sm.create_secret(Name="blob", SecretBinary=b"\x00\x01binary")
    assert sm.get_secret_value(SecretId="blob")["SecretBinary"] == b"\x00\x01binary"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sm.create_secret(Name="both", SecretBinary=b"x", SecretString="y")
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"

    names = [s["Name"] for s in sm.list_secrets()["SecretList"]]
    assert sorted(names) == ["blob", "prod/db"]
    assert [s["Name"] for s in sm.list_secrets(Filters=[{"Key": "name", "Values": ["prod"]}])["SecretList"]] == ["prod/db"]
    page = sm.list_secrets(MaxResults=1)
    assert len(page["SecretList"]) == 1 and page["NextToken"]
    rest = sm.list_secrets(MaxResults=1, NextToken=page["NextToken"])
    assert {page["SecretList"][0]["Name"], rest["SecretList"][0]["Name"]} == {"blob", "prod/db"}

    # Deletion with a recovery window, restore, forced deletion.
    dl = berth.aws("secretsmanager", "delete-secret", "--secret-id", "prod/db", "--recovery-window-in-days", "7")
    assert dl["ARN"] == arn and dl["DeletionDate"]
    assert "marked for deletion" in aws_error(berth, "secretsmanager", "get-secret-value", "--secret-id", "prod/db")
    assert [s["Name"] for s in sm.list_secrets()["SecretList"]] == ["blob"]
    assert "prod/db" in [s["Name"] for s in sm.list_secrets(IncludePlannedDeletion=True)["SecretList"]]
    berth.aws("secretsmanager", "restore-secret", "--secret-id", arn)
    assert berth.aws("secretsmanager", "get-secret-value", "--secret-id", "prod/db")["SecretString"] == "v2"
    berth.aws("secretsmanager", "delete-secret", "--secret-id", "prod/db", "--force-delete-without-recovery")
    assert "ResourceNotFoundException" in aws_error(berth, "secretsmanager", "describe-secret", "--secret-id", "prod/db")
    # A secret named like another's full ARN (name + suffix) doesn't shadow it.
    x = sm.create_secret(Name="x", SecretString="the x")["ARN"]
    sm.create_secret(Name="x-" + x.rsplit("-", 1)[1], SecretString="the impostor")
    assert sm.get_secret_value(SecretId=x)["SecretString"] == "the x"
    # The name is free again, with a new ARN.
    again = berth.aws("secretsmanager", "create-secret", "--name", "prod/db", "--secret-string", "v3")
    assert again["ARN"] != arn


def test_parameters_versions_paths_and_secure_strings(berth):
    assert berth.aws("ssm", "put-parameter", "--name", "/app/prod/db-host", "--value", "db.internal",
                     "--type", "String") == {"Version": 1, "Tier": "Standard"}
    err = aws_error(berth, "ssm", "put-parameter", "--name", "/app/prod/db-host", "--value", "x", "--type", "String")
    assert "ParameterAlreadyExists" in err
    assert berth.aws("ssm", "put-parameter", "--name", "/app/prod/db-host", "--value", "db2.internal",
                     "--overwrite")["Version"] == 2
    berth.aws("ssm", "put-parameter", "--name", "/app/prod/db-password", "--value", "hunter2", "--type", "SecureString")
    berth.aws("ssm", "put-parameter", "--name", "/app/prod/deep/flag", "--value", "on", "--type", "String")
    berth.aws("ssm", "put-parameter", "--name", "plain", "--value", "a,b", "--type", "StringList")

    p = berth.aws("ssm", "get-parameter", "--name", "/app/prod/db-host")["Parameter"]
    assert p["Value"] == "db2.internal" and p["Version"] == 2 and p["Type"] == "String"
    assert p["ARN"] == "arn:aws:ssm:us-east-1:000000000000:parameter/app/prod/db-host" and p["DataType"] == "text"
    v1 = berth.aws("ssm", "get-parameter", "--name", "/app/prod/db-host:1")["Parameter"]
    assert v1["Value"] == "db.internal" and v1["Selector"] == ":1"
    assert berth.aws("ssm", "get-parameter", "--name", p["ARN"])["Parameter"]["Value"] == "db2.internal"
    assert berth.aws("ssm", "get-parameter", "--name", "plain")["Parameter"]["ARN"].endswith(":parameter/plain")
    sec = berth.aws("ssm", "get-parameter", "--name", "/app/prod/db-password")["Parameter"]
    assert sec["Type"] == "SecureString" and sec["Value"] != "hunter2"
    assert berth.aws("ssm", "get-parameter", "--name", "/app/prod/db-password",
                     "--with-decryption")["Parameter"]["Value"] == "hunter2"
    assert "ParameterNotFound" in aws_error(berth, "ssm", "get-parameter", "--name", "/nope")
    assert "ParameterVersionNotFound" in aws_error(berth, "ssm", "get-parameter", "--name", "/app/prod/db-host:9")
    assert "ValidationException" in aws_error(berth, "ssm", "put-parameter", "--name", "/aws/x", "--value", "1",
                                              "--type", "String")

    # One-level names with a leading slash: the ARN berth returns names them again.
    berth.aws("ssm", "put-parameter", "--name", "/top", "--value", "t", "--type", "String")
    top_arn = berth.aws("ssm", "get-parameter", "--name", "/top")["Parameter"]["ARN"]
    assert top_arn.endswith(":parameter/top")
    assert berth.aws("ssm", "get-parameter", "--name", top_arn)["Parameter"]["Name"] == "/top"
    ssm = berth.client("ssm")
    got = ssm.get_parameters(Names=["/app/prod/db-host", "/missing", "plain"], WithDecryption=True)
    assert sorted(x["Name"] for x in got["Parameters"]) == ["/app/prod/db-host", "plain"]
    assert got["InvalidParameters"] == ["/missing"]
    flat = ssm.get_parameters_by_path(Path="/app/prod")
    assert sorted(x["Name"] for x in flat["Parameters"]) == ["/app/prod/db-host", "/app/prod/db-password"]
    deep = [x["Name"] for x in ssm.get_paginator("get_parameters_by_path").paginate(
        Path="/app", Recursive=True, WithDecryption=True, PaginationConfig={"PageSize": 1})
        .build_full_result()["Parameters"]]
    assert deep == ["/app/prod/db-host", "/app/prod/db-password", "/app/prod/deep/flag"]

    berth.aws("ssm", "delete-parameter", "--name", "plain")
    assert "ParameterNotFound" in aws_error(berth, "ssm", "delete-parameter", "--name", "plain")
    out = ssm.delete_parameters(Names=["/app/prod/deep/flag", "/gone"])
    assert out["DeletedParameters"] == ["/app/prod/deep/flag"] and out["InvalidParameters"] == ["/gone"]


def test_secret_values_need_a_key_that_may_read_them(berth):
    """readonly keys may list and describe, not read values; agent keys may read, not write."""
    berth.aws("secretsmanager", "create-secret", "--name", "k", "--secret-string", "v")
    berth.aws("ssm", "put-parameter", "--name", "p", "--value", "v", "--type", "SecureString")

    def key(role):
        k = json.loads(subprocess.run([str(BERTH_BIN), "keys", "create", "--role", role, "--endpoint", berth.endpoint],
                                      capture_output=True, text=True, env=berth.env(), check=True,
                                      timeout=30).stdout)["accessKey"]
        return k["accessKeyId"], k["secretAccessKey"]

    ro_id, ro_secret = key("readonly")
    sm = berth.client("secretsmanager", akid=ro_id, secret=ro_secret)
    assert [s["Name"] for s in sm.list_secrets()["SecretList"]] == ["k"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sm.get_secret_value(SecretId="k")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        berth.client("ssm", akid=ro_id, secret=ro_secret).get_parameters(Names=["p"])
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"

    ag_id, ag_secret = key("agent")
    assert berth.client("secretsmanager", akid=ag_id, secret=ag_secret).get_secret_value(SecretId="k")["SecretString"] == "v"
    assert berth.client("ssm", akid=ag_id, secret=ag_secret).get_parameters(
        Names=["p"], WithDecryption=True)["Parameters"][0]["Value"] == "v"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        berth.client("secretsmanager", akid=ag_id, secret=ag_secret).create_secret(Name="x", SecretString="y")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"


def test_describe_parameters_and_secret_tags_as_terraform_reads_them(berth):
    """What Terraform's aws_ssm_parameter and aws_secretsmanager_secret read besides the values:
    DescribeParameters (ParameterFilters Name Equals, Path, Type; legacy Filters), and a secret's
    tags (TagResource/UntagResource) and resource policy (none: berth's key roles decide)."""
    ssm = berth.client("ssm")
    ssm.put_parameter(Name="/tf/db/host", Value="h", Type="String", Description="the host")
    ssm.put_parameter(Name="/tf/db/password", Value="p", Type="SecureString", Tier="Advanced")
    ssm.put_parameter(Name="/tf/deep/x/y", Value="y", Type="StringList")
    ssm.put_parameter(Name="tfplain", Value="v", Type="String", Tags=[{"Key": "team", "Value": "web"}])

    def names(**kw):
        return [p["Name"] for p in ssm.describe_parameters(**kw)["Parameters"]]

    one = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": ["/tf/db/host"]}])
    p = one["Parameters"][0]
    assert [x["Name"] for x in one["Parameters"]] == ["/tf/db/host"]
    assert p["Description"] == "the host" and p["Type"] == "String" and p["Version"] == 1 and p["Tier"] == "Standard"
    assert p["ARN"].endswith(":parameter/tf/db/host") and p["DataType"] == "text" and "KeyId" not in p
    sec = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": ["/tf/db/password"]}])["Parameters"][0]
    assert sec["KeyId"] == "alias/aws/ssm" and sec["Tier"] == "Advanced"
    assert names(ParameterFilters=[{"Key": "Path", "Values": ["/tf/db"]}]) == ["/tf/db/host", "/tf/db/password"]
    assert names(ParameterFilters=[{"Key": "Path", "Option": "Recursive", "Values": ["/tf"]}]) == [
        "/tf/db/host", "/tf/db/password", "/tf/deep/x/y"]
    assert names(ParameterFilters=[{"Key": "Type", "Values": ["SecureString"]}]) == ["/tf/db/password"]
    assert names(ParameterFilters=[{"Key": "tag:team", "Values": ["web"]}]) == ["tfplain"]
    assert names(Filters=[{"Key": "Name", "Values": ["/tf/db"]}]) == ["/tf/db/host", "/tf/db/password"]
    pages = ssm.get_paginator("describe_parameters").paginate(PaginationConfig={"PageSize": 1}).build_full_result()
    assert [x["Name"] for x in pages["Parameters"]] == ["/tf/db/host", "/tf/db/password", "/tf/deep/x/y", "tfplain"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ssm.describe_parameters(ParameterFilters=[{"Key": "Path", "Option": "Equals", "Values": ["/tf"]}])
    assert e.value.response["Error"]["Code"] == "InvalidFilterOption"

    sm = berth.client("secretsmanager")
    arn = sm.create_secret(Name="tf/secret", SecretString="s", Tags=[{"Key": "a", "Value": "1"}])["ARN"]
    sm.tag_resource(SecretId=arn, Tags=[{"Key": "a", "Value": "2"}, {"Key": "b", "Value": "3"}])
    assert sorted((t["Key"], t["Value"]) for t in sm.describe_secret(SecretId=arn)["Tags"]) == [("a", "2"), ("b", "3")]
    sm.untag_resource(SecretId="tf/secret", TagKeys=["a"])
    assert sm.describe_secret(SecretId=arn)["Tags"] == [{"Key": "b", "Value": "3"}]
    pol = sm.get_resource_policy(SecretId=arn)
    assert pol["ARN"] == arn and "ResourcePolicy" not in pol


def test_parameter_tags(berth):
    ssm = berth.client("ssm")
    ssm.put_parameter(Name="/tagged/p", Value="v", Type="String", Tags=[{"Key": "a", "Value": "1"}])
    ssm.add_tags_to_resource(ResourceType="Parameter", ResourceId="/tagged/p",
                             Tags=[{"Key": "a", "Value": "2"}, {"Key": "b", "Value": "3"}])
    tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId="/tagged/p")["TagList"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("a", "2"), ("b", "3")]
    ssm.remove_tags_from_resource(ResourceType="Parameter", ResourceId="/tagged/p", TagKeys=["a"])
    assert ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId="/tagged/p")["TagList"] == [
        {"Key": "b", "Value": "3"}]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId="/nope")
    assert e.value.response["Error"]["Code"] == "InvalidResourceId"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ssm.list_tags_for_resource(ResourceType="Document", ResourceId="x")
    assert e.value.response["Error"]["Code"] == "InvalidResourceType"
