#!/usr/bin/env python3
"""The seed's XOR algorithm in plain Python, replayed from `nndl xor --dump` files.

The classes below are the homework's Neuron/Layer/Network with the same operations in the same
order; only its `random()` initialisation and `shuffle(dataset)` are replaced by the dump's
initial weights and per-epoch sample orders. Every recorded loss must equal nndl's exactly.

    scripts/xor_parity.py --nndl target/release/nndl --seeds 0 1 2 3 4   # dump and compare
    scripts/xor_parity.py run.json [more.json ...]                       # compare given dumps

--preset homework (the default) or robust, as `nndl xor --preset`; "seed" is read as homework.
Exit status: 0 when every dump matches, 1 when one differs, 2 when a dump or nndl cannot be read.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def sigmoid_derivative(x):
    return x * (1.0 - x)


def mse(output, expected):
    return (expected - output) ** 2


def mse_derivative(output, expected):
    return expected - output


class Neuron:
    def __init__(self, weights, bias):
        self.weights = weights
        self.bias = bias
        self.delta = None
        self.output = None

    def update(self, inputs, learning_rate):
        for i in range(len(inputs)):
            self.weights[i] += self.delta * inputs[i] * learning_rate
        self.bias += self.delta * learning_rate

    def feedforward(self, inputs):
        weighted_sum = 0.0
        for i in range(len(inputs)):
            weighted_sum += inputs[i] * self.weights[i]
        weighted_sum += self.bias
        self.output = sigmoid(weighted_sum)
        return self.output


class Layer:
    def __init__(self, neurons):
        self.neurons = neurons

    def update(self, inputs, learning_rate):
        for n in self.neurons:
            n.update(inputs, learning_rate)

    def feedforward(self, inputs):
        for n in self.neurons:
            n.feedforward(inputs)

    def outputs(self):
        return [n.output for n in self.neurons]


class Network:
    def __init__(self):
        self.layers = []

    def append_dumped_layer(self, neurons):
        """Replaces the seed's append_layer: the weights come from the dump, not random()."""
        self.layers.append(Layer([Neuron(list(n["weights"]), n["bias"]) for n in neurons]))

    def update(self, inputs, learning_rate):
        for layer in self.layers:
            layer.update(inputs, learning_rate)
            inputs = layer.outputs()

    def feedforward(self, inputs):
        for layer in self.layers:
            layer.feedforward(inputs)
            inputs = layer.outputs()
        return inputs

    def feedback(self, expected):
        for i in range(len(expected)):
            rightmost_layer = self.layers[-1]
            neuron = rightmost_layer.neurons[i]
            neuron.delta = mse_derivative(neuron.output, expected[i])
        for i in range(len(self.layers) - 2, -1, -1):
            left_layer = self.layers[i]
            right_layer = self.layers[i + 1]
            for j in range(len(left_layer.neurons)):
                error = 0.0
                for rn in right_layer.neurons:
                    error += rn.weights[j] * rn.delta
                neuron = left_layer.neurons[j]
                neuron.delta = error * sigmoid_derivative(neuron.output)

    def get_loss(self, dataset):
        loss = 0.0
        for data in dataset:
            outputs = self.feedforward(data[0])
            expected = data[1]
            for i in range(len(expected)):
                loss += mse(outputs[i], expected[i])
        loss /= len(dataset)
        return loss


SAMPLES = [[[0, 0], [0]], [[0, 1], [1]], [[1, 0], [1]], [[1, 1], [0]]]


def replay(dump):
    """The seed's training loop; returns [(epoch, loss)] every log_every epochs and at the last
    epoch (as nndl records them)."""
    cfg = dump["config"]
    epochs = len(dump["orders"])
    learning_rate = cfg["learning_rate"]
    network = Network()
    for neurons in dump["initial"]:
        network.append_dumped_layer(neurons)
    losses = []
    for epoch, order in enumerate(dump["orders"]):
        dataset = [SAMPLES[i] for i in order]  # replaces shuffle(dataset)
        for data in dataset:
            train_datum = data[0]
            train_label = data[1]
            network.feedforward(train_datum)
            network.feedback(train_label)
            network.update(train_datum, learning_rate)
        if epoch % cfg["log_every"] == 0 or epoch + 1 == epochs:
            losses.append((epoch, network.get_loss(dataset)))
    return losses


def fail(msg):
    """One line on stderr and exit 2: a dump or nndl cannot be read (a mismatch exits 1)."""
    print(f"xor_parity: {msg}", file=sys.stderr)
    sys.exit(2)


def is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def dump_problem(dump):
    """What makes `dump` unlike a `nndl xor --dump` file, or None."""
    if not isinstance(dump, dict):
        return "not a JSON object"
    missing = [k for k in ("config", "initial", "orders", "losses") if k not in dump]
    if missing:
        return f"no {', '.join(missing)}"
    cfg = dump["config"]
    if not isinstance(cfg, dict) or not is_number(cfg.get("learning_rate")):
        return "config has no learning_rate"
    if not isinstance(cfg.get("log_every"), int) or isinstance(cfg["log_every"], bool) or cfg["log_every"] < 1:
        return "config has no log_every (a positive integer)"
    layers = dump["initial"]
    if not isinstance(layers, list) or not layers:
        return "initial holds no layers"
    width = 2
    for k, layer in enumerate(layers):
        if not isinstance(layer, list) or not layer:
            return f"initial layer {k} holds no neurons"
        for n in layer:
            if not (isinstance(n, dict) and is_number(n.get("bias")) and isinstance(n.get("weights"), list)
                    and len(n["weights"]) == width and all(is_number(w) for w in n["weights"])):
                return f"initial layer {k}: each neuron needs a bias and {width} weights"
        width = len(layer)
    if width != 1:
        return f"the last layer has {width} neurons, XOR's network has 1"
    orders = dump["orders"]
    if not isinstance(orders, list) or not orders:
        return "orders holds no epochs"
    for e, order in enumerate(orders):
        if not isinstance(order, list) or sorted(order) != [0, 1, 2, 3]:
            return f"order of epoch {e} is not a permutation of the 4 samples: {order!r}"
    if "epochs" in cfg and cfg["epochs"] != len(orders):
        return f"{len(orders)} epochs' orders, config says {cfg['epochs']} epochs (truncated?)"
    losses = dump["losses"]
    if not isinstance(losses, list) or not all(isinstance(r, list) and len(r) == 2 and isinstance(r[0], int)
                                               and isinstance(r[1], (int, float)) for r in losses):
        return "losses is not a list of [epoch, loss]"
    return None


def load_dump(path):
    try:
        with open(path) as f:
            dump = json.load(f)
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror or e}")
    except ValueError as e:
        fail(f"{path} is not valid JSON ({e})")
    problem = dump_problem(dump)
    if problem:
        fail(f"{path} is not an `nndl xor --dump` file: {problem}")
    return dump


def compare(dump, name):
    ours = [(e, l) for e, l in dump["losses"]]
    theirs = replay(dump)
    if len(ours) != len(theirs):
        print(f"{name}: {len(ours)} recorded losses, python replay has {len(theirs)}")
        return False
    epochs = [(a, b) for (a, _), (b, _) in zip(ours, theirs) if a != b]
    if epochs:
        print(f"{name}: losses recorded at other epochs; first nndl {epochs[0][0]}, python {epochs[0][1]}")
        return False
    bad = [(e, a, b) for (e, a), (_, b) in zip(ours, theirs) if a != b]
    if bad:
        e, a, b = bad[0]
        print(f"{name}: {len(bad)} of {len(ours)} losses differ; first at epoch {e}: nndl {a!r} python {b!r}")
        return False
    print(f"{name}: all {len(ours)} losses identical (final {ours[-1][1]!r})")
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dumps", nargs="*", help="dump files written by `nndl xor --dump`")
    ap.add_argument("--nndl", help="path of the nndl binary, to make dumps for --seeds")
    ap.add_argument("--seeds", nargs="*", type=int, default=[], help="seeds to dump and compare")
    ap.add_argument("--preset", default="homework", choices=["homework", "robust", "seed"],
                    help="nndl xor's preset for --seeds (seed: the old name of homework)")
    args = ap.parse_args()
    if args.preset == "seed":
        args.preset = "homework"
    if args.seeds and not args.nndl:
        ap.error("--seeds needs --nndl")
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            path = os.path.join(tmp, f"xor-{seed}.json")
            try:
                subprocess.run([args.nndl, "xor", "--quiet", "--seed", str(seed), "--preset", args.preset,
                                "--dump", path, "--out", os.path.join(tmp, f"run-{seed}")], check=True)
            except OSError as e:
                fail(f"cannot run --nndl {args.nndl}: {e.strerror or e}")
            except subprocess.CalledProcessError as e:
                fail(f"{args.nndl} xor --seed {seed} --preset {args.preset} failed (exit {e.returncode})")
            same = compare(load_dump(path), f"seed {seed} ({args.preset})")
            passed, failed = passed + same, failed + (not same)
        for path in args.dumps:
            same = compare(load_dump(path), path)
            passed, failed = passed + same, failed + (not same)
    if passed + failed == 0:
        ap.error("nothing to compare: give dump files or --nndl with --seeds")
    print(f"xor-parity: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
