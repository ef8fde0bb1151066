"""Inventory for the local Vagrant VM (see the Vagrantfile and README.md, "Using the Vagrantfile").

    vagrant up
    vagrant ssh-config > .vagrant/ssh-config
    pyinfra inventories/vagrant.py deploys/mastodon.py --dry
    pyinfra inventories/vagrant.py deploys/mastodon.py

How pyinfra reaches the VM: the host name "social1" is the Vagrant machine name, and therefore the
`Host social1` entry of the file `vagrant ssh-config` writes. pyinfra looks that alias up in
`ssh_config_file` and takes HostName, Port, User and IdentityFile from it. The path is computed from
this file's location, so the command works from any directory. If `.vagrant/ssh-config` is missing
(you skipped the export, or ran `vagrant destroy`), pyinfra silently ignores the setting and fails to
resolve "social1": export it again.

Vagrant-only settings: every `vagrant destroy && vagrant up` gives the VM new SSH host keys, so the
keys are neither recorded (`ssh_known_hosts_file="/dev/null"`) nor checked
(`ssh_strict_host_key_checking="off"`). Never copy these two lines into an inventory of real servers.

Domain: `{mastodon_prefix}{mastodon_server_id}.{mastodon_zone}` = `social1.vagrant.test` (`.test` is
reserved for testing and never resolves on the internet). To open the instance in a browser on your
workstation, add this line to the workstation's /etc/hosts (the VM's private network address from the
Vagrantfile):

    192.168.56.10 social1.vagrant.test

Owner e-mail: give your own address in MASTODON_ADMIN_EMAIL (`MASTODON_ADMIN_EMAIL=you@example.org
pyinfra inventories/vagrant.py ...`). Mastodon checks in DNS that its domain receives mail when it
creates the owner account (app/validators/email_mx_validator.rb), so an address at `vagrant.test`
would always fail; without the variable the deploy stops before any change and asks for it.
scripts/test-vagrant (Vagrant's Docker provider, the machine built from the sandbox's server image)
gives `admin@sandbox.test`: that machine runs the sandbox's DNS, whose zone sandbox.test has an MX.

Certificates: Let's Encrypt cannot validate a name that has no public DNS record, so
`mastodon_certbot_local_ca=True` makes the nginx-certbot container sign the certificate with its own
local CA instead (USE_LOCAL_CA=1). The browser will warn about it; that is expected for a test VM.
"""

import os as _os
from pathlib import Path as _Path

# `vagrant ssh-config > .vagrant/ssh-config`, run from the repository root (where the Vagrantfile is).
_SSH_CONFIG = str(_Path(__file__).resolve().parent.parent / ".vagrant" / "ssh-config")

vagrant = [
    (
        "social1",
        {
            # Connection (the box's user is "vagrant", which needs sudo)
            "ssh_config_file": _SSH_CONFIG,
            "ssh_known_hosts_file": "/dev/null",
            "ssh_strict_host_key_checking": "off",
            "_sudo": True,
            # Mastodon: domain social1.vagrant.test
            "mastodon_prefix": "social",
            "mastodon_server_id": "1",
            "mastodon_zone": "vagrant.test",
            # None when unset: the deploy then refuses, naming mastodon_admin_email (see above)
            "mastodon_admin_email": _os.environ.get("MASTODON_ADMIN_EMAIL") or None,
            "mastodon_certbot_local_ca": True,
        },
    ),
]
