"""The durable engine: step replay, retry decisions and leases, in plain Python.

It reaches storage only through the ``RunStore`` interface (``stepwise.runs.engine.store``);
``stepwise.runs.store`` implements it with the Django ORM.
"""
