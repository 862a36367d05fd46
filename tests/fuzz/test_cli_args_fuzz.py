"""Random argument lists for every command: parsing ends in a Namespace, or in exit code 2
and one line on stderr naming the problem (exit code 0 and the usage for --help), never
in another exception.  Nothing is run: only the arguments are parsed and checked."""
import contextlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.cli import COMMANDS, build_parser
from node.cmd.arguments import address_argument
from node.types.errors import CommandError

EXAMPLES = settings(max_examples=300, deadline=None)
FLAGS = ["--home", "--genesis", "--steps", "--threads", "--gpu", "--json", "--export", "--no-mine",
         "--peer", "--listen", "--rpc", "--to", "--amount", "--fee", "--no-wait", "--help", "-h", "--", "-"]
# an argument holding a line break would be echoed as it is by argparse's own messages
ONE_LINE = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))
VALUES = (st.text(ONE_LINE, max_size=70) | st.integers(-2**70, 2**70).map(str)
          | st.sampled_from(["0", "1", "a" * 64, "A" * 63, "http://127.0.0.1:1", "ftp://x",
                             "127.0.0.1:26600", "[::1]:1", "host:0", "18446744073709551616",
                             "kernels", "show", "transfer"]))
ARGS = st.lists(st.sampled_from(FLAGS) | VALUES, max_size=8)
SUBCOMMANDS = [("keys", "show"), ("tx", "transfer"), ("tx", "bond"), ("tx", "unbond"), ("tx", "status"),
               ("bench", "kernels")]


def _parse(argv: list[str]) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            code = exc.code
        else:
            code = None
    if code is None:
        assert not err.getvalue()
    elif code == 0:
        assert out.getvalue().startswith("usage: uponode") and not err.getvalue()
    else:
        assert code == 2
        lines = err.getvalue().splitlines()
        assert len(lines) == 1 and lines[0].startswith("uponode") and ": error: " in lines[0], lines


@pytest.mark.parametrize("command", sorted(COMMANDS))
@EXAMPLES
@given(args=ARGS)
def test_command_arguments(command, args):
    _parse([command, *args])


@pytest.mark.parametrize("command,subcommand", SUBCOMMANDS)
@EXAMPLES
@given(args=ARGS)
def test_subcommand_arguments(command, subcommand, args):
    _parse([command, subcommand, *args])


@EXAMPLES
@given(args=ARGS)
def test_no_command(args):
    _parse(args)


@EXAMPLES
@given(text=st.text(max_size=300) | VALUES)
def test_host_port_arguments(text):
    try:
        assert address_argument(text, "--peer") == text
    except CommandError as exc:
        message = str(exc)
        assert message.startswith("--peer ") and "\n" not in message
