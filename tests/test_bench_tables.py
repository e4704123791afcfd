"""The benchmark's tables, on made-up rows (the timings themselves need a GPU: benchmarks/README.md)."""

from jax_mla_meta.bench import cases, layout_table


def test_every_workload_and_per_row_case_is_measured_in_both_layouts():
    labels = [label for _, label, *_ in cases(65536)]
    pairs = {}
    for label in labels:
        base, _, layout = label.rpartition(" ")
        if layout in ("2025", "2026"):
            pairs.setdefault(base, set()).add(layout)
    assert pairs and all(v == {"2025", "2026"} for v in pairs.values()), pairs
    assert any("topk_length" in base for base in pairs)


def test_layout_table_puts_the_two_layouts_of_a_case_on_one_line():
    rows = [dict(label="w B=1 2025", kernel="auto", device_us=2.25, step_us=3.5),
            dict(label="w B=1 2026", kernel="auto", device_us=2.5, step_us=None),
            dict(label="only one 2025", kernel="auto", device_us=9.0, step_us=9.0),
            dict(label="sweep dense B=1", kernel="auto", device_us=1.0, step_us=1.0)]
    lines = layout_table(rows).splitlines()
    assert len(lines) == 2, lines   # the header and the one complete pair
    assert lines[1].split() == ["w", "B=1", "auto", "2.25", "2.50", "3.50", "-"]
    assert layout_table(rows[2:]) == ""
