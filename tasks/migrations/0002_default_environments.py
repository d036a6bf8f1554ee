from django.db import migrations


def create_defaults(apps, schema_editor):
    Environment = apps.get_model("stepwise_tasks", "Environment")
    for slug, name in (("dev", "Development"), ("staging", "Staging"), ("prod", "Production")):
        Environment.objects.get_or_create(slug=slug, defaults={"name": name})


class Migration(migrations.Migration):
    dependencies = [("stepwise_tasks", "0001_initial")]
    operations = [migrations.RunPython(create_defaults, migrations.RunPython.noop)]
