"""Stepwise's Python HTTP client for other services: ``from stepwise.client import Client``."""
