"""The Django admin: roles are granted there by adding users to the ``stepwise:<env>:<role>`` groups; the audit
log can be read there but never changed."""
from __future__ import annotations

from django.contrib import admin

from stepwise.tasks.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["at", "environment", "actor", "via", "action", "target"]
    list_filter = ["environment", "via", "action"]
    search_fields = ["actor", "action", "target"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
