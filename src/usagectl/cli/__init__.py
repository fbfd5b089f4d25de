"""The command line: a thin layer over the core. Only modules here import Typer."""
