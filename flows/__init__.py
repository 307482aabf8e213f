"""Prefect flows. They orchestrate tasks and hold no media, storage or SQL logic."""
