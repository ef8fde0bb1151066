"""`bin/tootctl accounts create|modify`, `media remove`, `preview_cards remove` and `version` (lib/mastodon/cli/)."""

import hashlib
import json
import re
import secrets
import sys
import time

from . import plain_version
from .boot import boot_rails
from .db import DatabaseError, connect
from .mail_validation import email_errors
from .redis import Redis, RedisError

USERNAME_RE = re.compile(r"\A[a-z0-9_]+([a-z0-9_.-]+[a-z0-9_]+)?\Z", re.I)

CREATE_OPTIONS = {
    "--email": str,
    "--confirmed": bool,
    "--role": str,
    "--approve": bool,
    "--reattach": bool,
    "--force": bool,
    "--skip-sign-in-token": bool,
}
MODIFY_OPTIONS = {
    "--role": str,
    "--remove-role": bool,
    "--email": str,
    "--confirm": bool,
    "--approve": bool,
    "--enable": bool,
    "--disable": bool,
    "--disable-2fa": bool,
    "--reset-password": bool,
}


class Failure(Exception):
    """Thor::Error: message on stderr, exit 1."""


def parse(args, spec):
    """Thor-like option parsing: `--opt VALUE`, `--opt=VALUE`, boolean flags. Returns (positionals, options)."""
    positionals, options = [], {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            key, eq, value = arg.partition("=")
            if key not in spec:
                raise Failure(f'Unknown switches "{key}"')
            if spec[key] is bool:
                options[key] = True
            else:
                if not eq:
                    i += 1
                    if i >= len(args):
                        raise Failure(f"No value provided for option '{key}'")
                    value = args[i]
                options[key] = value
        else:
            positionals.append(arg)
        i += 1
    return positionals, options


def password_hash(password):
    """The stand-in stores only a salted SHA-256 (the real one stores bcrypt)."""
    salt = secrets.token_hex(8)
    return f"sha256${salt}${hashlib.sha256((salt + password).encode()).hexdigest()}"


def find_role(cur, name):
    cur.execute("SELECT id FROM user_roles WHERE name = %s", (name,))
    row = cur.fetchone()
    if row is None:
        raise Failure("Cannot find user role with that name")
    return row[0]


def report_errors(errors):
    raise Failure("".join(f"Failure/Error: {attribute}\n    {kind}\n" for attribute, kind in errors).rstrip("\n"))


def enqueue(jobs):
    """Sidekiq's client push (``perform_async`` / ``deliver_later``): SADD queues + LPUSH queue:NAME.
    Raises RedisError when Redis cannot be reached, as redis-client does."""
    if not jobs:
        return
    with Redis() as redis:
        for queue, klass, args in jobs:
            job = {
                "class": klass,
                "args": args,
                "queue": queue,
                "retry": True,
                "jid": secrets.token_hex(12),
                "created_at": time.time(),
                "enqueued_at": time.time(),
            }
            redis.call("SADD", "queues", queue)
            redis.call("LPUSH", f"queue:{queue}", json.dumps(job))


def after_commit_jobs(account_id, user_id, confirmed, approve):
    """What the real `accounts create` sends to Redis once the user is saved (committed):
    - not --confirmed: Devise's confirmation instructions, `deliver_later` (user.rb:118,413);
    - --approve on a confirmed user: `approve!` -> `prepare_new_user!` (user.rb:241-249, 488-494):
      BootstrapTimelineWorker.perform_async, ActivityTracker, the welcome mail `deliver_later`."""
    jobs = []
    if not confirmed:
        jobs.append(("mailers", "ActionMailer::MailDeliveryJob", ["UserMailer", "confirmation_instructions", user_id]))
    if approve and confirmed:
        jobs.append(("default", "BootstrapTimelineWorker", [account_id]))
        jobs.append(("mailers", "ActionMailer::MailDeliveryJob", ["UserMailer", "welcome", user_id]))
        jobs.append(("default", "TriggerWebhookWorker", ["account.approved", "Account", account_id]))
    return jobs


def create(conn, args):
    positionals, opts = parse(args, CREATE_OPTIONS)
    if len(positionals) != 1:
        raise Failure(
            'ERROR: "tootctl accounts create" was called with no arguments\nUsage: "tootctl accounts create USERNAME"'
        )
    username = positionals[0]
    email = opts.get("--email")
    if not email:
        raise Failure("No value provided for required options '--email'")
    if opts.get("--reattach") or opts.get("--force"):
        raise Failure("[stand-in] --reattach/--force are not emulated")
    email_norm = email.strip().lower()
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            role_id = find_role(cur, opts["--role"]) if opts.get("--role") else None
            errors = []
            cur.execute("SELECT 1 FROM users WHERE lower(email) = %s", (email_norm,))
            if cur.fetchone():
                errors.append(("email", "taken"))
            errors += [("email", kind) for kind in email_errors(email_norm)]
            if not USERNAME_RE.match(username) or len(username) > 30:
                errors.append(("account.username", "invalid"))
            else:
                cur.execute("SELECT 1 FROM accounts WHERE lower(username) = lower(%s) AND domain IS NULL", (username,))
                if cur.fetchone():
                    errors.append(("account.username", "taken"))
            if errors:
                report_errors(errors)
            password = secrets.token_hex(16)
            cur.execute("INSERT INTO accounts (username) VALUES (%s) RETURNING id", (username,))
            account_id = cur.fetchone()[0]
            cur.execute(
                """INSERT INTO users (account_id, email, encrypted_password, role_id, approved, confirmed_at)
                   VALUES (%s, %s, %s, %s, %s, CASE WHEN %s THEN now() END) RETURNING id""",
                (
                    account_id,
                    email_norm,
                    password_hash(password),
                    role_id,
                    bool(opts.get("--approve")),
                    bool(opts.get("--confirmed")),
                ),
            )
            user_id = cur.fetchone()[0]
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    # after the commit, as upstream: with Redis down the account exists but OK/the password never print
    enqueue(after_commit_jobs(account_id, user_id, bool(opts.get("--confirmed")), bool(opts.get("--approve"))))
    print("OK")
    print(f"New password: {password}")


def modify(conn, args):
    positionals, opts = parse(args, MODIFY_OPTIONS)
    if len(positionals) != 1:
        raise Failure(
            'ERROR: "tootctl accounts modify" was called with no arguments\nUsage: "tootctl accounts modify USERNAME"'
        )
    username = positionals[0]
    conn.autocommit = False
    password = None
    try:
        with conn.cursor() as cur:
            cur.execute(
                """SELECT u.id FROM users u JOIN accounts a ON a.id = u.account_id
                   WHERE lower(a.username) = lower(%s) AND a.domain IS NULL""",
                (username,),
            )
            row = cur.fetchone()
            if row is None:
                raise Failure("No user with such username")
            user_id = row[0]
            if opts.get("--role"):
                cur.execute("UPDATE users SET role_id = %s WHERE id = %s", (find_role(cur, opts["--role"]), user_id))
            elif opts.get("--remove-role"):
                cur.execute("UPDATE users SET role_id = NULL WHERE id = %s", (user_id,))
            if opts.get("--reset-password"):
                password = secrets.token_hex(16)
                cur.execute(
                    "UPDATE users SET encrypted_password = %s WHERE id = %s", (password_hash(password), user_id)
                )
            if opts.get("--email"):
                email_norm = opts["--email"].strip().lower()
                errors = []
                cur.execute("SELECT 1 FROM users WHERE lower(email) = %s AND id <> %s", (email_norm, user_id))
                if cur.fetchone():
                    errors.append(("email", "taken"))
                errors += [("email", kind) for kind in email_errors(email_norm)]
                if errors:
                    report_errors(errors)
                cur.execute("UPDATE users SET email = %s WHERE id = %s", (email_norm, user_id))
            if opts.get("--enable"):
                cur.execute("UPDATE users SET disabled = false WHERE id = %s", (user_id,))
            if opts.get("--disable"):
                cur.execute("UPDATE users SET disabled = true WHERE id = %s", (user_id,))
            if opts.get("--approve"):
                cur.execute("UPDATE users SET approved = true WHERE id = %s", (user_id,))
            if opts.get("--confirm"):
                cur.execute("UPDATE users SET confirmed_at = COALESCE(confirmed_at, now()) WHERE id = %s", (user_id,))
            cur.execute("UPDATE users SET updated_at = now() WHERE id = %s", (user_id,))
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    print("OK")
    if password:
        print(f"New password: {password}")


def cleanup(argv):
    """
    ``media remove`` and ``preview_cards remove`` (lib/mastodon/cli/media.rb, preview_cards.rb): the
    stand-in keeps no remote media, so there is nothing to remove; it answers as upstream does then.
    ``--days`` must be a number (Thor's numeric option).
    """
    days = None
    rest = argv[2:]
    for i, word in enumerate(rest):
        if word in ("--days", "-d") and i + 1 < len(rest):
            days = rest[i + 1]
    if days is not None and not days.isdigit():
        sys.stderr.write(f"Expected numeric value for '--days'; got {days!r}\n")
        return 1
    boot_rails()
    try:
        connect().close()
    except DatabaseError as exc:
        sys.stderr.write(f"{exc.klass}: {exc.message}\n")
        return 1
    if argv[0] == "media":
        print("Removed 0 media attachments (approx. 0 Bytes)")
    else:
        print("Removed media from 0 preview cards (approx. 0 Bytes)")
    return 0


def main(argv):
    if argv[:1] in (["version"], ["--version"], ["-v"]):
        boot_rails()
        print(plain_version())
        return 0
    if argv[:2] in (["media", "remove"], ["preview_cards", "remove"]):
        return cleanup(argv)
    if len(argv) < 2 or argv[0] != "accounts" or argv[1] not in ("create", "modify"):
        sys.stderr.write(
            f"Could not find command {' '.join(argv[:2])!r}.\n"
            "[stand-in] supported: tootctl accounts create|modify, media remove, preview_cards remove, version\n"
        )
        return 1
    boot_rails()
    try:
        conn = connect()
    except DatabaseError as exc:
        sys.stderr.write(f"{exc.klass}: {exc.message}\n")
        return 1
    try:
        (create if argv[1] == "create" else modify)(conn, argv[2:])
    except Failure as exc:
        sys.stdout.flush()
        sys.stderr.write(f"{exc}\n")
        return 1
    except RedisError as exc:  # an uncaught RedisClient::CannotConnectError ends the Thor command
        sys.stdout.flush()
        sys.stderr.write(f"{exc} (RedisClient::CannotConnectError)\n")
        return 1
    except Exception as exc:  # noqa: BLE001 - e.g. the schema is not loaded
        sys.stdout.flush()
        sys.stderr.write(f"ActiveRecord::StatementInvalid: {type(exc).__name__}: {exc}\n")
        return 1
    finally:
        sys.stdout.flush()
        conn.close()
    return 0
