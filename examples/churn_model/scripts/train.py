"""Fit the churn model by batch gradient descent; write it as JSON with its training accuracy."""
import csv
import json
import statistics

from jobio import input_path, output_path, read_value, write_value
from model import FEATURES, accuracy, matrix, predict

epochs = int(read_value("epochs"))
rate = float(read_value("learning_rate"))
with open(input_path("train"), newline="") as f:
    xs, ys = matrix(list(csv.DictReader(f)))

columns = list(zip(*xs))
model = {"features": FEATURES, "mean": [statistics.fmean(c) for c in columns],
         "sd": [statistics.pstdev(c) or 1.0 for c in columns], "weights": [0.0] * len(FEATURES), "bias": 0.0}
for _ in range(epochs):
    errors = [predict(model, x) - y for x, y in zip(xs, ys)]
    for i in range(len(FEATURES)):
        grad = sum(e * (x[i] - model["mean"][i]) / model["sd"][i] for e, x in zip(errors, xs)) / len(xs)
        model["weights"][i] -= rate * grad
    model["bias"] -= rate * sum(errors) / len(xs)

model["weights"] = [round(w, 6) for w in model["weights"]]
model["bias"] = round(model["bias"], 6)
with open(output_path("model"), "w") as f:
    json.dump(model, f, indent=2)
train_accuracy = accuracy(model, xs, ys)
write_value("train_accuracy", round(train_accuracy, 4))
print(f"trained on {len(xs)} rows for {epochs} epochs: accuracy {train_accuracy:.3f}")
