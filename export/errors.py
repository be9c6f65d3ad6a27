"""Error types. Each carries one message that names the thing that is wrong and the fix.

The CLI prints the message (never a traceback) and exits with the class's exit code.
"""


class ExportError(Exception):
    """Bad input or environment: config, weights, paths, names."""

    exit_code = 2


class GateError(ExportError):
    """A quality gate (delegation, parity) rejected an artifact."""

    exit_code = 3
