"""``manage.py chaos``: fault scenarios against real worker and scheduler processes, and their figures."""
