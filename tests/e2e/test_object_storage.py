"""Media on S3: the deploy's S3 settings reach the web, which stores uploads in the sandbox's S3 server.

The sandbox runs a real S3-API server (moto's server mode with IAM authentication on, SigV4 checked:
tests/sandbox/README.md) at http://s3.sandbox.test:9000; the stand-in web uploads with boto3, reading
upstream's variables (config/initializers/paperclip.rb; standins/mastodon/README.md). Every object is
checked on the S3 server with its admin keys (`sandbox-s3`), never through the stand-in.

Two deploys: with the server's keys, then with a wrong secret (the deploy converges all the same, the
upload fails as upstream's would). Variations of one variable each run in one-off web containers
(`docker compose run web bundle exec puma`) on the deployed instance, without a deploy.
S3 is configured by the typed settings (``mastodon_s3_bucket``, ``_endpoint``, ``_access_key_id``,
``_secret_access_key``); the lines they write into .env.production are checked too.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shlex

import pytest
from contract import BASE_DIR, DOMAIN
from toolkit import Result, Sandbox, trust_file

pytestmark = pytest.mark.e2e

BUCKET = "mastodon-media"
ENDPOINT = "http://s3.sandbox.test:9000"
SYSTEM_DIR = f"{BASE_DIR}/public/system"
KEY_PREFIX = "media_attachments/files/"


@pytest.fixture(scope="module")
def box(sandbox) -> Sandbox:
    return sandbox.clean_with_standins("uploads without an access token work only with the stand-in web")


def admin_keys(box: Sandbox) -> dict[str, str]:
    """The S3 server's admin key pair (made at each start of sandbox-s3.service)."""
    lines = box.out("sandbox-s3 credentials").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def s3_settings(keys: dict[str, str]) -> dict[str, str]:
    """The deploy's object storage settings for the sandbox's S3 server."""
    return {
        "mastodon_s3_bucket": BUCKET,
        "mastodon_s3_endpoint": ENDPOINT,
        # the sandbox's S3 server speaks plain http: media URLs say so (a real instance needs https)
        "mastodon_s3_protocol": "http",
        "mastodon_s3_access_key_id": keys["AWS_ACCESS_KEY_ID"],
        "mastodon_s3_secret_access_key": keys["AWS_SECRET_ACCESS_KEY"],
    }


# What those settings write into .env.production (the secret's line is checked apart, by digest)
EXPECTED_ENV = [
    "S3_ENABLED=true",
    f"S3_BUCKET={BUCKET}",
    "S3_REGION=us-east-1",
    f"S3_ENDPOINT={ENDPOINT}",
    "S3_PROTOCOL=http",
    "S3_HOSTNAME=s3.sandbox.test:9000",
]


def objects(box: Sandbox) -> set[str]:
    return set(box.out(f"sandbox-s3 ls {BUCKET}").split())


def system_files(box: Sandbox) -> list[str]:
    return box.out(f"find {SYSTEM_DIR} -type f 2>/dev/null; true").split()


def upload(box: Sandbox, content: str, content_type: str = "text/plain") -> tuple[int, dict]:
    """POST /api/v2/media through nginx (TLS, the instance's domain), as multipart `file`."""
    tmp = f"/tmp/upload-{secrets.token_hex(4)}.txt"
    out = box.out(
        f"printf %s {shlex.quote(content)} > {tmp}; "
        f"curl -sS --max-time 30 -w '\\n%{{http_code}}' --resolve {DOMAIN}:443:127.0.0.1 --cacert {trust_file(box)} "
        f"-F 'file=@{tmp};type={content_type};filename=note.txt' https://{DOMAIN}/api/v2/media; rm -f {tmp}"
    )
    body, _, status = out.rstrip("\n").rpartition("\n")
    return int(status), json.loads(body)


def fetch(box: Sandbox, url: str) -> tuple[int, str]:
    """An anonymous GET of a URL, from the server (as a visitor's browser would fetch it)."""
    out = box.out(f"curl -sS --max-time 20 -w '\\n%{{http_code}}' {shlex.quote(url)}")
    body, _, status = out.rpartition("\n")
    return int(status), body


def one_off_upload(box: Sandbox, env: dict[str, str], content: str = "one-off") -> tuple[int, dict]:
    """A one-off web container (the deployed image, .env.production, networks) with ENV on top,
    running puma; one upload to it from inside, then it is removed."""
    name = f"s3probe-{secrets.token_hex(3)}"
    flags = " ".join(f"-e {shlex.quote(f'{k}={v}')}" for k, v in env.items())
    script = (
        f"cd {BASE_DIR} && docker compose run -d --no-deps --name {name} {flags} web bundle exec puma -C config/puma.rb >/dev/null && "
        f"for i in $(seq 100); do docker exec {name} curl -fs -o /dev/null http://127.0.0.1:3000/health && break; sleep 0.2; done; "
        f"docker exec {name} sh -c \"printf %s {shlex.quote(content)} > /tmp/f && curl -sS --max-time 30 -w '\\n%{{http_code}}' "
        f"-H 'Host: {DOMAIN}' -H 'X-Forwarded-Proto: https' -F 'file=@/tmp/f;type=text/plain;filename=f.txt' "
        f'http://127.0.0.1:3000/api/v2/media"; rc=$?; docker rm -f {name} >/dev/null; exit $rc'
    )
    out = box.out(script, timeout=180)
    text, _, status = out.rstrip("\n").rpartition("\n")
    return int(status), json.loads(text)


# ------------------------------------------------------------------------------------------ right keys


@pytest.fixture(scope="module")
def deployed(box) -> Result:
    box.out(f"sandbox-s3 mb {BUCKET}")
    result = box.deploy(data=s3_settings(admin_keys(box)), label="s3")
    assert result.ok, f"the deploy with S3 settings failed: {result.describe()}"
    return result


def test_the_settings_write_upstreams_variables(box, deployed):
    lines = box.out(f"grep -E '^(S3_|AWS_ACCESS_KEY_ID=)' {BASE_DIR}/.env.production").splitlines()
    assert lines == [*EXPECTED_ENV, f"AWS_ACCESS_KEY_ID={admin_keys(box)['AWS_ACCESS_KEY_ID']}"]
    # the secret key is in the file (compared by digest: the test prints no secret)
    want = admin_keys(box)["AWS_SECRET_ACCESS_KEY"]
    got = box.out(
        f'printf %s "$(grep \'^AWS_SECRET_ACCESS_KEY=\' {BASE_DIR}/.env.production | cut -d= -f2- | tr -d "\'")" | sha256sum'
    )
    assert got.split()[0] == hashlib.sha256(want.encode()).hexdigest()


@pytest.fixture(scope="module")
def uploaded(box, deployed) -> tuple[str, dict]:
    before = objects(box)
    token = f"pyinfra-mastodon-s3-{secrets.token_hex(8)}"
    status, media = upload(box, token)
    assert status == 200, f"POST /api/v2/media answered {status}: {media}"
    new = objects(box) - before
    return token, {"media": media, "new": new}


def test_the_upload_is_an_object_in_the_bucket(box, uploaded):
    token, seen = uploaded
    assert len(seen["new"]) == 1, f"expected one new object in {BUCKET}, got {sorted(seen['new'])}"
    (key,) = seen["new"]
    # paperclip.rb: :class/:attachment/:id_partition/:style/:filename, the id cut in groups of 3
    parts = key.split("/")
    assert key.startswith(KEY_PREFIX) and parts[-2] == "original", key
    assert "".join(parts[2:-2]) == seen["media"]["id"][: 3 * (len(seen["media"]["id"]) // 3)], (key, seen["media"])
    assert box.out(f"sandbox-s3 get {BUCKET} {shlex.quote(key)}") == token
    head = json.loads(box.out(f"sandbox-s3 head {BUCKET} {shlex.quote(key)}"))
    assert head["public_read"] is True, head  # S3_PERMISSION's default
    assert head["content_type"] == "text/plain" and head["cache_control"] == "public, max-age=315576000, immutable", (
        head
    )


def test_the_url_is_the_bucket_path_on_s3_hostname_and_serves_the_file(box, uploaded):
    token, seen = uploaded
    (key,) = seen["new"]
    assert seen["media"]["url"] == f"http://s3.sandbox.test:9000/{BUCKET}/{key}", seen["media"]
    assert fetch(box, seen["media"]["url"]) == (200, token)


def test_nothing_is_written_to_public_system(box, uploaded):
    assert system_files(box) == [], f"files below {SYSTEM_DIR} with S3 on"


def test_the_checks_tell_local_and_private_storage_apart(box, deployed):
    # the same web with S3 off writes below public/system and nothing to the bucket: the two checks
    # above would see a web that ignored S3_ENABLED
    before = objects(box)
    status, _ = one_off_upload(box, {"S3_ENABLED": "false"}, "local")
    assert status == 200
    assert system_files(box) and objects(box) == before
    box.out(f"rm -rf {SYSTEM_DIR}/media_attachments")
    # a private object: the anonymous fetch above is refused by the S3 server when the ACL says so
    status, media = one_off_upload(box, {"S3_PERMISSION": "private"}, "private")
    assert status == 200, media
    assert fetch(box, media["url"])[0] == 403


# ------------------------------------------------------------------ upstream's failures (one-off webs)


def test_unreachable_endpoint_is_upstreams_503(box, deployed):
    # Api::ErrorHandling: rescue_from Seahorse::Client::NetworkingError -> 503
    status, body = one_off_upload(box, {"S3_ENDPOINT": "http://s3.sandbox.test:9"})
    assert (status, body) == (503, {"error": "There was a temporary problem serving your request, please try again"})


def test_unknown_access_key_is_a_500(box, deployed):
    before = objects(box)
    status, body = one_off_upload(box, {"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE"})
    assert status == 500 and body["error"].startswith("Aws::S3::Errors::InvalidAccessKeyId"), (status, body)
    assert objects(box) == before


def test_no_bucket_is_a_500(box, deployed):
    status, body = one_off_upload(box, {"S3_BUCKET": ""})
    assert status == 500 and "missing required :bucket option" in body["error"], (status, body)


def test_a_missing_bucket_is_created_as_paperclip_does(box, deployed):
    bucket = f"made-by-upload-{secrets.token_hex(3)}"
    assert box.ssh(f"sandbox-s3 ls {bucket}").returncode != 0, f"{bucket} exists before the upload"
    status, media = one_off_upload(box, {"S3_BUCKET": bucket}, "new bucket")
    assert status == 200, media
    keys = box.out(f"sandbox-s3 ls {bucket}").split()
    assert len(keys) == 1 and media["url"] == f"http://s3.sandbox.test:9000/{bucket}/{keys[0]}"


def test_virtual_host_style_and_alias_host(box, deployed):
    before = objects(box)
    status, media = one_off_upload(
        box, {"S3_OVERRIDE_PATH_STYLE": "true", "S3_ALIAS_HOST": "files.social1.sandbox.test"}, "virtual"
    )
    assert status == 200, media
    (key,) = objects(box) - before
    # ':s3_alias_url': protocol://alias/path, no bucket
    assert media["url"] == f"http://files.social1.sandbox.test/{key}"
    # the PUT went to BUCKET.s3.sandbox.test: the S3 server logged the key alone as the path (a
    # path-style PUT has /BUCKET/KEY)
    assert box.ssh(f"journalctl -u sandbox-s3 --no-pager | grep -F 'PUT /{key} '").returncode == 0


# ------------------------------------------------------------------------------------------ wrong keys


@pytest.fixture(scope="module")
def wrong_keys(box, deployed) -> Result:
    keys = dict(admin_keys(box), AWS_SECRET_ACCESS_KEY="wrong" + admin_keys(box)["AWS_SECRET_ACCESS_KEY"][5:])
    result = box.deploy(data=s3_settings(keys), label="s3 wrong secret")
    return result


def test_the_deploy_converges_with_wrong_keys(wrong_keys):
    assert wrong_keys.ok, f"the deploy with a wrong S3 secret failed: {wrong_keys.describe()}"


def test_an_upload_with_wrong_keys_fails_as_upstreams(box, wrong_keys):
    before = objects(box)
    status, body = upload(box, "never stored")
    # Aws::S3::Errors::SignatureDoesNotMatch: no rescue_from in Api::ErrorHandling matches it
    assert status == 500 and body["error"].startswith("Aws::S3::Errors::SignatureDoesNotMatch"), (status, body)
    assert objects(box) == before
    assert system_files(box) == []
