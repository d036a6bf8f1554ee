"""One Django group per role and environment (stepwise:<env>:<role>), carrying the role's permissions."""
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.models import Q

from stepwise.tasks.access import Role, role_group_name, role_permissions_q


def role_groups(apps, schema_editor):
    # Permissions are created after all migrations ran; create them now so the groups can hold them.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    Environment = apps.get_model("stepwise_tasks", "Environment")
    User = apps.get_model("auth", "User")
    for slug in Environment.objects.values_list("slug", flat=True):
        for role in Role:
            group, _ = Group.objects.get_or_create(name=role_group_name(slug, role))
            group.permissions.add(*Permission.objects.filter(role_permissions_q(role)))
        # Before roles, staff users and holders of runs.view_run could use the whole console: they keep
        # watching every environment as viewers, and an admin grants them more (manage.py roles grant).
        viewers = Group.objects.get(name=role_group_name(slug, Role.VIEWER))
        watchers = Q(is_staff=True) | Q(user_permissions__codename="view_run",
                                        user_permissions__content_type__app_label="stepwise_runs")
        for user in User.objects.filter(watchers, is_superuser=False).distinct():
            user.groups.add(viewers)


class Migration(migrations.Migration):

    dependencies = [
        ("stepwise_tasks", "0005_scopes_audit_environment_queues"),
        ("stepwise_runs", "0009_version_pinning"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(role_groups, migrations.RunPython.noop)]
