"""Prefect tasks: each one a real step of the run, talking to one outside system."""
