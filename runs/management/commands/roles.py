"""manage.py roles grant|revoke|list: who may do what in each environment (viewer, operator, admin)."""
from __future__ import annotations

from stepwise.runs.management.base import SubcommandCommand, audit
from stepwise.tasks.access import Role, role_grant, role_group_name, role_list, role_revoke


def _env_option(parser, *, required: bool) -> None:
    parser.add_argument("--env", required=required, default=None, help="environment slug")


class Command(SubcommandCommand):
    help = ("Grant, revoke or list roles per environment: viewer (read runs), operator (also cancel, replay, "
            "approve, send events, trigger) and admin (also queues, schedules, secrets, API keys, members).")

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        granting = sub.add_parser("grant", help="give USER the ROLE in --env (replacing their role there)")
        granting.add_argument("username")
        granting.add_argument("role", choices=[r.value for r in Role])
        _env_option(granting, required=True)
        revoking = sub.add_parser("revoke", help="take away USER's role in --env")
        revoking.add_argument("username")
        _env_option(revoking, required=True)
        _env_option(sub.add_parser("list", help="every grant (of --env), by environment then user"), required=False)

    def _grant(self, opts) -> None:
        grant = role_grant(username=opts["username"], role=opts["role"], environment=opts["env"])
        audit("role.grant", environment=grant.environment, target=grant.username, data={"role": grant.role.value})
        self.stdout.write(f"{grant.username} is now {grant.role} in {grant.environment} "
                          f"(group {role_group_name(grant.environment, grant.role)})")

    def _revoke(self, opts) -> None:
        had = role_revoke(username=opts["username"], environment=opts["env"])
        if had is None:
            self.stdout.write(f"{opts['username']} had no role in {opts['env']}; nothing changed")
            return
        audit("role.revoke", environment=had.environment, target=had.username, data={"role": had.role.value})
        self.stdout.write(f"{had.username} is no longer {had.role} in {had.environment}")

    def _list(self, opts) -> None:
        self.stdout.write(f"{'ENV':<12} {'ROLE':<10} USER")
        for grant in role_list(environment=opts["env"]):
            self.stdout.write(f"{grant.environment:<12} {grant.role.value:<10} {grant.username}")
        self.stdout.write("(superusers are admins of every environment)")
