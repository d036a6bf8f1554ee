"""Packaging beside pyproject.toml: the apps' packages, with the top-level templates/ and static/ inside.

The repository keeps templates/ and static/ at its top; an installed Stepwise carries them as
``stepwise/templates`` and ``stepwise/static``, found through the ``stepwise`` app.
"""
from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["console*", "runs*", "tasks*", "stepwise*"]), "stepwise.templates",
              "stepwise.static"],
    package_dir={"stepwise.templates": "templates", "stepwise.static": "static"},
    package_data={"stepwise.templates": ["**/*"], "stepwise.static": ["**/*"]},
)
