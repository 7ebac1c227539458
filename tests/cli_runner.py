"""The CLI run in-process for tests, failing the test on any traceback."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from main import cli

runner = CliRunner()


def invoke(*args: str) -> Result:
    """Run `longread ARGS` in-process; an exception that escaped it (a traceback) fails."""
    result = runner.invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"unhandled {result.exception!r}:\n{result.output}")
    assert "Traceback" not in result.output
    return result
