"""What skweight costs over a hand-written PyTorch loop: a table.

Sections (each row times the whole ``fit()``, or the whole prediction, as a
user waits for it; best of ``--repeats`` interleaved rounds after a warm-up):

``linear``
    A linear model (flatten + one linear layer, 256 inputs, 10 classes) on
    4096 images of 1x16x16, batch 128, 10 epochs: next to nothing to compute,
    so the difference to the raw loop is the wrapper's fixed cost per step.
``cnn``
    skweight's default ``SmallCNN`` on the same data, 3 epochs.
``unet``
    The default ``CNNSegmenter`` (U-Net, Dice + cross-entropy, AdamW at 3e-3,
    batch 16) on 600 noisy 32x32 scenes, 2 epochs, against a raw loop over the
    same U-Net and loss.
``augment``
    The small CNN with ``augment=RandomFlip()`` against the raw loop with
    the same flips.
``uint8``
    The small CNN on the same images stored as ``uint8`` (a quarter of the
    bytes): skweight keeps them as integers and scales each batch on the
    device (``input_scale="auto"``); the raw loop does the same by hand,
    ``xb.float() / 255`` on each batch.

Contenders: ``raw`` (tensors loaded once, a seeded permutation per epoch,
index slicing, ``zero_grad(set_to_none=True)``, ``F.cross_entropy``),
``raw-w`` (the same with the per-sample weights skweight trains on:
``sample_weight x class_weight["balanced"]``, normalised to mean 1,
``mean(w * l)``), ``skorch`` (stock ``NeuralNetClassifier``, DataLoader),
``skweight`` (``CNNClassifier().fit(X, y)``), ``skweight-w``
(``class_weight="balanced"`` and ``sample_weight``). The ratio of
``skweight-w`` is to ``raw-w``, of the others to ``raw``. Adam at lr 1e-3
(the U-Net: the segmenter's defaults). Prediction: ``predict_proba`` against
a raw ``torch.no_grad()`` forward over the same batches and a softmax.

On CUDA the data live on the GPU for every contender but skorch, and each
section runs in float32 and in bfloat16 (autocast for the raw loops,
``precision="bf16"`` for skweight; skorch stays float32). Memory: the extra
peak resident memory of ``fit`` over the memory before it, in a fresh process
per cell (``VmHWM`` reset through ``/proc/self/clear_refs``), for 1 and 3
epochs: a copy of the data would add at least its size, a copy per epoch
would grow with the epochs.

Usage::

    python benchmarks/bench_train.py                 # CPU, about 4 minutes
    python benchmarks/bench_train.py --device cuda   # the GPU table
    python benchmarks/bench_train.py --quick         # smoke run
"""

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np
import skorch
import torch
import torch.nn.functional as F
from torch import nn

from skweight import CNNClassifier, CNNSegmenter
from skweight.datasets import make_disk_scenes
from skweight.losses import DiceCELoss
from skweight.nets import SmallCNN, UNet

N_CLASSES = 10
SECTIONS = ("linear", "cnn", "unet", "augment", "uint8")


# -- data --------------------------------------------------------------------


def make_data(n_samples, size, seed=0):
    """Random images with imbalanced labels and positive sample weights.

    Class ``k`` is drawn with probability proportional to ``k + 1``, so
    ``class_weight="balanced"`` has something to do; the label is written
    into the image as a faint bright patch so that the loss can decrease.
    """
    rng = np.random.default_rng(seed)
    p = np.arange(1, N_CLASSES + 1, dtype=float)
    y = rng.choice(N_CLASSES, size=n_samples, p=p / p.sum()).astype(np.int64)
    X = rng.random((n_samples, 1, size, size), dtype=np.float32) * 0.5
    X[np.arange(n_samples), 0, 0, (y * size) // N_CLASSES] += 0.5
    w = rng.uniform(0.5, 1.5, size=n_samples)
    return X, y, w


def training_weights(y, w):
    """The weights skweight trains on: sample x balanced class weight, mean 1."""
    counts = np.bincount(y, weights=w, minlength=N_CLASSES)
    cw = counts.sum() / (N_CLASSES * counts)
    v = w * cw[y]
    return (v / v.mean()).astype(np.float32)


class Linear(nn.Module):
    """Flatten and one linear layer."""

    def __init__(self, in_channels, n_outputs, image_size):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(),
                                  nn.Linear(in_channels * image_size[0] * image_size[1],
                                            n_outputs))

    def forward(self, x):
        return self.body(x)


def flip(x, y, generator):
    """The raw loops' augmentation: a horizontal flip of half the images."""
    flipped = torch.rand(len(x), generator=generator, device=x.device) < 0.5
    return torch.where(flipped[:, None, None, None], x.flip(-1), x), y


# -- contenders --------------------------------------------------------------


class RawLoop:
    """The hand-written baseline: tensors loaded once, sliced by a permutation."""

    def __init__(self, net, kwargs, device, amp, batch_size, epochs, lr=1e-3,
                 optimizer=torch.optim.Adam, loss=None, weights=None, augment=False,
                 scale=None):
        self.net, self.kwargs = net, kwargs
        self.device, self.amp = device, amp
        self.batch_size, self.epochs, self.lr = batch_size, epochs, lr
        self.optimizer, self.loss, self.weights = optimizer, loss, weights
        self.augment, self.scale = augment, scale

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def fit(self, X, y, epochs=None):
        torch.manual_seed(0)
        gen = torch.Generator(self.device).manual_seed(0)
        Xt = torch.as_tensor(X, device=self.device)
        yt = torch.as_tensor(y, device=self.device)
        wt = None if self.weights is None else torch.as_tensor(self.weights,
                                                               device=self.device)
        model = self.net(**self.kwargs).to(self.device)
        opt = self.optimizer(model.parameters(), lr=self.lr)
        model.train()
        n, bs = len(Xt), self.batch_size
        for _ in range(self.epochs if epochs is None else epochs):
            perm = torch.randperm(n, device=self.device, generator=gen)
            for start in range(0, n, bs):
                idx = perm[start:start + bs]
                xb, yb = Xt[idx], yt[idx]
                if self.scale is not None:
                    xb = xb.float() / self.scale
                if self.augment:
                    xb, yb = flip(xb, yb, gen)
                opt.zero_grad(set_to_none=True)
                with self._autocast():
                    out = model(xb)
                if self.loss is not None:
                    loss = self.loss(out.float(), yb)
                elif wt is None:
                    loss = F.cross_entropy(out.float(), yb)
                else:
                    loss = (F.cross_entropy(out.float(), yb, reduction="none")
                            * wt[idx]).mean()
                loss.backward()
                opt.step()
        self.model_ = model
        return self

    def predict_proba(self, X):
        model = self.model_.eval()
        Xt = torch.as_tensor(X, device=self.device)
        with torch.no_grad(), self._autocast():
            out = [model(xb if self.scale is None else xb.float() / self.scale)
                   for xb in Xt.split(self.batch_size)]
        return torch.softmax(torch.cat(out).float(), dim=1).cpu().numpy()


class SkorchNet:
    """Stock skorch: NumPy arrays through a DataLoader, float32."""

    def __init__(self, net, kwargs, device, batch_size, epochs):
        self.model = skorch.NeuralNetClassifier(
            net, **{f"module__{k}": v for k, v in kwargs.items()},
            criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=1e-3,
            batch_size=batch_size, max_epochs=epochs, iterator_train__shuffle=True,
            train_split=None, verbose=0, device=str(device),
        )
        self.epochs = epochs

    def fit(self, X, y, epochs=None):
        torch.manual_seed(0)
        self.model.set_params(max_epochs=self.epochs if epochs is None else epochs)
        self.model.fit(X, y)
        return self

    def predict_proba(self, X):
        return self.model.predict_proba(X)


class Skweight:
    """An estimator of skweight, fitted as a user would."""

    def __init__(self, estimator, epochs, sample_weight=None):
        self.estimator, self.epochs, self.sample_weight = estimator, epochs, sample_weight

    def fit(self, X, y, epochs=None):
        self.estimator.set_params(max_epochs=self.epochs if epochs is None else epochs)
        self.estimator.fit(X, y, sample_weight=self.sample_weight)
        return self

    def predict_proba(self, X):
        return self.estimator.predict_proba(X)


def contenders(section, device, amp, w, y, quick):
    """The contenders of one section: {name: object with fit and predict_proba}."""
    precision = "bf16" if amp else "32"
    if section == "unet":
        common = dict(net=UNet, kwargs={"in_channels": 1, "n_classes": 3},
                      device=device, amp=amp, batch_size=16, epochs=2, lr=3e-3,
                      optimizer=torch.optim.AdamW, loss=DiceCELoss())
        return {
            "raw": RawLoop(**common),
            "skweight": Skweight(CNNSegmenter(device=str(device), precision=precision,
                                              random_state=0), 2),
        }
    net = Linear if section == "linear" else SmallCNN  # uint8, augment: the CNN
    kwargs = {"in_channels": 1, "n_outputs": N_CLASSES, "image_size": (16, 16)}
    epochs = 10 if section == "linear" else 3
    if quick:
        epochs = 1
    raw = dict(net=net, kwargs=kwargs, device=device, amp=amp, batch_size=128,
               epochs=epochs)
    est = dict(module=net, **{f"module__{k}": v for k, v in kwargs.items()},
               optimizer=torch.optim.Adam, lr=1e-3, batch_size=128, random_state=0,
               device=str(device), precision=precision)
    if section == "uint8":
        return {
            "raw": RawLoop(**raw, scale=255.0),
            "skweight": Skweight(CNNClassifier(**est), epochs),
        }
    if section == "augment":
        from skweight.augment import RandomFlip

        return {
            "raw": RawLoop(**raw, augment=True),
            "skweight": Skweight(CNNClassifier(**est, augment=RandomFlip()), epochs),
        }
    out = {"raw": RawLoop(**raw)}
    if section == "cnn":
        out["skorch"] = SkorchNet(net, kwargs, device, 128, epochs)
    out["skweight"] = Skweight(CNNClassifier(**est), epochs)
    out["raw-w"] = RawLoop(**raw, weights=training_weights(y, w))
    out["skweight-w"] = Skweight(CNNClassifier(**est, class_weight="balanced"), epochs,
                                 sample_weight=w)
    return out


# -- timing ------------------------------------------------------------------


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def section_data(section, quick):
    if section == "unet":
        X, y = make_disk_scenes(120 if quick else 600, random_state=0)
        return X, y, None
    X, y, w = make_data(1024 if quick else 4096, 16)
    if section == "uint8":
        X = np.round(X * 255).astype(np.uint8)
    return X, y, w


def bench_section(section, device, amp, repeats, quick):
    X, y, w = section_data(section, quick)
    nets = contenders(section, device, amp, w, y, quick)
    for net in nets.values():  # warm-up, not timed
        net.fit(X, y, epochs=1)
        net.predict_proba(X[:256])
    fit_times = {name: [] for name in nets}
    pred_times = {name: [] for name in nets}
    names = list(nets)
    for r in range(repeats):
        # Each round starts with another contender: whoever runs first after
        # a phase change (allocator caches, page faults) pays for it.
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            net = nets[name]
            fit_times[name].append(timed(lambda net=net: net.fit(X, y), device))
            pred_times[name].append(min(
                timed(lambda net=net: net.predict_proba(X), device) for _ in range(3)))
    batch = 16 if section == "unet" else 128
    epochs = nets["raw"].epochs
    steps = epochs * -(-len(X) // batch)
    rows = []
    for name in nets:
        base = "raw-w" if name in ("raw-w", "skweight-w") else "raw"
        paired = [a / b for a, b in zip(fit_times[name], fit_times[base], strict=True)]
        t_fit, t_base = min(fit_times[name]), min(fit_times[base])
        rows.append({
            "section": section, "precision": "bf16" if amp else "fp32",
            "contender": name, "vs": base, "n": len(X), "epochs": epochs,
            "fit_s": t_fit, "samples_per_s": len(X) * epochs / t_fit,
            "ratio": t_fit / t_base, "ratio_median": statistics.median(paired),
            "extra_us_per_step": (t_fit - t_base) / steps * 1e6,
            "predict_ratio": min(pred_times[name]) / min(pred_times["raw"]),
        })
    return rows


def segmenter_quality(device):
    """The default segmenter's full fit on 600 scenes: time and Dice."""
    from skweight.metrics import dice_score

    X, y = make_disk_scenes(800, random_state=0)
    start = time.perf_counter()
    seg = CNNSegmenter(random_state=0, device=str(device)).fit(X[:600], y[:600])
    seconds = time.perf_counter() - start
    dice = dice_score(y[600:], seg.predict(X[600:]), average=None)
    return seconds, dice


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

    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    X, y, w = make_data(args.mem_samples, 16)
    net = contenders("cnn", device, False, w, y, False)[args.memory_child]
    # Warm-up on a few batches: lazily loaded kernels, thread pools and
    # allocator caches are not the data's memory.
    warm = contenders("cnn", device, False, w[:512], y[:512], False)[args.memory_child]
    warm.fit(X[:512], y[:512], epochs=1)
    warm.predict_proba(X[:512])
    del warm
    gc.collect()
    before = _rss_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        method = "VmHWM after clear_refs"
    except OSError:
        method = "ru_maxrss"
    net.fit(X, y, epochs=args.mem_epochs_child)
    if method == "ru_maxrss":
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    else:
        peak = _rss_kib("VmHWM")
    data_mb = (X.nbytes + y.nbytes + w.nbytes) / 2**20
    print(json.dumps({"extra_mb": max(peak - before, 0) / 1024, "method": method,
                      "data_mb": data_mb}))


def bench_memory(args):
    rows = {}
    for name in ("raw", "skorch", "skweight", "skweight-w"):
        rows[name] = {}
        for epochs in (1, 3):
            cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", name,
                   "--mem-epochs-child", str(epochs), "--threads", str(args.threads),
                   "--mem-samples", str(args.mem_samples)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows[name][epochs] = json.loads(out.stdout.strip().splitlines()[-1])
    return rows


# -- report ------------------------------------------------------------------


def describe(device):
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            name = next(line.split(":", 1)[1].strip() for line in fh
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"cpu: {name}"


def print_rows(rows):
    head = (f"{'section':<8}{'prec':<6}{'contender':<12}{'vs':<7}{'fit s':>8}"
            f"{'samples/s':>11}{'x vs':>7}{'med':>7}{'extra us/step':>15}"
            f"{'predict x raw':>15}")
    print(head)
    print("-" * len(head))
    last = None
    for r in rows:
        if last is not None and (r["section"], r["precision"]) != last:
            print()
        last = (r["section"], r["precision"])
        extra = "" if r["contender"] == r["vs"] else f"{r['extra_us_per_step']:.0f}"
        print(f"{r['section']:<8}{r['precision']:<6}{r['contender']:<12}{r['vs']:<7}"
              f"{r['fit_s']:>8.3f}{r['samples_per_s']:>11.0f}{r['ratio']:>7.3f}"
              f"{r['ratio_median']:>7.3f}{extra:>15}{r['predict_ratio']:>15.3f}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated, from {', '.join(SECTIONS)}")
    p.add_argument("--repeats", type=int, default=7, help="timed rounds (best of N)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--quick", action="store_true", help="smoke run")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--no-quality", action="store_true",
                   help="skip the default segmenter's full fit (time and Dice)")
    p.add_argument("--mem-samples", type=int, default=16384)
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    p.add_argument("--mem-epochs-child", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.repeats = min(args.repeats, 2)
        args.mem_samples = 2048
    return args


def main(argv=None):
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    if args.memory_child:
        memory_child(args)
        return
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"python {platform.python_version()}, torch {torch.__version__}, skorch "
          f"{skorch.__version__}; {describe(device)}; torch threads "
          f"{torch.get_num_threads()}")
    if hasattr(os, "getloadavg"):
        print("load average at start: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    print(f"best of {args.repeats} interleaved rounds after a warm-up; 'x vs' = fit time "
          f"/ its raw loop's (best of each), 'med' = median of per-round ratios; "
          f"'extra us/step' = difference per optimiser step\n")
    start = time.perf_counter()
    precisions = [False, True] if device.type == "cuda" else [False]
    rows = []
    for section in args.sections.split(","):
        for amp in precisions:
            rows += bench_section(section, device, amp, args.repeats, args.quick)
    print_rows(rows)
    result = {"rows": rows}
    if not args.no_quality and not args.quick and "unet" in args.sections:
        seconds, dice = segmenter_quality(device)
        result["segmenter"] = {"fit_s": seconds, "dice": dice.tolist()}
        print(f"\nDefault CNNSegmenter, 600 scenes 32x32 (make_disk_scenes(800, "
              f"random_state=0), the last 200 held out): fit {seconds:.1f} s, Dice "
              f"disks {dice[0]:.3f}, squares {dice[1]:.3f}")
    if not args.no_memory and device.type == "cpu":
        mem = bench_memory(args)
        result["memory"] = mem
        first = mem["raw"][1]
        print(f"\nExtra peak RSS of fit ({args.mem_samples} images 1x16x16, small CNN, "
              f"data {first['data_mb']:.1f} MiB; {first['method']}; a process per cell):")
        for name, cells in mem.items():
            print(f"  {name:<12}1 epoch {cells[1]['extra_mb']:6.1f} MiB   3 epochs "
                  f"{cells[3]['extra_mb']:6.1f} MiB")
    if hasattr(os, "getloadavg"):
        print("\nload average at end: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    print(f"total time {time.perf_counter() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
