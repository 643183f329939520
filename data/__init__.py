"""Bundled, curated datasets (installed as the package ``synthesis.bundled``)."""
