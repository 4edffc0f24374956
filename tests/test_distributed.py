"""Data-parallel training under torchrun (gloo on the CPU).

One script (``SCRIPT``) runs a real workflow: several fits in a row with
predictions between them, a regressor after a classifier, uneven batches,
a tiny validation split, ``cross_validate``, ``GridSearchCV``,
``partial_fit``, a fit with ``distributed=False`` and a fit that writes
checkpoints. It runs once in one process, once under torchrun with 2
processes (the group created by skweight) and once with 3 (a group the
script created), and each rank writes its results; the tests compare them.
Two more launches kill a process: by hand (the survivors must name it
within the collective timeout) and under ``torchrun --max-restarts`` (the
restart must resume from the checkpoint).
"""

import datetime
import json
import math
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
from sklearn.base import clone

from skweight import CNNClassifier
from skweight._fit import distributed as dp_module
from skweight._fit.distributed import (
    DataParallel,
    Setting,
    check_distributed,
    data_parallel,
    wanted,
)
from skweight._fit.loader import ArrayDataset, BatchIterator

TIMEOUT_S = 20  # the collective timeout of the killed-process launch

SCRIPT = textwrap.dedent('''
    import json, os, signal, sys, time
    import numpy as np, torch
    torch.set_num_threads(1)
    import torch.distributed as dist
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV, cross_validate
    from skorch.callbacks import Callback, Checkpoint, LoadInitState
    from skweight import CNNClassifier, CNNRegressor

    out, mode = sys.argv[1], sys.argv[2]
    rank = int(os.environ.get("RANK", "0"))
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if os.environ.get("SKW_USER_GROUP") == "1":
        dist.init_process_group("gloo")
    X, y = load_digits(return_X_y=True)
    X = (X / 16).reshape(-1, 1, 8, 8).astype(np.float32)
    small = dict(module__channels=(4,), module__hidden_units=16, random_state=0)
    # Adam turns float-rounding noise in a gradient near 0 into a step of lr;
    # SGD keeps K's rounding differences at their size.
    sgd = dict(optimizer="sgd", optimizer__momentum=0.9, **small)
    params = {}

    def keep(name, est):
        params[name] = {k: v.detach().cpu() for k, v in est.module_.state_dict().items()}

    class Rows(Callback):
        """Counts the training rows this process served."""
        def initialize(self):
            self.rows = 0
            return self
        def on_batch_end(self, net, batch=None, training=None, **kwargs):
            if training:
                self.rows += len(batch[0])

    class Epochs(Callback):
        """Counts the epochs this run trained, and kills rank 1 where asked."""
        def initialize(self):
            self.count = 0
            return self
        def on_epoch_begin(self, net, **kwargs):
            self.count += 1
            if mode == "restart" and attempt == 0 and rank == 1 and len(net.history) == 3:
                history = os.path.join(out, "ckpt", "history.json")
                for _ in range(400):  # until process 0 has written epoch 2
                    try:
                        if len(json.load(open(history))) == 2:
                            break
                    except (OSError, ValueError):
                        pass
                    time.sleep(0.05)
                os.kill(os.getpid(), signal.SIGKILL)
            if mode == "kill" and rank == 2 and len(net.history) == 2:
                json.dump({"killed": time.time()}, open(f"{out}/killed.json", "w"))
                os.kill(os.getpid(), signal.SIGKILL)

    def resumable(dirname):
        """SGD with momentum: its state is checkpointed, and K does not blur it."""
        cp = Checkpoint(dirname=dirname, monitor=None)
        epochs = Epochs()
        est = CNNClassifier(lr=0.05, batch_size=32, max_epochs=4, train_split=0.2,
                            callbacks=[cp, LoadInitState(cp), epochs],
                            distributed={"timeout": 60}, **sgd)
        return est, epochs

    if mode == "restart":
        est, epochs = resumable(os.path.join(out, "ckpt"))
        est.fit(X[:200], y[:200])
        keep("resumable", est)
        torch.save(params, f"{out}/params_{rank}.pt")
        json.dump({"attempt": attempt, "trained": epochs.count,
                   "epochs": len(est.history)}, open(f"{out}/result_{rank}.json", "w"))
        sys.exit(0)

    if mode == "kill":
        est = CNNClassifier(batch_size=16, max_epochs=6, callbacks=[Epochs()],
                            distributed={"timeout": TIMEOUT_S}, **small)
        try:
            est.fit(X[:300], y[:300])
        except Exception as exc:
            json.dump({"ended": time.time(), "type": type(exc).__name__,
                       "message": str(exc)}, open(f"{out}/result_{rank}.json", "w"))
            raise
        sys.exit(0)

    res = {}
    w = np.random.default_rng(0).uniform(0.2, 2.0, 300)
    rows = Rows()
    # 240 training rows in batches of 64: the last global batch has 48 rows.
    clf = CNNClassifier(batch_size=64, max_epochs=3, lr=1e-2, class_weight="balanced",
                        train_split=0.2, callbacks=[rows], verbose=1, **small)
    clf.fit(X[:300], y[:300], sample_weight=w)
    keep("first", clf)
    res.update(rows=rows.rows, train_loss=clf.history[:, "train_loss"],
               valid_loss=clf.history[:, "valid_loss"],
               sizes=[b["train_batch_size"] for b in clf.history[-1, "batches"]
                      if "train_loss" in b],
               proba=clf.predict_proba(X[:300]).tolist(),
               module=type(clf.module_).__name__,
               group_after_fit=dist.is_initialized())
    # One process predicts alone: prediction must run no collectives.
    res["lone"] = clf.predict_proba(X[:7]).tolist() if rank == 1 else None
    # fit, predict, fit: the same model again.
    clf.set_params(verbose=0).fit(X[:300], y[:300], sample_weight=w)
    keep("again", clf)
    # A regressor next. 33 rows in batches of 16: the last global batch has
    # one row, so every process but one has none of it.
    reg = CNNRegressor(batch_size=16, max_epochs=2, lr=1e-2,
                       distributed={"timeout": 60}, **small)
    reg.fit(X[:33], y[:33].astype(np.float32))
    keep("regressor", reg)
    res["regressor"] = reg.predict(X[:33]).tolist()
    # 41 rows, a 3-row validation split, batches of 8 (the last has 2 rows).
    tiny = CNNClassifier(batch_size=8, max_epochs=2, train_split=0.05, **small)
    tiny.fit(X[:41], y[:41] % 2)
    keep("tiny_validation", tiny)
    res["tiny_valid_loss"] = tiny.history[:, "valid_loss"]
    cv = cross_validate(CNNClassifier(batch_size=32, max_epochs=2, lr=0.05, **sgd),
                        X[:150], y[:150] % 3, cv=3, scoring="neg_log_loss")
    res["cv"] = cv["test_score"].tolist()
    search = GridSearchCV(CNNClassifier(batch_size=32, max_epochs=2, **sgd),
                          {"lr": [0.02, 0.1]}, cv=2, scoring="neg_log_loss")
    search.fit(X[:120], y[:120] % 2)
    res["grid"] = {"best": search.best_params_,
                   "scores": search.cv_results_["mean_test_score"].tolist()}
    keep("grid_best", search.best_estimator_)
    part = CNNClassifier(batch_size=32, max_epochs=1, **small)
    part.partial_fit(X[:100], y[:100] % 2, classes=[0, 1])
    part.partial_fit(X[100:200], y[100:200] % 2)
    keep("partial", part)
    alone = CNNClassifier(batch_size=32, max_epochs=1, distributed=False, **small)
    keep("alone", alone.fit(X[:100], y[:100] % 2))
    keep("resumable", resumable(os.path.join(out, "ckpt"))[0].fit(X[:200], y[:200]))
    torch.save(params, f"{out}/params_{rank}.pt")
    json.dump(res, open(f"{out}/result_{rank}.json", "w"))
    if os.environ.get("SKW_USER_GROUP") == "1":
        dist.destroy_process_group()
''').replace("TIMEOUT_S", str(TIMEOUT_S))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(script, out, nproc, mode="main", user_group=False, restarts=0):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "SKW_USER_GROUP": "1" if user_group else "0"}
    if nproc == 1:
        cmd = [sys.executable, str(script), str(out), mode]
    else:
        # torchrun's console script is not in a venv that reuses a system
        # torch; the module always is.
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", f"--max-restarts={restarts}",
               str(script), str(out), mode]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def _write_script(out):
    out.mkdir()
    script = out / "script.py"
    script.write_text(SCRIPT)
    return script


def _launch(out, nproc, mode="main", user_group=False, restarts=0):
    """Run SCRIPT in ``nproc`` processes; return the run, each rank's results and params."""
    script = _write_script(out)
    start = time.perf_counter()
    run = _run(script, out, nproc, mode, user_group, restarts)
    run.seconds = time.perf_counter() - start
    # A clean exit: no hang (the timeout above), no abort at exit.
    assert run.returncode == 0, run.stderr[-3000:]
    assert "terminate called" not in run.stderr
    return run, [
        (json.load(open(out / f"result_{r}.json")), torch.load(out / f"params_{r}.pt"))
        for r in range(nproc)
    ]


def _assert_same_params(p, q, rtol=1e-5, atol=1e-6):
    assert p.keys() == q.keys()
    for name in p:
        torch.testing.assert_close(p[name], q[name], rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """SCRIPT in one process: what every launch is compared with."""
    _, ((res, params),) = _launch(tmp_path_factory.mktemp("single") / "one", 1)
    return res, params


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    """SCRIPT under torchrun, 2 processes, the group created by skweight."""
    return _launch(tmp_path_factory.mktemp("double") / "two", 2)


@pytest.fixture(scope="module")
def triple(tmp_path_factory):
    """SCRIPT under torchrun, 3 processes, a group the script created itself."""
    return _launch(tmp_path_factory.mktemp("triple") / "three", 3, user_group=True)


def _check_workflow(ranks, single):
    ref, ref_params = single
    for res, params in ranks:
        for name in ("first", "regressor", "tiny_validation", "grid_best", "partial",
                     "resumable"):
            _assert_same_params(params[name], ref_params[name])
        # fit, predict, fit: the second fit is the first again, to the bit
        _assert_same_params(params["again"], params["first"], rtol=0, atol=0)
        # a fit with distributed=False trains on its own, as in one process
        _assert_same_params(params["alone"], ref_params["alone"], rtol=0, atol=0)
        np.testing.assert_allclose(res["train_loss"], ref["train_loss"], rtol=1e-6)
        np.testing.assert_allclose(res["valid_loss"], ref["valid_loss"], rtol=1e-6)
        assert res["sizes"] == ref["sizes"] == [64, 64, 64, 48]
        np.testing.assert_allclose(res["proba"], ref["proba"], atol=1e-6)
        assert res["module"] == "SmallCNN"  # the plain network, not the wrapper
        np.testing.assert_allclose(res["regressor"], ref["regressor"], rtol=1e-5,
                                   atol=1e-5)
        np.testing.assert_allclose(res["tiny_valid_loss"], ref["tiny_valid_loss"],
                                   rtol=1e-5)
        np.testing.assert_allclose(res["cv"], ref["cv"], rtol=1e-5)
        assert res["grid"]["best"] == ref["grid"]["best"]
        np.testing.assert_allclose(res["grid"]["scores"], ref["grid"]["scores"],
                                   rtol=1e-5)
        assert res["group_after_fit"]
    # every process ends with the same models and numbers
    first_res, first_params = ranks[0]
    for res, params in ranks[1:]:
        for name in first_params:
            _assert_same_params(params[name], first_params[name], rtol=0, atol=0)
        own = ("lone", "rows")
        assert {k: v for k, v in res.items() if k not in own} == {
            k: v for k, v in first_res.items() if k not in own}
    # each process served its share of every global batch (240 rows, 3 epochs)
    assert ref["rows"] == 3 * 240
    assert sum(res["rows"] for res, _ in ranks) == 3 * 240
    # one process predicted on its own
    np.testing.assert_allclose(ranks[1][0]["lone"], ref["proba"][:7], atol=1e-6)


@pytest.mark.slow
def test_two_processes_run_a_whole_workflow_as_one(double, single):
    run, ranks = double
    _check_workflow(ranks, single)
    assert [res["rows"] for res, _ in ranks] == [3 * 120, 3 * 120]
    # only process 0 prints the epoch table (the first fit is verbose)
    assert run.stdout.count("train_loss") == 1


@pytest.mark.slow
def test_three_processes_in_a_group_of_the_script(triple, single):
    _, ranks = triple
    _check_workflow(ranks, single)
    # batches of 64 split 22 + 21 + 21, the last one of 48 split 16 * 3
    assert [res["rows"] for res, _ in ranks] == [3 * 82, 3 * 79, 3 * 79]


@pytest.mark.slow
def test_a_killed_process_is_named_within_the_timeout(tmp_path):
    # The workers get torchrun's environment, without torchrun's agent: on
    # one machine the agent ends the survivors itself (it looks every 0.1 s),
    # across machines only their own timeout does.
    out = tmp_path / "kill"
    script = _write_script(out)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "3",
           "LOCAL_WORLD_SIZE": "3", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port())}
    procs = [
        subprocess.Popen([sys.executable, str(script), str(out), "kill"],
                         env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for r in range(3)
    ]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert procs[2].returncode == -9
    killed = json.load(open(out / "killed.json"))["killed"]
    for rank in (0, 1):
        assert procs[rank].returncode == 1, outputs[rank][-3000:]
        res = json.load(open(out / f"result_{rank}.json"))
        assert res["type"] == "ProcessLostError"
        assert "lost the process of rank 2," in res["message"]
        assert f"rank {rank} of 3" in res["message"]
        assert 0 < res["ended"] - killed < TIMEOUT_S
        assert "terminate called" not in outputs[rank]


@pytest.mark.slow
def test_a_restart_resumes_from_the_checkpoint(tmp_path, single):
    _, ref_params = single
    run, ranks = _launch(tmp_path / "restart", 2, mode="restart", restarts=1)
    assert "failed (exitcode: -9) local_rank: 1" in run.stderr  # rank 1 died once
    for res, params in ranks:
        # the second attempt loaded epochs 1 and 2 and trained 3 and 4
        assert res == {"attempt": 1, "trained": 2, "epochs": 4}
        _assert_same_params(params["resumable"], ref_params["resumable"])


def test_a_fit_resumed_by_load_init_state_finishes_the_run(tmp_path):
    from skorch.callbacks import Checkpoint, LoadInitState

    X = np.random.default_rng(0).random((90, 1, 6, 6), dtype=np.float32)
    y = np.arange(90) % 3

    def fit(epochs, dirname):
        cp = Checkpoint(dirname=str(tmp_path / dirname), monitor=None)
        return CNNClassifier(max_epochs=epochs, batch_size=16, random_state=0,
                             module__channels=(2,), module__hidden_units=8,
                             callbacks=[cp, LoadInitState(cp)]).fit(X, y)

    whole = fit(4, "whole")
    fit(2, "cut")  # the run stops after its second epoch...
    resumed = fit(4, "cut")  # ...and the script runs again
    assert len(resumed.history) == 4
    # the shuffling went on where it stopped: the same model, to the bit
    assert resumed.history[:, "train_loss"] == whole.history[:, "train_loss"]
    _assert_same_params(resumed.module_.state_dict(), whole.module_.state_dict(),
                        rtol=0, atol=0)


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


def test_an_empty_share_serves_one_row_weighed_zero():
    rows = torch.tensor([5, 9])
    shares = [DataParallel(r, 3, created=False) for r in range(3)]
    assert [s.share(rows).tolist() for s in shares] == [[5], [9], [5]]
    # the loss scales sum to K: the gradient of the global batch's mean
    assert [s.loss_scale(1, 2) for s in shares] == [1.5, 1.5, 0.0]
    scales = [DataParallel(r, 3, created=False).loss_scale(n, 7)
              for r, n in enumerate((3, 2, 2))]
    assert math.isclose(sum(scales), 3.0)


def test_distributed_parameter():
    assert check_distributed("auto") == Setting("auto", None)
    assert check_distributed(False) == Setting(False, None)
    assert check_distributed({"timeout": 60}) == Setting("auto", 60.0)
    assert check_distributed({"timeout": datetime.timedelta(minutes=2)}).timeout == 120
    assert check_distributed({}) == Setting("auto", None)
    assert not wanted("auto") and not wanted(False)  # not under torchrun
    assert not wanted({"timeout": 5})
    with pytest.raises(ValueError, match="distributed must be 'auto'"):
        check_distributed("yes")
    with pytest.raises(ValueError, match="unknown key.*'tmeout'"):
        check_distributed({"tmeout": 5})
    for bad in (0, -1, float("nan"), float("inf"), True, "60",
                datetime.timedelta(0)):
        with pytest.raises(ValueError, match=r"distributed\['timeout'\] must be a "
                                             r"positive number of seconds"):
            check_distributed({"timeout": bad})
    X = np.zeros((4, 1, 4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="distributed=True needs several processes"):
        CNNClassifier(distributed=True, max_epochs=1).fit(X, [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"distributed\['timeout'\]"):
        CNNClassifier(distributed={"timeout": -1}, max_epochs=1).fit(X, [0, 1, 0, 1])
    # a search clones it with the estimator
    assert clone(CNNClassifier(distributed={"timeout": 5})).distributed == {"timeout": 5}


def test_a_group_of_another_backend_is_refused(monkeypatch):
    assert dp_module._backend_serves("gloo", torch.device("cpu"))
    assert dp_module._backend_serves("cpu:gloo,cuda:nccl", torch.device("cpu"))
    assert dp_module._backend_serves("nccl", torch.device("cuda"))
    assert not dp_module._backend_serves("nccl", torch.device("cpu"))
    assert not dp_module._backend_serves("cuda:nccl", torch.device("cpu"))
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
    with pytest.raises(ValueError, match=r"device='cpu' cannot train data-parallel "
                                         r"in the process group this script created"):
        dp_module._check_backend(torch.device("cpu"))


def test_a_search_worker_process_under_torchrun_is_refused(monkeypatch):
    # What a worker of GridSearchCV(n_jobs=2) inherits from a torchrun process.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv(dp_module._PID_MARKER, str(os.getpid() + 1))
    with pytest.raises(ValueError, match="n_jobs=1"):
        with data_parallel("auto", torch.device("cpu")):
            pass
    # Two data-parallel fits at once in one process (a search on threads).
    monkeypatch.setenv(dp_module._PID_MARKER, str(os.getpid()))
    with dp_module._GROUPS.busy:
        with pytest.raises(RuntimeError, match="Another data-parallel fit is running"):
            with data_parallel("auto", torch.device("cpu")):
                pass
    assert not dist.is_initialized()


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
