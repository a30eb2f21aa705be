"""The embedded engine hands regorus only the input paths a policy reads, and decides the same."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.policy import EmbeddedEngine, PolicySource
from gatekeeper.policy.embedded import compile_source
from gatekeeper.policy.projection import input_paths, project, projection_tree, projector
from tests.policy.conftest import make_input
from tests.policy.test_conformance import PACK


def paths(rules: str) -> list[str] | None:
    found = input_paths({"a.rego": "package a\n" + rules + "\n"})
    return None if found is None else [".".join(p) for p in found]


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ("x := input.a.b", ["a.b"]),
        ('x := input["a"].b', ["a.b"]),
        ("x := input.a[k].c if k := 1", ["a"]),
        ("x := data.t[input.k]", ["k"]),
        ("x := input.a[input.k]", ["a", "k"]),
        ('x := object.get(input.a, "b", 0)', ["a.b"]),
        ('x := object.get(input.a, ["b", "c"], 0)', ["a.b.c"]),
        ('x := object.get(input.a, ["b", data.w, "c"], 0)', ["a.b"]),
        ("x := object.get(input.a, data.k, 0)", ["a"]),
        ("x := count(input.a)", ["a"]),
        ("x if { some y in input.a.ys; y > 1 }", ["a.ys"]),
        ("import input.subject as s\nx := s.tier", ["subject"]),
        ("x := input.a.b\ny := input.a", ["a", "a.b"]),
    ],
)
def test_the_paths_a_policy_reads_are_found(rules: str, expected: list[str]) -> None:
    assert paths(rules) == expected


DATA = {"cfg": {"window": "1h", "heavy": {"share_of": "exposed_share"}, "n": 3}}


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ('x := object.get(input.a, ["b", data.cfg.window, "c"], 0)', ["a.b.1h.c"]),
        ('x := object.get(input.a, ["b", object.get(data.cfg.heavy, "share_of", "r")], 0)',
         ["a.b.exposed_share"]),
        ("x := object.get(input.a, data.cfg.window, 0)", ["a.1h"]),
        ('x := object.get(input.a, concat("_", [data.cfg.window, "x"]), 0)', ["a.1h_x"]),
        ("x := object.get(input, data.cfg.window, 0)", ["1h"]),
        # Not from the data alone, or not a string: the path stops before it.
        ('x := object.get(input.a, ["b", data.cfg.n], 0)', ["a.b"]),
        ('x := object.get(input.a, ["b", data.cfg.missing], 0)', ["a.b"]),
        ('x := object.get(input.a, ["b", data.a.rule], 0)\nrule := input.k', ["a.b", "k"]),
        ('x := object.get(input.a, ["b", c.window], 0) if c := data.cfg', ["a.b"]),
        ('import data.cfg as c\nx := object.get(input.a, ["b", c.window], 0)', ["a.b"]),
        ('x := object.get(input.a, ["b", object.get(data.cfg, input.k, "1h")], 0)', ["a.b", "k"]),
        ('x := object.get(input.a, ["b", f(data.cfg.window)], 0)\nf(w) := input.k', ["a.b", "k"]),
        ('x := object.get(input.a, [[data.cfg.window]], 0)', ["a"]),
    ],
)  # fmt: skip
def test_keys_computed_from_the_data_alone_are_read_from_it(
    rules: str, expected: list[str]
) -> None:
    found = input_paths({"a.rego": "package a\n" + rules + "\n"}, data=DATA)
    assert found is not None and [".".join(p) for p in found] == expected


@pytest.mark.parametrize(
    "rules",
    [
        "x := input",
        "x := input[k] if k := data.key",
        "x if { some k, _ in input; k == 1 }",
        "x := object.get(input, data.k, 0)",
        "x if { y with input.a as 1 }\ny := input.a",
        "x := f(input)\nf(v) := v.a",
    ],
)
def test_a_policy_that_reads_the_input_as_a_whole_gets_all_of_it(rules: str) -> None:
    assert paths(rules) is None


def test_projection_keeps_what_is_read_and_nothing_else() -> None:
    tree = projection_tree([("a", "b"), ("a",), ("c", "d"), ("e", "f")])
    doc = {"a": {"b": 1, "z": 2}, "c": {"d": [1], "x": 3}, "e": "text", "g": 4}
    assert project(doc, tree) == {"a": {"b": 1, "z": 2}, "c": {"d": [1]}, "e": "text"}
    assert project({}, tree) == {}  # missing stays missing


_names = st.one_of(st.sampled_from(["a", "b", "c"]), st.text(max_size=4))
_paths = st.lists(st.lists(_names, min_size=1, max_size=4).map(tuple), min_size=1, max_size=6)
_docs = st.recursive(
    st.one_of(st.none(), st.integers(), st.text(max_size=3)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=2), st.dictionaries(_names, inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(paths=_paths, doc=st.dictionaries(_names, _docs, max_size=4))
def test_the_compiled_projection_is_the_projection(
    paths: list[tuple[str, ...]], doc: dict[str, Any]
) -> None:
    tree = projection_tree(paths)
    assert projector(tree)(doc) == project(doc, tree)


def test_a_deep_or_oddly_named_path_compiles() -> None:
    deep = tuple(f"k{i}" for i in range(60))
    odd = ("it's", 'a "quote"\n', "\\", "{x}")
    tree = projection_tree([deep, odd])
    doc: dict[str, Any] = {"kept": 1}
    node = doc
    for field in deep:
        node[field] = {"other": 0}
        node = node[field]
    node["leaf"] = 1
    doc[odd[0]] = {odd[1]: {odd[2]: {odd[3]: 2, "x": 3}}}
    assert projector(tree)(doc) == project(doc, tree)
    assert "kept" not in projector(tree)(doc)


def test_the_default_pack_gets_a_fraction_of_the_input() -> None:
    engine = EmbeddedEngine(PACK, check=False)
    read = engine.status()["input_paths"]
    assert "subject.tier" in read and "signals.cot_elicitation" in read
    assert "request.path" not in read and "signals" not in read
    doc = make_input("free", "email", "US")
    assert len(engine._active.input_json(doc)) < len(orjson.dumps(doc)) / 2


_extra = st.dictionaries(
    st.sampled_from(["zz", "path", "extra", "id"]),
    st.one_of(st.integers(-(2**31), 2**31), st.text(max_size=5), st.none()),
    max_size=3,
)


_windows = st.dictionaries(st.sampled_from(["10m", "1h", "24h"]), st.integers(0, 3000))
_ages = st.dictionaries(st.sampled_from(["7", "30", "90"]), st.integers(0, 40))
_share = st.floats(0, 1)


@settings(max_examples=200, deadline=None)
@given(
    tier=st.sampled_from(["free", "pro", "enterprise", "unknown"]),
    kyc=st.sampled_from(["none", "email", "government_id", "business"]),
    country=st.sampled_from(["US", "KP", "", None]),
    signals=st.one_of(
        st.just({}),
        st.fixed_dictionaries(
            {
                "available": st.booleans(),
                "cot_elicitation": st.one_of(st.floats(0, 1), st.text(max_size=3)),
                "template_repetition": st.floats(0, 1),
                "subject": st.one_of(
                    st.none(),
                    st.fixed_dictionaries(
                        {
                            "template_count": st.integers(0, 12),
                            "requests": st.one_of(_extra, _windows),
                            "exposed_share": _share,
                            "reasoning_share": _share,
                            "repeat_share": _share,
                        }
                    ),
                ),
                "cluster": st.fixed_dictionaries(
                    {
                        "size": st.integers(1, 80),
                        "template_count": st.integers(0, 12),
                        "requests": _windows,
                    }
                ),
                "family": st.fixed_dictionaries({"subjects_by_age": _ages}),
                "behaviour": st.fixed_dictionaries(
                    {"size": st.integers(1, 80), "subjects_by_age": _ages}
                ),
            }
        ),
    ),
    extra=_extra,
    network_extra=_extra,
)
def test_the_projected_input_decides_as_the_whole_one(
    tier: str,
    kyc: str,
    country: str | None,
    signals: dict[str, Any],
    extra: dict[str, Any],
    network_extra: dict[str, Any],
) -> None:
    doc = make_input(tier, kyc, country)
    doc["signals"] = signals
    doc.update(extra)
    doc["network"].update(network_extra)
    whole = orjson.dumps(doc).decode()
    INTERPRETER.set_input_json(whole)
    expected = orjson.loads(INTERPRETER.eval_rule_as_json("data.gatekeeper.decision"))
    assert ENGINE.evaluate(doc) == expected


ENGINE = EmbeddedEngine(PACK, check=False)
INTERPRETER = compile_source(PACK, tests=False)


@pytest.mark.parametrize(
    "signals",
    [
        # Reasoning-heavy over the configured window and share, in a large cluster: watch.
        {"subject": {"requests": {"1h": 25, "10m": 1}, "exposed_share": 0.95},
         "cluster": {"size": 20}},
        {"subject": {"requests": {"10m": 25}, "exposed_share": 0.95}, "cluster": {"size": 20}},
        # Templated by repeats over the window; a heavy cluster over the window.
        {"subject": {"requests": {"1h": 9}, "repeat_share": 0.9},
         "cluster": {"size": 2, "requests": {"1h": 5000}}},
        {"subject": {"requests": {"24h": 9}, "repeat_share": 0.9},
         "cluster": {"size": 2, "requests": {"24h": 5000}}},
        # Young subjects of a prompt family, in the configured age band.
        {"family": {"subjects_by_age": {"30": 40, "90": 0}}, "cluster": {"size": 20},
         "template_repetition": 0.9, "subject": {"template_count": 9}},
        {"family": {"subjects_by_age": {"90": 40}}, "cluster": {"size": 20},
         "template_repetition": 0.9, "subject": {"template_count": 9}},
    ],
)  # fmt: skip
def test_signals_under_configured_keys_decide_as_the_whole_input(
    signals: dict[str, Any],
) -> None:
    # The pack reads these under keys from its data (window, share_of, age_band): the
    # projection reads the keys from the data, and must keep exactly those fields.
    doc = make_input("pro", "email", "US")
    doc["signals"] = {"available": True, **signals}
    INTERPRETER.set_input_json(orjson.dumps(doc).decode())
    expected = orjson.loads(INTERPRETER.eval_rule_as_json("data.gatekeeper.decision"))
    assert ENGINE.evaluate(doc) == expected


async def test_a_new_revision_gets_the_input_paths_it_reads() -> None:
    first = PolicySource("1", {"a.rego": "package a\nx := input.a"}, {})
    engine = EmbeddedEngine(first, "data.a.x", check=False)
    assert engine.status()["input_paths"] == ["a"]
    assert engine.evaluate({"a": 1, "b": 2}) == 1
    await engine.activate(PolicySource("2", {"a.rego": "package a\nx := input.b"}, {}))
    assert engine.status()["input_paths"] == ["b"]
    assert engine.status()["evaluator"] == "vm"  # prepared on a worker thread, used here
    assert engine.evaluate({"a": 1, "b": 2}) == 2
