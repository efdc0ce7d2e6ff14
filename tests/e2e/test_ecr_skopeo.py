"""berth's registry with `skopeo` (Debian's package, installed by scripts/test): copies in from a
docker-archive and an OCI layout, inspect, list-tags, and copies back out with equal digests."""

import hashlib
import json
import shutil
import subprocess

import pytest

from test_ecr import BASE_IMAGE, aws_text, docker_ok

pytestmark = pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo not installed (scripts/test installs it)")


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def sk(berth, tmp_path):
    if not docker_ok():
        pytest.skip("Docker engine not reachable")
    if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True).returncode != 0:
        pytest.skip(f"{BASE_IMAGE} missing: run scripts/test-images.sh")
    archive = tmp_path / "base.tar"
    subprocess.run(["docker", "save", "-o", str(archive), BASE_IMAGE], check=True, timeout=120)
    creds = "AWS:" + aws_text(berth, "ecr", "get-login-password")
    host = f"127.0.0.1:{berth.port}"

    def run(*args, check=True):
        p = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=300)
        if check:
            assert p.returncode == 0, f"skopeo {' '.join(args)}: {p.stderr}"
        return p

    return {"archive": archive, "creds": creds, "host": host, "run": run, "dir": tmp_path}


def test_skopeo_copy_in_inspect_list_tags_and_back_out(berth, sk):
    run, host, creds, d = sk["run"], sk["host"], sk["creds"], sk["dir"]
    ecr = berth.client("ecr")
    ecr.create_repository(repositoryName="sk/app")
    ecr.create_repository(repositoryName="sk/copy")
    dest = ["--dest-creds", creds, "--dest-tls-verify=false"]
    src = ["--src-creds", creds, "--src-tls-verify=false"]

    # docker-archive → berth (Docker schema 2), and an OCI layout → berth (OCI manifest).
    run("copy", *dest, f"docker-archive:{sk['archive']}", f"docker://{host}/sk/app:v1")
    run("copy", f"docker-archive:{sk['archive']}", f"oci:{d / 'layout'}:v2")
    run("copy", *dest, f"oci:{d / 'layout'}:v2", f"docker://{host}/sk/app:v2")

    # Unauthenticated: refused.
    p = run("inspect", "--tls-verify=false", f"docker://{host}/sk/app:v1", check=False)
    assert p.returncode != 0 and ("unauthorized" in p.stderr.lower() or "authentication required" in p.stderr.lower()), p.stderr

    info = json.loads(run("inspect", "--creds", creds, "--tls-verify=false", f"docker://{host}/sk/app:v1").stdout)
    assert sorted(info["RepoTags"]) == ["v1", "v2"]
    assert info["Os"] == "linux" and info["Layers"]
    tags = json.loads(run("list-tags", "--creds", creds, "--tls-verify=false", f"docker://{host}/sk/app").stdout)
    assert sorted(tags["Tags"]) == ["v1", "v2"]

    described = {i["imageTags"][0]: i for i in ecr.describe_images(repositoryName="sk/app")["imageDetails"]}
    assert described["v1"]["imageDigest"] == info["Digest"]
    assert described["v1"]["imageManifestMediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert described["v2"]["imageManifestMediaType"] == "application/vnd.oci.image.manifest.v1+json"

    for tag in ("v1", "v2"):
        digest = described[tag]["imageDigest"]
        raw = run("inspect", "--raw", "--creds", creds, "--tls-verify=false", f"docker://{host}/sk/app:{tag}").stdout
        assert sha(raw.encode()) == digest
        # Back out into a directory: the manifest bytes are the registry's, each blob hashes to its digest.
        out = d / f"out-{tag}"
        run("copy", *src, f"docker://{host}/sk/app:{tag}", f"dir:{out}")
        manifest = (out / "manifest.json").read_bytes()
        assert sha(manifest) == digest
        m = json.loads(manifest)
        for blob in [m["config"], *m["layers"]]:
            path = out / blob["digest"].split(":", 1)[1]
            assert sha(path.read_bytes()) == blob["digest"] and path.stat().st_size == blob["size"]
        # … and from that directory into another repository: the same digest.
        run("copy", *dest, f"dir:{out}", f"docker://{host}/sk/copy:{tag}")
        again = ecr.describe_images(repositoryName="sk/copy", imageIds=[{"imageTag": tag}])["imageDetails"][0]
        assert again["imageDigest"] == digest

    # The OCI image round-trips through an OCI layout unchanged.
    run("copy", *src, f"docker://{host}/sk/app:v2", f"oci:{d / 'back'}:v2")
    index = json.loads((d / "back" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == described["v2"]["imageDigest"]

    # Registry → registry (blobs mounted across repositories), digest kept.
    run("copy", *src, *dest, f"docker://{host}/sk/app:v1", f"docker://{host}/sk/copy:direct")
    assert ecr.describe_images(repositoryName="sk/copy", imageIds=[{"imageTag": "direct"}])["imageDetails"][0]["imageDigest"] \
        == described["v1"]["imageDigest"]
