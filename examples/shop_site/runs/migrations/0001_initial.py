from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [("shop", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="Run",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("driver", models.CharField(max_length=100)),
                ("orders", models.ManyToManyField(related_name="delivery_runs", to="shop.order")),
            ],
        ),
    ]
