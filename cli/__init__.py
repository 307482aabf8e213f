"""The `factory` command line: the top floor, which builds resources and calls flows."""
