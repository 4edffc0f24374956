"""Data-parallel training under torchrun (gloo on the CPU)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from skweight import CNNClassifier
from skweight._fit.distributed import DataParallel, check_distributed, wanted
from skweight._fit.loader import ArrayDataset, BatchIterator

SCRIPT = textwrap.dedent('''
    import json, os, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from sklearn.datasets import load_digits
    from skorch.callbacks import Callback
    from skweight import CNNClassifier

    class Rows(Callback):
        """Counts the training rows this process served."""
        def initialize(self):
            self.rows = 0
            return self
        def on_batch_end(self, net, batch=None, training=None, **kwargs):
            if training:
                self.rows += len(batch[0])

    out = sys.argv[1]
    rank = int(os.environ.get("RANK", "0"))
    user_group = os.environ.get("SKW_USER_GROUP") == "1"
    if user_group:
        torch.distributed.init_process_group("gloo")
    X, y = load_digits(return_X_y=True)
    X = (X / 16).reshape(-1, 1, 8, 8).astype(np.float32)[:300]
    y = y[:300]
    w = np.random.default_rng(0).uniform(0.2, 2.0, len(y))
    rows = Rows()
    # 240 training rows in batches of 64: the last global batch has 48 rows.
    clf = CNNClassifier(module__channels=(4,), module__hidden_units=16, batch_size=64,
                        max_epochs=3, lr=1e-2, class_weight="balanced",
                        train_split=0.2, random_state=0, callbacks=[rows], verbose=1)
    clf.fit(X, y, sample_weight=w)
    group_after_fit = torch.distributed.is_initialized()
    # One process predicts alone: prediction must run no collectives.
    lone = clf.predict_proba(X[:7]).tolist() if rank == 1 else None
    torch.save({k: v.detach().cpu() for k, v in clf.module_.state_dict().items()},
               f"{out}/params_{rank}.pt")
    json.dump({"rows": rows.rows, "train_loss": clf.history[:, "train_loss"],
               "valid_loss": clf.history[:, "valid_loss"],
               "sizes": [b["train_batch_size"] for b in clf.history[-1, "batches"]
                         if "train_loss" in b],
               "proba": clf.predict_proba(X).tolist(),
               "module": type(clf.module_).__name__, "lone": lone,
               "group_after_fit": group_after_fit},
              open(f"{out}/result_{rank}.json", "w"))
    if user_group:
        torch.distributed.destroy_process_group()
''')


def _run(script, out, nproc, user_group=False):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "SKW_USER_GROUP": "1" if user_group else "0"}
    if nproc == 1:
        cmd = [sys.executable, str(script), str(out)]
    else:
        # torchrun's console script is not in a venv that reuses a system
        # torch; the module always is.
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", str(script), str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def _launch(out, nproc, user_group=False):
    """Run SCRIPT in ``nproc`` processes; return the run and each rank's result."""
    out.mkdir()
    script = out / "fit.py"
    script.write_text(SCRIPT)
    run = _run(script, out, nproc, user_group)
    assert run.returncode == 0, run.stderr[-2000:]
    return run, [json.load(open(out / f"result_{r}.json")) for r in range(nproc)]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The one-process fit both torchrun tests compare with."""
    out = tmp_path_factory.mktemp("single") / "one"
    _, (ref,) = _launch(out, 1)
    return ref, torch.load(out / "params_0.pt")


@pytest.mark.slow
def test_two_processes_train_the_model_of_one(tmp_path, single):
    ref, p1 = single
    double, ranks = _launch(tmp_path / "two", 2)
    # each process served its half of every global batch
    assert ref["rows"] == 3 * 240
    assert [r["rows"] for r in ranks] == [3 * 120, 3 * 120]
    for rank in (0, 1):
        p2 = torch.load(tmp_path / "two" / f"params_{rank}.pt")
        for name in p1:
            torch.testing.assert_close(p2[name], p1[name], rtol=1e-5, atol=1e-6)
        r = ranks[rank]
        # the history is the global batches', the validation the whole split's
        np.testing.assert_allclose(r["train_loss"], ref["train_loss"], rtol=1e-6)
        np.testing.assert_allclose(r["valid_loss"], ref["valid_loss"], rtol=1e-6)
        assert r["sizes"] == ref["sizes"] == [64, 64, 64, 48]
        np.testing.assert_allclose(r["proba"], ref["proba"], atol=1e-6)
        assert r["module"] == "SmallCNN"  # the plain network, not the wrapper
    # only process 0 prints the epoch table
    assert double.stdout.count("train_loss") == 1
    # the group fit created is gone; one process predicted on its own
    assert not any(r["group_after_fit"] for r in ranks)
    np.testing.assert_allclose(ranks[1]["lone"], ref["proba"][:7], atol=1e-6)


@pytest.mark.slow
def test_a_process_group_of_the_user_is_used_and_left_alone(tmp_path, single):
    ref, _ = single
    _, ranks = _launch(tmp_path / "two", 2, user_group=True)
    for r in ranks:
        assert r["group_after_fit"]  # still there for the user's own use
        assert r["rows"] == 3 * 120
        np.testing.assert_allclose(r["train_loss"], ref["train_loss"], rtol=1e-6)
        np.testing.assert_allclose(r["proba"], ref["proba"], atol=1e-6)


def test_batches_are_shared_from_the_single_process_permutation():
    ds = ArrayDataset(torch.arange(23.0).reshape(23, 1, 1, 1), torch.arange(23))

    def served(rank, world):
        shard = DataParallel(rank, world, created=False) if world > 1 else None
        it = BatchIterator(ds, 8, shuffle=True, shard=shard,
                           generator=torch.Generator().manual_seed(0))
        return [X.flatten().long().tolist() for X, _ in it]

    whole = served(0, 1)
    shares = [served(r, 2) for r in (0, 1)]
    assert [len(b) for b in whole] == [8, 8, 7]
    for batch, a, b in zip(whole, *shares, strict=True):
        assert a + b == batch  # each global batch, split between the ranks


def test_distributed_parameter():
    assert check_distributed("auto") == "auto" and check_distributed(False) is False
    with pytest.raises(ValueError, match="distributed must be 'auto'"):
        check_distributed("yes")
    assert not wanted("auto") and not wanted(False)  # not under torchrun
    X = np.zeros((4, 1, 4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="distributed=True needs several processes"):
        CNNClassifier(distributed=True, max_epochs=1).fit(X, [0, 1, 0, 1])


def test_lbfgs_is_refused_in_data_parallel_training():
    X = np.random.default_rng(0).random((8, 1, 4, 4), dtype=np.float32)
    clf = CNNClassifier(optimizer="lbfgs", max_epochs=1, module__channels=(2,),
                        module__hidden_units=4).fit(X, [0, 1] * 4)
    clf.__dict__["_dp_"] = DataParallel(0, 2, created=False)
    try:
        with pytest.raises(ValueError, match="L-BFGS re-evaluates the loss"):
            clf._loop_state()
    finally:
        clf.__dict__.pop("_dp_")
    assert clf._loop_state().closure and clf._loop_state().train_module is None
