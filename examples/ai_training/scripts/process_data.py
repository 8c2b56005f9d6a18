"""Standardise every feature column (mean 0, variance 1)."""
import csv
import os
import statistics

inputs = os.environ.get("FLOWS_INPUTS_DIR", "/workflow/inputs")
outputs = os.environ.get("FLOWS_OUTPUTS_DIR", "/workflow/outputs")

with open(os.path.join(inputs, "data_path"), newline="") as f:
    rows = list(csv.DictReader(f))
features = [c for c in rows[0] if c not in ("id", "label")]
for col in features:
    values = [float(r[col]) for r in rows]
    mean, sd = statistics.fmean(values), statistics.pstdev(values) or 1.0
    for r in rows:
        r[col] = f"{(float(r[col]) - mean) / sd:.6f}"
with open(os.path.join(outputs, "processed_data"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
print(f"processed {len(rows)} rows, features: {', '.join(features)}")
