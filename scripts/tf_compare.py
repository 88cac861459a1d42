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
nndl's masks with the same arithmetic (x * mask / keep_prob; keep_prob 0.25 = 2^-2, so both
frameworks' products are exact and equal).

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
import subprocess
import sys

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_eager_execution()
v1 = tf.compat.v1
KEEP_PROB = 0.25

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


def homework_cnn(init, X, dropout=None):
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
        layer_dropout = v1.nn.dropout(layer_full_connection, KEEP_PROB)  # TF1: the 0.25 is keep_prob
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


def unpack(masks):
    """nndl's bit-packed keep masks as the multiplier x * mask / keep_prob uses."""
    return np.unpackbits(masks, axis=-1).astype(np.float32) / np.float32(KEEP_PROB)


def is_eval_point(cfg, i):
    return i % cfg["eval_every"] == 0 or i + 1 == cfg["iterations"]


def load_dir(d):
    return {os.path.splitext(f)[0]: np.load(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".npy")}


def read_metrics(run):
    out = {}
    for r in csv.DictReader(open(os.path.join(run, "metrics.csv"))):
        out[(int(r["iteration"]), r["split"])] = (float(r["loss"]), float(r["accuracy"]))
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


def step_mode(a):
    cfg = json.load(open(os.path.join(a.run, "config.json")))
    if cfg["optimizer"] != "sgd" or cfg["schedule"]["kind"] != "constant":
        sys.exit("tf_compare: only the faithful presets (constant-rate SGD) match the homework's graph")
    exported = load_dir(a.init)
    batches = exported.pop("batches")
    losses = exported.pop("losses", None)
    masks_train, masks_eval = exported.pop("masks_train", None), exported.pop("masks_eval", None)
    init = exported
    model = cfg["model"]
    steps = len(losses) if losses is not None else 0
    masked = model == "cnn"
    if masked and masks_train is None:
        sys.exit("tf_compare: the CNN needs nndl's dropout masks: export with --export-steps N")
    # The CNN can follow nndl only as far as its masks go.
    iterations = steps if masked else cfg["iterations"]
    train_x, train_y, test_x, test_y = mnist(a.data)
    X, Y, M, loss, train, accuracy, params = graph(model, init, cfg["lr"], masked)
    ours = read_metrics(a.run)
    tol = TOLERANCES[model]
    failures, step_losses, evals, param_checks = [], [], [], {}
    with v1.Session() as sess:
        v1.global_variables_initializer().run()
        ev = 0
        for i in range(iterations):
            feed = {X: train_x[batches[i]], Y: train_y[batches[i]]}
            if masked:
                feed[M] = unpack(masks_train[i])
            _, l = sess.run([train, loss], feed_dict=feed)
            if i < steps:
                step_losses.append((i, float(losses[i]), float(l)))
            if is_eval_point(cfg, i):
                feed = {X: test_x, Y: test_y}
                if masked:
                    feed[M] = unpack(masks_eval[ev])
                ev += 1
                tl, ta = sess.run([loss, accuracy], feed_dict=feed)
                nl, na = ours[(i, "test")]
                evals.append((i, nl, float(tl), na, float(ta)))
            done = i + 1
            if steps and done in (1, steps):
                theirs = dict(zip([p.op.name for p in params], sess.run(params)))
                mine = load_dir(os.path.join(a.init, f"step-{done}"))
                rtol, atol = tol["step1"] if done == 1 else tol["stepN"]
                param_checks[done] = (rtol, atol, compare_tensors(mine, theirs, rtol, atol))
    print(f"{model.upper()}: the homework's TF graph (TF {tf.__version__}) against nndl, same start, batches{' and dropout masks' if masked else ''}")
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
        subprocess.run([a.nndl, a.model, "--seed", str(seed), "--iterations", str(a.iterations), "--device", "cpu", "--threads", "1", "--quiet",
                        "--data", a.data, "--out", run, "--force"], check=True)
        s = json.load(open(os.path.join(run, "summary.json")))
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
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            f.write("seed,nndl_accuracy,nndl_loss,tf_accuracy,tf_loss\n")
            f.writelines(",".join(str(x) for x in r) + "\n" for r in rows)


def growth_mode(a):
    """Runs step mode's MLP comparison silently and writes |loss difference| against step."""
    exported = load_dir(a.init)
    batches, losses = exported.pop("batches"), exported.pop("losses")
    cfg = json.load(open(os.path.join(a.run, "config.json")))
    train_x, train_y, _, _ = mnist(a.data)
    X, Y, _, loss, train, _, _ = graph("mlp", exported, cfg["lr"], False)
    rows = []
    with v1.Session() as sess:
        v1.global_variables_initializer().run()
        for i in range(len(losses)):
            _, l = sess.run([train, loss], feed_dict={X: train_x[batches[i]], Y: train_y[batches[i]]})
            rows.append((i, float(losses[i]), float(l), abs(float(losses[i]) - float(l)) / abs(float(l))))
    with open(a.out, "w") as f:
        f.write("step,nndl_loss,tf_loss,rel_diff\n")
        f.writelines(f"{i},{n},{t},{r}\n" for i, n, t, r in rows)
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
    fig.savefig(a.figure)
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
