"""The shipped inventories (inventories/prod.py, inventories/vagrant.py) and the Vagrantfile.

Inventories are loaded with pyinfra's own CLI loader (`pyinfra_cli.inventory.make_inventory`, the
function behind `pyinfra INVENTORY ...`), including `group_data/` of the repository, exactly as the
CLI does it. Nothing here connects to a host.
"""

import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pyinfra.api import State
from pyinfra.context import ctx_state
from pyinfra_cli.inventory import make_inventory

REPO = Path(__file__).resolve().parents[2]
PROD = REPO / "inventories" / "prod.py"
VAGRANT = REPO / "inventories" / "vagrant.py"
SANDBOX = REPO / "inventories" / "sandbox.py"
SANDBOX_CLUSTER = REPO / "inventories" / "sandbox_cluster.py"
VAGRANTFILE = REPO / "Vagrantfile"

# The documented settings (README.md, docs/architecture.md). pyinfra_mastodon.settings is the
# authority; this list catches an inventory that uses a name nobody documented.
KNOWN_SETTINGS = {
    "mastodon_prefix",
    "mastodon_server_id",
    "mastodon_zone",
    "mastodon_admin_email",
    "mastodon_admin_username",
    "mastodon_version",
    "mastodon_web_image",
    "mastodon_streaming_image",
    "mastodon_postgres_image",
    "mastodon_redis_image",
    "mastodon_nginx_image",
    "mastodon_certbot_email",
    "mastodon_certbot_staging",
    "mastodon_certbot_local_ca",
    "mastodon_smtp_server",
    "mastodon_smtp_port",
    "mastodon_smtp_login",
    "mastodon_smtp_password",
    "mastodon_smtp_from_address",
    "mastodon_extra_env",
    "mastodon_postgres_wait_timeout",
    "mastodon_healthy_timeout",
    "mastodon_backup_before_upgrade",
    "mastodon_acme_directory",
    "mastodon_acme_ca_bundle",
    "mastodon_roles",
    "mastodon_private_address",
    "mastodon_firewall",
    "mastodon_sidekiq_queues",
    "mastodon_sidekiq_concurrency",
    "mastodon_s3_bucket",
    "mastodon_s3_endpoint",
    "mastodon_s3_region",
    "mastodon_s3_hostname",
    "mastodon_s3_protocol",
    "mastodon_s3_alias_host",
    "mastodon_s3_access_key_id",
}
SECRET_SETTINGS = {
    "mastodon_s3_secret_access_key",
    "mastodon_secret_key_base",
    "mastodon_otp_secret",
    "mastodon_vapid_private_key",
    "mastodon_vapid_public_key",
    "mastodon_active_record_encryption_deterministic_key",
    "mastodon_active_record_encryption_key_derivation_salt",
    "mastodon_active_record_encryption_primary_key",
}
# Values that must never come from a committed inventory (only from the environment, if at all).
SENSITIVE_SETTINGS = SECRET_SETTINGS | {"mastodon_smtp_password"}

DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

# Environment variables prod.py reads; cleared so that a developer's shell cannot change the result.
PROD_ENV_VARS = ("MASTODON_SOCIAL3_SMTP_PASSWORD",)


def load(path, monkeypatch=None, env=None):
    """Load an inventory file the way `pyinfra INVENTORY ...` does (cwd = repository root)."""
    if monkeypatch is not None:
        for name in [n for n in os.environ if n.startswith("MASTODON_")]:
            monkeypatch.delenv(name)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
    state = State(check_for_changes=False)
    state.cwd = str(REPO)
    with ctx_state.use(state):
        return make_inventory(str(path), cwd=str(REPO))


def hosts_data(inventory):
    return {host.name: host.data.dict() for host in inventory}


def group_hosts(inventory, name):
    return sorted(host.name for host in inventory.get_group(name))


def domain_of(data):
    return f"{data['mastodon_prefix']}{data['mastodon_server_id']}.{data['mastodon_zone']}"


def is_dns_name(name):
    labels = name.split(".")
    return len(name) <= 253 and len(labels) >= 2 and all(DNS_LABEL.match(label) for label in labels)


def mastodon_keys(data):
    return {key: value for key, value in data.items() if key.startswith("mastodon_")}


@pytest.fixture
def prod(monkeypatch):
    return load(PROD, monkeypatch)


@pytest.fixture
def vagrant(monkeypatch):
    return load(VAGRANT, monkeypatch)


# --- inventories/prod.py ---------------------------------------------------------------------------


def test_prod_hosts_and_groups(prod):
    expected = ["mastodon-a.example.org", "mastodon-b.example.org", "mastodon-c.example.org"]
    assert sorted(host.name for host in prod) == expected
    assert group_hosts(prod, "mastodon_servers") == expected
    # The file name is a group of every host.
    assert group_hosts(prod, "prod") == expected
    for host in prod:
        assert {"mastodon_servers", "prod"} <= set(host.groups)


def test_prod_group_data_is_shared_and_hosts_override(prod):
    data = hosts_data(prod)
    for name, host_data in data.items():
        assert host_data["mastodon_prefix"] == "social", name
        assert host_data["mastodon_zone"] == "example.org", name
        assert host_data["mastodon_admin_email"] == "admin@example.org", name
        assert host_data["ssh_user"] == "deploy", name
        assert host_data["_sudo"] is True, name
    server_ids = [host_data["mastodon_server_id"] for host_data in data.values()]
    assert len(set(server_ids)) == len(server_ids) == 3
    # Per-host overrides: one pinned version, one with SMTP.
    assert data["mastodon-b.example.org"]["mastodon_version"] == "v4.6.4"
    assert "mastodon_version" not in data["mastodon-a.example.org"]
    smtp = data["mastodon-c.example.org"]
    assert smtp["mastodon_smtp_server"] == "smtp.example.org"
    assert smtp["mastodon_smtp_port"] == 587
    assert "mastodon_smtp_server" not in data["mastodon-a.example.org"]


def test_prod_domains(prod):
    domains = {name: domain_of(d) for name, d in hosts_data(prod).items()}
    assert domains == {
        "mastodon-a.example.org": "social1.example.org",
        "mastodon-b.example.org": "social2.example.org",
        "mastodon-c.example.org": "social3.example.org",
    }


def test_prod_uses_only_reserved_example_names(prod):
    for name, data in hosts_data(prod).items():
        assert name.endswith(".example.org"), name
        assert data["mastodon_zone"] == "example.org"
        for key in ("mastodon_admin_email", "mastodon_smtp_login", "mastodon_smtp_from_address"):
            if key in data:
                assert data[key].endswith("example.org"), (name, key)


def test_prod_has_no_secrets_without_environment(prod):
    for name, data in hosts_data(prod).items():
        assert not SENSITIVE_SETTINGS & set(data), name


def test_prod_takes_smtp_password_from_environment_only_when_set(monkeypatch):
    data = hosts_data(load(PROD, monkeypatch, env={"MASTODON_SOCIAL3_SMTP_PASSWORD": "s3cret-from-env"}))
    assert data["mastodon-c.example.org"]["mastodon_smtp_password"] == "s3cret-from-env"
    assert "mastodon_smtp_password" not in data["mastodon-a.example.org"]
    # Set but empty: treated as unset (never an empty password).
    data = hosts_data(load(PROD, monkeypatch, env={"MASTODON_SOCIAL3_SMTP_PASSWORD": ""}))
    assert "mastodon_smtp_password" not in data["mastodon-c.example.org"]


def test_prod_has_no_vagrant_only_ssh_settings(prod):
    for name, data in hosts_data(prod).items():
        assert "ssh_known_hosts_file" not in data, name
        assert "ssh_strict_host_key_checking" not in data, name


# --- inventories/vagrant.py ------------------------------------------------------------------------


def test_vagrant_host_and_connection(vagrant):
    assert [host.name for host in vagrant] == ["social1"]
    data = hosts_data(vagrant)["social1"]
    assert Path(data["ssh_config_file"]) == REPO / ".vagrant" / "ssh-config"
    assert data["ssh_known_hosts_file"] == "/dev/null"
    assert data["ssh_strict_host_key_checking"] == "off"
    assert data["_sudo"] is True


def test_vagrant_mastodon_data(monkeypatch):
    data = hosts_data(load(VAGRANT, monkeypatch, env={"MASTODON_ADMIN_EMAIL": "owner@example.org"}))["social1"]
    assert domain_of(data) == "social1.vagrant.test"
    # never an address at vagrant.test: Mastodon refuses a domain that receives no mail
    assert data["mastodon_admin_email"] == "owner@example.org"
    assert data["mastodon_certbot_local_ca"] is True


def test_vagrant_without_an_owner_email_is_refused_by_name(monkeypatch):
    monkeypatch.delenv("MASTODON_ADMIN_EMAIL", raising=False)
    from pyinfra_mastodon.settings import SettingsError, load_config

    data = hosts_data(load(VAGRANT, monkeypatch))["social1"]
    with pytest.raises(SettingsError) as info:
        load_config("social1", data)
    assert info.value.key == "mastodon_admin_email" and "required" in info.value.problem


def test_vagrant_inventory_matches_vagrantfile():
    """Machine name (= ssh-config Host alias) and the /etc/hosts line documented in vagrant.py."""
    vagrantfile = VAGRANTFILE.read_text()
    assert re.search(r'vm\.define\s+"social1"', vagrantfile)
    ip = re.search(r'PRIVATE_IP\s*=\s*"([0-9.]+)"', vagrantfile).group(1)
    assert f"{ip} social1.vagrant.test" in VAGRANT.read_text()


# --- both ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [PROD, VAGRANT, SANDBOX_CLUSTER], ids=["prod", "vagrant", "sandbox-cluster"])
def test_every_mastodon_key_is_documented(path, monkeypatch):
    for name, data in hosts_data(load(path, monkeypatch)).items():
        unknown = set(mastodon_keys(data)) - KNOWN_SETTINGS - SECRET_SETTINGS
        assert not unknown, f"{name}: unknown settings {sorted(unknown)}"


@pytest.mark.parametrize(
    "path, env",
    [
        (PROD, {}),
        (PROD, {"MASTODON_SOCIAL3_SMTP_PASSWORD": "s3cret-from-env"}),
        (VAGRANT, {"MASTODON_ADMIN_EMAIL": "owner@example.org"}),
    ],
    ids=["prod", "prod-with-env", "vagrant"],
)
def test_every_host_passes_settings_validation(path, env, monkeypatch):
    """The deploy's own validation (unknown or near-miss names, bad values, domain): the authority."""
    from pyinfra_mastodon.settings import load_config

    for name, data in hosts_data(load(path, monkeypatch, env=env)).items():
        config = load_config(name, data)  # the merged host data, as the deploy sees it
        assert config.domain == domain_of(data)


@pytest.mark.parametrize("path", [PROD, VAGRANT], ids=["prod", "vagrant"])
def test_domains_well_formed_and_unique(path, monkeypatch):
    domains = [domain_of(data) for data in hosts_data(load(path, monkeypatch)).values()]
    for domain in domains:
        assert is_dns_name(domain), domain
    assert len(set(domains)) == len(domains)


@pytest.mark.parametrize("path", [PROD, VAGRANT, SANDBOX_CLUSTER], ids=["prod", "vagrant", "sandbox-cluster"])
def test_pyinfra_cli_reads_inventory(path):
    """`pyinfra INVENTORY debug-inventory --json` loads the file without connecting anywhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASTODON_")}
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", str(path.relative_to(REPO)), "debug-inventory", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    names = {entry["name"] for entry in json.loads(result.stdout)}
    assert names == {host.name for host in load(path)}


# --- inventories/sandbox_cluster.py -----------------------------------------------------------------

# The variables the sandbox inventories read; cleared so that a developer's shell cannot change the result.
SANDBOX_ENV_VARS = (
    "SANDBOX_CACHE",
    "SANDBOX_PORT",
    "SANDBOX_CERTS",
    "SANDBOX_ACME_DIRECTORY",
    "SANDBOX_CLUSTER_PORT",
    "SANDBOX_CLUSTER_SUBNET",
    "SANDBOX_S3_ACCESS_KEY_ID",
    "SANDBOX_S3_SECRET_ACCESS_KEY",
)


def load_sandbox(path, monkeypatch, **env):
    for name in SANDBOX_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return load(path, monkeypatch, env=env)


def test_sandbox_cluster_groups_and_roles(monkeypatch):
    cluster = load_sandbox(SANDBOX_CLUSTER, monkeypatch)
    assert group_hosts(cluster, "db_servers") == ["db"]
    assert group_hosts(cluster, "app_servers") == ["app1", "app2"]
    assert group_hosts(cluster, "edge_servers") == ["edge"]
    roles = {name: data["mastodon_roles"] for name, data in hosts_data(cluster).items()}
    assert roles == {
        "db": ["db", "redis"],
        "app1": ["web", "streaming", "sidekiq"],
        "app2": ["web", "streaming", "sidekiq", "db_replica"],
        "edge": ["proxy"],
    }


def test_sandbox_cluster_hosts_are_the_single_sandbox_on_their_own_ports(monkeypatch):
    """Connection, domain, owner and ACME as inventories/sandbox.py; each its port and private address."""
    single = hosts_data(load_sandbox(SANDBOX, monkeypatch))["sandbox"]
    data = hosts_data(load_sandbox(SANDBOX_CLUSTER, monkeypatch))
    own = {
        name: (d.pop("ssh_port"), d.pop("mastodon_private_address"), d.pop("mastodon_roles"))
        for name, d in data.items()
    }
    assert {name: port_address for name, (*port_address, _roles) in own.items()} == {
        "db": [2241, "10.213.0.11"],
        "app1": [2242, "10.213.0.21"],
        "app2": [2243, "10.213.0.22"],
        "edge": [2244, "10.213.0.31"],
    }
    storage = [{key: d.pop(key) for key in list(d) if key.startswith("mastodon_s3_")} for d in data.values()]
    # one object storage for the instance: the edge's S3 server (keys from the environment only)
    assert storage == [storage[0]] * 4 and storage[0]["mastodon_s3_endpoint"] == "http://s3.sandbox.test:9000"
    assert "mastodon_s3_secret_access_key" not in storage[0]
    # the firewall is on where the others connect to (the edge carries the sandbox's S3 server)
    assert {name: d.pop("mastodon_firewall", False) for name, d in data.items()} == {
        "db": True,
        "app1": True,
        "app2": True,
        "edge": False,
    }
    queues = {name: d.pop("mastodon_sidekiq_queues", None) for name, d in data.items()}
    # app2 leaves the scheduler queue to app1 (exactly one Sidekiq of an instance may work it)
    assert {name for name, q in queues.items() if q} == {"app2"} and "scheduler" not in queues["app2"]
    del single["ssh_port"]
    assert data == dict.fromkeys(own, single)
    assert domain_of(single) == "social1.sandbox.test"
    assert single["mastodon_acme_directory"] == "https://acme.sandbox.test:14000/dir"


def test_sandbox_cluster_is_one_instance_the_deploy_accepts(monkeypatch):
    """Validated as the deploy validates an inventory: without the S3 keys it is refused by name;
    with them every instance rule passes, and each host knows the instance's other hosts."""
    from pyinfra_mastodon.settings import SettingsError, load_inventory_configs

    with pytest.raises(SettingsError) as info:
        load_inventory_configs(hosts_data(load_sandbox(SANDBOX_CLUSTER, monkeypatch)).items())
    assert info.value.key == "mastodon_s3_access_key_id" and "is required" in info.value.problem, info.value
    keys = {"SANDBOX_S3_ACCESS_KEY_ID": "AKIASANDBOX", "SANDBOX_S3_SECRET_ACCESS_KEY": "k" * 40}
    configs = load_inventory_configs(hosts_data(load_sandbox(SANDBOX_CLUSTER, monkeypatch, **keys)).items())
    assert {cfg.cluster.jobs_host for cfg in configs.values()} == {"db"}
    assert configs["edge"].cluster.addresses("web") == ("10.213.0.21", "10.213.0.22")
    assert [name for name, cfg in configs.items() if cfg.firewall] == ["db", "app1", "app2"]


def test_sandbox_cluster_reads_the_script_variables(monkeypatch):
    data = hosts_data(
        load_sandbox(SANDBOX_CLUSTER, monkeypatch, SANDBOX_CLUSTER_PORT="2300", SANDBOX_CLUSTER_SUBNET="10.99.7.0/24")
    )
    assert {name: (d["ssh_port"], d["mastodon_private_address"]) for name, d in data.items()} == {
        "db": (2300, "10.99.7.11"),
        "app1": (2301, "10.99.7.21"),
        "app2": (2302, "10.99.7.22"),
        "edge": (2303, "10.99.7.31"),
    }
    # pyinfra's loader wraps the error; the file itself raises it
    monkeypatch.setenv("SANDBOX_CLUSTER_SUBNET", "10.99.0.0/16")
    with pytest.raises(ValueError, match="SANDBOX_CLUSTER_SUBNET='10.99.0.0/16': give a /24"):
        runpy.run_path(str(SANDBOX_CLUSTER))


def test_sandbox_cluster_matches_the_script():
    """The servers, their order (SSH ports), addresses and the defaults: the same in scripts/sandbox."""
    script = (REPO / "scripts" / "sandbox").read_text()
    members = re.search(r"^CLUSTER_MEMBERS=\(([^)]*)\)", script, re.M).group(1).split()
    octets = dict(
        re.findall(r"\[(\w+)\]=(\d+)", re.search(r"^declare -A CLUSTER_OCTET=\((.*)\)", script, re.M).group(1))
    )
    text = SANDBOX_CLUSTER.read_text()
    servers = re.search(r"^_SERVERS = \((.*)\)$", text, re.M).group(1)
    assert [(name, octet) for name, octet in re.findall(r'\("(\w+)", (\d+)\)', servers)] == [
        (name, octets[name]) for name in members
    ]
    assert "${SANDBOX_CLUSTER_PORT:-2241}" in script and 'get("SANDBOX_CLUSTER_PORT") or 2241' in text
    assert (
        "${SANDBOX_CLUSTER_SUBNET:-10.213.0.0/24}" in script
        and 'get("SANDBOX_CLUSTER_SUBNET") or "10.213.0.0/24"' in text
    )
    assert re.search(r"^CLUSTER_EDGE=edge\b", script, re.M)


# --- Vagrantfile ------------------------------------------------------------------------------------


def test_vagrantfile_is_valid_ruby():
    ruby = shutil.which("ruby")
    if ruby is None:
        pytest.skip("ruby is not installed (apt-get install ruby); cannot syntax-check the Vagrantfile")
    result = subprocess.run([ruby, "-c", str(VAGRANTFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Syntax OK" in result.stdout


def test_vagrantfile_contents():
    text = VAGRANTFILE.read_text()
    assert re.search(r'DEFAULT_BOX\s*=\s*"bento/ubuntu-24\.04"', text)
    assert re.search(r"MEMORY_MB\s*=\s*4096", text)
    assert re.search(r"CPUS\s*=\s*2\b", text)
    assert 'provider "virtualbox"' in text and 'provider "libvirt"' in text and 'provider "docker"' in text
    assert "private_network" in text
    # Compose v2 from the distribution's archive, per distribution
    assert 'ubuntu) packages="docker.io docker-compose-v2"' in text
    assert 'packages="docker.io docker-cli docker-compose"' in text
    assert "install -y $packages" in text
    assert "systemctl enable --now docker" in text
    # No Mastodon-specific provisioning: pyinfra does that.
    assert "/opt/mastodon" not in text


# VirtualBox is not in Debian's archive. Vagrant's virtualbox provider only asks `VBoxManage --version`
# before it validates its config block (checked below: no other call), so a VBoxManage that answers
# that one question lets Vagrant's own validator check the block. The docker provider (built into
# Vagrant) likewise only asks `docker version` whether an engine answers; a unit test must not need a
# running engine, so a docker that answers that one question stands in (no other call, checked below).
# libvirt (Debian's vagrant-libvirt) validates with nothing faked.
FAKE_VBOXMANAGE = """#!/bin/sh
echo "$*" >> "$(dirname "$0")/calls"
case "$1" in --version) echo 7.0.14r161095 ;; *) exit 1 ;; esac
"""
FAKE_DOCKER = """#!/bin/sh
echo "$*" >> "$(dirname "$0")/calls"
case "$1" in version) printf 'Client:\\n Version: 28.2.2\\nServer:\\n Version: 28.2.2\\n' ;; *) exit 1 ;; esac
"""


def _vagrant_validate(provider: str, tmp_path: Path, vagrantfile: Path = VAGRANTFILE):
    # scripts/bootstrap installs vagrant and vagrant-libvirt: a missing one is a failure, not a skip
    assert shutil.which("vagrant"), "vagrant is not installed (Debian package vagrant; scripts/bootstrap)"
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "VBoxManage").write_text(FAKE_VBOXMANAGE)
    (fake / "VBoxManage").chmod(0o755)
    (fake / "docker").write_text(FAKE_DOCKER)
    (fake / "docker").chmod(0o755)
    env = dict(
        os.environ,
        VAGRANT_DEFAULT_PROVIDER=provider,
        VAGRANT_CWD=str(vagrantfile.parent),
        VAGRANT_DOTFILE_PATH=str(tmp_path / "dot-vagrant"),
        VAGRANT_HOME=str(tmp_path / "vagrant-home"),
        PATH=f"{fake}{os.pathsep}{os.environ['PATH']}",
    )
    return subprocess.run(["vagrant", "validate"], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("provider", ["virtualbox", "libvirt", "docker"])
def test_vagrant_validate(provider, tmp_path):
    result = _vagrant_validate(provider, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Vagrantfile validated successfully" in result.stdout
    calls = tmp_path / "bin" / "calls"
    if provider == "virtualbox":
        assert set(calls.read_text().split()) == {"--version"}, calls.read_text()
    if provider == "docker":
        assert set(calls.read_text().split()) == {"version"}, calls.read_text()


@pytest.mark.parametrize("provider", ["virtualbox", "libvirt", "docker"])
def test_vagrant_validate_checks_the_provider_block(provider, tmp_path):
    """The validation above reads each provider's block: an unknown option in it is refused."""
    var = {"virtualbox": "vb", "libvirt": "lv", "docker": "d"}[provider]
    anchor = {"virtualbox": "vb.cpus = CPUS\n", "libvirt": "lv.cpus = CPUS\n", "docker": "d.has_ssh = true\n"}[provider]
    text = VAGRANTFILE.read_text()
    assert anchor in text
    broken = tmp_path / "project" / "Vagrantfile"
    broken.parent.mkdir()
    broken.write_text(text.replace(anchor, f"{anchor}      {var}.no_such_option = 1\n", 1))
    result = _vagrant_validate(provider, tmp_path, broken)
    assert result.returncode != 0
    assert "no_such_option" in result.stdout + result.stderr


def _sandbox_run_flags() -> list[tuple[str, str]]:
    """(option, value) pairs of scripts/sandbox's `docker run` of the server, but its name, labels, port,
    volumes (they hold variables), hostname (the Vagrantfile's vm.hostname gives the machine's) and the
    flags only a cluster's servers get (an array, "${RUN_EXTRA[@]}": their network)."""
    script = (REPO / "scripts" / "sandbox").read_text()
    body = script[script.index("start_server() {") :]
    body = body[body.index("docker run -d") : body.index('"$TARGET_IMG"')]
    words = shlex.split(body.replace("\\\n", " "))[3:]  # after `docker run -d`
    words = [word for word in words if not re.fullmatch(r"\$\{\w+\[@\]\}", word)]
    pairs = list(zip(words[::2], words[1::2], strict=True))
    return [(opt, val) for opt, val in pairs if "$" not in val and opt != "--hostname"]


def test_vagrant_docker_provider_runs_the_machine_as_the_sandbox_server_runs():
    """DOCKER_CREATE_ARGS = the sandbox's `docker run` flags (cgroups, tmpfs, security options), so that
    systemd and the inner Docker engine start in the Vagrant machine as in the sandbox."""
    text = VAGRANTFILE.read_text()
    block = text[text.index("DOCKER_CREATE_ARGS = [") : text.index("]", text.index("DOCKER_CREATE_ARGS = ["))]
    words = re.findall(r'"([^"]*)"', block)
    vagrant_pairs = list(zip(words[::2], words[1::2], strict=True))
    sandbox_pairs = _sandbox_run_flags()
    assert ("--cap-add", "ALL") in sandbox_pairs and ("--tmpfs", "/run") in sandbox_pairs, sandbox_pairs
    assert sorted(p for p in vagrant_pairs if p[0] != "--label") == sorted(sandbox_pairs)
    assert ("--label", "pyinfra-mastodon-sandbox=1") in vagrant_pairs
    assert "--privileged" not in words and "privileged =" not in text  # --privileged fails on our machines


def test_the_readmes_cluster_example_is_one_valid_instance(tmp_path, monkeypatch):
    """README, "One instance on several servers": its inventory passes every rule, as the deploy checks it."""
    import runpy

    from pyinfra_mastodon.settings import load_inventory_configs

    text = (REPO / "README.md").read_text()
    start = text.index("# inventories/prod_cluster.py")
    path = tmp_path / "prod_cluster.py"
    path.write_text(text[start : text.index("```", start)])
    monkeypatch.setenv("SOCIAL3_S3_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("SOCIAL3_S3_SECRET", "k" * 40)
    groups = runpy.run_path(str(path))
    hosts = [
        (name, {**group_data, **data})
        for group in ("db_servers", "app_servers", "edge_servers")
        for name, data in groups[group][0]
        for group_data in [groups[group][1]]
    ]
    configs = load_inventory_configs(hosts)
    (cluster,) = {cfg.cluster for cfg in configs.values()}
    assert cluster.jobs_host == "db.social3.example.org"
    assert cluster.addresses("web") == ("10.0.0.21", "10.0.0.22")
