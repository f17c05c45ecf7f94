"""The command line as a user meets it: options after ``serve``, and bad arguments exit 2 with a message."""

import subprocess
import sys

import pytest

from valkyrie.cli import _parser


def run(*args):
    proc = subprocess.run([sys.executable, "-m", "valkyrie.cli", *args], capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stderr


def test_server_options_work_before_and_after_serve():
    before = _parser().parse_args(["--port", "1", "--config", "a.toml", "serve"])
    after = _parser().parse_args(["serve", "--port", "1", "--config", "a.toml"])
    plain = _parser().parse_args(["--port", "1", "--config", "a.toml"])
    for args in (before, after, plain):
        assert (args.port, args.config) == (1, "a.toml")


@pytest.mark.parametrize("argv, message", [
    (["lookup", "1.1.1.1", "--url", "notaurl"], "not a URL"),
    (["lookup", "1.1.1.1", "--url", "http://127.0.0.1:1"], "no server at http://127.0.0.1:1"),
    (["routes", "restore", "/nonexistent/dump.json"], "/nonexistent/dump.json"),
    (["--config", "/nonexistent/valkyrie.toml"], "/nonexistent/valkyrie.toml"),
    (["serve", "--port", "notanumber"], "invalid int value"),
])
def test_bad_arguments_exit_2_naming_the_problem(argv, message):
    code, err = run(*argv)
    assert code == 2, err
    assert message in err and "Traceback" not in err
