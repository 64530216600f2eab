"""The command line: a thin layer over the Python API (``jaxstyle.api``); the entry point is
:func:`jaxstyle.cli.main.main`."""
