"""A seeded, stratified train/test split (the same seed always gives the same split)."""
import csv
import random

from jobio import input_path, output_path, read_value

fraction = float(read_value("test_fraction"))
rng = random.Random(int(read_value("seed")))
with open(input_path("joined"), newline="") as f:
    rows = list(csv.DictReader(f))

train, test = [], []
for label in ("0", "1"):
    group = [r for r in rows if r["churned"] == label]
    rng.shuffle(group)
    cut = round(len(group) * fraction)
    test += group[:cut]
    train += group[cut:]

for name, part in (("train", train), ("test", test)):
    with open(output_path(name), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(sorted(part, key=lambda r: r["customer_id"]))
print(f"train {len(train)} rows, test {len(test)} rows")
