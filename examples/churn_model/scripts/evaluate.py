"""Score the model on the held-out customers; write a Markdown report and the accuracy."""
import csv
import json

from jobio import input_path, output_path, write_value
from model import accuracy, matrix, predict

with open(input_path("model")) as f:
    model = json.load(f)
with open(input_path("test"), newline="") as f:
    xs, ys = matrix(list(csv.DictReader(f)))

predicted = [predict(model, x) >= 0.5 for x in xs]
tp = sum(p and y for p, y in zip(predicted, ys))
fp = sum(p and not y for p, y in zip(predicted, ys))
fn = sum(not p and y for p, y in zip(predicted, ys))
acc = accuracy(model, xs, ys)
precision = tp / (tp + fp) if tp + fp else 0.0
recall = tp / (tp + fn) if tp + fn else 0.0

lines = ["# Churn model report", "", f"Held-out customers: {len(ys)} ({sum(ys)} churned)", "",
         "| metric | value |", "|---|---|", f"| accuracy | {acc:.3f} |", f"| precision | {precision:.3f} |",
         f"| recall | {recall:.3f} |", "", "## Weights (standardised features)", "", "| feature | weight |", "|---|---|"]
lines += [f"| {name} | {w:+.3f} |" for name, w in zip(model["features"], model["weights"])]
with open(output_path("report"), "w") as f:
    f.write("\n".join(lines) + "\n")
write_value("accuracy", round(acc, 4))
print(f"test accuracy {acc:.3f}, precision {precision:.3f}, recall {recall:.3f}")
