"""The shop's own delivery runs: an app named ``runs`` with a model ``Run``, beside Stepwise's."""
from django.db import models


class Run(models.Model):
    driver = models.CharField(max_length=100)
    orders = models.ManyToManyField("shop.Order", related_name="delivery_runs")
