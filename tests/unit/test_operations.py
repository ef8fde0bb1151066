"""
Custom operations, tested the way pyinfra tests its own (``tests/operations/<op>/*.json`` and
``tests/test_operations.py`` in pyinfra): arguments and facts in, commands or the no-op message out.
Each fixture is ``tests/unit/operations/<operation>/<case>.json``; the folders are discovered, and
every operation of ``pyinfra_mastodon.operations`` must have one.

Fixture keys:

+ ``kwargs``: the operation's arguments. ``after`` / ``reuse_plan`` are lists of
  ``{"changed": bool}`` (earlier operations, done or planned); ``memo`` is the plan a
  ``ComposePlanMemo`` holds (``null``: an empty memo);
+ ``facts``: fact class name -> value, or -> ``{"arg=value,...": value}`` when the operation
  reads the fact with arguments (``_stdin`` left out). A fact the operation reads that the fixture
  does not give fails the test;
+ ``fact_stdin``: fact class name -> what the operation must send it on stdin, withheld from logs
  (``envfile.Withheld``, whose ``repr`` is ``<withheld>``);
+ ``stage``: ``"execute"`` (default) or ``"prepare"``; ``diff``: true for ``--diff``;
+ ``commands``: the commands, in order: a string (exact), ``{"script": NAME, "args": [...]}``
  for a script of ``sh/`` (compared with ``commands.script``; ``"before"``/``"after"``: what the
  command has around it, e.g. a pipe into it), optionally with ``"stdin"``
  (exact) or ``"stdin_regex"``;
+ ``noop_description``: the no-op message (then ``commands`` is empty);
+ ``exception``: ``{"name": ..., "message_contains": ...}``;
+ ``logs_contain``: strings that the operation's ``host.log`` messages must contain;
+ ``memo_after``: the plan the memo holds afterwards.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pyinfra.api.state import StateStage
from pyinfra.context import ctx_host, ctx_state

from pyinfra_mastodon import commands, operations

FIXTURES = Path(__file__).parent / "operations"


def _operation_names() -> list[str]:
    return sorted(
        name
        for name, obj in vars(operations).items()
        if callable(obj) and hasattr(obj, "_inner") and getattr(obj, "__module__", "") == operations.__name__
    )


def _fixtures() -> list:
    return [pytest.param(path, id=f"{path.parent.name}/{path.stem}") for path in sorted(FIXTURES.glob("*/*.json"))]


class FakeMeta:
    """An earlier operation: done (``is_complete``) and changed or not."""

    def __init__(self, changed: bool):
        self.changed = changed
        self.will_change = changed

    def is_complete(self) -> bool:
        return True

    def did_change(self) -> bool:
        return self.changed


class FakeConfig:
    def __init__(self, diff: bool):
        self.DIFF = diff


class FakeState:
    def __init__(self, stage: str, diff: bool):
        self.current_stage = {"execute": StateStage.Execute, "prepare": StateStage.Prepare}[stage]
        self.config = FakeConfig(diff)


def _args_key(args: tuple, kwargs: dict) -> str:
    parts = [json.dumps(a) if not isinstance(a, str) else a for a in args]
    parts += [f"{k}={v}" for k, v in sorted(kwargs.items()) if not k.startswith("_")]
    return ",".join(parts)


class FakeHost:
    name = "fixture-host"

    def __init__(self, facts: dict):
        self.facts = facts
        self.noops: list[str] = []
        self.logs: list[str] = []
        self.read: list[str] = []
        self.stdin: dict[str, Any] = {}

    def get_fact(self, cls, *args, **kwargs):
        name = cls.__name__
        assert name in self.facts, f"the operation reads {name}({_args_key(args, kwargs)}), not in the fixture"
        value = self.facts[name]
        key = _args_key(args, kwargs)
        if isinstance(value, dict) and value and all("=" in k for k in value):
            assert key in value, f"{name} read with {key!r}; the fixture has {sorted(value)}"
            value = value[key]
        self.read.append(f"{name}({key})")
        if "_stdin" in kwargs:
            self.stdin[name] = kwargs["_stdin"]
        return value

    def noop(self, description: str) -> None:
        self.noops.append(description)

    def log(self, message: str, *args, **kwargs) -> None:
        self.logs.append(message)


def _kwargs(raw: dict) -> dict:
    out = dict(raw)
    for key in ("after", "reuse_plan"):
        if key in out and out[key] is not None:
            out[key] = [FakeMeta(item["changed"]) for item in out[key]]
    if "memo" in out:
        memo = operations.ComposePlanMemo()
        if out["memo"] is not None:
            memo.keep(out["memo"])
        out["memo"] = memo
    return out


def _expected(entry) -> tuple[str, dict]:
    if isinstance(entry, str):
        return entry, {}
    command = (
        entry.get("before", "") + commands.script(entry["script"], *entry.get("args", [])) + entry.get("after", "")
    )
    return command, {k: entry[k] for k in ("stdin", "stdin_regex") if k in entry}


def test_every_operation_has_fixtures():
    have = {path.parent.name for path in FIXTURES.glob("*/*.json")}
    assert _operation_names(), "no operations found"
    assert set(_operation_names()) <= have, f"without fixtures: {sorted(set(_operation_names()) - have)}"
    assert have <= set(_operation_names()), f"fixtures of no operation: {sorted(have - set(_operation_names()))}"


@pytest.mark.parametrize("path", _fixtures())
def test_operation_fixture(path: Path):
    data = json.loads(path.read_text())
    op = getattr(operations, path.parent.name)
    fake_host = FakeHost(data.get("facts", {}))
    fake_state = FakeState(data.get("stage", "execute"), data.get("diff", False))
    kwargs = _kwargs(data.get("kwargs", {}))
    inspect.signature(op._inner).bind(**kwargs)  # a fixture with a wrong argument fails here

    with ctx_state.use(fake_state), ctx_host.use(fake_host):
        if "exception" in data:
            with pytest.raises(Exception) as info:
                list(op._inner(**kwargs))
            assert type(info.value).__name__ == data["exception"]["name"]
            assert data["exception"]["message_contains"] in str(info.value)
            return
        yielded = list(op._inner(**kwargs))

    expected = [_expected(entry) for entry in data.get("commands", [])]
    assert [str(c) for c in yielded] == [command for command, _ in expected]
    for command, (_, checks) in zip(yielded, expected, strict=True):
        stdin = getattr(command, "connector_arguments", {}).get("_stdin")
        if "stdin" in checks:
            assert stdin == checks["stdin"]
        if "stdin_regex" in checks:
            assert stdin is not None and re.fullmatch(checks["stdin_regex"], stdin, re.S), stdin
    if "noop_description" in data:
        assert not yielded
        assert fake_host.noops == [data["noop_description"]]
    else:
        assert yielded, "a fixture without commands must give its noop_description"
        assert not fake_host.noops
    for part in data.get("logs_contain", []):
        assert any(part in message for message in fake_host.logs), (part, fake_host.logs)
    for name, expected_stdin in data.get("fact_stdin", {}).items():
        sent = fake_host.stdin[name]
        assert repr(sent) == str(sent) == "<withheld>", f"{name}'s stdin would show in -vv output"
        assert "".join(sent.readlines()) == expected_stdin
    if "memo_after" in data:
        assert kwargs["memo"].take() == data["memo_after"]
