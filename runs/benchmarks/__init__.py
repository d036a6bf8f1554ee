"""The benchmark behind ``manage.py bench``: worker processes, measured phases and the report."""
