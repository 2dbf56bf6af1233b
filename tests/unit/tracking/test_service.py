import math

import pytest
from sqlalchemy import func, select

from gyre.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from gyre.meta import MetaStore
from gyre.meta.schema import AuditRecord, Event
from gyre.tracking import service as t


def test_experiments(meta: MetaStore) -> None:
    exp = t.create_experiment(meta, "fraud", "catch it")
    assert t.get_experiment(meta, "fraud") == exp
    assert t.get_experiment(meta, exp.id) == exp
    with pytest.raises(AlreadyExists, match="Experiment 'fraud' already exists"):
        t.create_experiment(meta, "fraud")
    with pytest.raises(NotFound):
        t.get_experiment(meta, "nope")
    assert [e.name for e in t.list_experiments(meta)] == ["fraud"]


def test_run_lifecycle_and_provenance(meta: MetaStore) -> None:
    env = {
        "git_commit": "abc",
        "git_diff_hash": "d1",
        "python_version": "3.11.7",
        "packages_hash": "p",
        "host": "h",
    }
    run = t.create_run(meta, "exp", name="first", tags={"team": "risk"}, environment=env)
    assert (run.status, run.name, run.experiment, run.tags) == ("RUNNING", "first", "exp", {"team": "risk"})
    assert (run.git_commit, run.git_diff_hash, run.host) == ("abc", "d1", "h")
    assert run.start_time.tzinfo is not None and run.end_time is None
    done = t.finish_run(meta, run.id)
    assert done.status == "FINISHED" and done.end_time >= done.start_time
    with pytest.raises(Conflict, match="already ended"):
        t.finish_run(meta, run.id, "FAILED")
    with pytest.raises(Conflict, match="FINISHED"):
        t.log_batch(meta, run.id, [("m", 1.0, 0, 0)])
    with pytest.raises(InvalidArgument):
        t.finish_run(meta, t.create_run(meta, "exp").id, "DONE")


def test_parent_runs(meta: MetaStore) -> None:
    parent = t.create_run(meta, "exp")
    child = t.create_run(meta, "exp", parent_run_id=parent.id)
    assert child.parent_run_id == parent.id
    assert [r.id for r in t.list_runs(meta, parent_run_id=parent.id)] == [child.id]
    with pytest.raises(NotFound, match="Parent run"):
        t.create_run(meta, "exp", parent_run_id="01" + "0" * 24)


def test_metrics_history_latest_and_special_values(meta: MetaStore) -> None:
    run = t.create_run(meta, "exp")
    t.log_batch(meta, run.id, [("loss", 1.0, 0, 10), ("loss", 0.5, 2, 30), ("loss", 0.7, 1, 20)])
    t.log_batch(meta, run.id, [("loss", 0.9, 1, 40)])  # an older step logged late does not become latest
    assert t.get_run(meta, run.id).metrics == {"loss": 0.5}
    hist = t.metric_history(meta, run.id, "loss")
    assert [(p.step, p.value) for p in hist] == [(0, 1.0), (1, 0.7), (1, 0.9), (2, 0.5)]
    t.log_batch(meta, run.id, [("nan", math.nan, 0, 1), ("pinf", math.inf, 0, 1), ("ninf", -math.inf, 0, 1)])
    m = t.get_run(meta, run.id).metrics
    assert math.isnan(m["nan"]) and m["pinf"] == math.inf and m["ninf"] == -math.inf
    assert math.isnan(t.metric_history(meta, run.id, "nan")[0].value)


def test_bad_metric_values_are_refused_and_change_nothing(meta: MetaStore) -> None:
    run = t.create_run(meta, "exp")
    with pytest.raises(InvalidArgument, match="numeric value"):
        t.log_batch(meta, run.id, [("ok", 1.0, 0, 0), ("bad", "high", 0, 0)])
    with pytest.raises(InvalidArgument, match="metric key"):
        t.log_batch(meta, run.id, [("bad\nkey", 1.0, 0, 0)])
    assert t.get_run(meta, run.id).metrics == {}


def test_params_are_written_once(meta: MetaStore) -> None:
    run = t.create_run(meta, "exp")
    t.log_batch(meta, run.id, params={"lr": 0.1, "depth": 3})
    t.log_batch(meta, run.id, params={"lr": 0.1})  # same value: fine
    with pytest.raises(Conflict, match="Param 'lr'.*written once"):
        t.log_batch(meta, run.id, params={"lr": 0.2, "new": 1})
    assert t.get_run(meta, run.id).params == {"lr": "0.1", "depth": "3"}
    with pytest.raises(InvalidArgument, match="limit"):
        t.log_batch(meta, run.id, params={"huge": "x" * 7000})


def test_tags_overwrite(meta: MetaStore) -> None:
    run = t.create_run(meta, "exp", tags={"a": "1"})
    t.log_batch(meta, run.id, tags={"a": "2", "b": "3"})
    assert t.get_run(meta, run.id).tags == {"a": "2", "b": "3"}


def test_every_mutation_writes_an_event_and_an_audit_row(meta: MetaStore) -> None:
    run = t.create_run(meta, "exp")
    t.log_batch(meta, run.id, [("m", 1.0, 0, 0)], params={"p": 1})
    t.finish_run(meta, run.id)
    with meta.read() as s:
        types = [e for (e,) in s.execute(select(Event.type).order_by(Event.seq))]
        audits = s.scalar(select(func.count()).select_from(AuditRecord))
    assert types == ["experiment.created", "run.created", "run.logged", "run.finished"]
    assert audits == len(types)


def test_list_runs_filters_and_orders(meta: MetaStore) -> None:
    ids = []
    for i in range(6):
        run = t.create_run(meta, "search", name=f"r{i}", tags={"kind": "even" if i % 2 == 0 else "odd"})
        t.log_batch(meta, run.id, [("auc", i / 10, 0, 0)], params={"model": "lgbm" if i < 3 else "xgb"})
        ids.append(run.id)
    t.finish_run(meta, ids[0])
    t.create_run(meta, "other")

    def names(**kw: object) -> list[str]:
        return [r.name for r in t.list_runs(meta, experiment="search", **kw)]

    assert names() == ["r5", "r4", "r3", "r2", "r1", "r0"]
    assert names(filter="metrics.auc > 0.25") == ["r5", "r4", "r3"]
    assert names(filter="metrics.auc >= 0.2 and params.model = 'lgbm'") == ["r2"]
    assert names(filter='tags.kind != "even"') == ["r5", "r3", "r1"]
    assert names(filter="status = 'FINISHED'") == ["r0"]
    assert names(filter="name like 'r%' and metrics.auc < 0.1") == ["r0"]
    assert names(order_by=["metrics.auc DESC"], max_results=2) == ["r5", "r4"]
    assert names(order_by=["params.model", "metrics.auc"]) == ["r0", "r1", "r2", "r3", "r4", "r5"]
    assert len(t.list_runs(meta)) == 7
    assert t.list_runs(meta, experiment="search", filter="metrics.auc > 0.45")[0].params == {"model": "xgb"}


@pytest.mark.parametrize(
    "bad",
    [
        "metrics.auc >",
        "metrics.auc > 'high'",
        "colour = 'red'",
        "metrics.auc > 1 or metrics.auc < 0",
        "metrics.auc ~ 1",
    ],
)
def test_bad_filters_say_what_to_write(meta: MetaStore, bad: str) -> None:
    with pytest.raises(InvalidArgument, match="Filter"):
        t.list_runs(meta, filter=bad)


def test_bad_order_and_limits(meta: MetaStore) -> None:
    with pytest.raises(InvalidArgument, match="Did you mean 'start_time'"):
        t.list_runs(meta, order_by=["start_tme"])
    with pytest.raises(InvalidArgument):
        t.list_runs(meta, max_results=0)
