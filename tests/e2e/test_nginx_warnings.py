"""nginx must start and reload our server block without a warning.

The real jonasal/nginx-certbot image runs nginx 1.31 (src/Dockerfile), which warns at every start and
reload on syntax it deprecated (e.g. `listen ... http2` since 1.25.1). The sandbox's stand-in runs
trixie's nginx 1.26, which warns on the same. After a deploy, the nginx container's log (the
renewal loop's `nginx -t` and reload), a restart (start-up with our block enabled), a SIGHUP (the
deploy's reload signal) and `nginx -t` in the container must hold no `[warn]` or `[emerg]` line.
"""

from __future__ import annotations

import time

import pytest
from contract import COMPOSE_PROJECT
from toolkit import Result, Sandbox

pytestmark = pytest.mark.e2e

DOMAIN = "social1.sandbox.test"  # inventories/sandbox.py
NGINX = f"{COMPOSE_PROJECT}-nginx-1"
LOOP_DONE = "Autorenewal service will now sleep"  # logged by start_nginx_certbot.sh after each renewal run


def problems(lines: list[str]) -> list[str]:
    return [line for line in lines if "[warn]" in line or "[emerg]" in line]


def log_lines(box: Sandbox) -> list[str]:
    return box.out(f"docker logs {NGINX} 2>&1").splitlines()


def wait_for_loop(box: Sandbox, after: int, what: str, timeout: float = 90) -> list[str]:
    """The log lines after line `after`, once the renewal loop has finished a run there."""
    deadline = time.monotonic() + timeout
    while True:
        new = log_lines(box)[after:]
        if any(LOOP_DONE in line for line in new):
            return new
        if time.monotonic() > deadline:
            pytest.fail(f"no finished renewal run in the nginx log after {what}:\n" + "\n".join(new[-40:]))
        time.sleep(1)


@pytest.fixture(scope="module")
def deployed(sandbox) -> Result:
    sandbox.ensure_clean()
    result = sandbox.deploy()
    if not result.ok:
        pytest.fail(f"the deploy failed:\n{result.describe()}")
    return result


@pytest.fixture(scope="module")
def enabled(sandbox, deployed) -> None:
    """Our server block is live in nginx (not parked as .nokey): otherwise nginx never parses it."""
    wait_for_loop(sandbox, 0, "the deploy")
    proc = sandbox.ssh(f"docker exec {NGINX} test -f /etc/nginx/conf.d/{DOMAIN}.conf")
    assert proc.returncode == 0, (
        f"/etc/nginx/conf.d/{DOMAIN}.conf is not enabled in the nginx container:\n"
        + sandbox.out(f"docker exec {NGINX} ls -la /etc/nginx/conf.d/")
    )


def test_no_warning_in_the_log_after_the_deploy(sandbox, enabled):
    lines = log_lines(sandbox)
    assert any("reconfiguring" in line for line in lines), "nginx never reloaded during the deploy:\n" + "\n".join(
        lines[-40:]
    )
    assert not problems(lines), "nginx warned during the deploy:\n" + "\n".join(problems(lines))


# (what is done to the container, what its log must then show)
EVENTS = {
    "start-up with our block enabled": ("restart", "Starting the Nginx service"),
    "reload on SIGHUP (the deploy's reload signal)": ("kill --signal=HUP", "Received SIGHUP"),
}


@pytest.mark.parametrize("event", EVENTS)
def test_no_warning_at(sandbox, enabled, event):
    action, expected = EVENTS[event]
    before = len(log_lines(sandbox))
    sandbox.out(f"docker {action} {NGINX}")
    new = wait_for_loop(sandbox, before, event)
    assert any(expected in line for line in new), "\n".join(new[-40:])
    assert any("reconfiguring" in line for line in new), f"nginx did not reload after the {event}:\n" + "\n".join(
        new[-40:]
    )
    assert not any(f"{DOMAIN}.conf" in line and "disabling" in line for line in new), (
        f"our block was disabled at the {event} (so nginx did not parse it):\n" + "\n".join(new[-40:])
    )
    assert not problems(new), f"nginx warned at the {event}:\n" + "\n".join(problems(new))


def test_no_warning_from_nginx_t_in_the_container(sandbox, enabled):
    proc = sandbox.ssh(f"docker exec {NGINX} nginx -t")
    assert proc.returncode == 0, proc.stderr
    assert "test is successful" in proc.stderr, proc.stderr
    lines = (proc.stdout + proc.stderr).splitlines()
    assert not problems(lines), "nginx -t warns:\n" + "\n".join(problems(lines))
