#!/usr/bin/env python3
"""nndl against the homework's own TF1 graph (tensorflow-cpu 2.21 through tf.compat.v1).

Three modes (scripts/tf-compare wraps them, with the venv and the nndl runs they need):

  step   From the initial weights, batch order and (CNN) dropout masks nndl exported
         (--export-init DIR --export-steps N), run the homework's graph step by step and compare:
         every step's training loss, every test evaluation, and every parameter tensor after
         step 1 and step N; and whether both flush denormal floats to zero (TF's kernels do).
         --check exits 1 past the tolerances below, or when the two treat denormals differently.
  seeds  The homework's original code (its own tf.random_normal / truncated_normal start, its own
         next_batch shuffle) over several seeds, against nndl's runs of the same seeds: mean,
         std, min-max of the final test accuracy and loss, Welch's t-test and Mann-Whitney U.
  growth The MLP's chaos: per-step |loss difference| from the same start, as a table and figure.

The graphs below are the homework's code. In `step` mode the only changes are the initial values
(nndl's), the batches (nndl's order) and, for the CNN, `tf.nn.dropout`'s own draws replaced by
nndl's masks with the same arithmetic (x * (mask / keep_prob), the quotient in float32 as libtorch
takes it; keep_prob 0.25 = 2^-2, so both frameworks' products are exact and equal). The run's
config.json is read: a CNN run with another keep_prob, without dropout at evaluation
("in_eval": false) or without dropout ("kind": "none") is followed with those settings (said in
the output, as a departure from the homework's graph); a setting the graph cannot follow (another
optimizer or schedule, augmentation, a model other than the export's) is refused in one line.

Tolerances (--check). float32 GEMMs and convolutions sum in a different order in MKL/oneDNN
(TF) and libtorch, so equal inputs give results that differ by a few ulps per reduction:
torch.testing.assert_close's float32 defaults (rtol 1.3e-6, atol 1e-5) are that scale for one
operation. One SGD step chains forward, backward and update, so the per-tensor check after step 1
uses rtol 1e-5 / atol 1e-5, and after step N the rtol is widened by a measured per-model growth
(see docs/parity.md): the MLP's N(0,1) start makes logits hundreds large and its training
chaotic, so its step-by-step check is only meaningful for its first steps.
"""
import argparse
import csv
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_eager_execution()
v1 = tf.compat.v1
KEEP_PROB = 0.25  # the homework's tf.nn.dropout(x, 0.25): its keep probability

# The homework's parameter shapes (TF layout), which its graphs below hard-code.
SHAPES = {
    "mlp": {"w1": (784, 256), "b1": (256,), "w2": (256, 256), "b2": (256,), "w3": (256, 10), "b3": (10,)},
    "cnn": {"w1": (5, 5, 1, 32), "b1": (32,), "w2": (5, 5, 32, 64), "b2": (64,), "w3": (3136, 1024), "b3": (1024,),
            "w4": (1024, 10), "b4": (10,)},
}

# Per model: (loss rtol per step up to N, parameter (rtol, atol) after step 1, after step N).
TOLERANCES = {
    "mlp": {"loss": 1e-4, "step1": (1e-5, 1e-5), "stepN": (1e-3, 1e-4)},
    "cnn": {"loss": 1e-4, "step1": (1e-5, 1e-5), "stepN": (1e-3, 1e-4)},
}


def read_idx(data, stem, kind):
    for name in (f"{stem}-{kind}-ubyte.gz", f"{stem}-{kind}-ubyte", f"{stem}.{kind}-ubyte.gz", f"{stem}.{kind}-ubyte"):
        path = os.path.join(data, name)
        if os.path.exists(path):
            raw = open(path, "rb").read()
            return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    sys.exit(f"tf_compare: {stem} not found in {data}")


def mnist(data):
    """As read_data_sets(one_hot=True): validation is the first 5000, images * (1/255) in f32."""
    def images(b):
        x = np.frombuffer(b, np.uint8, offset=16).reshape(-1, 784).astype(np.float32)
        return np.multiply(x, 1.0 / 255.0)

    def labels(b):
        return np.eye(10, dtype=np.float32)[np.frombuffer(b, np.uint8, offset=8)]

    tx, ty = images(read_idx(data, "train-images", "idx3")), labels(read_idx(data, "train-labels", "idx1"))
    return tx[5000:], ty[5000:], images(read_idx(data, "t10k-images", "idx3")), labels(read_idx(data, "t10k-labels", "idx1"))


# --- the homework's graphs -------------------------------------------------------------------

def homework_mlp(init, X, dropout=None):
    w1, w2, w3 = (tf.Variable(init[f"w{i}"], name=f"w{i}") for i in (1, 2, 3))
    b1, b2, b3 = (tf.Variable(init[f"b{i}"], name=f"b{i}") for i in (1, 2, 3))
    layer1 = tf.nn.relu(tf.add(tf.matmul(X, w1), b1))
    layer2 = tf.nn.relu(tf.add(tf.matmul(layer1, w2), b2))
    return tf.add(tf.matmul(layer2, w3), b3), [w1, b1, w2, b2, w3, b3]


def homework_cnn(init, X, dropout=None, keep_prob=KEEP_PROB):
    padding = "SAME"
    X_ = tf.reshape(X, [-1, 28, 28, 1])
    w1, w2, w3, w4 = (tf.Variable(init[f"w{i}"], name=f"w{i}") for i in (1, 2, 3, 4))
    b1, b2, b3, b4 = (tf.Variable(init[f"b{i}"], name=f"b{i}") for i in (1, 2, 3, 4))
    c1 = tf.nn.conv2d(X_, w1, strides=[1, 1, 1, 1], padding=padding)
    layer_1 = tf.nn.relu(tf.nn.bias_add(c1, b1))
    p1 = tf.nn.max_pool(layer_1, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding=padding)
    c2 = tf.nn.conv2d(p1, w2, strides=[1, 1, 1, 1], padding=padding)
    layer_2 = tf.nn.relu(tf.nn.bias_add(c2, b2))
    p2 = tf.nn.max_pool(layer_2, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding=padding)
    layer_full_connection = tf.nn.relu(tf.nn.bias_add(tf.matmul(tf.reshape(p2, [-1, 3136]), w3), b3))
    if dropout is None:
        layer_dropout = v1.nn.dropout(layer_full_connection, keep_prob)  # TF1: the 0.25 is keep_prob
    else:
        layer_dropout = layer_full_connection * dropout  # nndl's mask, already scaled by 1/keep_prob
    return tf.nn.bias_add(tf.matmul(layer_dropout, w4), b4), [w1, b1, w2, b2, w3, b3, w4, b4]


def graph(model, init, lr, masked):
    X = v1.placeholder(tf.float32, [None, 784])
    Y = v1.placeholder(tf.float32, [None, 10])
    M = v1.placeholder(tf.float32, [None, 1024]) if masked else None
    logits, params = (homework_mlp if model == "mlp" else homework_cnn)(init, X, M)
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(logits=logits, labels=Y))
    train = v1.train.GradientDescentOptimizer(learning_rate=lr).minimize(loss)
    accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.math.argmax(logits, 1), tf.math.argmax(Y, 1)), tf.float32))
    return X, Y, M, loss, train, accuracy, params


def unpack(masks, keep_prob):
    """nndl's bit-packed keep masks as the multiplier x * mask / keep_prob uses."""
    return np.unpackbits(masks, axis=-1).astype(np.float32) / np.float32(keep_prob)


def a_model(model):
    return f"{'an' if model == 'mlp' else 'a'} {model}"


def fail(msg):
    """One line on stderr and exit 2: the inputs cannot be compared (--check's FAIL exits 1)."""
    print(f"tf_compare: {msg}", file=sys.stderr)
    sys.exit(2)


def atomic_write(path, write, binary=False):
    """Writes path through write(file) under a temporary name in the same folder, then renames it,
    so that an interrupted run never leaves a half-written file."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    except OSError as e:
        fail(f"cannot write {path}: {e.strerror or e}")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open(path, "w") would (mkstemp's file is 0600)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            fail(f"cannot write {path}: {e.strerror or e}")
        raise


def is_eval_point(cfg, i):
    return i % cfg["eval_every"] == 0 or i + 1 == cfg["iterations"]


def load_dir(d, what):
    if not os.path.isdir(d):
        fail(f"{what} {d} is not a folder" if os.path.exists(d) else f"{what} {d} not found")
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".npy"):
            try:
                out[os.path.splitext(f)[0]] = np.load(os.path.join(d, f))
            except (OSError, ValueError, EOFError) as e:
                fail(f"cannot read {os.path.join(d, f)}: {e}")
    return out


def read_config(run):
    """The run's config.json, after checking that the folder holds one."""
    if not os.path.isdir(run):
        fail(f"--run {run} is not a folder" if os.path.exists(run) else f"--run {run} not found")
    path = os.path.join(run, "config.json")
    try:
        with open(path) as f:
            cfg = json.load(f)
    except FileNotFoundError:
        fail(f"{path} not found: --run must be an nndl run folder")
    except (OSError, ValueError) as e:
        fail(f"cannot read {path}: {e}")
    missing = [k for k in ("model", "lr", "iterations", "eval_every", "optimizer", "schedule") if k not in cfg] \
        if isinstance(cfg, dict) else ["fields"]
    if missing or not isinstance(cfg["schedule"], dict):
        fail(f"{path} is not an nndl run config (no {', '.join(missing) or 'schedule kind'})")
    return cfg


def check_run(cfg, exported, a, model=None):
    """Refuses, in one line, a run and export the homework's graph cannot follow. Returns the
    model and the parameters; leaves batches, losses and masks in `exported`."""
    if model is not None and cfg["model"] != model:
        fail(f"{a.run}/config.json is {a_model(cfg['model'])} run; this mode follows the {model}")
    model = cfg["model"]
    if model not in SHAPES:
        fail(f"{a.run}/config.json: model {model!r}, the homework's graphs are mlp and cnn")
    if cfg["optimizer"] != "sgd" or cfg["schedule"].get("kind") != "constant":
        fail(f"only the faithful presets (constant-rate SGD) match the homework's graph; this run has optimizer "
             f"{cfg['optimizer']}, schedule {cfg['schedule'].get('kind')}")
    if cfg.get("augment_shift", 0):
        fail(f"this run shifts its images (augment_shift {cfg['augment_shift']}); the homework's graph does not")
    if "batches" not in exported:
        fail(f"{a.init}/batches.npy not found: --init must be a folder written by nndl --export-init")
    params = {k: v for k, v in exported.items() if re.fullmatch(r"[wb]\d+", k)}
    if set(params) != set(SHAPES[model]):
        other = next((m for m in SHAPES if set(SHAPES[m]) == set(params)), None)
        found = f"{a_model(other)} export" if other else f"parameters {', '.join(sorted(params)) or 'none'}"
        fail(f"{a.init} holds {found}, but {a.run}/config.json is {a_model(model)} run")
    for k, shape in SHAPES[model].items():
        if tuple(params[k].shape) != shape:
            fail(f"{a.init}/{k}.npy has shape {tuple(params[k].shape)}, the homework's {model} {k} is {shape}")
    batches = exported["batches"]
    if batches.ndim != 2 or batches.shape[0] < 1:
        fail(f"{a.init}/batches.npy has shape {batches.shape}, expected [iterations, batch]")
    if batches.shape[0] != cfg["iterations"]:
        fail(f"{a.init}/batches.npy holds {batches.shape[0]} batches, {a.run}/config.json {cfg['iterations']} iterations: "
             "not the same run")
    return model, params


def read_metrics(run):
    path = os.path.join(run, "metrics.csv")
    out = {}
    try:
        with open(path) as f:
            for r in csv.DictReader(f):
                out[(int(r["iteration"]), r["split"])] = (float(r["loss"]), float(r["accuracy"]))
    except FileNotFoundError:
        fail(f"{path} not found: --run must be an nndl run folder")
    except (OSError, KeyError, ValueError, TypeError) as e:
        fail(f"cannot read {path}: {e!r}")
    return out


def compare_tensors(ours, theirs, rtol, atol):
    """Per tensor: max |a-b|, max |a-b|/|b| (where |b| > atol), and whether |a-b| <= atol + rtol|b|."""
    rows = []
    for name in sorted(theirs):
        a, b = ours[name].astype(np.float64), theirs[name].astype(np.float64)
        diff = np.abs(a - b)
        rel = diff / np.maximum(np.abs(b), atol)
        rows.append((name, a.shape, float(diff.max()), float(rel.max()), bool(np.all(diff <= atol + rtol * np.abs(b)))))
    return rows


def tf_flushes_denormals():
    """Whether TF's kernels flush denormal floats to zero: an elementwise product and a matmul
    whose exact results are denormal (1e-40) or built from denormal products (2.56e-38)."""
    with v1.Graph().as_default(), v1.Session() as sess:
        tiny = tf.constant(np.full([100, 256], 1e-20, np.float32))
        square = sess.run(tiny * tiny)
        product = sess.run(tf.matmul(tiny, tf.constant(np.full([256, 256], 1e-20, np.float32))))
    return bool(np.all(square == 0) and np.all(product == 0))


def dropout_settings(cfg, model):
    """(keep_prob or None, in_eval) of the run, and how they differ from the homework's graph."""
    d = cfg.get("dropout", {"kind": "none"})
    if not isinstance(d, dict) or d.get("kind") not in ("none", "keep_prob"):
        fail(f"{model} run with dropout {d!r}: tf_compare knows kind none and keep_prob")
    if model == "mlp":
        if d["kind"] != "none":
            fail(f"the homework's MLP has no dropout; this run has {d}")
        return None, False, []
    if d["kind"] == "none":
        return None, False, ["no dropout (the homework's CNN keeps 0.25 in training and evaluation)"]
    try:
        keep_prob, in_eval = float(d["keep_prob"]), bool(d["in_eval"])
    except (KeyError, TypeError, ValueError):
        fail(f"cannot read the run's dropout settings {d!r}")
    notes = []
    if keep_prob != KEEP_PROB:
        notes.append(f"dropout keep_prob {keep_prob:g} (the homework's {KEEP_PROB:g})")
    if not in_eval:
        notes.append("no dropout at evaluation (the homework's evaluation runs through its dropout)")
    return keep_prob, in_eval, notes


def step_mode(a):
    cfg = read_config(a.run)
    exported = load_dir(a.init, "--init")
    model, init = check_run(cfg, exported, a)
    batches = exported["batches"]
    losses = exported.get("losses")
    masks_train, masks_eval = exported.get("masks_train"), exported.get("masks_eval")
    steps = len(losses) if losses is not None else 0
    keep_prob, in_eval, departures = dropout_settings(cfg, model)
    masked = model == "cnn"  # the CNN's dropout layer takes a multiplier: nndl's mask, or ones
    if keep_prob is not None and (steps == 0 or masks_train is None):
        fail(f"the CNN needs nndl's dropout masks: {a.init} has no masks_train.npy (export with --export-steps N)")
    # The CNN with dropout can follow nndl only as far as its masks go.
    iterations = steps if keep_prob is not None else cfg["iterations"]
    if steps > iterations or (keep_prob is not None and len(masks_train) < steps):
        fail(f"{a.init}: {steps} steps' losses but {len(masks_train) if keep_prob is not None else iterations} "
             f"{'training masks' if keep_prob is not None else 'iterations'}: not one export")
    eval_points = sum(1 for i in range(iterations) if is_eval_point(cfg, i))
    if keep_prob is not None and in_eval and (masks_eval is None or len(masks_eval) < eval_points):
        fail(f"{a.init} holds {0 if masks_eval is None else len(masks_eval)} evaluations' dropout masks "
             f"(masks_eval.npy), the run evaluates {eval_points} times in its first {iterations} steps")
    for name, drawn in (("masks_train", keep_prob is not None), ("masks_eval", keep_prob is not None and in_eval)):
        if exported.get(name) is not None and not drawn:
            fail(f"{a.init} holds {name}.npy but {a.run}/config.json draws no such masks: not one run's export")
    for done in sorted({1, steps}) if steps else []:
        if not os.path.isdir(os.path.join(a.init, f"step-{done}")):
            fail(f"{a.init}/step-{done} not found: export with --export-steps {steps}")
    train_x, train_y, test_x, test_y = mnist(a.data)
    if batches.size and (batches.max() >= len(train_x) or batches.min() < 0):
        fail(f"{a.init}/batches.npy indexes past the {len(train_x)} training images")
    X, Y, M, loss, train, accuracy, params = graph(model, init, cfg["lr"], masked)
    ours = read_metrics(a.run)
    for i in range(iterations):
        if is_eval_point(cfg, i) and (i, "test") not in ours:
            fail(f"{a.run}/metrics.csv has no test evaluation at iteration {i}")
    ones = lambda n: np.ones([n, 1024], np.float32)  # x * 1 = x: no dropout
    tol = TOLERANCES[model]
    failures, step_losses, evals, param_checks = [], [], [], {}
    with v1.Session() as sess:
        v1.global_variables_initializer().run()
        ev = 0
        for i in range(iterations):
            feed = {X: train_x[batches[i]], Y: train_y[batches[i]]}
            if masked:
                feed[M] = unpack(masks_train[i], keep_prob) if keep_prob is not None else ones(len(batches[i]))
            _, l = sess.run([train, loss], feed_dict=feed)
            if i < steps:
                step_losses.append((i, float(losses[i]), float(l)))
            if is_eval_point(cfg, i):
                feed = {X: test_x, Y: test_y}
                if masked:
                    feed[M] = unpack(masks_eval[ev], keep_prob) if keep_prob is not None and in_eval else ones(len(test_x))
                ev += 1
                tl, ta = sess.run([loss, accuracy], feed_dict=feed)
                nl, na = ours[(i, "test")]
                evals.append((i, nl, float(tl), na, float(ta)))
            done = i + 1
            if steps and done in (1, steps):
                theirs = dict(zip([p.op.name for p in params], sess.run(params)))
                mine = load_dir(os.path.join(a.init, f"step-{done}"), "export folder")
                if set(mine) != set(theirs):
                    fail(f"{a.init}/step-{done} holds {', '.join(sorted(mine)) or 'nothing'}, not the {model}'s parameters")
                rtol, atol = tol["step1"] if done == 1 else tol["stepN"]
                param_checks[done] = (rtol, atol, compare_tensors(mine, theirs, rtol, atol))
    print(f"{model.upper()}: the homework's TF graph (TF {tf.__version__}) against nndl, same start, batches{' and dropout masks' if keep_prob is not None else ''}")
    for d in departures:
        print(f"  as this run's config.json, not the homework's graph: {d}")
    if step_losses:
        print(f"\nper-step training loss (the batch before its update), {len(step_losses)} steps:")
        print(f"{'step':>5} {'nndl':>14} {'tf':>14} {'rel diff':>9}")
        worst = 0.0
        for i, n, t in step_losses:
            rel = abs(n - t) / max(abs(t), 1e-12)
            worst = max(worst, rel)
            if i < 10 or i % max(1, len(step_losses) // 10) == 0 or i == len(step_losses) - 1:
                print(f"{i:>5} {n:>14.8g} {t:>14.8g} {rel:>9.2e}")
            if rel > tol["loss"]:
                failures.append(f"step {i} loss: rel diff {rel:.2e} > {tol['loss']:.0e}")
        print(f"largest per-step relative difference: {worst:.2e} (tolerance {tol['loss']:.0e})")
    print(f"\ntest evaluations:\n{'iter':>5} {'nndl loss':>12} {'tf loss':>12} {'rel diff':>9} {'nndl acc':>9} {'tf acc':>9}")
    for i, nl, tl, na, ta in evals:
        rel = abs(nl - tl) / max(abs(tl), 1e-12)
        print(f"{i:>5} {nl:>12.7g} {tl:>12.7g} {rel:>9.2e} {na:>9.4f} {ta:>9.4f}")
        if i < max(steps, 1) and rel > tol["loss"]:
            failures.append(f"test loss at {i}: rel diff {rel:.2e} > {tol['loss']:.0e}")
    for done, (rtol, atol, rows) in sorted(param_checks.items()):
        print(f"\nparameters after step {done} (rtol {rtol:.0e}, atol {atol:.0e}):")
        print(f"{'tensor':>6} {'shape':>16} {'max abs diff':>13} {'max rel diff':>13} {'within':>7}")
        for name, shape, mx, rel, ok in rows:
            print(f"{name:>6} {str(tuple(shape)):>16} {mx:>13.3e} {rel:>13.3e} {'yes' if ok else 'NO':>7}")
            if not ok:
                failures.append(f"{name} after step {done}: max abs {mx:.2e}, max rel {rel:.2e}")
    flushes = tf_flushes_denormals()
    ours_flush = cfg.get("flush_denormals", False)
    print(f"\ndenormal floats: TF {'flushes them to zero' if flushes else 'keeps them'}; this nndl run "
          f"{'flushed' if ours_flush else 'kept'} them (flush_denormals: {str(ours_flush).lower()})")
    if flushes != ours_flush:
        failures.append("denormal floats: nndl's run and TF's kernels treat them differently (--flush-denormals)")
    if a.check:
        print(f"\ncheck: {'PASS' if not failures else 'FAIL'}" + "".join(f"\n  {f}" for f in failures))
        sys.exit(1 if failures else 0)


# --- the original, over seeds ----------------------------------------------------------------

def original_run(model, seed, iterations, eval_every, data, lr):
    """The homework's script as written (its own initialisers and shuffle), seeded."""
    train_x, train_y, test_x, test_y = data
    v1.reset_default_graph()
    v1.set_random_seed(seed)
    rng = np.random.RandomState(seed)
    X = v1.placeholder(tf.float32, [None, 784])
    Y = v1.placeholder(tf.float32, [None, 10])
    if model == "mlp":
        init = {"w1": v1.random_normal([784, 256]), "w2": v1.random_normal([256, 256]), "w3": v1.random_normal([256, 10]),
                "b1": v1.random_normal([256]), "b2": v1.random_normal([256]), "b3": v1.random_normal([10])}
        logits, _ = homework_mlp(init, X)
    else:
        tn = lambda s: v1.truncated_normal(s, stddev=0.1)
        init = {"w1": tn([5, 5, 1, 32]), "w2": tn([5, 5, 32, 64]), "w3": tn([3136, 1024]), "w4": tn([1024, 10]),
                "b1": tf.constant(0.1, shape=[32]), "b2": tf.constant(0.1, shape=[64]), "b3": tf.constant(0.1, shape=[1024]), "b4": tf.constant(0.1, shape=[10])}
        logits, _ = homework_cnn(init, X)
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(logits=logits, labels=Y))
    train = v1.train.GradientDescentOptimizer(learning_rate=lr).minimize(loss)
    accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.math.argmax(logits, 1), tf.math.argmax(Y, 1)), tf.float32))
    # DataSet.next_batch: shuffle before the first batch; at an epoch's end the rest of the old
    # order, then the start of a fresh shuffle.
    n, order, pos, batches = len(train_x), rng.permutation(len(train_x)), 0, []
    with v1.Session() as sess:
        v1.global_variables_initializer().run()
        for i in range(iterations):
            if pos + 100 > n:
                rest = order[pos:]
                order = order[rng.permutation(n)]
                idx = np.concatenate([rest, order[:100 - len(rest)]])
                pos = 100 - len(rest)
            else:
                idx, pos = order[pos:pos + 100], pos + 100
            sess.run(train, feed_dict={X: train_x[idx], Y: train_y[idx]})
        tl, ta = sess.run([loss, accuracy], feed_dict={X: test_x, Y: test_y})
    return float(tl), float(ta)


def stats(xs):
    xs = np.asarray(xs)
    return f"{xs.mean():.4f} ± {xs.std(ddof=1):.4f} (min {xs.min():.4f}, max {xs.max():.4f})"


def seeds_mode(a):
    from scipy import stats as st
    data = mnist(a.data)
    lr = {"mlp": 0.005, "cnn": 0.01}[a.model]
    rows = []
    for seed in a.seeds:
        run = os.path.join(a.work, f"nndl-{a.model}-{seed}")
        # One libtorch thread: two OpenMP threads on a busy 2-core machine run many times slower.
        try:
            subprocess.run([a.nndl, a.model, "--seed", str(seed), "--iterations", str(a.iterations), "--device", "cpu", "--threads", "1", "--quiet",
                            "--data", a.data, "--out", run, "--force"], check=True)
        except OSError as e:
            fail(f"cannot run --nndl {a.nndl}: {e.strerror or e}")
        except subprocess.CalledProcessError as e:
            fail(f"nndl {a.model} --seed {seed} failed (exit {e.returncode})")
        try:
            with open(os.path.join(run, "summary.json")) as f:
                s = json.load(f)
        except (OSError, ValueError) as e:
            fail(f"cannot read nndl's {os.path.join(run, 'summary.json')}: {e}")
        tl, ta = original_run(a.model, seed, a.iterations, a.iterations, data, lr)
        rows.append((seed, s["final_test_accuracy"], s["final_test_loss"], ta, tl))
        print(f"seed {seed}: nndl {100 * s['final_test_accuracy']:.2f}% / {s['final_test_loss']:.4f}   TF {100 * ta:.2f}% / {tl:.4f}", flush=True)
    n_acc, n_loss, t_acc, t_loss = (np.array([r[k] for r in rows]) for k in (1, 2, 3, 4))
    welch = st.ttest_ind(n_acc, t_acc, equal_var=False)
    mw = st.mannwhitneyu(n_acc, t_acc, alternative="two-sided")
    welch_loss = st.ttest_ind(n_loss, t_loss, equal_var=False)
    print(f"\n{a.model.upper()}, {len(rows)} seeds, {a.iterations} iterations (std: sample, n-1)")
    print(f"| | nndl | original TF |\n|---|---|---|")
    print(f"| final test accuracy | {stats(n_acc)} | {stats(t_acc)} |")
    print(f"| final test loss | {stats(n_loss)} | {stats(t_loss)} |")
    print(f"difference of mean accuracy: {100 * (n_acc.mean() - t_acc.mean()):+.2f} percentage points; "
          f"Welch's t p = {welch.pvalue:.3f}, Mann-Whitney U p = {mw.pvalue:.3f}; loss: Welch's t p = {welch_loss.pvalue:.3f}")
    if a.out:
        def write(f):
            f.write("seed,nndl_accuracy,nndl_loss,tf_accuracy,tf_loss\n")
            f.writelines(",".join(str(x) for x in r) + "\n" for r in rows)
        atomic_write(a.out, write)


def growth_mode(a):
    """Runs step mode's MLP comparison silently and writes |loss difference| against step."""
    cfg = read_config(a.run)
    exported = load_dir(a.init, "--init")
    _, init = check_run(cfg, exported, a, model="mlp")
    dropout_settings(cfg, "mlp")
    batches, losses = exported["batches"], exported.get("losses")
    if losses is None or len(losses) == 0:
        fail(f"{a.init}/losses.npy not found: export with --export-steps N")
    if len(losses) > len(batches):
        fail(f"{a.init}: {len(losses)} steps' losses but {len(batches)} batches: not one export")
    train_x, train_y, _, _ = mnist(a.data)
    X, Y, _, loss, train, _, _ = graph("mlp", init, cfg["lr"], False)
    rows = []
    with v1.Session() as sess:
        v1.global_variables_initializer().run()
        for i in range(len(losses)):
            _, l = sess.run([train, loss], feed_dict={X: train_x[batches[i]], Y: train_y[batches[i]]})
            rows.append((i, float(losses[i]), float(l), abs(float(losses[i]) - float(l)) / abs(float(l))))
    def write(f):
        f.write("step,nndl_loss,tf_loss,rel_diff\n")
        f.writelines(f"{i},{n},{t},{r}\n" for i, n, t, r in rows)
    atomic_write(a.out, write)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    ax.semilogy([r[0] for r in rows], [max(r[3], 1e-9) for r in rows], marker=".")
    ax.axhline(1e-4, color="gray", linestyle="--", label="step check tolerance 1e-4")
    ax.set_xlabel("step")
    ax.set_ylabel("|nndl loss - TF loss| / TF loss")
    ax.set_title("Faithful MLP from the same start and batches: float32 rounding grows")
    ax.legend()
    fig.tight_layout()
    fmt = os.path.splitext(a.figure)[1].lstrip(".").lower() or "png"
    atomic_write(a.figure, lambda f: fig.savefig(f, format=fmt), binary=True)
    for i, n, t, r in rows[:: max(1, len(rows) // 15)]:
        print(f"{i:>4} {n:>14.8g} {t:>14.8g} {r:>9.2e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("step")
    s.add_argument("--init", required=True, help="folder written by nndl --export-init (and --export-steps)")
    s.add_argument("--run", required=True, help="nndl run folder (config.json, metrics.csv)")
    s.add_argument("--check", action="store_true", help="exit 1 past the tolerances")
    g = sub.add_parser("growth")
    g.add_argument("--init", required=True)
    g.add_argument("--run", required=True)
    g.add_argument("--out", required=True, help="CSV of the per-step differences")
    g.add_argument("--figure", required=True, help="PNG")
    d = sub.add_parser("seeds")
    d.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    d.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    d.add_argument("--iterations", type=int, default=4001)
    d.add_argument("--nndl", required=True)
    d.add_argument("--work", required=True)
    d.add_argument("--out", help="CSV of every seed's results")
    for p in (s, g, d):
        p.add_argument("--data", default=os.environ.get("MNIST_DIR", "data/mnist"))
    a = ap.parse_args()
    {"step": step_mode, "seeds": seeds_mode, "growth": growth_mode}[a.mode](a)


if __name__ == "__main__":
    main()
