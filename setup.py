"""Packaging beside pyproject.toml: the repository's folders become the ``stepwise`` package.

The repository keeps runs/, tasks/, console/, templates/ and static/ at its top; an installed Stepwise
carries them as ``stepwise.runs``, ``stepwise.tasks``, ``stepwise.console``, ``stepwise/templates`` and
``stepwise/static``, so none of its names can clash with a project's own ``runs`` or ``tasks``.
"""
from setuptools import find_packages, setup

FOLDERS = {"stepwise.runs": "runs", "stepwise.tasks": "tasks", "stepwise.console": "console"}


def packages_of(package: str, folder: str) -> list[str]:
    return [package, *(f"{package}.{sub}" for sub in find_packages(folder))]


setup(
    packages=["stepwise", *(p for package, folder in FOLDERS.items() for p in packages_of(package, folder)),
              "stepwise.templates", "stepwise.static"],
    package_dir={**FOLDERS, "stepwise.templates": "templates", "stepwise.static": "static"},
    package_data={"stepwise.templates": ["**/*"], "stepwise.static": ["**/*"]},
)
