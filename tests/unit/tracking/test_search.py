from gyre.tracking.search import Clause, parse_filter


def test_parse_clauses() -> None:
    assert parse_filter('metrics.`val loss` <= 1e-3 AND params.model = "lgbm"') == [
        Clause("metrics", "val loss", "<=", 0.001),
        Clause("params", "model", "=", "lgbm"),
    ]
    assert parse_filter("tags.owner like 'a%'") == [Clause("tags", "owner", "like", "a%")]
    assert parse_filter("  ") == []
    assert parse_filter("status != 'FAILED'") == [Clause("attributes", "status", "!=", "FAILED")]
