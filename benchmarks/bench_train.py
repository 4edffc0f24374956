"""Training and prediction speed of skweight against a raw PyTorch loop.

The same network (``skweight.nets.SmallCNN`` with its default settings), the
same data, optimiser (AdamW, lr=1e-3) and batch size are trained by:

``raw``
    a hand-written loop over tensors loaded once: ``randperm`` plus index
    slicing, ``zero_grad(set_to_none=True)``, ``F.cross_entropy``;
``skorch``
    stock ``skorch.NeuralNetClassifier`` (``iterator_train__shuffle=True``,
    ``train_split=None``, ``verbose=0``), which feeds a ``DataLoader``;
``skweight``
    ``CNNClassifier().fit(X, y)``;
``skweight-w``
    ``CNNClassifier(class_weight="balanced").fit(X, y, sample_weight=w)``.

Prediction is timed the same way (best of three calls per round):
``predict_proba`` against a raw ``torch.no_grad()`` forward over the same
batches followed by a softmax.

Method
------
Every contender is run once before timing (the warm-up run, one epoch, not
counted). Then ``--repeats`` rounds each run all contenders one after the
other, in turn (each round starting with the next one), so that slow periods
of a shared machine hit them alike; the table reports the fastest round of
each (min-of-N) and its ratio to the raw loop. A timed ``fit`` includes
everything a user waits for (input checks, building the network, the
epochs); the raw loop likewise starts from the NumPy arrays. On CUDA the GPU
is synchronised before and after each timing, skweight trains with
``precision="bf16"`` and the raw loop under bfloat16 autocast; stock skorch
has no mixed precision and runs in float32.

Clocks: ``--clock wall`` (default) or ``--clock process`` (CPU time of the
process), which is much steadier on a machine shared with other jobs but
only meaningful with ``--threads 1`` (more threads add their spin-waits).

Memory: each contender is fitted in a fresh subprocess, after a warm-up fit
on a few batches (so that lazily loaded kernels, thread pools and allocator
caches are not counted). The peak resident set size during ``fit``
(``VmHWM`` in ``/proc/self/status``, reset through ``/proc/self/clear_refs``
just before ``fit``; ``ru_maxrss`` where that is not possible) minus the
resident size just before ``fit`` is the extra memory ``fit`` needed: a copy
of the data would add at least the data's size, a copy per epoch would grow
with the number of epochs.

Usage::

    python benchmarks/bench_train.py              # CPU (or --device cuda)
    python benchmarks/bench_train.py --quick      # smoke run, about a minute
    python benchmarks/bench_train.py --help
"""

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np
import sklearn
import skorch
import torch
import torch.nn.functional as F
from torch import nn

from skweight import CNNClassifier
from skweight.nets import SmallCNN

N_CLASSES = 10
LR = 1e-3
CONTENDERS = ("raw", "skorch", "skweight", "skweight-w")
# "process" (CPU time of the process) is steadier than wall time on a machine
# shared with other jobs, as long as torch uses one thread (more threads
# count their spin-waits too).
CLOCKS = {"wall": time.perf_counter, "process": time.process_time}


# -- data --------------------------------------------------------------------


def make_data(n_samples, size, seed=0):
    """Random images with imbalanced labels and positive sample weights.

    Class ``k`` is drawn with probability proportional to ``k + 1``, so
    ``class_weight="balanced"`` has something to do; a label is also written
    into the image as a faint bright patch so the loss can decrease.
    """
    rng = np.random.default_rng(seed)
    p = np.arange(1, N_CLASSES + 1, dtype=float)
    y = rng.choice(N_CLASSES, size=n_samples, p=p / p.sum()).astype(np.int64)
    X = rng.random((n_samples, 1, size, size), dtype=np.float32) * 0.5
    cols = (y * size) // N_CLASSES
    X[np.arange(n_samples), 0, 0, cols] += 0.5
    w = rng.uniform(0.5, 1.5, size=n_samples)
    return X, y, w


def data_mb(X, y, w):
    return (X.nbytes + y.nbytes + w.nbytes) / 2**20


# -- contenders --------------------------------------------------------------


class TinyNet(nn.Module):
    """Flatten and one linear layer: next to nothing to compute, so that the
    time of a fit is the time of the machinery around the network."""

    def __init__(self, n_pixels, n_outputs=N_CLASSES):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(n_pixels, n_outputs))

    def forward(self, x):
        return self.body(x)


def module_spec(arch, size):
    """The network class and its arguments: SmallCNN or, for "tiny", TinyNet."""
    if arch == "tiny":
        return TinyNet, {"n_pixels": size * size, "n_outputs": N_CLASSES}
    return SmallCNN, {"in_channels": 1, "n_outputs": N_CLASSES,
                      "image_size": (size, size)}


class RawLoop:
    """The hand-written baseline: tensors loaded once, sliced by a permutation."""

    def __init__(self, device, amp_dtype, batch_size, epochs, channels_last, spec,
                 seed=0):
        self.spec = spec
        self.device = device
        self.amp_dtype = amp_dtype
        self.batch_size = batch_size
        self.epochs = epochs
        self.channels_last = channels_last
        self.seed = seed

    def _autocast(self):
        if self.amp_dtype is None:
            return torch.autocast("cpu", enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _prep(self, xb):
        if self.channels_last:
            return xb.contiguous(memory_format=torch.channels_last)
        return xb

    def fit(self, X, y, epochs=None):
        torch.manual_seed(self.seed)
        Xt = torch.as_tensor(X, device=self.device)
        yt = torch.as_tensor(y, device=self.device)
        cls, kwargs = self.spec
        model = cls(**kwargs).to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=LR)
        model.train()
        n, bs = len(Xt), self.batch_size
        for _ in range(self.epochs if epochs is None else epochs):
            perm = torch.randperm(n, device=self.device)
            for start in range(0, n, bs):
                idx = perm[start:start + bs]
                opt.zero_grad(set_to_none=True)
                with self._autocast():
                    loss = F.cross_entropy(model(self._prep(Xt[idx])), yt[idx])
                loss.backward()
                opt.step()
        self.model_ = model
        return self

    def predict_proba(self, X):
        model = self.model_.eval()
        Xt = torch.as_tensor(X, device=self.device)
        with torch.no_grad(), self._autocast():
            out = [model(self._prep(xb)) for xb in Xt.split(self.batch_size)]
        return torch.softmax(torch.cat(out).float(), dim=1).cpu().numpy()


class SkorchNet:
    """Stock skorch: numpy arrays through a DataLoader."""

    def __init__(self, device, batch_size, epochs, spec):
        cls, kwargs = spec
        self.net = skorch.NeuralNetClassifier(
            cls, **{f"module__{k}": v for k, v in kwargs.items()},
            criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.AdamW, lr=LR,
            batch_size=batch_size, max_epochs=epochs, iterator_train__shuffle=True,
            train_split=None, verbose=0, device=str(device),
        )
        self.epochs = epochs

    def fit(self, X, y, epochs=None):
        torch.manual_seed(0)
        self.net.set_params(max_epochs=self.epochs if epochs is None else epochs)
        self.net.fit(X, y)
        return self

    def predict_proba(self, X):
        return self.net.predict_proba(X)


class SkweightNet:
    """``CNNClassifier``, unweighted or with sample and class weights."""

    def __init__(self, device, amp, batch_size, epochs, channels_last, weighted, w,
                 spec):
        self.weighted = weighted
        self.w = w
        cls, kwargs = spec
        # The default network is SmallCNN sized from the data: use it as a
        # user would (bench_config checks that all contenders have the same
        # number of parameters).
        module = {} if cls is SmallCNN else {
            "module": cls, **{f"module__{k}": v for k, v in kwargs.items()}}
        self.clf = CNNClassifier(
            **module, class_weight="balanced" if weighted else None, device=str(device),
            precision="bf16" if amp else "32", channels_last=channels_last,
            optimizer=torch.optim.AdamW, lr=LR, batch_size=batch_size,
            max_epochs=epochs, random_state=0,
        )
        self.epochs = epochs

    def fit(self, X, y, epochs=None):
        self.clf.set_params(max_epochs=self.epochs if epochs is None else epochs)
        self.clf.fit(X, y, sample_weight=self.w if self.weighted else None)
        return self

    def predict_proba(self, X):
        return self.clf.predict_proba(X)


def make_contender(name, args, device, batch_size, epochs, size, w, arch="small"):
    amp = device.type == "cuda" and not args.fp32
    spec = module_spec(arch, size)
    if name == "raw":
        return RawLoop(device, torch.bfloat16 if amp else None, batch_size, epochs,
                       args.channels_last, spec)
    if name == "skorch":
        return SkorchNet(device, batch_size, epochs, spec)
    return SkweightNet(device, amp, batch_size, epochs, args.channels_last,
                       weighted=name == "skweight-w", w=w, spec=spec)


def n_parameters(net):
    module = {RawLoop: lambda n: n.model_, SkorchNet: lambda n: n.net.module_,
              SkweightNet: lambda n: n.clf.module_}[type(net)](net)
    return sum(p.numel() for p in module.parameters())


# -- timing ------------------------------------------------------------------


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, clock=time.perf_counter):
    _sync(device)
    start = clock()
    fn()
    _sync(device)
    return clock() - start


def time_contenders(args, device, nets, X, y):
    """Warm up, then time fit and predict_proba of each, in rotating order."""
    for net in nets.values():  # warm-up: one epoch, not timed
        net.fit(X, y, epochs=1)
        net.predict_proba(X)
    sizes = {name: n_parameters(net) for name, net in nets.items()}
    if len(set(sizes.values())) != 1:
        raise RuntimeError(f"The contenders train different networks: {sizes}")
    train = {name: [] for name in nets}
    pred = {name: [] for name in nets}
    clock = CLOCKS[args.clock]
    names = list(nets)
    for r in range(args.repeats):
        # Each round starts with another contender: whoever runs first after
        # a phase change (allocator caches, page faults) pays for it.
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            net = nets[name]
            train[name].append(timed(lambda net=net: net.fit(X, y), device, clock))
        for name in order:
            net = nets[name]
            # Prediction is short: the best of three calls per round.
            pred[name].append(min(timed(lambda net=net: net.predict_proba(X), device,
                                        clock) for _ in range(3)))
    return train, pred


def bench_config(args, device, size, batch_size, n_samples, epochs):
    """Time training and prediction of every contender on one configuration."""
    X, y, w = make_data(n_samples, size)
    nets = {name: make_contender(name, args, device, batch_size, epochs, size, w)
            for name in CONTENDERS}
    train, pred = time_contenders(args, device, nets, X, y)
    rows = []
    for name in nets:
        t_fit, t_pred = min(train[name]), min(pred[name])
        paired = [a / b for a, b in zip(train[name], train["raw"], strict=True)]
        rows.append({
            "size": size, "batch": batch_size, "n": n_samples, "epochs": epochs,
            "contender": name,
            "train_sps": n_samples * epochs / t_fit,
            "train_ratio": t_fit / min(train["raw"]),
            "train_ratio_med": statistics.median(paired),
            "pred_sps": n_samples / t_pred,
            "pred_ratio": t_pred / min(pred["raw"]),
            "raw_step_s": min(train["raw"]) / (epochs * math.ceil(n_samples / batch_size)),
        })
    return rows


def bench_overhead(args, device, size=16, batch_size=128, n_samples=4096, epochs=10):
    """Cost of the machinery per step, measured with TinyNet.

    With next to nothing to compute, the difference to the raw loop is what
    each wrapper adds per training step (data path, callbacks, loss,
    bookkeeping; the per-fit costs are spread over the steps) and per
    prediction batch. Dividing it by the time of a real step predicts the
    ratio to the raw loop far more steadily than timing whole fits.
    """
    X, y, w = make_data(n_samples, size)
    nets = {name: make_contender(name, args, device, batch_size, epochs, size, w,
                                 arch="tiny") for name in CONTENDERS}
    train, pred = time_contenders(args, device, nets, X, y)
    steps = epochs * math.ceil(n_samples / batch_size)
    pred_steps = math.ceil(n_samples / batch_size)
    raw_fit, raw_pred = min(train["raw"]), min(pred["raw"])
    return [{
        "contender": name, "size": size, "batch": batch_size, "n": n_samples,
        "epochs": epochs,
        "step_us": min(train[name]) / steps * 1e6,
        "extra_step_us": (min(train[name]) - raw_fit) / steps * 1e6,
        "pred_batch_us": min(pred[name]) / pred_steps * 1e6,
        "extra_pred_us": (min(pred[name]) - raw_pred) / pred_steps * 1e6,
    } for name in nets]


# -- memory ------------------------------------------------------------------


def _rss_kib(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def memory_child(args):
    """Runs in a subprocess: peak extra resident memory of one ``fit``."""
    import resource

    device = resolve(args.device)
    torch.set_num_threads(args.threads)
    X, y, w = make_data(args.mem_samples, args.mem_size)
    net = make_contender(args.memory_child, args, device, args.mem_batch,
                         args.mem_epochs_child, args.mem_size, w)
    # Warm-up on a few batches, so that lazily loaded kernels and libraries,
    # thread pools and allocator caches do not count as the data's memory.
    k = min(len(X), 4 * args.mem_batch)
    warm = make_contender(args.memory_child, args, device, args.mem_batch, 1,
                          args.mem_size, w[:k])
    warm.fit(X[:k], y[:k])
    warm.predict_proba(X[:k])
    del warm
    gc.collect()
    before = _rss_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        method = "VmHWM after clear_refs"
    except OSError:
        method = "ru_maxrss"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    net.fit(X, y)
    if method == "ru_maxrss":
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    else:
        peak = _rss_kib("VmHWM")
    gpu = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0
    print(json.dumps({"extra_mb": max(peak - before, 0) / 1024, "method": method,
                      "data_mb": data_mb(X, y, w), "gpu_peak_mb": gpu}))


def bench_memory(args):
    rows = []
    for name in CONTENDERS:
        row = {"contender": name}
        for epochs in args.mem_epochs:
            cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", name,
                   "--mem-epochs-child", str(epochs), "--device", args.device,
                   "--threads", str(args.threads), "--mem-samples",
                   str(args.mem_samples), "--mem-size", str(args.mem_size),
                   "--mem-batch", str(args.mem_batch)]
            if args.fp32:
                cmd.append("--fp32")
            if args.channels_last:
                cmd.append("--channels-last")
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            row[epochs] = result
        rows.append(row)
    return rows


# -- reporting ---------------------------------------------------------------


def resolve(device):
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def describe_device(device):
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"cpu: {name}, {os.cpu_count()} logical cores"


def print_header(args, device):
    amp = device.type == "cuda" and not args.fp32
    print(f"python {platform.python_version()}, torch {torch.__version__}, "
          f"skorch {skorch.__version__}, scikit-learn {sklearn.__version__}, "
          f"numpy {np.__version__}")
    print(f"device {describe_device(device)}; torch threads {torch.get_num_threads()}")
    print(f"precision: {'bf16 autocast (raw, skweight); skorch fp32' if amp else 'fp32'}"
          f"; channels_last={args.channels_last}")
    if hasattr(os, "getloadavg"):
        print("load average at start: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    print(f"clock: {args.clock}; timings: min of {args.repeats} interleaved rounds "
          f"after one warm-up run; "
          f"'x raw' = time / raw loop's time (min), 'med' = median of per-round ratios")


def print_table(rows):
    head = (f"{'HxW':>6} {'batch':>5} {'N':>6} {'ep':>3}  {'contender':<11}"
            f"{'train/s':>10} {'x raw':>7} {'med':>6}  {'predict/s':>10} {'x raw':>7}")
    print(head)
    print("-" * len(head))
    last = None
    for r in rows:
        key = (r["size"], r["batch"])
        if last is not None and key != last:
            print()
        last = key
        size = f"{r['size']}x{r['size']}"
        print(f"{size:>6} {r['batch']:>5} {r['n']:>6} {r['epochs']:>3}  "
              f"{r['contender']:<11}{r['train_sps']:>10.0f} {r['train_ratio']:>7.3f} "
              f"{r['train_ratio_med']:>6.3f}  {r['pred_sps']:>10.0f} "
              f"{r['pred_ratio']:>7.3f}")


def print_overhead(over, rows):
    o = over[0]
    print(f"\nMachinery per step, with TinyNet (flatten + linear; {o['n']} images "
          f"{o['size']}x{o['size']}, batch {o['batch']}, {o['epochs']} epochs; per-fit "
          f"costs spread over the steps). 'implied x raw' = 1 + extra / raw SmallCNN "
          f"step time of the table above, per batch size at {o['size']}x{o['size']}:")
    real = {r["batch"]: r["raw_step_s"] * 1e6 for r in rows
            if r["contender"] == "raw" and r["size"] == o["size"]}
    cols = "".join(f"{f'implied b{b}':>13}" for b in sorted(real))
    print(f"{'contender':<11}{'step us':>9}{'extra us':>10}{'predict us':>12}"
          f"{'extra us':>10}{cols}")
    for r in over:
        implied = "".join(f"{1 + r['extra_step_us'] / real[b]:>13.3f}"
                          for b in sorted(real))
        print(f"{r['contender']:<11}{r['step_us']:>9.0f}{r['extra_step_us']:>10.0f}"
              f"{r['pred_batch_us']:>12.0f}{r['extra_pred_us']:>10.0f}{implied}")


def print_memory(args, rows):
    first = rows[0][args.mem_epochs[0]]
    print(f"\nMemory: {args.mem_samples} images 1x{args.mem_size}x{args.mem_size}, batch "
          f"{args.mem_batch}; data (X float32, y int64, w float64) = "
          f"{first['data_mb']:.1f} MiB; extra peak RSS of fit = peak - RSS before fit "
          f"({first['method']}), one subprocess per cell")
    cols = "".join(f"{f'{e} epoch(s)':>14}" for e in args.mem_epochs)
    gpu = any(r[e]["gpu_peak_mb"] for r in rows for e in args.mem_epochs)
    print(f"{'contender':<11}{cols}" + ("   GPU peak alloc" if gpu else ""))
    for r in rows:
        cells = "".join(f"{r[e]['extra_mb']:>10.1f} MiB" for e in args.mem_epochs)
        extra = f"{r[args.mem_epochs[-1]]['gpu_peak_mb']:>12.1f} MiB" if gpu else ""
        print(f"{r['contender']:<11}{cells}{extra}")


# -- command line ------------------------------------------------------------


def _per_size(text):
    """'16=4096,64=512' -> {16: 4096, 64: 512}."""
    out = {}
    for part in text.split(","):
        key, value = part.split("=")
        out[int(key)] = int(value)
    return out


def _ints(text):
    return [int(v) for v in text.split(",")]


def parse_args(argv=None):
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--sizes", type=_ints, default=[16, 64], help="image sizes, e.g. 16,64")
    p.add_argument("--batch-sizes", type=_ints, default=[128, 512])
    p.add_argument("--samples", type=_per_size, default=None,
                   help="images per size, e.g. 16=4096,64=512 (CPU default)")
    p.add_argument("--epochs", type=_per_size, default=None,
                   help="timed epochs per size, e.g. 16=2,64=1 (CPU default)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (min-of-N)")
    p.add_argument("--threads", type=int, default=cores, help="torch.set_num_threads")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="wall time, or process CPU time (noisy machines, --threads 1)")
    p.add_argument("--fp32", action="store_true", help="no bf16 on CUDA")
    p.add_argument("--channels-last", action="store_true",
                   help="channels_last for raw and skweight (CUDA only in skweight)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    p.add_argument("--no-memory", action="store_true", help="skip the memory part")
    p.add_argument("--no-overhead", action="store_true",
                   help="skip the per-step cost measured with a tiny network")
    p.add_argument("--mem-samples", type=int, default=16384)
    p.add_argument("--mem-size", type=int, default=16)
    p.add_argument("--mem-batch", type=int, default=128)
    p.add_argument("--mem-epochs", type=_ints, default=[1, 3])
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.add_argument("--memory-child", choices=CONTENDERS, help=argparse.SUPPRESS)
    p.add_argument("--mem-epochs-child", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cuda = resolve(args.device).type == "cuda"
    if args.samples is None:
        args.samples = {16: 16384, 64: 4096} if cuda else {16: 4096, 64: 512}
    if args.epochs is None:
        args.epochs = {16: 5, 64: 3} if cuda else {16: 2, 64: 1}
    if args.quick:
        args.sizes = args.sizes[:1]
        args.batch_sizes = args.batch_sizes[:1]
        args.samples = {s: min(n, 1024) for s, n in args.samples.items()}
        args.epochs = {s: 1 for s in args.epochs}
        args.repeats = min(args.repeats, 2)
        args.mem_samples = min(args.mem_samples, 2048)
        args.mem_epochs = [1, 2]
    for s in args.sizes:
        args.samples.setdefault(s, 512)
        args.epochs.setdefault(s, 1)
    return args


def main(argv=None):
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    if args.memory_child:
        memory_child(args)
        return
    torch.set_num_threads(args.threads)
    device = resolve(args.device)
    print_header(args, device)
    start = time.perf_counter()
    rows = []
    for size in args.sizes:
        for batch_size in args.batch_sizes:
            rows += bench_config(args, device, size, batch_size, args.samples[size],
                                 args.epochs[size])
    print()
    print_table(rows)
    over = None
    if not args.no_overhead:
        over = bench_overhead(args, device)
        print_overhead(over, rows)
    mem = None
    if not args.no_memory:
        mem = bench_memory(args)
        print_memory(args, mem)
    if hasattr(os, "getloadavg"):
        print("\nload average at end: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    print(f"total time {time.perf_counter() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "overhead": over, "memory": mem}, fh, indent=1,
                      default=str)


if __name__ == "__main__":
    main()
