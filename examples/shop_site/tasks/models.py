"""The shop's to-do list for its warehouse: an app named ``tasks`` with a model ``Task``, beside Stepwise's."""
from django.db import models


class Task(models.Model):
    title = models.CharField(max_length=200)
    done = models.BooleanField(default=False)
