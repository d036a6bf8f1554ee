"""manage.py secrets list|set|delete|rotate: manage environment secrets; values are never printed."""
from __future__ import annotations

import getpass
import sys

from stepwise.runs.management.base import SubcommandCommand, audit, env_option
from stepwise.tasks.secrets import secret_delete, secret_list, secret_set, secrets_reencrypt


class Command(SubcommandCommand):
    help = "List (masked), set, delete secrets, or re-encrypt them all with the first STEPWISE_SECRET_KEYS key."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        env_option(sub.add_parser("list"))
        setting = sub.add_parser("set", help="the value is read from stdin (or a hidden prompt)")
        setting.add_argument("name")
        env_option(setting)
        deleting = sub.add_parser("delete")
        deleting.add_argument("name")
        env_option(deleting)
        sub.add_parser("rotate", help="re-encrypt every secret with the first key")

    def _list(self, opts) -> None:
        for secret in secret_list(environment=opts["env"]):
            self.stdout.write(f"{secret.name:32} {secret.value}  updated {secret.updated_at:%Y-%m-%d %H:%M}")

    def _set(self, opts) -> None:
        # Never from argv: it would land in the shell history and the process list.
        value = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("value: ")
        saved = secret_set(environment=opts["env"], name=opts["name"], value=value)
        audit("secret.set", environment=opts["env"], target=saved.name)
        self.stdout.write(f"{saved.name} {saved.value} saved in {saved.environment}")

    def _delete(self, opts) -> None:
        secret_delete(environment=opts["env"], name=opts["name"])
        audit("secret.delete", environment=opts["env"], target=opts["name"])
        self.stdout.write(f"{opts['name']} deleted from {opts['env']}")

    def _rotate(self, opts) -> None:
        count = secrets_reencrypt()
        # Every environment's secrets at once: the entry belongs to none (the Django admin shows it).
        audit("secret.rotate", environment="", data={"secrets": count})
        self.stdout.write(f"re-encrypted {count} secret(s) with the first key")
