"""Prefect blocks: configuration only."""
