#!/usr/bin/env python3
"""The seed's XOR algorithm in plain Python, replayed from `nndl xor --dump` files.

The classes below are the homework's Neuron/Layer/Network with the same operations in the same
order; only its `random()` initialisation and `shuffle(dataset)` are replaced by the dump's
initial weights and per-epoch sample orders. Every recorded loss must equal nndl's exactly.

    scripts/xor_parity.py --nndl target/release/nndl --seeds 0 1 2 3 4   # dump and compare
    scripts/xor_parity.py run.json [more.json ...]                       # compare given dumps
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
    """The seed's training loop; returns [(epoch, loss)] every log_every epochs."""
    cfg = dump["config"]
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
        if epoch % cfg["log_every"] == 0:
            losses.append((epoch, network.get_loss(dataset)))
    return losses


def compare(dump, name):
    ours = [(e, l) for e, l in dump["losses"]]
    theirs = replay(dump)
    if len(ours) != len(theirs):
        print(f"{name}: {len(ours)} recorded losses, python replay has {len(theirs)}")
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
    ap.add_argument("--preset", default="seed", choices=["seed", "robust"])
    args = ap.parse_args()
    if args.seeds and not args.nndl:
        ap.error("--seeds needs --nndl")
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            path = os.path.join(tmp, f"xor-{seed}.json")
            subprocess.run([args.nndl, "xor", "--quiet", "--seed", str(seed), "--preset", args.preset,
                            "--dump", path, "--out", os.path.join(tmp, f"run-{seed}")], check=True)
            with open(path) as f:
                same = compare(json.load(f), f"seed {seed} ({args.preset})")
            passed, failed = passed + same, failed + (not same)
        for path in args.dumps:
            with open(path) as f:
                same = compare(json.load(f), path)
            passed, failed = passed + same, failed + (not same)
    if passed + failed == 0:
        ap.error("nothing to compare: give dump files or --nndl with --seeds")
    print(f"xor-parity: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
