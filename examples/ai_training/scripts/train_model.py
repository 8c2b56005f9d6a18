"""Logistic regression by gradient descent (standard library only); writes the model and its accuracy."""
import csv
import json
import math
import os

inputs = os.environ.get("FLOWS_INPUTS_DIR", "/workflow/inputs")
outputs = os.environ.get("FLOWS_OUTPUTS_DIR", "/workflow/outputs")


def read_input(name):
    with open(os.path.join(inputs, name)) as f:
        return f.read().strip()


learning_rate = float(read_input("learning_rate"))
epochs = int(read_input("epochs"))
with open(os.path.join(inputs, "processed_data"), newline="") as f:
    rows = list(csv.DictReader(f))
features = [c for c in rows[0] if c not in ("id", "label")]
xs = [[float(r[c]) for c in features] for r in rows]
ys = [int(r["label"]) for r in rows]
weights, bias = [0.0] * len(features), 0.0
for _ in range(epochs):
    grad_w, grad_b = [0.0] * len(features), 0.0
    for x, y in zip(xs, ys):
        p = 1 / (1 + math.exp(-(sum(w * v for w, v in zip(weights, x)) + bias)))
        for i, v in enumerate(x):
            grad_w[i] += (p - y) * v / len(xs)
        grad_b += (p - y) / len(xs)
    weights = [w - learning_rate * g for w, g in zip(weights, grad_w)]
    bias -= learning_rate * grad_b
correct = sum((sum(w * v for w, v in zip(weights, x)) + bias > 0) == bool(y) for x, y in zip(xs, ys))
accuracy = correct / len(xs)
with open(os.path.join(outputs, "model"), "w") as f:
    json.dump({"features": features, "weights": [round(w, 6) for w in weights], "bias": round(bias, 6)}, f, indent=2)
with open(os.path.join(outputs, "accuracy"), "w") as f:
    f.write(f"{accuracy:.4f}")
print(f"trained on {len(xs)} rows, accuracy {accuracy:.3f}")
