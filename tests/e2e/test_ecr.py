"""berth's ECR-compatible registry: the seeds' ECR walkthrough with the real aws CLI and the real
`docker login/push/pull`, plus the OCI distribution API's edge cases over raw HTTP."""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import botocore.exceptions
import pytest

from conftest import BERTH_BIN

BASE_IMAGE = "berth-test/busybox:latest"
V2_IMAGE = "berth-test/ecr-v2:latest"


def docker_ok():
    return shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    """Docker commands with a private DOCKER_CONFIG, so logins never touch the user's."""

    def __init__(self, berth, config_dir):
        self.berth = berth
        self.host = f"127.0.0.1:{berth.port}"
        self.env = {**os.environ, "DOCKER_CONFIG": str(config_dir)}
        self.local_tags = set()

    def docker(self, *args, check=True, input=None):
        p = subprocess.run(["docker", *args], capture_output=True, text=True, env=self.env, input=input, timeout=300)
        if check and p.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {p.stderr}")
        return p

    def tag(self, src, dst):
        self.docker("tag", src, dst)
        self.local_tags.add(dst)

    def login(self):
        password = aws_text(self.berth, "ecr", "get-login-password")
        p = self.docker("login", "--username", "AWS", "--password-stdin", self.host, input=password)
        assert "Login Succeeded" in p.stdout

    def logout(self):
        self.docker("logout", self.host, check=False)

    def cleanup(self):
        self.logout()
        for t in self.local_tags:
            self.docker("rmi", t, check=False)


@pytest.fixture
def registry(berth, tmp_path):
    if not docker_ok():
        pytest.skip("Docker engine not reachable")
    if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True).returncode != 0:
        pytest.skip(f"{BASE_IMAGE} missing: run scripts/test-images.sh")
    ctx = tmp_path / "v2ctx"
    ctx.mkdir()
    (ctx / "hello.txt").write_text("this is v2\n")
    (ctx / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY hello.txt /hello.txt\n")
    if subprocess.run(["docker", "image", "inspect", V2_IMAGE], capture_output=True).returncode != 0:
        p = subprocess.run(["docker", "build", "-q", "-t", V2_IMAGE, str(ctx)], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
    (tmp_path / "docker").mkdir()
    r = Registry(berth, tmp_path / "docker")
    yield r
    r.cleanup()


def aws_text(berth, *args):
    """The aws CLI's raw stdout (for `--output text` values that must keep their exact bytes)."""
    p = berth.aws(*args, check=False)
    assert p.returncode == 0, p.stderr
    return p.stdout.rstrip("\n")


# --- raw HTTP helpers ---------------------------------------------------------------------------

def token_for(berth, akid=None, secret=None):
    kw = {} if akid is None else {"akid": akid, "secret": secret}
    data = berth.client("ecr", **kw).get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    assert user == "AWS"
    return password


def http(berth, method, path, token=None, data=None, headers=None):
    """Returns (status, headers, body bytes) without raising on 4xx/5xx."""
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = "Basic " + base64.b64encode(f"AWS:{token}".encode()).decode()
    url = path if path.startswith("http") else berth.endpoint + path
    req = urllib.request.Request(url, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def error_code(body):
    return json.loads(body)["errors"][0]["code"]


def make_key(berth, role):
    made = subprocess.run([str(BERTH_BIN), "keys", "create", "--role", role, "--endpoint", berth.endpoint],
                          capture_output=True, text=True, env=berth.env(), timeout=30)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["accessKey"]
    return key["accessKeyId"], key["secretAccessKey"]


def push_blob(berth, token, repo, data):
    d = sha(data)
    s, h, b = http(berth, "POST", f"/v2/{repo}/blobs/uploads/?digest={d}", token, data=data,
                   headers={"Content-Type": "application/octet-stream"})
    assert s == 201, b
    return d


def push_image(berth, token, repo, tag, payload=b"layer"):
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cd = push_blob(berth, token, repo, config)
    ld = push_blob(berth, token, repo, payload)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": len(payload)}],
    }).encode()
    s, h, b = http(berth, "PUT", f"/v2/{repo}/manifests/{tag}", token, data=manifest,
                   headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert s == 201, b
    assert h["Docker-Content-Digest"] == sha(manifest)
    assert h["Location"] == f"/v2/{repo}/manifests/{sha(manifest)}"
    return sha(manifest), manifest, ld


# --- the seeds' walkthrough ---------------------------------------------------------------------

def test_ecr_walkthrough_with_docker(berth, registry):
    repo = berth.aws("ecr", "create-repository", "--repository-name", "my-ecr-repo")["repository"]
    uri = repo["repositoryUri"]
    assert uri == f"{registry.host}/my-ecr-repo"
    assert repo["repositoryArn"] == "arn:aws:ecr:us-east-1:000000000000:repository/my-ecr-repo"
    assert repo["imageTagMutability"] == "MUTABLE"
    described = berth.aws("ecr", "describe-repositories")["repositories"]
    assert [r["repositoryName"] for r in described] == ["my-ecr-repo"]

    registry.login()
    registry.tag(BASE_IMAGE, f"{uri}:latest")
    registry.docker("push", f"{uri}:latest")
    ids = berth.aws("ecr", "list-images", "--repository-name", "my-ecr-repo")["imageIds"]
    assert len(ids) == 1 and ids[0]["imageTag"] == "latest"
    v1 = ids[0]["imageDigest"]

    # v2 takes the tag; v1's digest stays, untagged.
    registry.tag(V2_IMAGE, f"{uri}:latest")
    registry.docker("push", f"{uri}:latest")
    untagged = berth.aws("ecr", "list-images", "--repository-name", "my-ecr-repo", "--filter", "tagStatus=UNTAGGED")["imageIds"]
    assert untagged == [{"imageDigest": v1}]
    tagged = berth.aws("ecr", "list-images", "--repository-name", "my-ecr-repo", "--filter", "tagStatus=TAGGED")["imageIds"]
    assert len(tagged) == 1 and tagged[0]["imageTag"] == "latest"
    v2 = tagged[0]["imageDigest"]
    assert v2 != v1

    # Retag without pull/push.
    manifest = aws_text(berth, "ecr", "batch-get-image", "--repository-name", "my-ecr-repo", "--image-ids", "imageTag=latest",
                         "--query", "images[].imageManifest", "--output", "text")
    put = berth.aws("ecr", "put-image", "--repository-name", "my-ecr-repo", "--image-tag", "v1", "--image-manifest", manifest)
    assert put["image"]["imageId"] == {"imageDigest": v2, "imageTag": "v1"}
    again = berth.aws("ecr", "put-image", "--repository-name", "my-ecr-repo", "--image-tag", "v1",
                      "--image-manifest", manifest, check=False)
    assert again.returncode != 0 and "ImageAlreadyExistsException" in again.stderr

    detail = berth.aws("ecr", "describe-images", "--repository-name", "my-ecr-repo", "--image-ids", "imageTag=v1")["imageDetails"][0]
    assert detail["imageDigest"] == v2 and sorted(detail["imageTags"]) == ["latest", "v1"]
    assert detail["imageSizeInBytes"] > 0 and detail["imagePushedAt"] > 0
    assert detail["imageManifestMediaType"] in ("application/vnd.docker.distribution.manifest.v2+json",
                                                "application/vnd.oci.image.manifest.v1+json")
    assert "artifactMediaType" in detail

    # Untag: v1 goes (the image keeps `latest`); v2 is no tag at all → a failure.
    out = berth.aws("ecr", "batch-delete-image", "--repository-name", "my-ecr-repo", "--image-ids", "imageTag=v1", "imageTag=v2")
    assert out["imageIds"] == [{"imageDigest": v2, "imageTag": "v1"}]
    assert [(f["imageId"]["imageTag"], f["failureCode"]) for f in out["failures"]] == [("v2", "ImageNotFound")]

    # Last tag → image deleted: tag the old digest v0, then delete the tag.
    old = aws_text(berth, "ecr", "batch-get-image", "--repository-name", "my-ecr-repo", "--image-ids", f"imageDigest={v1}",
                    "--query", "images[].imageManifest", "--output", "text")
    berth.aws("ecr", "put-image", "--repository-name", "my-ecr-repo", "--image-tag", "v0", "--image-manifest", old)
    out = berth.aws("ecr", "batch-delete-image", "--repository-name", "my-ecr-repo", "--image-ids", "imageTag=v0")
    assert out["imageIds"] == [{"imageDigest": v1, "imageTag": "v0"}]
    remaining = berth.aws("ecr", "list-images", "--repository-name", "my-ecr-repo")["imageIds"]
    assert remaining == [{"imageDigest": v2, "imageTag": "latest"}]

    # Pull it back and run it.
    registry.docker("rmi", f"{uri}:latest")
    registry.docker("pull", f"{uri}:latest")
    ran = registry.docker("run", "--rm", f"{uri}:latest", "cat", "/hello.txt")
    assert ran.stdout == "this is v2\n"
    registry.docker("run", "--rm", f"{uri}:latest", "true")
    pulled = berth.aws("ecr", "describe-images", "--repository-name", "my-ecr-repo")["imageDetails"][0]
    assert pulled["lastRecordedPullTime"] > 0

    # IMMUTABLE: a pushed tag can no longer move.
    berth.aws("ecr", "put-image-tag-mutability", "--repository-name", "my-ecr-repo", "--image-tag-mutability", "IMMUTABLE")
    registry.tag(BASE_IMAGE, f"{uri}:latest")
    p = registry.docker("push", f"{uri}:latest", check=False)
    assert p.returncode != 0 and "immutable" in (p.stderr + p.stdout)
    p = berth.aws("ecr", "put-image", "--repository-name", "my-ecr-repo", "--image-tag", "latest", "--image-manifest", old, check=False)
    assert p.returncode != 0 and "ImageTagAlreadyExistsException" in p.stderr

    # Not empty without force; force deletes the lot.
    p = berth.aws("ecr", "delete-repository", "--repository-name", "my-ecr-repo", check=False)
    assert p.returncode != 0 and "RepositoryNotEmptyException" in p.stderr
    berth.aws("ecr", "delete-repository", "--repository-name", "my-ecr-repo", "--force")
    assert berth.aws("ecr", "describe-repositories")["repositories"] == []


def test_push_without_login_is_refused(berth, registry):
    uri = berth.aws("ecr", "create-repository", "--repository-name", "nologin")["repository"]["repositoryUri"]
    registry.tag(BASE_IMAGE, f"{uri}:latest")
    p = registry.docker("push", f"{uri}:latest", check=False)
    assert p.returncode != 0
    assert "no basic auth credentials" in p.stderr or "unauthorized" in p.stderr.lower()
    assert berth.aws("ecr", "list-images", "--repository-name", "nologin")["imageIds"] == []


def test_push_to_a_missing_repository_is_name_unknown(berth, registry):
    registry.login()
    registry.tag(BASE_IMAGE, f"{registry.host}/not-created:latest")
    p = registry.docker("push", f"{registry.host}/not-created:latest", check=False)
    assert p.returncode != 0
    s, _, b = http(berth, "POST", "/v2/not-created/blobs/uploads/", token_for(berth))
    assert s == 404 and error_code(b) == "NAME_UNKNOWN"


# --- the distribution API over HTTP --------------------------------------------------------------

def test_auth_challenge_and_roles(berth):
    berth.aws("ecr", "create-repository", "--repository-name", "team/app")
    s, h, b = http(berth, "GET", "/v2/")
    assert s == 401 and h["WWW-Authenticate"].startswith("Basic realm=") and error_code(b) == "UNAUTHORIZED"
    assert h["Docker-Distribution-API-Version"] == "registry/2.0"
    assert http(berth, "GET", "/v2/", "garbage")[0] == 401
    admin = token_for(berth)
    assert http(berth, "GET", "/v2/", admin)[0] == 200
    digest, _, _ = push_image(berth, admin, "team/app", "v1")

    ro = token_for(berth, *make_key(berth, "readonly"))
    s, _, b = http(berth, "POST", "/v2/team/app/blobs/uploads/", ro)
    assert s == 403 and error_code(b) == "DENIED"
    s, _, b = http(berth, "PUT", "/v2/team/app/manifests/v2", ro, data=b"{}")
    assert s == 403 and error_code(b) == "DENIED"
    s, h, b = http(berth, "GET", "/v2/team/app/manifests/v1", ro,
                   headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert s == 200 and h["Docker-Content-Digest"] == digest and sha(b) == digest
    assert h["Content-Type"] == "application/vnd.oci.image.manifest.v1+json"
    agent = token_for(berth, *make_key(berth, "agent"))
    assert http(berth, "GET", "/v2/team/app/manifests/v1", agent)[0] == 200
    assert http(berth, "DELETE", f"/v2/team/app/manifests/{digest}", agent)[0] == 403

    # A readonly key cannot mutate through the ECR API either.
    akid, secret = make_key(berth, "readonly")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        berth.client("ecr", akid=akid, secret=secret).create_repository(repositoryName="nope")
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"


def test_blob_uploads_digests_and_ranges(berth):
    berth.aws("ecr", "create-repository", "--repository-name", "blobs")
    t = token_for(berth)
    # Wrong digest: DIGEST_INVALID, and nothing stored under either digest.
    data = b"hello, registry"
    wrong = sha(b"something else")
    s, _, b = http(berth, "POST", f"/v2/blobs/blobs/uploads/?digest={wrong}", t, data=data)
    assert s == 400 and error_code(b) == "DIGEST_INVALID"
    for d in (wrong, sha(data)):
        s, _, b = http(berth, "HEAD", f"/v2/blobs/blobs/{d}", t)
        assert s == 404
    assert error_code(http(berth, "GET", f"/v2/blobs/blobs/{sha(data)}", t)[2]) == "BLOB_UNKNOWN"
    assert error_code(http(berth, "GET", "/v2/blobs/blobs/sha256:nothex", t)[2]) == "DIGEST_INVALID"

    # Chunked: POST, PATCH, PATCH (Content-Range checked), PUT ?digest.
    s, h, _ = http(berth, "POST", "/v2/blobs/blobs/uploads/", t)
    assert s == 202 and h["Range"] == "0-0"
    loc = h["Location"]
    s, h, _ = http(berth, "PATCH", loc, t, data=b"hello, ", headers={"Content-Range": "0-6", "Content-Type": "application/octet-stream"})
    assert s == 202 and h["Range"] == "0-6"
    s, _, b = http(berth, "PATCH", loc, t, data=b"xx", headers={"Content-Range": "20-21"})
    assert s == 416 and error_code(b) == "RANGE_INVALID"
    s, h, _ = http(berth, "GET", loc, t)
    assert s == 204 and h["Range"] == "0-6"
    s, _, b = http(berth, "PUT", f"{loc}?digest={sha(b'nope')}", t, data=b"registry")
    assert s == 400 and error_code(b) == "DIGEST_INVALID"
    assert error_code(http(berth, "GET", loc, t)[2]) == "BLOB_UPLOAD_UNKNOWN"  # a failed upload is gone

    s, h, _ = http(berth, "POST", "/v2/blobs/blobs/uploads/", t)
    loc = h["Location"]
    http(berth, "PATCH", loc, t, data=b"hello, ")
    s, h, _ = http(berth, "PUT", f"{loc}?digest={sha(data)}", t, data=b"registry")
    assert s == 201 and h["Docker-Content-Digest"] == sha(data) and h["Location"] == f"/v2/blobs/blobs/{sha(data)}"
    s, h, b = http(berth, "GET", f"/v2/blobs/blobs/{sha(data)}", t)
    assert s == 200 and b == data and h["Content-Length"] == str(len(data))
    s, h, b = http(berth, "GET", f"/v2/blobs/blobs/{sha(data)}", t, headers={"Range": "bytes=7-"})
    assert s == 206 and b == b"registry" and h["Content-Range"] == f"bytes 7-14/{len(data)}"
    s, _, b = http(berth, "GET", f"/v2/blobs/blobs/{sha(data)}", t, headers={"Range": "bytes=99-"})
    assert s == 416 and error_code(b) == "RANGE_INVALID"

    # Cross-repository mount.
    berth.aws("ecr", "create-repository", "--repository-name", "other")
    assert http(berth, "HEAD", f"/v2/other/blobs/{sha(data)}", t)[0] == 404
    s, h, _ = http(berth, "POST", f"/v2/other/blobs/uploads/?mount={sha(data)}&from=blobs", t)
    assert s == 201 and h["Location"] == f"/v2/other/blobs/{sha(data)}"
    assert http(berth, "HEAD", f"/v2/other/blobs/{sha(data)}", t)[0] == 200


def test_manifests_tags_and_catalog(berth):
    for name in ("cat-a", "cat-b", "cat-c"):
        berth.aws("ecr", "create-repository", "--repository-name", name)
    t = token_for(berth)
    s, h, b = http(berth, "GET", "/v2/_catalog?n=2", t)
    assert json.loads(b)["repositories"] == ["cat-a", "cat-b"]
    assert h["Link"] == '</v2/_catalog?n=2&last=cat-b>; rel="next"'
    assert json.loads(http(berth, "GET", "/v2/_catalog?n=2&last=cat-b", t)[2])["repositories"] == ["cat-c"]

    d1, m1, layer = push_image(berth, t, "cat-a", "one", b"layer one")
    for tag in ("two", "three"):
        s, _, b = http(berth, "PUT", f"/v2/cat-a/manifests/{tag}", t, data=m1,
                       headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert s == 201, b
    s, h, b = http(berth, "GET", "/v2/cat-a/tags/list?n=2", t)
    assert json.loads(b) == {"name": "cat-a", "tags": ["one", "three"]}
    assert h["Link"] == '</v2/cat-a/tags/list?n=2&last=three>; rel="next"'
    assert json.loads(http(berth, "GET", "/v2/cat-a/tags/list?last=three", t)[2])["tags"] == ["two"]

    # HEAD by digest; unknown manifest; invalid manifest; missing blob; digest mismatch; bad tag.
    s, h, b = http(berth, "HEAD", f"/v2/cat-a/manifests/{d1}", t)
    assert s == 200 and h["Content-Length"] == str(len(m1)) and b == b""
    assert error_code(http(berth, "GET", "/v2/cat-a/manifests/nope", t)[2]) == "MANIFEST_UNKNOWN"
    s, _, b = http(berth, "PUT", "/v2/cat-a/manifests/bad", t, data=b"{not json",
                   headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert s == 400 and error_code(b) == "MANIFEST_INVALID"
    missing = json.loads(m1)
    missing["layers"][0]["digest"] = sha(b"never uploaded")
    s, _, b = http(berth, "PUT", "/v2/cat-a/manifests/bad", t, data=json.dumps(missing).encode(),
                   headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert s == 400 and error_code(b) == "MANIFEST_BLOB_UNKNOWN"
    s, _, b = http(berth, "PUT", f"/v2/cat-a/manifests/{sha(b'x')}", t, data=m1,
                   headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert s == 400 and error_code(b) == "DIGEST_INVALID"
    s, _, b = http(berth, "PUT", "/v2/cat-a/manifests/-bad", t, data=m1)
    assert s == 400 and error_code(b) == "TAG_INVALID"
    s, _, b = http(berth, "GET", "/v2/../etc/manifests/x", t)
    assert s in (400, 404)

    # An OCI index over the image; the image cannot be deleted while the index references it.
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d1,
                                       "size": len(m1), "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    s, h, b = http(berth, "PUT", "/v2/cat-a/manifests/multi", t, data=index,
                   headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
    assert s == 201, b
    s, h, _ = http(berth, "GET", "/v2/cat-a/manifests/multi", t)
    assert h["Content-Type"] == "application/vnd.oci.image.index.v1+json"
    out = berth.client("ecr").batch_delete_image(repositoryName="cat-a", imageIds=[{"imageDigest": d1}])
    assert out["failures"][0]["failureCode"] == "ImageReferencedByManifestList"

    # DELETE by digest removes the image and its tags.
    assert http(berth, "DELETE", f"/v2/cat-a/manifests/{sha(index)}", t)[0] == 202
    assert http(berth, "DELETE", f"/v2/cat-a/manifests/{d1}", t)[0] == 202
    assert json.loads(http(berth, "GET", "/v2/cat-a/tags/list", t)[2])["tags"] == []
    assert http(berth, "GET", "/v2/cat-a/manifests/one", t)[0] == 404


def test_layer_api_and_download_url(berth):
    ecr = berth.client("ecr")
    ecr.create_repository(repositoryName="layers")
    data = os.urandom(300_000)
    up = ecr.initiate_layer_upload(repositoryName="layers")
    uid = up["uploadId"]
    assert up["partSize"] > 0
    r = ecr.upload_layer_part(repositoryName="layers", uploadId=uid, partFirstByte=0, partLastByte=99_999,
                              layerPartBlob=data[:100_000])
    assert r["lastByteReceived"] == 99_999
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecr.upload_layer_part(repositoryName="layers", uploadId=uid, partFirstByte=5, partLastByte=10, layerPartBlob=b"x" * 6)
    assert e.value.response["Error"]["Code"] == "InvalidLayerPartException"
    ecr.upload_layer_part(repositoryName="layers", uploadId=uid, partFirstByte=100_000, partLastByte=299_999,
                          layerPartBlob=data[100_000:])
    done = ecr.complete_layer_upload(repositoryName="layers", uploadId=uid, layerDigests=[sha(data)])
    assert done["layerDigest"] == sha(data)
    avail = ecr.batch_check_layer_availability(repositoryName="layers", layerDigests=[sha(data), sha(b"nope")])
    assert avail["layers"][0]["layerAvailability"] == "AVAILABLE" and avail["layers"][0]["layerSize"] == 300_000
    assert avail["failures"][0]["failureCode"] == "MissingLayerDigest"
    url = ecr.get_download_url_for_layer(repositoryName="layers", layerDigest=sha(data))["downloadUrl"]
    s, _, b = http(berth, "GET", url)  # no credentials: the URL carries them
    assert s == 200 and b == data

    bad = ecr.initiate_layer_upload(repositoryName="layers")["uploadId"]
    ecr.upload_layer_part(repositoryName="layers", uploadId=bad, partFirstByte=0, partLastByte=2, layerPartBlob=b"abc")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecr.complete_layer_upload(repositoryName="layers", uploadId=bad, layerDigests=[sha(b"abd")])
    assert e.value.response["Error"]["Code"] == "InvalidLayerException"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ecr.upload_layer_part(repositoryName="layers", uploadId=bad, partFirstByte=0, partLastByte=2, layerPartBlob=b"abc")
    assert e.value.response["Error"]["Code"] == "UploadNotFoundException"


def test_repository_api(berth):
    ecr = berth.client("ecr")
    for bad in ("UPPER", "../etc", "a//b", "ab/"):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            ecr.create_repository(repositoryName=bad)
        assert e.value.response["Error"]["Code"] in ("InvalidParameterException", "ValidationException")
    r = ecr.create_repository(repositoryName="team/svc", imageTagMutability="IMMUTABLE",
                              imageScanningConfiguration={"scanOnPush": True}, tags=[{"Key": "team", "Value": "a"}])["repository"]
    assert r["imageTagMutability"] == "IMMUTABLE" and r["imageScanningConfiguration"] == {"scanOnPush": True}
    with pytest.raises(ecr.exceptions.RepositoryAlreadyExistsException) as e:
        ecr.create_repository(repositoryName="team/svc")
    assert e.value.response["Error"]["Message"] == \
        "The repository with name 'team/svc' already exists in the registry with id '000000000000'"
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.describe_repositories(repositoryNames=["missing"])
    for i in range(3):
        ecr.create_repository(repositoryName=f"page-{i}")
    names, token = [], None
    while True:
        kw = {"maxResults": 2, **({"nextToken": token} if token else {})}
        page = ecr.describe_repositories(**kw)
        names += [x["repositoryName"] for x in page["repositories"]]
        token = page.get("nextToken")
        if not token:
            break
    assert names == ["page-0", "page-1", "page-2", "team/svc"]

    ecr.put_image_scanning_configuration(repositoryName="team/svc", imageScanningConfiguration={"scanOnPush": False})
    assert ecr.describe_repositories(repositoryNames=["team/svc"])["repositories"][0]["imageScanningConfiguration"] == {"scanOnPush": False}
    policy = json.dumps({"Version": "2012-10-17", "Statement": []})
    with pytest.raises(ecr.exceptions.RepositoryPolicyNotFoundException):
        ecr.get_repository_policy(repositoryName="team/svc")
    ecr.set_repository_policy(repositoryName="team/svc", policyText=policy)
    assert ecr.get_repository_policy(repositoryName="team/svc")["policyText"] == policy
    ecr.delete_repository_policy(repositoryName="team/svc")
    lifecycle = json.dumps({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 5}, "action": {"type": "expire"}}]})
    with pytest.raises(ecr.exceptions.LifecyclePolicyNotFoundException):
        ecr.get_lifecycle_policy(repositoryName="team/svc")
    ecr.put_lifecycle_policy(repositoryName="team/svc", lifecyclePolicyText=lifecycle)
    assert ecr.get_lifecycle_policy(repositoryName="team/svc")["lifecyclePolicyText"] == lifecycle
    ecr.delete_lifecycle_policy(repositoryName="team/svc")

    arn = r["repositoryArn"]
    ecr.tag_resource(resourceArn=arn, tags=[{"Key": "env", "Value": "prod"}])
    ecr.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert ecr.list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "env", "Value": "prod"}]
    reg = ecr.describe_registry()
    assert reg["registryId"] == "000000000000"
    auth = ecr.get_authorization_token()["authorizationData"][0]
    assert auth["proxyEndpoint"] == berth.endpoint
    assert base64.b64decode(auth["authorizationToken"]).startswith(b"AWS:")
    deleted = ecr.delete_repository(repositoryName="team/svc")["repository"]
    assert deleted["repositoryName"] == "team/svc"
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.delete_repository(repositoryName="team/svc")


def test_tokens_survive_a_restart(fresh_berth):
    b = fresh_berth.start()
    b.aws("ecr", "create-repository", "--repository-name", "durable")
    t = token_for(b)
    digest, _, _ = push_image(b, t, "durable", "v1")
    b.stop()
    b.start()
    s, h, _ = http(b, "GET", "/v2/durable/manifests/v1", t)
    assert s == 200 and h["Docker-Content-Digest"] == digest


# --- lifecycle policies ---------------------------------------------------------------------------

def test_lifecycle_policy_preview_and_expiry(tmp_path):
    """Lifecycle rules as ECR documents them, previewed and then applied by the periodic pass."""
    from conftest import Berth

    b = Berth(tmp_path / "data", env={"BERTH_ECR_LIFECYCLE_INTERVAL": "1"}).start()
    try:
        ecr = b.client("ecr")
        ecr.create_repository(repositoryName="lc")
        ecr.create_repository(repositoryName="untouched")
        t = token_for(b)
        digests = {}
        # Oldest → newest: A, B (both left untagged when `x` moves), C (`x`), D (`keep-1`), E, F, G (`rel-*`).
        for name, tag in [("A", "x"), ("B", "x"), ("C", "x"), ("D", "keep-1"), ("E", "rel-1"), ("F", "rel-2"), ("G", "rel-3")]:
            digests[name], _, _ = push_image(b, t, "lc", tag, payload=f"layer {name}".encode())
            time.sleep(0.05)
        push_image(b, t, "untouched", "x", payload=b"other")
        push_image(b, t, "untouched", "x", payload=b"other 2")
        names = {v: k for k, v in digests.items()}

        def rule(priority, **selection):
            return {"rulePriority": priority, "description": f"rule {priority}", "selection": selection, "action": {"type": "expire"}}

        policy = json.dumps({"rules": [
            rule(10, tagStatus="any", countType="imageCountMoreThan", countNumber=4),
            rule(1, tagStatus="untagged", countType="imageCountMoreThan", countNumber=1),
            rule(2, tagStatus="tagged", tagPrefixList=["keep"], countType="imageCountMoreThan", countNumber=9999),
            rule(3, tagStatus="tagged", tagPatternList=["rel-*"], countType="imageCountMoreThan", countNumber=1),
            rule(4, tagStatus="tagged", tagPatternList=["keep*"], countType="sinceImagePushed", countUnit="days", countNumber=30),
        ]})

        with pytest.raises(ecr.exceptions.LifecyclePolicyNotFoundException):
            ecr.get_lifecycle_policy(repositoryName="lc")
        with pytest.raises(ecr.exceptions.LifecyclePolicyNotFoundException):
            ecr.start_lifecycle_policy_preview(repositoryName="lc")
        with pytest.raises(ecr.exceptions.LifecyclePolicyPreviewNotFoundException):
            ecr.get_lifecycle_policy_preview(repositoryName="lc")

        # Validation: ECR's InvalidParameterException texts.
        bad = {
            json.dumps({"rules": [rule(1, tagStatus="tagged", countType="imageCountMoreThan", countNumber=3)]}):
                "Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED.",
            json.dumps({"rules": [rule(1, tagStatus="any", countType="imageCountMoreThan", countNumber=3),
                                  rule(2, tagStatus="untagged", countType="imageCountMoreThan", countNumber=3)]}):
                "Rule for tagStatus=ANY must have the lowest priority per storage class",
            json.dumps({"rules": [rule(1, tagStatus="untagged", countType="sinceImagePushed", countNumber=3)]}):
                "instance failed to match exactly one schema (matched 0 out of 2)",
            json.dumps({"rules": [rule(1, tagStatus="untagged", countType="imageCountMoreThan", countNumber=0)]}):
                "numeric instance is lower than the required minimum (minimum: 1, found: 0)",
            json.dumps({"rulez": [rule(1, tagStatus="untagged", countType="imageCountMoreThan", countNumber=1)]}):
                "object has missing required properties ([\"rules\"])",
        }
        for text, msg in bad.items():
            for call in (ecr.put_lifecycle_policy, ecr.start_lifecycle_policy_preview):
                with pytest.raises(ecr.exceptions.InvalidParameterException) as e:
                    call(repositoryName="lc", lifecyclePolicyText=text)
                assert e.value.response["Error"]["Message"] == \
                    f"Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: {msg}'"
        with pytest.raises(ecr.exceptions.LifecyclePolicyNotFoundException):
            ecr.get_lifecycle_policy(repositoryName="lc")

        # Preview of a policy text (nothing is deleted by a preview).
        started = ecr.start_lifecycle_policy_preview(repositoryName="lc", lifecyclePolicyText=policy)
        assert started["status"] in ("IN_PROGRESS", "COMPLETE") and started["lifecyclePolicyText"] == policy
        preview = ecr.get_lifecycle_policy_preview(repositoryName="lc")
        assert preview["status"] == "COMPLETE"
        got = {names[r["imageDigest"]]: r["appliedRulePriority"] for r in preview["previewResults"]}
        assert got == {"A": 1, "E": 3, "F": 3, "C": 10}, got
        assert all(r["action"]["type"] == "EXPIRE" for r in preview["previewResults"])
        assert preview["summary"]["expiringImageTotalCount"] == 4
        e_result = [r for r in preview["previewResults"] if r["imageDigest"] == digests["E"]][0]
        assert e_result["imageTags"] == ["rel-1"] and e_result["imagePushedAt"]
        only_untagged = ecr.get_lifecycle_policy_preview(repositoryName="lc", filter={"tagStatus": "UNTAGGED"})["previewResults"]
        assert [names[r["imageDigest"]] for r in only_untagged] == ["A"]
        page = ecr.get_lifecycle_policy_preview(repositoryName="lc", maxResults=3)
        rest = ecr.get_lifecycle_policy_preview(repositoryName="lc", maxResults=3, nextToken=page["nextToken"])
        assert len(page["previewResults"]) == 3 and len(rest["previewResults"]) == 1 and "nextToken" not in rest
        assert len(ecr.list_images(repositoryName="lc")["imageIds"]) == 7  # a preview expires nothing

        # The policy applied by the periodic pass.
        ecr.put_lifecycle_policy(repositoryName="lc", lifecyclePolicyText=policy)
        deadline = time.time() + 20
        while time.time() < deadline:
            left = {names[i["imageDigest"]] for i in ecr.list_images(repositoryName="lc")["imageIds"]}
            if left == {"B", "D", "G"}:
                break
            time.sleep(0.3)
        assert left == {"B", "D", "G"}, left
        got = ecr.get_lifecycle_policy(repositoryName="lc")
        assert got["lifecyclePolicyText"] == policy and got["lastEvaluatedAt"]
        assert len(ecr.list_images(repositoryName="untouched")["imageIds"]) == 2
        # Expired images are gone from the registry too.
        assert http(b, "GET", f"/v2/lc/manifests/{digests['A']}", t)[0] == 404
        assert http(b, "GET", f"/v2/lc/manifests/{digests['G']}", t)[0] == 200
        deleted = ecr.delete_lifecycle_policy(repositoryName="lc")
        assert deleted["lifecyclePolicyText"] == policy
        with pytest.raises(ecr.exceptions.LifecyclePolicyNotFoundException):
            ecr.delete_lifecycle_policy(repositoryName="lc")
    finally:
        b.stop()
