"""Every entry point's `--help` exits 0 with a description, so a help text can never crash again (issue 17)."""

import os
import subprocess
import sys

import pytest

from lsn.cli import build_parser

SUBCOMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)
MODULES = ["lsn.train", "lsn.translate", "lsn.evaluate", "lsn.demo", "lsn.demo.export", "lsn.harness"]
ENTRY_POINTS = [["lsn.cli"], *(["lsn.cli", c] for c in SUBCOMMANDS), *([m] for m in MODULES)]


@pytest.fixture(scope="module")
def helps():
    """`python -m X --help` for every entry point, run side by side: {entry point: (exit code, stdout, stderr)}."""
    env = os.environ | {"HF_HUB_OFFLINE": "1", "COLUMNS": "120"}
    running = {
        " ".join(e): subprocess.Popen(
            [sys.executable, "-m", *e, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for e in ENTRY_POINTS
    }
    return {name: (p.wait(timeout=600), *p.communicate()) for name, p in running.items()}


def test_subcommands_found():
    assert {"record", "select", "show", "nll-matrix", "generate"} <= set(SUBCOMMANDS)


@pytest.mark.parametrize("entry", [" ".join(e) for e in ENTRY_POINTS])
def test_help_exits_zero_with_a_description(entry, helps):
    code, out, err = helps[entry]
    assert code == 0, err
    assert out.startswith("usage:"), out
    # A description: some prose besides the usage block and the option lists.
    paragraphs = [p.strip() for p in out.split("\n\n")]
    prose = [p for p in paragraphs[1:] if p and not p.startswith(("usage:", "-", "options:")) and ":" not in p[:1]]
    assert any(len(p.split()) >= 3 for p in prose), out


def test_select_help_lists_every_method(helps):
    from lsn.selection import selection_methods

    out = helps["lsn.cli select"][1]
    for name in selection_methods():
        assert f"--method {name}" in out
