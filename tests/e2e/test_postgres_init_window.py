"""PostgreSQL's first start: the entrypoint's temporary server must not pass for the real one.

On a new PGDATA, docker-library/postgres's docker-entrypoint.sh (14/alpine3.23) always runs a
temporary server with ``listen_addresses=''`` (Unix socket only) while it sets the database up, stops
it, then starts the real server. Rails reaches the database over TCP (``db:5432``), so a readiness
probe that asks over the socket can say "ready" while every TCP connection is refused.

The postgres stand-in runs that phase like upstream and holds it open for STANDIN_INIT_SECONDS. The
product's own checks (the db health check of the rendered compose file, the command of the
PostgresReady fact and stage 4's wait, sh/wait-for-postgres.sh) must answer "not ready" during that
window, and "ready" after it.
"""

from __future__ import annotations

import shlex
import time
import uuid

import pytest
import yaml

from pyinfra_mastodon import commands, layout, settings
from pyinfra_mastodon.render import render

pytestmark = pytest.mark.e2e

WINDOW = 40  # seconds the stand-in keeps the temporary server up
WAIT = 4  # seconds the stage-4 wait (sh/wait-for-postgres.sh) may take inside the window
MARK = "temporary server (Unix socket only) stays up"  # the stand-in's log line at the window's start
HOST_CFG = {"mastodon_server_id": "1", "mastodon_zone": "sandbox.test", "mastodon_admin_email": "admin@sandbox.test"}


def run(box, cmd: str, timeout: float = 120):
    return box.ssh(cmd, timeout=timeout)


def ok(box, cmd: str, timeout: float = 120) -> str:
    proc = run(box, cmd, timeout)
    assert proc.returncode == 0, f"{cmd!r} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def window(sandbox):
    """The product's db service (rendered compose file and .env.db) started on a new PGDATA, in a
    scratch project directory, with the temporary server held open; yields what was seen in it."""
    sandbox.ensure_clean()  # the project name is the product's own ("mastodon"): no instance may run
    cfg = settings.load_config("sandbox", HOST_CFG)
    compose_text = render("docker-compose.yml.j2", cfg)
    doc = yaml.safe_load(compose_text)
    healthcheck = doc["services"]["db"]["healthcheck"]["test"]
    assert healthcheck[0] == "CMD", f"unexpected healthcheck form {healthcheck!r}"
    d = f"/root/pgwin-{uuid.uuid4().hex[:8]}"
    override = yaml.safe_dump({"services": {"db": {"environment": {"STANDIN_INIT_SECONDS": str(WINDOW)}}}})
    data = f"{d}/{next(s.data_dir for s in layout.SERVICES if s.name == 'db')}"
    ok(
        sandbox,
        f"mkdir -p {data} && chown 991:991 {data} && chmod 0755 {data} && "
        f"cat > {d}/docker-compose.yml <<'EOF'\n{compose_text}EOF\n"
        f"cat > {d}/.env.db <<'EOF'\n{render('env.db.j2', cfg)}EOF\n"
        f"cat > {d}/override.yml <<'EOF'\n{override}EOF\n"
        f"touch {d}/.env.production",
    )  # the app services are not started
    compose = (
        f"docker compose --project-directory {d} -f {d}/docker-compose.yml -f {d}/override.yml "
        f"-p {layout.COMPOSE_PROJECT}"
    )
    # the product's two readiness checks, as the deploy and Docker run them
    product_healthcheck = commands.compose("exec", "-T", "db", *map(shlex.quote, healthcheck[1:]), project_dir=d)
    product_fact = commands.pg_isready(d)
    product_wait = commands.script("wait-for-postgres", WAIT, "still not ready", project_dir=d)  # stage 4
    tcp_connect = f"docker run --rm --network {layout.COMPOSE_PROJECT}_internal_network --entrypoint bash "
    tcp_connect += f"{doc['services']['db']['image']} -c {shlex.quote('exec 3<>/dev/tcp/db/5432')}"
    seen: dict = {}
    try:
        ok(sandbox, f"{compose} up -d db", timeout=180)
        started = time.monotonic()
        while MARK not in run(sandbox, f"{compose} logs db 2>&1").stdout:
            if time.monotonic() - started > 60:
                pytest.fail(
                    "the db stand-in never reported its temporary-server window:\n"
                    + run(sandbox, f"{compose} logs db 2>&1").stdout[-3000:]
                )
            time.sleep(0.3)
        seen["socket"] = run(sandbox, f"{compose} exec -T db pg_isready -U postgres")
        seen["tcp"] = run(sandbox, tcp_connect)
        seen["healthcheck"] = run(sandbox, product_healthcheck)
        seen["fact"] = run(sandbox, product_fact)
        seen["wait"] = run(sandbox, product_wait)
        seen["elapsed"] = time.monotonic() - started
        seen["still_init"] = "init process complete" not in run(sandbox, f"{compose} logs db 2>&1").stdout
        # after the window: the real server, on TCP too
        deadline = time.monotonic() + WINDOW + 60
        while run(sandbox, tcp_connect).returncode != 0:
            if time.monotonic() > deadline:
                pytest.fail(
                    "the db stand-in never listened on TCP after its init window:\n"
                    + run(sandbox, f"{compose} logs db 2>&1").stdout[-3000:]
                )
            time.sleep(1)
        seen["after_healthcheck"] = run(sandbox, product_healthcheck)
        seen["after_fact"] = run(sandbox, product_fact)
        seen["after_wait"] = run(sandbox, product_wait)
        yield seen
    finally:
        run(sandbox, f"{compose} down -v -t 1 >/dev/null 2>&1; rm -rf {d}", timeout=120)


def _in_window(seen) -> None:
    assert seen["still_init"] and seen["elapsed"] < WINDOW, (
        f"the checks took {seen['elapsed']:.0f} s, longer than the {WINDOW} s window: nothing can be concluded"
    )


def test_the_window_exists_socket_ready_tcp_refused(window):
    """The premise, as the real image behaves: ready on the socket, refused on db:5432."""
    _in_window(window)
    assert window["socket"].returncode == 0 and "accepting connections" in window["socket"].stdout, (
        f"pg_isready over the socket during the temporary server: {window['socket']}"
    )
    tcp = window["tcp"]
    assert tcp.returncode != 0 and "refused" in tcp.stderr.lower(), (
        f"a TCP connection to db:5432 from another container during the temporary server: {tcp}"
    )


def test_product_healthcheck_is_not_ready_during_the_window(window):
    """The db health check of the rendered compose file must not pass while TCP is refused
    (over the socket it does: ask over TCP, e.g. `pg_isready -h 127.0.0.1 -U postgres`)."""
    _in_window(window)
    proc = window["healthcheck"]
    assert proc.returncode != 0, (
        "the db health check reported ready while db:5432 refused TCP connections "
        f"(it asks over the Unix socket): exit {proc.returncode}, {proc.stdout.strip()}"
    )


def test_product_postgres_ready_fact_is_not_ready_during_the_window(window):
    """The command of the PostgresReady fact (stage 4's wait) must not pass while TCP is refused."""
    _in_window(window)
    proc = window["fact"]
    assert proc.returncode != 0, (
        f"`{commands.pg_isready('DIR')}` reported ready while db:5432 refused TCP connections (exit 0)"
    )


def test_product_wait_for_postgres_does_not_end_during_the_window(window):
    """Stage 4's bounded wait (sh/wait-for-postgres.sh) must still be waiting while TCP is refused:
    given WAIT seconds inside the window, it must time out."""
    _in_window(window)
    proc = window["wait"]
    assert proc.returncode != 0, "wait_for_postgres returned while db:5432 refused TCP connections (exit 0)"
    assert "still not ready" in proc.stderr, proc.stderr


def test_product_checks_pass_once_the_real_server_listens(window):
    for key in ("after_healthcheck", "after_fact", "after_wait"):
        proc = window[key]
        assert proc.returncode == 0, f"{key}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
