"""One instance across the four servers of the sandbox cluster (``inventories/sandbox_cluster.py``):
``db`` (PostgreSQL, Redis, the database's jobs), ``app1`` and ``app2`` (web, streaming, sidekiq, each
behind its PgBouncer; app2 also the read replica) and ``edge`` (the nginx-certbot proxy; the sandbox's
S3 server and ACME server run there too).

Converge, idempotence, verify, in the shape of the single-server suite: a fresh deploy of the previous
version, a second run that changes nothing on any host, then what the instance must show (each host's
services, the instance's secrets, PostgreSQL and Redis closed to outsiders, shared media), a web host
stopped under a request loop, and an upgrade under a request loop. The request loop runs on the edge,
through its nginx, by the instance's name (sandbox addresses only).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import time
from collections import Counter

import pytest
from contract import BASE_DIR, DEFAULT_VERSION, DOMAIN, PREVIOUS_VERSION
from toolkit import Result, SecretBag, run_host_suite, run_pyinfra, snapshot, tail, trust_file

from pyinfra_mastodon import layout

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

BUCKET = "mastodon-media"
# What each server runs (docker compose ps): its roles' services, nothing else.
SERVICES = {
    "db": ["db", "redis"],
    "app1": ["pgbouncer", "sidekiq", "streaming", "web"],
    "app2": ["pgbouncer", "replica", "sidekiq", "streaming", "web"],
    "edge": ["nginx"],
}
INSTANCE_SECRET_KEYS = (
    "SECRET_KEY_BASE",
    "OTP_SECRET",
    "VAPID_PRIVATE_KEY",
    "VAPID_PUBLIC_KEY",
    "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY",
    "ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT",
    "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY",
    "DB_PASS",
    "REDIS_PASSWORD",
    "REPLICA_DB_PASS",
)
# nginx leaves an upstream that failed once out for fail_timeout (templates/nginx-site.conf.j2):
# the failover window, after which no request may reach the stopped host any more
FAILOVER_WINDOW = layout.PROXY_FAIL_TIMEOUT
LOOP = "/root/sbt-request-loop"
STALE_BLOCK = f"{layout.NGINX_CONF_DIR}/social9.sandbox.test.conf"


@pytest.fixture(scope="module")
def s3_keys(cluster):
    """The edge's S3 server keys, given to the inventory as it documents (SANDBOX_S3_*), and its bucket."""
    edge = cluster.boxes["edge"]
    keys = dict(line.split("=", 1) for line in edge.out("sandbox-s3 credentials").splitlines() if "=" in line)
    edge.out(f"sandbox-s3 mb {BUCKET}")
    saved = {name: os.environ.get(name) for name in ("SANDBOX_S3_ACCESS_KEY_ID", "SANDBOX_S3_SECRET_ACCESS_KEY")}
    os.environ["SANDBOX_S3_ACCESS_KEY_ID"] = keys["AWS_ACCESS_KEY_ID"]
    os.environ["SANDBOX_S3_SECRET_ACCESS_KEY"] = keys["AWS_SECRET_ACCESS_KEY"]
    yield keys
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def deploy(cluster, label: str, *args: str, bag: SecretBag | None = None, **kw) -> Result:
    """The deploy over the whole cluster (its inventory), the db host's secrets as the scanner's."""
    db = cluster.boxes["db"]
    return run_pyinfra(db, "--json", *args, inventory=cluster.INVENTORY, label=label, bag=bag, **kw)


@pytest.fixture(scope="module")
def bag(cluster, s3_keys) -> SecretBag:
    found = SecretBag()
    found.add("AWS_SECRET_ACCESS_KEY", s3_keys["AWS_SECRET_ACCESS_KEY"])
    return found


@pytest.fixture(scope="module")
def fresh(cluster, s3_keys, bag) -> Result:
    result = deploy(cluster, "cluster fresh", bag=bag, data={"mastodon_version": f"v{PREVIOUS_VERSION}"})
    errors = [line for line in result.stderr.splitlines() if "rror" in line]
    assert result.ok, f"the fresh deploy of the cluster failed: {errors}\n{result.describe()}"
    bag.read_host(cluster.boxes["db"])
    return result


@pytest.fixture(scope="module")
def again(cluster, fresh, bag):
    before = {name: snapshot(box) for name, box in cluster.boxes.items()}
    result = deploy(cluster, "cluster again", bag=bag, data={"mastodon_version": f"v{PREVIOUS_VERSION}"})
    after = {name: snapshot(box) for name, box in cluster.boxes.items()}
    return result, before, after


def instance_from(box, trust: str) -> dict:
    """/api/v1/instance through the edge's nginx, from ``box``, verified by the edge's CA."""
    out = box.out(
        f"curl -sS --max-time 20 --cacert {trust} --resolve {DOMAIN}:443:{box_edge_address(box)} "
        f"https://{DOMAIN}/api/v1/instance"
    )
    return json.loads(out)


def box_edge_address(box) -> str:
    return box.out(f"getent ahostsv4 {DOMAIN}").split()[0]


def edge_trust(cluster) -> str:
    """The edge's trust file, copied to every server at the same path."""
    path = trust_file(cluster.boxes["edge"])
    pem = cluster.boxes["edge"].out(f"cat {path}")
    for name, box in cluster.boxes.items():
        if name != "edge":
            box.out(f"cat > {path}", input=pem)
    return path


# ------------------------------------------------------------------------------------ converge


def test_fresh_deploy_ends_healthy(cluster, fresh):
    trust = edge_trust(cluster)
    for name in ("app2", "db"):
        doc = instance_from(cluster.boxes[name], trust)
        assert (doc["uri"], doc["version"]) == (DOMAIN, PREVIOUS_VERSION), name
    assert not fresh.leaks(), fresh.leaks()


def test_each_host_runs_exactly_its_roles_services(cluster, fresh):
    for name, box in cluster.boxes.items():
        out = box.out(f"cd {BASE_DIR} && docker compose ps --format '{{{{.Service}}}} {{{{.State}}}}'")
        assert sorted(out.split("\n")[:-1] if out.endswith("\n") else out.splitlines()) == [
            f"{service} running" for service in SERVICES[name]
        ], name


# ------------------------------------------------------------------------------------ idempotence


def test_second_run_changes_nothing_on_any_host(cluster, again):
    result, before, after = again
    assert result.ok, result.describe()
    assert result.changed_ops() == [], result.describe()
    # every host took the converged path: one check, no stage
    assert result.started_ops() == ["Mastodon | Check the host: files, services, database and certificate"], (
        result.describe()
    )
    for name in cluster.boxes:
        assert before[name].diff(after[name]) == [], name
    assert not result.leaks(), result.leaks()


# ------------------------------------------------------------------------------------ verify


def secret_digests(box) -> dict[str, str]:
    """KEY -> sha256 of its value in .env.production (digests only leave the host); {} without the file."""
    keys = "|".join(INSTANCE_SECRET_KEYS)
    out = box.out(
        f"f={BASE_DIR}/.env.production; [ -f $f ] || exit 0; grep -E '^({keys})=' $f | "
        'while IFS=\'=\' read -r k v; do printf \'%s %s\\n\' "$k" "$(printf %s "$v" | sha256sum | cut -c1-64)"; done'
    )
    return dict(line.split() for line in out.splitlines())


def test_the_instance_secrets_are_the_same_wherever_needed_and_only_there(cluster, fresh):
    digests = {name: secret_digests(box) for name, box in cluster.boxes.items()}
    assert sorted(digests["db"]) == sorted(INSTANCE_SECRET_KEYS)
    assert digests["app1"] == digests["app2"] == digests["db"]
    assert digests["edge"] == {}, "the proxy got the instance's secrets"
    # the replica's password is the primary's
    assert digests["db"]["REPLICA_DB_PASS"] == digests["db"]["DB_PASS"]
    # PostgreSQL's and Redis's passwords in their own files are the instance's (by digest), and so are
    # those PgBouncer and the replica log in with
    for name, path, key, instance_key in (
        ("db", ".env.db", "POSTGRES_PASSWORD", "DB_PASS"),
        ("db", ".env.redis", "REDIS_PASSWORD", None),
        ("app1", ".env.pgbouncer", "DB_PASSWORD", "DB_PASS"),
        ("app2", ".env.pgbouncer", "DB_PASSWORD", "DB_PASS"),
        ("app2", ".env.replica", "PGPASSWORD", "DB_PASS"),
    ):
        box = cluster.boxes[name]
        got = box.out(f"sed -n 's/^{key}=//p' {BASE_DIR}/{path} | tr -d '\\n' | sha256sum | cut -c1-64").strip()
        assert got == digests["db"][instance_key or key], (name, path)
    modes = {
        name: box.out(f"cd {BASE_DIR} && stat -c '%n %a %U' .env.* 2>/dev/null; true").split("\n")
        for name, box in cluster.boxes.items()
    }
    assert [line for line in modes["db"] if line] == [
        ".env.db 600 mastodon",
        ".env.production 600 mastodon",
        ".env.redis 600 mastodon",
    ]
    assert [line for line in modes["app1"] if line] == [".env.pgbouncer 600 mastodon", ".env.production 600 mastodon"]
    assert [line for line in modes["app2"] if line] == [
        ".env.pgbouncer 600 mastodon",
        ".env.production 600 mastodon",
        ".env.replica 600 mastodon",
    ]
    assert [line for line in modes["edge"] if line] == []


@pytest.mark.parametrize(
    ("name", "files"),
    [
        ("db", ((".env.redis", "REDIS_PASSWORD="), (".env.db", "POSTGRES_PASSWORD="))),
        ("app2", ((".env.pgbouncer", "DB_PASSWORD="), (".env.replica", "PGPASSWORD="))),
    ],
)
def test_no_password_on_any_command_line(cluster, fresh, name, files):
    box = cluster.boxes[name]
    wanted = ", ".join(f"('{BASE_DIR}/{path}', '{key}')" for path, key in files)
    # the values are read by a script on the host and compared there: only a count comes back
    count = box.out(
        "python3 - <<'EOF'\n"
        "import glob\n"
        "values = []\n"
        f"for path, key in ({wanted}):\n"
        "    values += [l.split('=', 1)[1].strip() for l in open(path) if l.startswith(key)]\n"
        "assert len(values) == 2 and all(len(v) >= 32 for v in values)\n"
        "hits = 0\n"
        "for f in glob.glob('/proc/[0-9]*/cmdline'):\n"
        "    try:\n"
        "        text = open(f, 'rb').read().decode(errors='replace')\n"
        "    except OSError:\n"
        "        continue\n"
        "    hits += any(v in text for v in values)\n"
        "print(hits)\n"
        "EOF"
    )
    assert count.strip() == "0", name


def connect(box, address: str, port: int) -> str:
    """From ``box``: 'open' when a TCP connection to address:port is accepted within 5 s, else 'closed'."""
    return box.out(
        f"python3 -c 'import socket; socket.create_connection((\"{address}\", {port}), 5)' 2>/dev/null "
        "&& echo open || echo closed"
    ).strip()


def test_postgres_and_redis_admit_only_the_instances_hosts(cluster, fresh):
    db = cluster.address("db")
    for port in (5432, 6379):
        assert connect(cluster.boxes["app1"], db, port) == "open", port
        # the edge is a host of the instance, but nothing of it connects to the database
        assert connect(cluster.boxes["edge"], db, port) == "closed", port
    # the machine running the tests: on the cluster's network, outside the instance
    for port in (5432, 6379):
        probe = subprocess.run(
            ["python3", "-c", f"import socket; socket.create_connection(('{db}', {port}), 5)"], capture_output=True
        )
        assert probe.returncode != 0, f"{db}:{port} accepted a connection from outside the instance"
    # the read replica on app2: the other app host and the db host's jobs, nobody else
    replica = cluster.address("app2")
    assert connect(cluster.boxes["app1"], replica, 5432) == "open"
    assert connect(cluster.boxes["db"], replica, 5432) == "open"
    assert connect(cluster.boxes["edge"], replica, 5432) == "closed"
    probe = subprocess.run(
        ["python3", "-c", f"import socket; socket.create_connection(('{replica}', 5432), 5)"], capture_output=True
    )
    assert probe.returncode != 0, f"{replica}:5432 accepted a connection from outside the instance"
    # web and streaming: only the proxy
    for port in (3000, 4000):
        assert connect(cluster.boxes["edge"], cluster.address("app1"), port) == "open", port
        assert connect(cluster.boxes["db"], cluster.address("app1"), port) == "closed", port


def test_postgres_and_redis_refuse_a_client_without_the_password(cluster, fresh):
    app1, db = cluster.boxes["app1"], cluster.address("db")
    no_password = app1.ssh(
        f"docker run --rm --network host postgres:14-alpine psql -w -h {db} -U postgres -c 'select 1'"
    )
    assert no_password.returncode != 0 and "no password supplied" in no_password.stderr
    wrong = app1.ssh(
        f"docker run --rm --network host -e PGPASSWORD=wrong-{secrets.token_hex(4)} postgres:14-alpine "
        f"psql -w -h {db} -U postgres -c 'select 1'"
    )
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr
    noauth = app1.out(f"docker run --rm --network host redis:7-alpine redis-cli -h {db} ping")
    assert "NOAUTH" in noauth
    # with the instance's passwords (from app1's own .env.production, inside the container), straight to
    # the db host (app1's DB_HOST is its PgBouncer)
    ok = app1.out(
        f"docker run --rm --network host --env-file {BASE_DIR}/.env.production postgres:14-alpine "
        f"sh -c 'PGPASSWORD=$DB_PASS psql -w -h {db} -U $DB_USER -d $DB_NAME -tAc \"select 1\"' && "
        f"docker run --rm --network host --env-file {BASE_DIR}/.env.production redis:7-alpine "
        "sh -c 'REDISCLI_AUTH=$REDIS_PASSWORD redis-cli -h $REDIS_HOST ping'"
    )
    assert ok.split() == ["1", "PONG"]


def sql(box, service: str, query: str) -> str:
    """One query in ``service``'s PostgreSQL on ``box`` (over its socket, bare values out)."""
    return box.out(
        f"cd {BASE_DIR} && docker compose exec -T {service} psql -X -U postgres -d postgres -tA -c {shlex.quote(query)}"
    ).strip()


def test_a_row_written_on_the_primary_appears_on_the_replica(cluster, fresh):
    db, app2 = cluster.boxes["db"], cluster.boxes["app2"]
    token = f"sbt-{secrets.token_hex(8)}"
    sql(
        db,
        "db",
        f"CREATE TABLE IF NOT EXISTS sbt_replication (token text); INSERT INTO sbt_replication VALUES ('{token}')",
    )
    deadline, seen = time.monotonic() + 15, ""
    while time.monotonic() < deadline:
        seen = app2.out(
            f"cd {BASE_DIR} && docker compose exec -T replica psql -X -U postgres -d postgres -tAc "
            f"\"select count(*) from sbt_replication where token = '{token}'\" 2>/dev/null; true"
        ).strip()
        if seen == "1":
            break
        time.sleep(0.5)
    assert seen == "1", "the row written on the primary did not reach the replica in 15 s"
    # a hot standby: read-only, streaming from the primary through its slot
    assert sql(app2, "replica", "select pg_is_in_recovery()") == "t"
    refused = app2.ssh(
        f"cd {BASE_DIR} && docker compose exec -T replica psql -X -U postgres -d postgres -c "
        f"\"insert into sbt_replication values ('x')\""
    )
    assert refused.returncode != 0 and "read-only transaction" in refused.stderr
    standbys = sql(db, "db", "select host(client_addr) || ' ' || state from pg_stat_replication")
    assert standbys == f"{cluster.address('app2')} streaming", standbys
    slot = sql(db, "db", "select slot_name || ' ' || active from pg_replication_slots")
    assert slot == f"{layout.REPLICA_SLOT} true", slot


def env_of(box) -> dict[str, str]:
    """The names and values of .env.production that are no secret (the secret lines are left out)."""
    keys = {line.split("=", 1)[0] for line in box.out(f"cut -d= -f1 {BASE_DIR}/.env.production").splitlines()}
    plain = sorted(key for key in keys if key and not key.startswith("#") and key not in INSTANCE_SECRET_KEYS)
    pattern = "|".join(plain)
    out = box.out(f"grep -E '^({pattern})=' {BASE_DIR}/.env.production | grep -v -E '^(AWS_SECRET_ACCESS_KEY)='")
    return dict(line.split("=", 1) for line in out.splitlines())


def test_the_app_hosts_read_from_the_replica_and_write_through_pgbouncer(cluster, fresh):
    for name in ("app1", "app2"):
        env = env_of(cluster.boxes[name])
        replica_host = "replica" if name == "app2" else cluster.address("app2")
        assert {key: env.get(key) for key in ("DB_HOST", "PREPARED_STATEMENTS", "REPLICA_DB_HOST")} == {
            "DB_HOST": "pgbouncer",
            "PREPARED_STATEMENTS": "false",
            "REPLICA_DB_HOST": replica_host,
        }, name
        assert (env.get("REPLICA_DB_NAME"), env.get("REPLICA_DB_TASKS")) == ("postgres", "false"), name
        # the directory is read inside with_read_replica: the stand-in says which database answered
        out = cluster.boxes[name].out(
            f"curl -sS --max-time 20 -D - -o /dev/null -H 'Host: {DOMAIN}' -H 'X-Forwarded-Proto: https' "
            f"http://{cluster.address(name)}:3000/api/v1/directory"
        )
        assert " 200" in out.splitlines()[0], out
        assert "x-standin-database: replica-in-recovery" in out.lower(), out
    # the db host's jobs (migrations among them) connect to PostgreSQL directly
    db_env = env_of(cluster.boxes["db"])
    assert db_env["DB_HOST"] == "db" and "PREPARED_STATEMENTS" not in db_env
    # PostgreSQL sees the app hosts' application only through their PgBouncers, in transaction mode
    app1 = cluster.boxes["app1"]
    pool = app1.out(
        f"cd {BASE_DIR} && docker compose exec -T pgbouncer sh -c "
        '\'PGPASSWORD=$DB_PASSWORD psql -X -h 127.0.0.1 -p 5432 -U postgres -tA -F " " pgbouncer -c "SHOW CONFIG"\' '
        '| awk \'$1 == "pool_mode" || $1 == "default_pool_size" { print $1, $2 }\''
    )
    assert sorted(pool.split("\n")[:-1] if pool.endswith("\n") else pool.splitlines()) == [
        "default_pool_size 20",
        "pool_mode transaction",
    ], pool


def test_media_uploaded_through_app1_are_in_the_bucket_and_served_to_the_others(cluster, fresh):
    app1, app2, edge = (cluster.boxes[n] for n in ("app1", "app2", "edge"))
    before = set(edge.out(f"sandbox-s3 ls {BUCKET}").split())
    token = f"pyinfra-mastodon-cluster-{secrets.token_hex(8)}"
    # straight to app1's web (as the proxy sends it), so that app1 is the one that stores it
    out = app1.out(
        f"printf %s {token} > /tmp/sbt-up.txt; curl -sS --max-time 30 -w '\\n%{{http_code}}' "
        f"-H 'Host: {DOMAIN}' -H 'X-Forwarded-Proto: https' -F 'file=@/tmp/sbt-up.txt;type=text/plain;filename=n.txt' "
        f"http://{cluster.address('app1')}:3000/api/v2/media; rm -f /tmp/sbt-up.txt"
    )
    body, _, status = out.rstrip("\n").rpartition("\n")
    assert status == "200", out
    media = json.loads(body)
    new = set(edge.out(f"sandbox-s3 ls {BUCKET}").split()) - before
    assert len(new) == 1, new
    (key,) = new
    assert edge.out(f"sandbox-s3 get {BUCKET} {shlex.quote(key)}") == token
    # app1 kept nothing on its own disk
    assert app1.out(f"find {BASE_DIR}/public/system -type f | wc -l").strip() == "0"
    # the attachment's URL answers every other host of the instance with the same bytes
    for box in (app2, edge, cluster.boxes["db"]):
        assert box.out(f"curl -sS --max-time 20 {shlex.quote(media['url'])}") == token
    # and an upload through the proxy (to whichever web host) lands in the same bucket
    out = app2.out(
        f"printf %s {token}-2 > /tmp/sbt-up.txt; curl -sS --max-time 30 -o /dev/null -w '%{{http_code}}' "
        f"--cacert {trust_file(edge)} --resolve {DOMAIN}:443:{cluster.address('edge')} "
        f"-F 'file=@/tmp/sbt-up.txt;type=text/plain;filename=n.txt' https://{DOMAIN}/api/v2/media; rm -f /tmp/sbt-up.txt"
    )
    assert out == "200"
    assert len(set(edge.out(f"sandbox-s3 ls {BUCKET}").split()) - before) == 2


def task(cluster, name: str, bag: SecretBag, *args: str) -> Result:
    db = cluster.boxes["db"]
    return run_pyinfra(
        db, "--json", *args, inventory=cluster.INVENTORY, target=[f"pyinfra_mastodon.tasks.{name}"], label=name, bag=bag
    )


def test_status_shows_each_hosts_own_services(cluster, again, bag):
    result = task(cluster, "status", bag)
    assert result.ok, result.describe()
    for name, services in SERVICES.items():
        lines = [line for line in result.stderr.splitlines() if line.lstrip().startswith(f"[{name}]")]
        listed = {line.split()[1] for line in lines if "running" in line or "missing" in line}
        assert listed == set(services), (name, lines)
    edge = [line for line in result.stderr.splitlines() if "certificate" in line]
    assert len(edge) == 1 and "[edge]" in edge[0] and "served on 443" in edge[0], edge
    # the replication, from both ends: the primary's standby and slot, the replica's own view
    replication = [line for line in result.stderr.splitlines() if "replication" in line]
    primary = [line for line in replication if "[db]" in line]
    assert any(f"standby {cluster.address('app2')}: streaming, replay lag" in line for line in primary), replication
    assert any(f"slot {layout.REPLICA_SLOT}: active, WAL reserved" in line for line in primary), replication
    assert not any("WARNING" in line for line in primary), replication
    replica = [line for line in replication if "[app2]" in line]
    assert len(replica) == 1 and "this replica is a standby (streaming)" in replica[0], replication
    assert not result.leaks(), result.leaks()


ROLES = {
    "db": "db,redis",
    "app1": "web,streaming,sidekiq",
    "app2": "web,streaming,sidekiq,db_replica",
    "edge": "proxy",
}


@pytest.mark.parametrize("name", sorted(ROLES))
def test_the_host_suite_passes_on_each_host_for_its_roles(cluster, again, name):
    box = cluster.boxes[name]
    proc = run_host_suite(
        box,
        DOMAIN,
        f"--mastodon-ca-file={edge_trust(cluster)}",
        f"--mastodon-roles={ROLES[name]}",
        f"--mastodon-services={','.join(SERVICES[name])}",
        f"--mastodon-private-address={cluster.address(name)}",
        f"--mastodon-version={PREVIOUS_VERSION}",
    )
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, f"tests/host on {name} failed:\n{tail(proc.stdout, 60)}\n{tail(proc.stderr, 20)}"
    # its own checks ran (the others deselected, never passed)
    assert " passed" in summary and "deselected" in summary and "skipped" not in summary, summary


def test_backup_and_create_admin_run_on_the_db_host_only(cluster, again, bag):
    db = cluster.boxes["db"]
    before = db.out("ls /var/backups/mastodon 2>/dev/null | wc -l").strip()
    result = task(cluster, "backup", bag)
    assert result.ok, result.describe()
    assert int(db.out("ls /var/backups/mastodon | wc -l")) == int(before) + 1
    for name in ("app1", "app2", "edge"):
        assert cluster.boxes[name].ssh("test -e /var/backups/mastodon").returncode == 1, name
    # the other hosts say where it runs
    assert "Back up Mastodon | backup: runs on db, the db host" in result.started_ops(), tail(result.stderr)
    # the backup holds the instance's authoritative secrets
    latest = db.out("ls -1 /var/backups/mastodon | tail -n 1").strip()
    assert db.out(f"grep -c '^DB_PASS=.' /var/backups/mastodon/{latest}/env.production").strip() == "1"
    again_admin = task(cluster, "create_admin", bag)
    assert again_admin.ok and again_admin.changed_ops() == [], again_admin.describe()
    assert not result.leaks() and not again_admin.leaks()


# ------------------------------------------------------------------------------ request loops


def start_loop(edge, seconds: int) -> None:
    """On the edge: GET /api/v1/instance through nginx every 0.1 s for at most ``seconds`` (or until
    stopped); one line per request: its start (epoch, ms) and its HTTP status (000: no answer)."""
    trust = trust_file(edge)
    script = (
        f"end=$(( $(date +%s) + {seconds} )); rm -f {LOOP}.stop; "
        f"while [ $(date +%s) -lt $end ] && [ ! -e {LOOP}.stop ]; do "
        f"t=$(date +%s%3N); c=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 --cacert {trust} "
        f'--resolve {DOMAIN}:443:127.0.0.1 https://{DOMAIN}/api/v1/instance); echo "$t $c"; sleep 0.1; done'
    )
    edge.out(f"rm -f {LOOP}.log; nohup sh -c {shlex.quote(script)} > {LOOP}.log 2>&1 < /dev/null &")


def stop_loop(edge) -> list[tuple[float, str]]:
    edge.out(f"touch {LOOP}.stop; sleep 1")
    lines = edge.out(f"cat {LOOP}.log").split("\n")
    return [(int(t) / 1000, code) for t, code in (line.split() for line in lines if line.strip())]


def failures(requests: list[tuple[float, str]], since: float = 0.0) -> list[tuple[float, str]]:
    return [(t, code) for t, code in requests if t >= since and code != "200"]


def test_stopping_a_web_host_fails_no_request_after_the_failover_window(cluster, again):
    app1, edge = cluster.boxes["app1"], cluster.boxes["edge"]
    start_loop(edge, 120)
    try:
        time.sleep(3)
        stopped_at = time.time()
        app1.out(f"cd {BASE_DIR} && docker compose stop web")
        time.sleep(FAILOVER_WINDOW + 8)
    finally:
        requests = stop_loop(edge)
        app1.out(f"cd {BASE_DIR} && docker compose start web && docker compose up --wait web", timeout=300)
    after_stop = [r for r in requests if r[0] >= stopped_at]
    assert len(after_stop) > 20, f"the loop made only {len(after_stop)} requests"
    late = failures(requests, stopped_at + FAILOVER_WINDOW)
    assert not late, f"requests failed after the failover window: {late}"
    # nginx retries a refused connection on the other web host: nothing failed at all
    assert not failures(requests), f"requests failed while app1's web stopped: {failures(requests)}"


@pytest.fixture(scope="module")
def upgrade(cluster, again, bag):
    db, edge = cluster.boxes["db"], cluster.boxes["edge"]
    seen = db.out(
        "docker exec mastodon-db-1 psql -U postgres -tAc 'select coalesce(max(id), 0) from standin_events'"
    ).strip()
    # a server block this deploy wrote on app1 when it was the proxy (or a whole server): it goes
    cluster.boxes["app1"].out(
        f"mkdir -p {layout.NGINX_CONF_DIR} && printf '{layout.MANAGED_HEADER}: old\\n' > {STALE_BLOCK}"
    )
    start_loop(edge, 600)
    try:
        result = deploy(cluster, "cluster upgrade", bag=bag)  # the default mastodon_version
    finally:
        requests = stop_loop(edge)
    events = db.out(
        "docker exec mastodon-db-1 psql -U postgres -tA -F ' ' -c "
        f"\"select event, version, coalesce(detail, '') from standin_events where id > {int(seen)} order by id\""
    ).splitlines()
    return result, requests, events


def test_an_upgrade_drops_no_request(cluster, upgrade):
    result, requests, _events = upgrade
    assert result.ok, result.describe()
    assert len(requests) > 50, f"the loop made only {len(requests)} requests"
    assert not failures(requests), f"requests failed during the upgrade: {failures(requests)}"
    trust = edge_trust(cluster)
    assert instance_from(cluster.boxes["app2"], trust)["version"] == DEFAULT_VERSION
    assert not result.leaks(), result.leaks()


def test_a_host_without_the_proxy_loses_an_old_server_block(cluster, upgrade):
    result, _requests, _events = upgrade
    assert cluster.boxes["app1"].ssh(f"test -e {STALE_BLOCK}").returncode == 1
    assert f"Mastodon | Remove {STALE_BLOCK} (this host runs no proxy)" in result.changed_ops(), result.describe()


def test_an_upgrade_runs_each_migration_once_before_and_after_the_app_hosts(cluster, upgrade):
    result, _requests, events = upgrade
    assert result.ok, result.describe()
    migrations = [line.split(" ", 2)[2] for line in events if line.startswith("migration ")]
    assert migrations, f"no migration ran in the upgrade: {tail(chr(10).join(events))}"
    twice = [name for name, n in Counter(migrations).items() if n > 1]
    assert not twice, f"migrations run more than once: {twice}"
    kinds = [line.split()[-1] for line in events if line.startswith("migration ") or line.startswith("web-start ")]
    # the pre-deployment ones before any new web started, the post-deployment ones after
    first_web = next(i for i, line in enumerate(events) if line.startswith("web-start "))
    assert all(line.split()[-1] == "pre" for line in events[:first_web] if line.startswith("migration "))
    assert all(line.split()[-1] == "post" for line in events[first_web:] if line.startswith("migration ")), kinds


def test_an_upgrade_restarts_the_app_hosts_one_after_the_other(cluster, upgrade):
    """One app host's web starts only once the other's is healthy again (its first health check comes
    after 10 s): started in parallel, they would start within a second of each other. Which goes
    first is pyinfra's (_serial takes the hosts in the order they were prepared)."""
    result, _requests, _events = upgrade
    assert result.ok, result.describe()
    started = {}
    for name in ("app1", "app2"):
        out = cluster.boxes[name].out(
            "docker inspect -f '{{.State.StartedAt}} {{.Config.Image}}' mastodon-web-1 | "
            "python3 -c 'import sys, datetime; t, i = sys.stdin.read().split(); "
            'print(datetime.datetime.fromisoformat(t[:26].rstrip("Z") + "+00:00").timestamp(), i)\''
        )
        when, image = out.split()
        assert image.endswith(f":v{DEFAULT_VERSION}"), (name, image)
        started[name] = float(when)
    assert abs(started["app2"] - started["app1"]) >= 5, started


# ------------------------------------------------------------------- restore and PostgreSQL majors


def replica_answers(app2, query: str, expected: str, seconds: float = 30) -> str:
    """``query`` on the read replica until it answers ``expected`` (it streams) or ``seconds`` pass."""
    deadline, seen = time.monotonic() + seconds, ""
    while time.monotonic() < deadline:
        seen = app2.out(
            f"cd {BASE_DIR} && docker compose exec -T replica psql -X -U postgres -d postgres -tAc "
            f"{shlex.quote(query)} 2>/dev/null; true"
        ).strip()
        if seen == expected:
            break
        time.sleep(0.5)
    return seen


def test_the_replica_keeps_no_password_and_the_primary_limits_the_slots_wal(cluster, upgrade):
    app2, db = cluster.boxes["app2"], cluster.boxes["db"]
    conf = f"{BASE_DIR}/{layout.replica_data_dir(14)}/pgdata/postgresql.auto.conf"
    assert app2.out(f"grep -c 'primary_conninfo' {conf}").strip() == "1"
    assert app2.ssh(f"grep -q 'password=' {conf}").returncode == 1, "the replica's primary_conninfo holds the password"
    assert sql(db, "db", "show max_slot_wal_keep_size") == "8GB"
    assert sql(db, "db", "select wal_status from pg_replication_slots") == "reserved"


@pytest.fixture(scope="module")
def restored(cluster, upgrade, bag):
    """A backup with a row, a row written after it, then the restore of that backup over the instance."""
    db = cluster.boxes["db"]
    sql(db, "db", "CREATE TABLE sbt_restore (token text); INSERT INTO sbt_restore VALUES ('in-the-backup')")
    backup = task(cluster, "backup", bag)
    assert backup.ok, backup.describe()
    sql(db, "db", "INSERT INTO sbt_restore VALUES ('after-the-backup')")
    before = {name: secret_digests(cluster.boxes[name]) for name in ("db", "app1", "app2")}
    result = task(cluster, "restore", bag)
    return result, before


def test_a_restore_over_several_hosts_puts_the_database_back_everywhere(cluster, restored):
    result, before = restored
    assert result.ok, result.describe()
    db, app2 = cluster.boxes["db"], cluster.boxes["app2"]
    assert sql(db, "db", "select string_agg(token, ',') from sbt_restore") == "in-the-backup"
    # the logical restore streamed to the replica like any write
    seen = replica_answers(app2, "select string_agg(token, ',') from sbt_restore", "in-the-backup")
    assert seen == "in-the-backup", f"the replica has {seen!r}"
    # the app hosts stopped before the db host's restore and started after it, healthy
    ops = result.changed_ops()
    stops = [op for op in ops if "for the restore of" in op]
    assert len(stops) == 1 and "Stop web, streaming, sidekiq, pgbouncer for" in stops[0], ops
    restore, start = (next(i for i, op in enumerate(ops) if words in op) for words in ("on the db host", "again after"))
    assert ops.index(stops[0]) < restore < start, ops
    for name in ("app1", "app2"):
        states = cluster.boxes[name].out(
            f"cd {BASE_DIR} && docker compose ps --format '{{{{.Service}}}} {{{{.Health}}}}'"
        )
        assert all(
            line.endswith("healthy") for line in states.splitlines() if line.split()[0] in ("web", "streaming")
        ), (
            name,
            states,
        )
    assert instance_from(cluster.boxes["app1"], edge_trust(cluster))["version"] == DEFAULT_VERSION
    # a backup of this instance: its secrets are the instance's, on every host
    assert {name: secret_digests(cluster.boxes[name]) for name in ("db", "app1", "app2")} == before
    assert not result.leaks(), result.leaks()


def test_a_restore_refuses_on_every_host_without_the_backup(cluster, restored, bag):
    result = task(cluster, "restore", bag, "--data", "mastodon_restore_from=20200101T000000Z")
    assert not result.ok
    assert "host 'db': no backup '20200101T000000Z'" in result.output, result.describe()
    assert result.changed_ops() == [], result.describe()


def server_version(box, service: str = "db") -> str:
    """The running PostgreSQL's major (the stand-in of postgres:14-alpine is Debian's 15: read, not assumed)."""
    return sql(box, service, "show server_version_num")[:-4]


@pytest.fixture(scope="module")
def new_major(cluster, restored, bag):
    """The instance's PostgreSQL before (its major), and the upgrade to mastodon_postgres_upgrade_image."""
    before = server_version(cluster.boxes["db"])
    return task(cluster, "postgres_upgrade", bag), before


def test_a_postgres_upgrade_over_several_hosts_copies_the_replica_anew(cluster, new_major):
    new_major, before = new_major
    assert new_major.ok, new_major.describe()
    db, app2 = cluster.boxes["db"], cluster.boxes["app2"]
    assert server_version(db) == "17" != before
    assert server_version(app2, "replica") == "17"
    assert db.out(f"cat {BASE_DIR}/{layout.db_data_dir(17)}/pgdata/PG_VERSION").strip() == "17"
    assert sql(db, "db", "select string_agg(token, ',') from sbt_restore") == "in-the-backup"
    # the replica in a folder of the new major, streaming from the new primary through a new slot
    assert app2.out(f"cat {BASE_DIR}/{layout.replica_data_dir(17)}/pgdata/PG_VERSION").strip() == "17"
    assert replica_answers(app2, "select string_agg(token, ',') from sbt_restore", "in-the-backup") == "in-the-backup"
    assert sql(app2, "replica", "select pg_is_in_recovery()") == "t"
    assert sql(db, "db", "select slot_name || ' ' || active from pg_replication_slots") == f"{layout.REPLICA_SLOT} true"
    # the old folders stay for the rollback
    assert app2.ssh(f"test -s {BASE_DIR}/{layout.replica_data_dir(14)}/pgdata/PG_VERSION").returncode == 0
    assert instance_from(cluster.boxes["app2"], edge_trust(cluster))["version"] == DEFAULT_VERSION
    assert not new_major.leaks(), new_major.leaks()


def test_a_postgres_rollback_over_several_hosts_streams_from_the_old_primary_again(cluster, new_major, bag):
    upgraded, before = new_major
    assert upgraded.ok, upgraded.describe()
    result = task(cluster, "postgres_rollback", bag)
    assert result.ok, result.describe()
    db, app2 = cluster.boxes["db"], cluster.boxes["app2"]
    assert server_version(db) == before == server_version(app2, "replica")
    # the old replica's folder catches up through the old primary's slot: no new copy
    assert "Copy the primary into the read replica" not in result.changed_ops(), result.describe()
    token = f"sbt-{secrets.token_hex(6)}"
    sql(db, "db", f"INSERT INTO sbt_restore VALUES ('{token}')")
    query = f"select count(*) from sbt_restore where token = '{token}'"
    assert replica_answers(app2, query, "1") == "1", "the replica does not stream from the old primary"
    assert instance_from(cluster.boxes["app1"], edge_trust(cluster))["version"] == DEFAULT_VERSION
    # back where the settings say: the deploy finds nothing to change on any host
    settled = deploy(cluster, "cluster after the rollback", bag=bag)
    assert settled.ok and settled.changed_ops() == [], settled.describe()
    assert not result.leaks() and not settled.leaks()
