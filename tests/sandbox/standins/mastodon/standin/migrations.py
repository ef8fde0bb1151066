"""The stand-in's migrations, baked per image version.

v4.6.4 ships A, B (pre-deployment) and C (post-deployment); v4.6.5 adds D (pre) and E (post).
Table and column names are Mastodon's where the deploy reads them with SQL.
"""

import re
from dataclasses import dataclass

from . import version_tuple


@dataclass(frozen=True)
class Migration:
    version: str  # 14 digits, like Rails
    name: str  # Ruby class name
    kind: str  # "pre" (db/migrate) or "post" (db/post_migrate)
    since: tuple  # first Mastodon version that ships it
    statements: tuple

    @property
    def humanized(self):
        """Rails' ``name.humanize`` as shown by db:migrate:status."""
        words = re.sub(r"(?<!^)(?=[A-Z])", " ", self.name).lower()
        return words[:1].upper() + words[1:]


ALL_MIGRATIONS = (
    Migration(
        "20260114093012",
        "CreateAccountsAndUsers",
        "pre",
        (4, 6, 4),
        (
            "CREATE SEQUENCE accounts_id_seq",
            """CREATE TABLE accounts (
                id bigint PRIMARY KEY DEFAULT nextval('accounts_id_seq'),
                username character varying NOT NULL DEFAULT '',
                domain character varying,
                display_name character varying NOT NULL DEFAULT '',
                note text NOT NULL DEFAULT '',
                actor_type character varying,
                suspended_at timestamp without time zone,
                legacy_note text,
                created_at timestamp(6) without time zone NOT NULL DEFAULT now(),
                updated_at timestamp(6) without time zone NOT NULL DEFAULT now())""",
            "ALTER SEQUENCE accounts_id_seq OWNED BY accounts.id",
            """CREATE UNIQUE INDEX index_accounts_on_username_and_domain_lower
                ON accounts (lower(username::text), COALESCE(lower(domain::text), ''::text))""",
            """CREATE TABLE users (
                id bigserial PRIMARY KEY,
                account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
                email character varying NOT NULL DEFAULT '',
                encrypted_password character varying NOT NULL DEFAULT '',
                confirmed_at timestamp(6) without time zone,
                approved boolean NOT NULL DEFAULT true,
                chosen_languages character varying[],
                disabled boolean NOT NULL DEFAULT false,
                legacy_otp_secret character varying,
                sign_in_count integer NOT NULL DEFAULT 0,
                current_sign_in_at timestamp without time zone,
                last_sign_in_at timestamp without time zone,
                created_at timestamp(6) without time zone NOT NULL DEFAULT now(),
                updated_at timestamp(6) without time zone NOT NULL DEFAULT now())""",
            "CREATE UNIQUE INDEX index_users_on_email ON users (email)",
            "CREATE INDEX index_users_on_account_id ON users (account_id)",
        ),
    ),
    Migration(
        "20260203151847",
        "CreateUserRolesAndOauthApplications",
        "pre",
        (4, 6, 4),
        (
            """CREATE TABLE user_roles (
                id bigserial PRIMARY KEY,
                name character varying NOT NULL DEFAULT '',
                color character varying NOT NULL DEFAULT '',
                position integer NOT NULL DEFAULT 0,
                permissions bigint NOT NULL DEFAULT 0,
                highlighted boolean NOT NULL DEFAULT false,
                created_at timestamp(6) without time zone NOT NULL DEFAULT now(),
                updated_at timestamp(6) without time zone NOT NULL DEFAULT now())""",
            "CREATE UNIQUE INDEX index_user_roles_on_name ON user_roles (name)",
            "ALTER TABLE users ADD COLUMN role_id bigint REFERENCES user_roles (id) ON DELETE SET NULL",
            "CREATE INDEX index_users_on_role_id ON users (role_id) WHERE role_id IS NOT NULL",
            """CREATE TABLE oauth_applications (
                id bigserial PRIMARY KEY,
                name character varying NOT NULL,
                uid character varying NOT NULL,
                secret character varying NOT NULL,
                redirect_uri text NOT NULL,
                scopes character varying NOT NULL DEFAULT '',
                superapp boolean NOT NULL DEFAULT false,
                website character varying,
                created_at timestamp(6) without time zone NOT NULL DEFAULT now(),
                updated_at timestamp(6) without time zone NOT NULL DEFAULT now())""",
            "CREATE UNIQUE INDEX index_oauth_applications_on_uid ON oauth_applications (uid)",
            # db/schema.rb (v4.6.5) create_table "oauth_access_tokens", with its indexes and foreign keys
            """CREATE TABLE oauth_access_tokens (
                id bigserial PRIMARY KEY,
                application_id bigint,
                created_at timestamp without time zone NOT NULL,
                expires_in integer,
                last_used_at timestamp without time zone,
                last_used_ip inet,
                refresh_token character varying,
                resource_owner_id bigint,
                revoked_at timestamp without time zone,
                scopes character varying,
                token character varying NOT NULL)""",
            """CREATE UNIQUE INDEX index_oauth_access_tokens_on_refresh_token
                ON oauth_access_tokens (refresh_token text_pattern_ops) WHERE refresh_token IS NOT NULL""",
            """CREATE INDEX index_oauth_access_tokens_on_resource_owner_id
                ON oauth_access_tokens (resource_owner_id) WHERE resource_owner_id IS NOT NULL""",
            "CREATE UNIQUE INDEX index_oauth_access_tokens_on_token ON oauth_access_tokens (token)",
            """ALTER TABLE oauth_access_tokens ADD CONSTRAINT fk_f5fc4c1ee3 FOREIGN KEY (application_id)
                REFERENCES oauth_applications (id) ON DELETE CASCADE""",
            """ALTER TABLE oauth_access_tokens ADD CONSTRAINT fk_e84df68546 FOREIGN KEY (resource_owner_id)
                REFERENCES users (id) ON DELETE CASCADE""",
        ),
    ),
    Migration(
        "20260302110455",
        "RemoveLegacyNoteFromAccounts",
        "post",
        (4, 6, 4),
        ("ALTER TABLE accounts DROP COLUMN legacy_note",),
    ),
    Migration(
        "20260527084519",
        "AddApprovedIndexToUsers",
        "pre",
        (4, 6, 5),
        ("CREATE INDEX index_users_on_approved ON users (approved) WHERE approved = false",),
    ),
    Migration(
        "20260611150940",
        "RemoveLegacyOtpSecretFromUsers",
        "post",
        (4, 6, 5),
        ("ALTER TABLE users DROP COLUMN legacy_otp_secret",),
    ),
)


def migrations_for(version):
    """Every migration shipped by the image ``version`` (e.g. ``v4.6.5``), in version order."""
    vt = version_tuple(version)
    return tuple(sorted((m for m in ALL_MIGRATIONS if m.since <= vt), key=lambda m: m.version))


def runnable(migrations, skip_post):
    """The migrations Rails sees: post-deployment ones vanish when SKIP_POST_DEPLOYMENT_MIGRATIONS is set."""
    return tuple(m for m in migrations if not (skip_post and m.kind == "post"))


def pending(migrations, applied, skip_post):
    return tuple(m for m in runnable(migrations, skip_post) if m.version not in applied)


def schema_version(migrations):
    return max((m.version for m in migrations), default="0")


# Tables a schema load recreates (Rails' `create_table ..., force: :cascade`).
SCHEMA_TABLES = ("oauth_access_tokens", "users", "oauth_applications", "user_roles", "accounts")


def write_files(root, version):
    """
    The image's migration files, as the real image carries them: ``db/migrate/<version>_<name>.rb``
    (pre-deployment) and ``db/post_migrate/...`` (post), for every migration ``version`` ships. Rails
    (and the deploy's PendingMigrations) reads only the file names' versions; the bodies are comments.
    """
    import os

    for m in migrations_for(version):
        folder = os.path.join(root, "db", "migrate" if m.kind == "pre" else "post_migrate")
        os.makedirs(folder, exist_ok=True)
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", m.name).lower()
        with open(os.path.join(folder, f"{m.version}_{snake}.rb"), "w") as f:
            f.write(f"# stand-in (test double): {m.name}, run by the stand-in's rails, not by this file\n")


if __name__ == "__main__":
    import sys

    write_files(sys.argv[1], sys.argv[2])
