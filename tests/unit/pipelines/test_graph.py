"""Building the step graph from a pipeline function, and the errors found at definition time."""

from __future__ import annotations

import json

import pytest

import gyre
from gyre.definitions import Definitions, spec_hash
from gyre.errors import InvalidArgument
from gyre.meta import MetaStore
from gyre.meta.registry import list_registered
from gyre.pipelines import NewData, Pipeline, Schedule
from gyre.pipelines.graph import Graph, Node, Ref
from gyre.pipelines.steps import Step, code_hash
from gyre.project import apply, plan


@gyre.step
def load(rows: int) -> list[int]:
    return list(range(rows))


@gyre.step
def split(data: list[int]) -> tuple[list[int], list[int]]:
    half = len(data) // 2
    return data[:half], data[half:]


@gyre.step
def fit(train: list[int], lr: float = 0.1) -> dict[str, float]:
    return {"mean": sum(train) / len(train), "lr": lr}


@gyre.step
def combine(parts: list[dict[str, float]], weights: dict[str, float]) -> float:
    return sum(p["mean"] for p in parts)


def test_data_flow_defines_the_edges() -> None:
    @gyre.pipeline
    def train(rows: int = 10, lr: float = 0.1):
        a, b = split(load(rows))  # unpacking: split is annotated -> tuple[A, B]
        m1 = fit(a, lr)
        m2 = fit(b, lr=lr)
        return {"model": combine([m1, m2], weights={"x": m1["lr"]}), "first": a}

    g = train.graph
    assert g.order == ["load", "split", "fit", "fit_2", "combine"]  # a step called twice gets a suffix
    assert g.nodes["load"].inputs == ()
    assert g.nodes["split"].inputs == ("load",)
    assert g.nodes["fit"].args == (Ref("split", (0,)), 0.1)
    assert g.nodes["fit_2"].arguments == {"train": Ref("split", (1,)), "lr": 0.1}
    assert g.nodes["combine"].inputs == ("fit", "fit_2")  # through a list and a dict
    assert g.result == {"model": Ref("combine"), "first": Ref("split", (0,))}
    assert g.dependents("split") == ["fit", "fit_2"]


def test_a_step_outside_a_pipeline_is_the_plain_function() -> None:
    assert load(3) == [0, 1, 2]
    assert isinstance(load, Step) and load.name == "load"


def test_params_without_default_are_placeholders_until_a_run() -> None:
    @gyre.pipeline
    def needs(rows: int):
        return load(rows)

    assert needs.graph.order == ["load"]
    assert needs.params["rows"].required
    assert needs.trace({"rows": 5}).nodes["load"].args == (5,)
    assert needs.spec()["steps"][0]["inputs"] == {"rows": {"param": "rows"}}


def test_calling_a_step_with_missing_inputs_names_the_step() -> None:
    with pytest.raises(
        InvalidArgument, match=r"Pipeline 'broken': step 'fit' is called with inputs it cannot"
    ):

        @gyre.pipeline(name="broken")
        def _broken(rows: int = 3):
            return fit()  # train is missing


def test_an_output_from_another_pipeline_is_a_missing_input() -> None:
    kept = {}

    @gyre.pipeline
    def first(rows: int = 3):
        kept["out"] = load(rows)
        return kept["out"]

    with pytest.raises(
        InvalidArgument, match=r"step 'fit' reads <output of step 'load'>, which is not a step of this"
    ):

        @gyre.pipeline
        def second():
            return fit(kept["out"])


def test_using_an_output_in_python_logic_is_explained() -> None:
    with pytest.raises(InvalidArgument, match="has no value while the pipeline's graph is built"):

        @gyre.pipeline
        def logic(rows: int = 3):
            data = load(rows)
            if data:
                return fit(data)
            return None

    with pytest.raises(InvalidArgument, match="Give the parameter a default"):

        @gyre.pipeline
        def param_logic(rows: int):
            if rows > 3:
                return load(rows)
            return load(3)


def test_unpacking_needs_a_declared_arity() -> None:
    @gyre.step
    def pair(x: int):
        return x, x

    with pytest.raises(InvalidArgument, match="does not say how many values it returns"):

        @gyre.pipeline
        def unpack():
            a, _b = pair(1)
            return a

    @gyre.step(outputs=2)
    def declared(x: int):
        return x, x

    @gyre.pipeline
    def fine():
        _a, _b = declared(1)
        return pair(1)[0]

    assert fine.graph.order == ["declared", "pair"]


def test_a_pipeline_without_steps_or_with_star_args_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="calls no steps"):

        @gyre.pipeline
        def empty():
            return 1

    with pytest.raises(InvalidArgument, match=r"takes \*rest"):

        @gyre.pipeline
        def star(*rest: int):
            return load(1)


def test_graph_finds_cycles_and_missing_inputs_naming_the_steps() -> None:
    def node(name: str, *inputs: str) -> Node:
        refs = tuple(Ref(i) for i in inputs)
        return Node(name, load, refs, {}, {}, inputs)

    with pytest.raises(InvalidArgument, match=r"has a cycle: 'b' -> 'c' -> 'b'"):
        Graph("p", {"a": node("a"), "b": node("b", "a", "c"), "c": node("c", "b")})
    with pytest.raises(InvalidArgument, match=r"missing inputs: step 'b' reads the output of 'ghost'"):
        Graph("p", {"a": node("a"), "b": node("b", "ghost")})
    with pytest.raises(InvalidArgument, match=r"the result reads the output of 'nope'"):
        Graph("p", {"a": node("a")}, result=Ref("nope"))
    assert Graph("p", {"b": node("b", "a"), "a": node("a")}).order == ["a", "b"]


def test_step_options_are_checked() -> None:
    for bad in [{"retries": -1}, {"timeout_s": 0}, {"backoff_s": -1}, {"cpus": 0}, {"memory": 1.5}]:
        with pytest.raises(InvalidArgument):
            gyre.step(**bad)(lambda: None)  # type: ignore[arg-type]


def test_code_hash_ignores_decorators_but_not_the_body() -> None:
    def a(x: int) -> int:
        return x + 1

    def b(x: int) -> int:
        return x + 2

    assert code_hash(a) != code_hash(b)
    assert gyre.step(retries=3)(a).code_hash == gyre.step(a).code_hash == code_hash(a)


def test_spec_is_json_and_stable() -> None:
    def make() -> Pipeline:
        @gyre.pipeline(
            name="fraud",
            schedule="0 3 * * *",
            triggers=[NewData("payments", min_new_rows=100, min_interval="1h")],
            gates=[gyre.gates.MetricThreshold("auc", ">=", 0.8), gyre.gates.DataCheck(min_rows=10)],
            concurrency="queue",
            label="is_fraud",
        )
        def fraud(rows: int = 10, lr: float = 0.1):
            """Retrain the fraud model."""
            a, _b = split(load(rows))
            return {"model": fit(a, lr)}

        return fraud

    p1, p2 = make(), make()
    spec = p1.spec()
    assert json.loads(json.dumps(spec)) == spec
    assert spec_hash(spec) == spec_hash(p2.spec())
    assert spec["triggers"] == [
        {"kind": "schedule", "cron": "0 3 * * *"},
        {"kind": "new_data", "dataset": "payments", "min_new_rows": 100, "min_interval": "1h"},
    ]
    assert spec["params"] == {"rows": {"type": "int", "default": 10}, "lr": {"type": "float", "default": 0.1}}
    assert [s["name"] for s in spec["steps"]] == ["load", "split", "fit"]
    assert spec["steps"][2]["inputs"] == {"train": {"step": "split[0]"}, "lr": 0.1}
    assert spec["description"] == "Retrain the fraud model."
    assert p1.references() == [("dataset", "payments")]
    assert isinstance(p1.triggers[0], Schedule)


def test_bad_declarations_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="Concurrency policy 'parallel'"):
        gyre.pipeline(name="p", concurrency="parallel")(lambda: load(1))
    with pytest.raises(InvalidArgument, match="is not a gate"):
        gyre.pipeline(name="p", gates=["auc > 0.8"])(lambda: load(1))  # type: ignore[list-item]
    with pytest.raises(InvalidArgument, match="is not a trigger"):
        gyre.pipeline(name="p", triggers=["daily"])(lambda: load(1))  # type: ignore[list-item]
    with pytest.raises(InvalidArgument, match="Cron expression"):
        gyre.pipeline(name="p", schedule="every day")(lambda: load(1))


def test_gyre_apply_registers_a_pipeline(meta: MetaStore) -> None:
    @gyre.pipeline(name="nightly", schedule="@daily")
    def nightly(rows: int = 5):
        return load(rows)

    defs = Definitions([nightly])
    assert [(c.action, c.kind, c.name) for c in plan(meta, defs).changes] == [
        ("create", "pipeline", "nightly")
    ]
    apply(meta, defs)
    (registered,) = list_registered(meta, "pipeline")
    assert registered.spec["steps"][0]["name"] == "load"
    assert not plan(meta, defs)


def test_apply_checks_a_new_data_trigger_dataset(meta: MetaStore) -> None:
    @gyre.pipeline(name="on_data", triggers=[NewData("nowhere")])
    def on_data():
        return load(1)

    with pytest.raises(InvalidArgument, match="refers to dataset 'nowhere'"):
        plan(meta, Definitions([on_data]))
