import numpy as np

from skweight import demo


def test_demo_data_is_imbalanced_and_test_set_balanced():
    Xtr, ytr, Xte, yte = demo.load_data()
    counts = np.bincount(ytr)
    assert all(counts[c] == demo.N_MINORITY for c in demo.MINORITY)
    assert all(counts[c] > 10 * demo.N_MINORITY for c in range(5))
    assert Xtr.shape[1:] == (1, 8, 8) and 0 <= Xtr.min() and Xtr.max() <= 1
    assert np.bincount(yte).max() - np.bincount(yte).min() <= 6


def test_demo_runs_and_prints_the_table(monkeypatch, capsys):
    monkeypatch.setattr(demo, "BUDGETS", {"1 epoch": 1})
    monkeypatch.setattr(demo, "CONFIGS", {
        "cross-entropy": dict(criterion="cross_entropy"),
        "balanced CE": dict(criterion="cross_entropy", class_weight="balanced"),
    })
    demo.main(["--seeds", "1"])
    out = capsys.readouterr().out
    assert "balanced acc" in out and "minority recall" in out
    assert "class_weight='balanced' changes minority recall by" in out
    assert "epoch   1/1" in out
