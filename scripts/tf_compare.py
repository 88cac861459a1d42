#!/usr/bin/env python3
"""Step-by-step comparison with the original: runs the seed's TF1 graph (through tf.compat.v1)
from the initial weights and batch order nndl exported, and sets its losses and accuracies beside
the ones in nndl's metrics.csv, evaluation point by evaluation point.

    target/release/nndl mlp --iterations 500 --export-init /tmp/init --out /tmp/run --threads 2
    scripts/tf_compare.py --init /tmp/init --run /tmp/run --data data/mnist

Needs `pip install tensorflow-cpu==2.21.0` (scripts/tf_compare sets up .venv-tf with it). The graph
below is the seed's code; only its tf.random_normal / tf.truncated_normal initial values are
replaced by the exported ones, and mnist.train.next_batch by the exported batch order. The CNN
draws its dropout masks from TF's generator, so only the MLP can agree step for step; a CNN run is
compared as two samples of the same process.
"""
import argparse
import csv
import gzip
import json
import os
import sys

import numpy as np
import tensorflow as tf

tf.compat.v1.disable_eager_execution()
v1 = tf.compat.v1


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


def seed_mlp(init, X):
    w1, w2, w3 = (tf.Variable(init[f"w{i}"]) for i in (1, 2, 3))
    b1, b2, b3 = (tf.Variable(init[f"b{i}"]) for i in (1, 2, 3))
    layer1 = tf.nn.relu(tf.add(tf.matmul(X, w1), b1))
    layer2 = tf.nn.relu(tf.add(tf.matmul(layer1, w2), b2))
    return tf.add(tf.matmul(layer2, w3), b3)


def seed_cnn(init, X):
    padding = "SAME"
    X_ = tf.reshape(X, [-1, 28, 28, 1])
    w1, w2, w3, w4 = (tf.Variable(init[f"w{i}"]) for i in (1, 2, 3, 4))
    b1, b2, b3, b4 = (tf.Variable(init[f"b{i}"]) for i in (1, 2, 3, 4))
    c1 = tf.nn.conv2d(X_, w1, strides=[1, 1, 1, 1], padding=padding)
    layer_1 = tf.nn.relu(tf.nn.bias_add(c1, b1))
    p1 = tf.nn.max_pool(layer_1, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding=padding)
    c2 = tf.nn.conv2d(p1, w2, strides=[1, 1, 1, 1], padding=padding)
    layer_2 = tf.nn.relu(tf.nn.bias_add(c2, b2))
    p2 = tf.nn.max_pool(layer_2, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding=padding)
    layer_full_connection = tf.nn.relu(tf.nn.bias_add(tf.matmul(tf.reshape(p2, [-1, 3136]), w3), b3))
    layer_dropout = v1.nn.dropout(layer_full_connection, 0.25)  # TF1: the 0.25 is keep_prob
    return tf.nn.bias_add(tf.matmul(layer_dropout, w4), b4)


def run_tf(cfg, init, batches, data):
    train_x, train_y, test_x, test_y = data
    X = v1.placeholder(tf.float32, [None, 784])
    Y = v1.placeholder(tf.float32, [None, 10])
    logits = (seed_mlp if cfg["model"] == "mlp" else seed_cnn)(init, X)
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(logits=logits, labels=Y))
    optimizer = v1.train.GradientDescentOptimizer(learning_rate=cfg["lr"]).minimize(loss)
    accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.math.argmax(logits, 1), tf.math.argmax(Y, 1)), tf.float32))
    rows, sum_loss, sum_acc, since = [], 0.0, 0.0, 0
    with v1.Session() as sess:
        v1.global_variables_initializer().run()
        for i in range(cfg["iterations"]):
            idx = batches[i]
            # loss and accuracy on the batch before the update, as nndl's training rows
            _, l, a = sess.run([optimizer, loss, accuracy], feed_dict={X: train_x[idx], Y: train_y[idx]})
            sum_loss, sum_acc, since = sum_loss + l, sum_acc + a, since + 1
            if i % cfg["eval_every"] == 0 or i + 1 == cfg["iterations"]:
                tl, ta = sess.run([loss, accuracy], feed_dict={X: test_x, Y: test_y})
                rows.append({"iteration": i, "train": (sum_loss / since, sum_acc / since), "test": (float(tl), float(ta))})
                sum_loss, sum_acc, since = 0.0, 0.0, 0
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", required=True, help="folder written by nndl --export-init")
    ap.add_argument("--run", required=True, help="nndl run folder (config.json, metrics.csv)")
    ap.add_argument("--data", default=os.environ.get("MNIST_DIR", "data/mnist"))
    ap.add_argument("--out", help="also write TF's metrics here (CSV)")
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.run, "config.json")))
    init = {os.path.splitext(f)[0]: np.load(os.path.join(a.init, f)) for f in os.listdir(a.init) if f.endswith(".npy")}
    batches = init.pop("batches")
    if batches.shape != (cfg["iterations"], cfg["batch_size"]):
        sys.exit(f"tf_compare: batches.npy is {batches.shape}, the run has {cfg['iterations']} x {cfg['batch_size']}")
    if cfg["optimizer"] != "sgd" or cfg["schedule"]["kind"] != "constant":
        sys.exit("tf_compare: only the faithful presets (constant-rate SGD) match the seed's graph")
    ours = {}
    for r in csv.DictReader(open(os.path.join(a.run, "metrics.csv"))):
        ours[(int(r["iteration"]), r["split"])] = (float(r["loss"]), float(r["accuracy"]))
    rows = run_tf(cfg, init, batches, mnist(a.data))
    print(f"{cfg['model'].upper()}: the seed's TF graph (TF {tf.__version__}) vs nndl, same initial weights and batches")
    print(f"{'iter':>5} {'split':>5} {'nndl loss':>12} {'tf loss':>12} {'rel diff':>9} {'nndl acc':>9} {'tf acc':>9}")
    worst = {}
    out = []
    for r in rows:
        for split in ("train", "test"):
            tl, ta = r[split]
            nl, na = ours[(r["iteration"], split)]
            rel = abs(nl - tl) / max(abs(tl), 1e-12)
            worst[split] = max(worst.get(split, 0.0), rel)
            out.append((r["iteration"], split, tl, ta))
            print(f"{r['iteration']:>5} {split:>5} {nl:>12.6g} {tl:>12.6g} {rel:>9.2e} {na:>9.4f} {ta:>9.4f}")
    first = rows[0]["iteration"]
    rel0 = abs(ours[(first, "test")][0] - rows[0]["test"][0]) / abs(rows[0]["test"][0])
    print(f"test loss after iteration {first}: relative difference {rel0:.2e}; largest over the run: train {worst['train']:.2e}, test {worst['test']:.2e}")
    if a.out:
        with open(a.out, "w") as f:
            f.write("iteration,split,loss,accuracy\n")
            f.writelines(f"{i},{s},{l},{acc}\n" for i, s, l, acc in out)


if __name__ == "__main__":
    main()
