"""The sandbox cluster (``scripts/sandbox up --cluster``): four servers, ``db``, ``app1``, ``app2`` and
``edge``, on one private Docker network, as ``inventories/sandbox_cluster.py`` names them.

One ``up --cluster`` for the module (the conftest fixture ``cluster``); the last test takes it
``down --cluster`` (the fixture does too, should that test not run). Nothing here deploys.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from test_sandbox import ACME_ENV, acme_url, pebble_site
from toolkit import tail

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

SERVERS = ("db", "app1", "app2", "edge")
EDGE = "edge"
DOMAIN = "social1.sandbox.test"
LABEL = "pyinfra-mastodon-sandbox"


def docker(*args: str) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def test_inventory_names_the_four_servers_by_their_port_and_address(cluster):
    assert sorted(cluster.hosts) == sorted(SERVERS)
    for name, data in cluster.hosts.items():
        info = json.loads(docker("inspect", cluster.container(name)))[0]
        assert info["State"]["Running"] is True
        assert info["Config"]["Labels"][LABEL] == "1"
        assert info["NetworkSettings"]["Ports"]["22/tcp"] == [
            {"HostIp": "127.0.0.1", "HostPort": str(data["ssh_port"])}
        ]
        # one network only, the cluster's, at the inventory's address
        assert {net: cfg["IPAMConfig"]["IPv4Address"] for net, cfg in info["NetworkSettings"]["Networks"].items()} == {
            cluster.prefix(): data["mastodon_private_address"]
        }


def test_each_server_answers_ssh_on_its_own_port(cluster):
    for name, box in cluster.boxes.items():
        assert box.out("hostname").strip() == name
        assert box.out("systemctl is-active ssh docker sandbox-dns sandbox-pebble@production").split() == ["active"] * 4
    proc = cluster.sandbox.run("ssh", "--cluster", "app2", "hostname; exit 7")
    assert (proc.returncode, proc.stdout) == (7, "app2\n")


def test_servers_reach_each_other_by_name_on_the_private_network(cluster):
    names = " ".join(f"{server}.sandbox.test" for server in SERVERS)
    expected = [f"{cluster.address(server)} {server}.sandbox.test" for server in SERVERS]
    # sshd's banner, read over each private address: the connection reached that server's sshd
    banners = "; ".join(
        f"python3 -c 'import socket; print(socket.create_connection((\"{cluster.address(s)}\", 22), 5).recv(7).decode())'"
        for s in SERVERS
    )
    for name, box in cluster.boxes.items():
        got = box.out(f"for n in {names}; do getent hosts $n; done").split("\n")
        assert [" ".join(line.split()) for line in got if line] == expected, name
        assert box.out(banners).split() == ["SSH-2.0"] * 4, name


def test_the_instance_domain_is_the_edge_on_every_server(cluster):
    edge = cluster.address(EDGE)
    for name, box in cluster.boxes.items():
        # through the server's resolver (its dnsmasq), as the server and its containers resolve names
        assert box.out("cat /etc/resolv.conf").split() == ["nameserver", cluster.address(name)], name
        for domain in (DOMAIN, "acme.sandbox.test", "mail.sandbox.test"):
            assert box.out(f"getent ahostsv4 {domain}").split()[0] == edge, (name, domain)
        # from a container on a user-defined network (Docker's embedded DNS forwards to the server's)
        net = "sbt-cluster-dns"
        out = box.out(
            f"docker network create {net} >/dev/null && docker run --rm --network {net} redis:7-alpine "
            f"getent ahostsv4 {DOMAIN}; rc=$?; docker network rm {net} >/dev/null; exit $rc"
        )
        assert out.split()[0] == edge, name
        # names outside the zone still resolve (dnsmasq forwards them to Docker's embedded DNS):
        # the Debian mirror of the server's apt sources, the name apt-get needs
        mirror = box.out("awk '$1 == \"deb\" { print $2; exit }' /etc/apt/sources.list | sed 's#.*//##; s#[:/].*##'")
        assert box.ssh(f"getent ahostsv4 {mirror.strip()}").returncode == 0, (name, mirror)


def test_the_edge_gets_a_certificate_from_its_own_pebble_and_serves_it_to_the_others(cluster):
    edge, app = cluster.boxes[EDGE], cluster.boxes["app2"]
    d, ctr = "/root/sbt-cluster", "sbt-cluster-nginx"
    try:
        edge.out(
            f"mkdir -p {d}/user_conf.d {d}/letsencrypt && cat > {d}/user_conf.d/{DOMAIN}.conf <<'EOF'\n"
            f"{pebble_site(DOMAIN)}EOF\n"
            f"docker run -d --name {ctr} --network host {ACME_ENV} -e CERTBOT_PRODUCTION_URL={acme_url('production')} "
            f"-v {d}/user_conf.d:/etc/nginx/user_conf.d:ro -v {d}/letsencrypt:/etc/letsencrypt jonasal/nginx-certbot:latest"
        )
        app.out("cat > /root/sbt-edge-root.pem", input=edge.out("pebble-root production"))
        # from app2, by name (the edge's address) and verified by the edge's pebble root
        curl = f"curl -sS --max-time 5 --cacert /root/sbt-edge-root.pem https://{DOMAIN}/"
        deadline = time.monotonic() + 90
        while (proc := app.ssh(curl)).returncode != 0:
            if time.monotonic() > deadline:
                pytest.fail(f"no certificate served: {proc.stderr}\n{tail(edge.out(f'docker logs {ctr} 2>&1'))}")
            time.sleep(2)
        assert proc.stdout.strip() == f"hello from {DOMAIN}"
        # the edge's pebble validated it; app2's own pebble never heard of it
        assert DOMAIN in edge.out("journalctl -u sandbox-pebble@production --no-pager")
        assert DOMAIN not in app.out("journalctl -u sandbox-pebble@production --no-pager")
    finally:
        edge.ssh(f"docker rm -f {ctr} >/dev/null 2>&1; rm -rf {d}")
        app.ssh("rm -f /root/sbt-edge-root.pem")


def test_a_second_up_is_quick_and_gives_clean_running_servers(cluster):
    cluster.boxes["db"].out("touch /root/sbt-leftover")
    proc = cluster.sandbox.up("--cluster", *cluster.sandbox.suite_args())
    if cluster.boxes["db"].uses_standins():
        # nothing reloaded: every server's engine kept its images (the cost of a first up)
        assert proc.stderr.count("stand-in images in the server are up to date") == 4, tail(proc.stderr)
    assert cluster.boxes["db"].ssh("test -e /root/sbt-leftover").returncode == 1
    status = cluster.sandbox.run("status", "--cluster")
    assert status.returncode == 0, status.stdout + status.stderr
    for name in SERVERS:
        assert f"running (container {cluster.container(name)}), {cluster.address(name)}," in status.stdout
    for name, box in cluster.boxes.items():
        assert box.out("hostname").strip() == name


def test_down_removes_the_four_servers_and_the_network_and_nothing_else(cluster):
    # decoys that carry the cluster's labels and names: down goes by its own four names, not by labels
    image = docker("inspect", "-f", "{{.Config.Image}}", cluster.container("db")).strip()
    decoy = f"{cluster.prefix()}-decoy"
    labels = ["--label", f"{LABEL}=1", "--label", f"{LABEL}.cluster={cluster.prefix()}"]
    docker("run", "-d", "--name", decoy, *labels, "--entrypoint", "sleep", image, "infinity")
    try:
        docker("network", "create", *labels, decoy)
        proc = cluster.sandbox.run("down", "--cluster")
        assert proc.returncode == 0, proc.stderr
        names = docker("ps", "-a", "--format", "{{.Names}}").split()
        assert not [cluster.container(s) for s in SERVERS if cluster.container(s) in names], names
        assert decoy in docker("ps", "--format", "{{.Names}}").split()
        networks = docker("network", "ls", "--format", "{{.Name}}").split()
        assert cluster.prefix() not in networks and decoy in networks
        status = cluster.sandbox.run("status", "--cluster")
        assert status.returncode == 3 and status.stdout.count("not running") == 4, status.stdout
        # a second down has nothing to do
        assert cluster.sandbox.run("down", "--cluster").returncode == 0
    finally:
        subprocess.run(["docker", "rm", "-f", decoy], capture_output=True)
        subprocess.run(["docker", "network", "rm", decoy], capture_output=True)
