"""Certificates the way every real operator gets them: certbot (in the nginx-certbot stand-in) asks an
ACME server, which validates HTTP-01 over port 80 through the image's redirector.

The sandbox's ACME server is Debian's pebble (tests/sandbox/README.md), three instances:
`production` (https://acme.sandbox.test:14000/dir), `staging` (14001) and `short` (14002, whose
certificates are valid SANDBOX_PEBBLE_SHORT_VALIDITY = 300 s). Each makes a new issuing root when it
starts; `pebble-root INSTANCE` on the server prints it. The ACME API's own TLS CA is
/etc/pebble/acme-ca.pem, handed to certbot with mastodon_acme_ca_bundle (REQUESTS_CA_BUNDLE).

What the deploy is expected to do (its side of the contract):
- mastodon_acme_directory -> CERTBOT_PRODUCTION_URL, mastodon_acme_ca_bundle -> mounted read-only at
  /etc/pyinfra-mastodon/acme-ca.pem with REQUESTS_CA_BUNDLE pointing there, on the nginx service;
- once the services are healthy: /etc/letsencrypt/live/<domain>/ holds the certificate and 443 serves
  it, else SIGHUP to nginx, wait mastodon_certificate_timeout seconds, then fail with one message
  that names the domain ("no certificate for <domain> is served on 443 ...");
- a certificate whose lineage names another ACME directory (staging -> production) is replaced:
  certbot's --keep alone would keep it while it is valid.
"""

from __future__ import annotations

import re
import time

import pytest
from contract import DOMAIN, HEALTHCHECKED, LETSENCRYPT_DIR, LOCAL_CA_DIR, container_name
from toolkit import Result, Sandbox, run_host_suite, tail, wait_healthy

from pyinfra_mastodon.layout import ACME_CA_CONTAINER

pytestmark = pytest.mark.e2e

LIVE = f"{LETSENCRYPT_DIR}/live/{DOMAIN}"
NGINX = container_name("nginx")
ACME_CA = "/etc/pebble/acme-ca.pem"
PORTS = {"production": 14000, "staging": 14001, "short": 14002}


def directory(instance: str) -> str:
    return f"https://acme.sandbox.test:{PORTS[instance]}/dir"


def acme_data(instance: str = "production", **extra) -> dict:
    return {
        "mastodon_certbot_local_ca": False,
        "mastodon_acme_directory": directory(instance),
        "mastodon_acme_ca_bundle": ACME_CA,
        **extra,
    }


def ok(box: Sandbox, cmd: str, timeout: int = 300) -> str:
    proc = box.ssh(cmd, timeout=timeout)
    assert proc.returncode == 0, f"{cmd!r} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc.stdout


def wait_for(box: Sandbox, cmd: str, seconds: float, what: str) -> str:
    deadline = time.monotonic() + seconds
    while True:
        proc = box.ssh(cmd)
        if proc.returncode == 0:
            return proc.stdout
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out after {seconds} s waiting for {what}: {cmd!r} exit {proc.returncode}\n"
                f"{proc.stdout}\n{proc.stderr}"
            )
        time.sleep(2)


def deploy_ok(box: Sandbox, data: dict) -> Result:
    result = box.deploy(data=data)
    assert result.ok, result.describe()
    return result


def converged(box: Sandbox, data: dict) -> None:
    again = deploy_ok(box, data)
    assert again.changed_labels() == [], f"second run changed: {again.changed_labels()}"


def root_file(box: Sandbox, instance: str) -> str:
    """The current issuing root of a pebble instance, written to a file on the server."""
    path = f"/root/pebble-root-{instance}.pem"
    ok(box, f"pebble-root {instance} > {path} && grep -q 'BEGIN CERTIFICATE' {path}")
    return path


def served_serial(box: Sandbox) -> str:
    return ok(
        box,
        f"openssl s_client -connect 127.0.0.1:443 -servername {DOMAIN} </dev/null 2>/dev/null "
        "| openssl x509 -noout -serial",
    ).strip()


def verify_served_chain(box: Sandbox, root: str) -> str:
    """openssl s_client with the given root as the only trust anchor; returns its verify line."""
    out = ok(
        box,
        f"openssl s_client -connect 127.0.0.1:443 -servername {DOMAIN} -verify_hostname {DOMAIN} "
        f"-CAfile {root} -verify_return_error </dev/null 2>&1",
    )
    return next((line.strip() for line in out.splitlines() if "Verify return code" in line), "")


def curl_verified(box: Sandbox, root: str, path: str = "/health") -> str:
    return ok(box, f"curl -sS --max-time 20 --cacert {root} --resolve {DOMAIN}:443:127.0.0.1 https://{DOMAIN}{path}")


def assert_served_by(box: Sandbox, instance: str) -> None:
    """443 serves a certificate for DOMAIN that chains to the current root of `instance` (only)."""
    root = root_file(box, instance)
    assert verify_served_chain(box, root) == "Verify return code: 0 (ok)"
    assert curl_verified(box, root).strip() == "OK"
    for other in PORTS:
        if other != instance:
            proc = box.ssh(
                f"openssl s_client -connect 127.0.0.1:443 -servername {DOMAIN} "
                f"-CAfile {root_file(box, other)} -verify_return_error </dev/null >/dev/null 2>&1"
            )
            assert proc.returncode != 0, f"the certificate also verifies with pebble {other}'s root"
    # the stored lineage is the one served
    assert ok(box, f"openssl x509 -noout -fingerprint -sha256 -in {LIVE}/cert.pem") == ok(
        box,
        f"openssl s_client -connect 127.0.0.1:443 -servername {DOMAIN} </dev/null 2>/dev/null "
        "| openssl x509 -noout -fingerprint -sha256",
    )


def nginx_logs(box: Sandbox) -> str:
    return ok(box, f"docker logs {NGINX} 2>&1")


def healthy(box: Sandbox) -> None:
    status = wait_healthy(box, HEALTHCHECKED)
    assert all(v == "healthy" for v in status.values()), status


# ------------------------------------------------------------------------------ fresh deploy


@pytest.fixture(scope="module")
def deployed(box: Sandbox) -> dict:
    """A fresh server, deployed once with certificates from pebble `production`."""
    first = box.deploy(data=acme_data())
    return {"first": first}


def test_fresh_deploy_serves_a_pebble_certificate_got_over_http01(box, deployed):
    first = deployed["first"]
    assert first.ok, first.describe()
    for name in ("fullchain.pem", "privkey.pem", "chain.pem", "cert.pem"):
        ok(box, f"test -s {LIVE}/{name}")
    # certbot's own lineage, from the ACME server the inventory named (not the local CA)
    renewal = ok(box, f"cat {LETSENCRYPT_DIR}/renewal/{DOMAIN}.conf")
    assert f"server = {directory('production')}" in renewal
    assert "authenticator = webroot" in renewal
    ok(box, f"test ! -e {LOCAL_CA_DIR}/caCert.pem")
    text = ok(box, f"openssl x509 -noout -issuer -ext subjectAltName -in {LIVE}/cert.pem")
    assert "Pebble Intermediate CA" in text and f"DNS:{DOMAIN}" in text
    assert_served_by(box, "production")
    # the chain certbot stored verifies with pebble's root too
    root = root_file(box, "production")
    verified = ok(box, f"openssl verify -CAfile {root} -untrusted {LIVE}/chain.pem {LIVE}/cert.pem")
    assert verified.strip().endswith(": OK"), verified
    # HTTP-01: pebble fetched the token on port 80 through the redirector's webroot location
    logs = nginx_logs(box)
    assert re.search(r'"GET /\.well-known/acme-challenge/[A-Za-z0-9_-]+ HTTP/1\.1" 200', logs), tail(logs, 60)
    assert "Certbot failed" not in logs
    # the ACME API's CA came from the mounted bundle (certbot's HTTP client: REQUESTS_CA_BUNDLE)
    env = ok(box, f"docker exec {NGINX} sh -c 'echo $REQUESTS_CA_BUNDLE; echo $CERTBOT_PRODUCTION_URL'").split()
    assert env == [ACME_CA_CONTAINER, directory("production")]
    assert (
        ok(box, f"docker exec {NGINX} sha256sum {ACME_CA_CONTAINER}").split()[0]
        == ok(box, f"sha256sum {ACME_CA}").split()[0]
    )


def test_second_run_changes_nothing_and_keeps_the_certificate(box, deployed):
    assert deployed["first"].ok
    before = served_serial(box)
    requests = nginx_logs(box).count("Requesting an ECDSA certificate")
    converged(box, acme_data())
    assert served_serial(box) == before
    # a converged run does not make the image ask again (no SIGHUP)
    time.sleep(3)
    assert nginx_logs(box).count("Requesting an ECDSA certificate") == requests


def test_host_suite_trusts_pebbles_root(box, deployed):
    assert deployed["first"].ok
    root = root_file(box, "production")
    proc = run_host_suite(box, DOMAIN, f"--mastodon-ca-file={root}")
    assert proc.returncode == 0, tail(proc.stdout + proc.stderr, 60)
    assert re.search(r"\d+ passed", proc.stdout), tail(proc.stdout, 20)


# ------------------------------------------------------------------------ failed validation


def test_unresolvable_domain_fails_the_deploy_then_the_next_run_recovers(box):
    box.reset()
    ok(
        box,
        f"mkdir -p /etc/sandbox-dns && echo {DOMAIN} > /etc/sandbox-dns/unresolved && systemctl restart sandbox-dns",
    )
    try:
        assert box.ssh(f"getent hosts {DOMAIN}").returncode == 2, "the domain still resolves"
        data = acme_data(mastodon_certificate_timeout=30)
        failed = box.deploy(data=data)
        assert not failed.ok and failed.rc != 0, failed.describe()
        out = failed.stdout + failed.stderr
        # the deploy's message, naming the domain and what to check
        assert f"no certificate for {DOMAIN} is served on 443 after 30s" in out, tail(out, 60)
        assert "The next run tries again" in out
        # everything else converged: all services healthy, the conf parked by the .nokey rule
        healthy(box)
        ok(box, f"docker exec {NGINX} test -e /etc/nginx/conf.d/{DOMAIN}.conf.nokey")
        ok(box, f"test ! -e {LIVE}")
        logs = nginx_logs(box)
        # the deploy's SIGHUP made the image try again, and it failed again
        assert logs.count(f"Certbot failed for '{DOMAIN}'. Check the logs for details.") >= 2, tail(logs, 60)
        assert "Received SIGHUP signal" in logs
    finally:
        ok(box, "rm -f /etc/sandbox-dns/unresolved && systemctl restart sandbox-dns")
    ok(box, f"getent hosts {DOMAIN}")
    # no manual step: the next run gets the certificate
    deploy_ok(box, acme_data(mastodon_certificate_timeout=120))
    assert_served_by(box, "production")
    converged(box, acme_data(mastodon_certificate_timeout=120))


def test_port_80_blocked_fails_the_deploy_then_the_next_run_recovers(box):
    box.reset()
    block = "iptables -I INPUT -p tcp --dport 80 -j REJECT --reject-with tcp-reset"
    unblock = "iptables -D INPUT -p tcp --dport 80 -j REJECT --reject-with tcp-reset"
    ok(box, block)
    try:
        failed = box.deploy(data=acme_data(mastodon_certificate_timeout=30))
        assert not failed.ok, failed.describe()
        out = failed.stdout + failed.stderr
        assert f"no certificate for {DOMAIN} is served on 443 after 30s" in out, tail(out, 60)
        healthy(box)
        ok(box, f"test ! -e {LIVE}")
        assert f"Certbot failed for '{DOMAIN}'" in nginx_logs(box)
    finally:
        box.ssh(unblock)
    deploy_ok(box, acme_data(mastodon_certificate_timeout=120))
    assert_served_by(box, "production")


# ------------------------------------------------------------------------ staging -> production


def test_staging_to_production_replaces_the_certificate(box):
    """A valid certificate from the staging directory (pebble `staging`, its own root) is replaced
    when the inventory switches to production: certbot's --keep alone would keep it."""
    box.reset()
    staging = acme_data("staging")
    deploy_ok(box, staging)
    assert_served_by(box, "staging")
    assert f"server = {directory('staging')}" in ok(box, f"cat {LETSENCRYPT_DIR}/renewal/{DOMAIN}.conf")
    converged(box, staging)

    production = acme_data("production")
    switched = deploy_ok(box, production)
    assert switched.changed_labels(), "the switch changed nothing"
    assert_served_by(box, "production")
    assert f"server = {directory('production')}" in ok(box, f"cat {LETSENCRYPT_DIR}/renewal/{DOMAIN}.conf")
    converged(box, production)
    assert_served_by(box, "production")


# ------------------------------------------------------------------------------- renewal


def test_certificate_near_expiry_is_renewed_by_the_image_without_a_deploy(box):
    """pebble `short` issues 300-second certificates: due for renewal at every certbot run (certbot
    renews when less than renew_before_expiry, 30 days, is left). The image's renewal loop runs at
    start, every RENEWAL_INTERVAL (8d: the deploy sets none) and on SIGHUP: the test sends SIGHUP, as
    the loop's sleep would end. No deploy in between; runs before and after change nothing."""
    box.reset()
    data = acme_data("short")
    deploy_ok(box, data)
    assert_served_by(box, "short")
    # near expiry indeed: under 10 minutes left
    assert box.ssh(f"openssl x509 -noout -checkend 600 -in {LIVE}/cert.pem").returncode == 1
    first = served_serial(box)
    converged(box, data)
    assert served_serial(box) == first
    count = f"ls {LETSENCRYPT_DIR}/archive/{DOMAIN}/ | grep -c '^cert[0-9]*\\.pem$'"
    issued = int(ok(box, count))
    renewals = nginx_logs(box).count("Renewing an existing certificate")
    ok(box, f"docker kill --signal=HUP {NGINX}")
    wait_for(
        box,
        f"openssl s_client -connect 127.0.0.1:443 -servername {DOMAIN} </dev/null 2>/dev/null "
        f"| openssl x509 -noout -serial | grep -vxF '{first}'",
        120,
        "a renewed certificate on 443",
    )
    assert nginx_logs(box).count("Renewing an existing certificate") == renewals + 1
    assert_served_by(box, "short")
    assert int(ok(box, count)) == issued + 1
    converged(box, data)
