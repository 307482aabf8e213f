"""Prefect tasks, one module per stage; each wraps a plain function that tests call directly."""
