"""Helpers shared by the tests: test registries, service fixtures, a fault server."""
