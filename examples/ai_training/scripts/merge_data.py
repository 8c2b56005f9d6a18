"""Join data set A (features) and B (labels) on id."""
import csv
import os

inputs = os.environ.get("FLOWS_INPUTS_DIR", "/workflow/inputs")
outputs = os.environ.get("FLOWS_OUTPUTS_DIR", "/workflow/outputs")


def read(name):
    with open(os.path.join(inputs, name), newline="") as f:
        return list(csv.DictReader(f))


labels = {r["id"]: r for r in read("datasetB")}
merged = [{**a, **labels[a["id"]]} for a in read("datasetA") if a["id"] in labels]
with open(os.path.join(outputs, "merged_data"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(merged[0]))
    writer.writeheader()
    writer.writerows(merged)
print(f"merged: {len(merged)} rows")
