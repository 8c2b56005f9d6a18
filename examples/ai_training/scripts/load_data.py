"""Load one raw CSV (A or B), drop rows with missing values, write it as this task's output."""
import csv
import os
import sys

which = sys.argv[1]
inputs = os.environ.get("FLOWS_INPUTS_DIR", "/workflow/inputs")
outputs = os.environ.get("FLOWS_OUTPUTS_DIR", "/workflow/outputs")

with open(os.path.join(inputs, "data_path"), newline="") as f:
    rows = [r for r in csv.DictReader(f) if all(v.strip() for v in r.values())]

with open(os.path.join(outputs, f"dataset{which}"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
print(f"dataset {which}: {len(rows)} rows")
