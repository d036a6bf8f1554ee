"""manage.py apikeys list|create|revoke: API keys per environment; the full key is printed once, on create."""
from __future__ import annotations

from datetime import datetime

from stepwise.runs.management.base import SubcommandCommand, audit, env_option
from stepwise.tasks.access import DEFAULT_SCOPES, SCOPES
from stepwise.tasks.apikeys import api_key_create, api_key_list, api_key_revoke


def _when(at: datetime | None, *, empty: str) -> str:
    return f"{at:%Y-%m-%d %H:%M}" if at else empty


class Command(SubcommandCommand):
    help = "List (by prefix), create or revoke the API keys of an environment."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        env_option(sub.add_parser("list", help="newest first; never the full key"))
        creating = sub.add_parser("create", help="print the new key, this once")
        creating.add_argument("name")
        creating.add_argument("--scopes", default=",".join(DEFAULT_SCOPES),
                              help=f"comma-separated, of {', '.join(SCOPES)} (default: {','.join(DEFAULT_SCOPES)})")
        env_option(creating)
        revoking = sub.add_parser("revoke", help="calls with the key are refused from now on")
        revoking.add_argument("key_id", type=int)
        env_option(revoking)

    def _list(self, opts) -> None:
        self.stdout.write(f"{'ID':>5} {'NAME':<24} {'PREFIX':<20} {'ENV':<8} {'SCOPES':<28} {'CREATED':<16} "
                          f"{'LAST USED':<16} REVOKED")
        for key in api_key_list(environment=opts["env"]):
            self.stdout.write(
                f"{key.id:>5} {key.name:<24} {key.prefix + '…':<20} {key.environment_id:<8} {','.join(key.scopes):<28} "
                f"{_when(key.created_at, empty='-'):<16} {_when(key.last_used_at, empty='never'):<16} "
                f"{_when(key.revoked_at, empty='-')}"
            )

    def _create(self, opts) -> None:
        scopes = [s.strip() for s in opts["scopes"].split(",") if s.strip()]
        created = api_key_create(environment=opts["env"], name=opts["name"], scopes=scopes)
        key = created.key
        audit("api_key.create", environment=key.environment_id, target=f"{key.id} {key.prefix}…",
              data={"name": key.name, "scopes": key.scopes})
        self.stdout.write(f"created API key {key.id} {key.name} in {key.environment_id} "
                          f"with scopes {', '.join(key.scopes)}:")
        self.stdout.write(created.secret)
        self.stdout.write(self.style.WARNING("Store this key now: it is shown only this once and cannot be recovered."))

    def _revoke(self, opts) -> None:
        key = api_key_revoke(environment=opts["env"], key_id=opts["key_id"])
        audit("api_key.revoke", environment=key.environment_id, target=f"{key.id} {key.prefix}…",
              data={"name": key.name})
        self.stdout.write(f"revoked API key {key.id} {key.name} ({key.prefix}…) in {key.environment_id}; "
                          "calls with it are refused")
