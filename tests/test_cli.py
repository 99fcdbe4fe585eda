"""The CLI as a user meets it: exit codes, one-line errors, no tracebacks, nothing half-written."""

import subprocess
import sys

import pytest

from overfeat.cli import main
from tests.conftest import TEST_WIDTH, needs_export

pytestmark = needs_export

BASE = ["export", "--arch", "accurate", "--random-init", "--num-classes", "3", "--width", str(TEST_WIDTH), "--quiet"]


def _error(capsys, argv):
    """Run the CLI expecting a user error; return its one-line message."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "error:" in last
    return last


@pytest.fixture
def checkpoint(tmp_path):
    import torch

    from overfeat.export import build_model

    path = tmp_path / "ckpt.pt"
    torch.save(build_model("accurate", 3, ("cls",), TEST_WIDTH).state_dict(), path)
    return path


def test_bad_inputs_are_one_line_errors(tmp_path, capsys, checkpoint):
    out = ["--output", str(tmp_path / "m.onnx")]
    classes = tmp_path / "classes.txt"
    classes.write_text("a\nb\n")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(checkpoint.read_bytes()[:100])
    not_state = tmp_path / "notstate.pt"
    not_state.write_bytes(b"just text, not a checkpoint")
    base = [a for a in BASE if a != "--random-init"]
    cases = {
        "invalid choice: 'huge'": ["export", "--arch", "huge", "--random-init", *out],
        "--num-classes: got '0', expected a positive integer": [*BASE, "--num-classes", "0", *out],
        "--num-classes: got '-2', expected a positive integer": [*BASE, "--num-classes=-2", *out],
        "unknown head 'seg'": [*BASE, "--heads", "cls,seg", *out],
        "has 2 names, expected 3": [*BASE, "--classes", str(classes), *out],
        "does not exist or is not a file": [*base, "--checkpoint", str(tmp_path / "nope.pt"), *out],
        "could not be read": [*base, "--checkpoint", str(truncated), *out],
        "could not be read (": [*base, "--checkpoint", str(not_state), *out],
        "'classifier.4.weight' has shape [3, 256, 1, 1], the model expects [5, 256, 1, 1]": [
            *base,
            "--checkpoint",
            str(checkpoint),
            *out,
            "--num-classes",
            "5",
        ],
        "lacks tensor 'regressor.0.weight'": [*base, "--checkpoint", str(checkpoint), "--heads", "cls,loc", *out],
        "is not a directory, so the folder": [*BASE, "--output", str(classes / "m.onnx")],
        "check size 200x400 is smaller than the model's 221x221 window": [*BASE, "--check-sizes", "200x400", *out],
        "one of the arguments --checkpoint --random-init is required": ["export", "--arch", "fast", *out],
    }
    for expected, argv in cases.items():
        assert expected in _error(capsys, argv), (expected, argv)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "classes.txt", "notstate.pt", "truncated.pt"]


def test_export_then_inspect_from_the_shell(tmp_path, checkpoint):
    model = tmp_path / "m.onnx"
    classes = tmp_path / "classes.txt"
    classes.write_text("cat\ndog\nbird\n")
    cli = [sys.executable, "-m", "overfeat.cli"]
    done = subprocess.run(
        [
            *cli,
            *[a for a in BASE if a != "--random-init"],
            "--checkpoint",
            str(checkpoint),
            "--classes",
            str(classes),
            "--output",
            str(model),
            "--check-sizes",
            "300x333",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "parity PASS" in done.stdout and "300x333" in done.stdout
    assert (tmp_path / "m.parity.json").is_file()
    shown = subprocess.run([*cli, "inspect", str(model)], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "cat, dog, bird" in shown.stdout and "281x317  ->   6 x 9" in shown.stdout
    bad = subprocess.run([*cli, "inspect", str(checkpoint)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not a readable ONNX file" in bad.stderr and "Traceback" not in bad.stderr


def test_every_parameter_a_library_message_names_is_a_flag_of_the_command_line():
    """The library's messages name parameters in backquotes; as_flags, the one mapping, must
    turn each into a flag some verb has, so that no CLI message names a parameter the CLI lacks."""
    import argparse
    import ast
    import re
    from pathlib import Path

    from overfeat.cli import build_parser
    from overfeat.cli.args import _PARAMETER, as_flags

    flags = set()
    parsers = [build_parser()]
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:
            flags.update(o for o in action.option_strings if o.startswith("--"))
            if isinstance(action, argparse._SubParsersAction):
                parsers += list(action.choices.values())
    root = Path(__file__).resolve().parents[1]
    named = {}
    for folder in ("overfeat", "runtime", "datasets", "export", "training", "calibration", "engines", "bench"):
        for path in (root / folder).rglob("*.py"):
            if "cli" in path.relative_to(root).parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):  # the strings of raised errors and output-path checks
                call = node.exc if isinstance(node, ast.Raise) else node
                if isinstance(call, ast.Call) and (
                    isinstance(node, ast.Raise) or getattr(call.func, "id", "") == "check_output_path"
                ):
                    for text in (c.value for c in ast.walk(call) if isinstance(c, ast.Constant) and isinstance(c.value, str)):
                        for match in re.finditer(r"(?<!`)" + _PARAMETER.pattern + r"(?!`)", text):
                            named.setdefault(match.group(0), str(path.relative_to(root)))
    assert len(named) > 20, "the scan found the library's messages"
    missing = {token: where for token, where in named.items() if as_flags(token) not in flags}
    assert not missing, f"parameters whose flag the CLI lacks: {missing}"
