"""The ``gyre`` command line (Typer + Rich): one module per command group, wired in ``main``."""
