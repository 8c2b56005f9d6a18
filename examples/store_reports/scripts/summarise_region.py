"""Units and revenue per product for one region, and its best seller."""
import csv
import json
from collections import defaultdict

from jobio import input_path, output_path, read_value

region = read_value("region")
units, revenue = defaultdict(int), defaultdict(float)
stores = set()
with open(input_path("sales"), newline="") as f:
    for row in csv.DictReader(f):
        if row["region"] != region:
            continue
        stores.add(row["store"])
        units[row["product"]] += int(row["units"])
        revenue[row["product"]] += int(row["units"]) * float(row["unit_price"])

summary = {"region": region, "stores": len(stores), "units": dict(sorted(units.items())),
           "revenue": {k: round(v, 2) for k, v in sorted(revenue.items())},
           "best_seller": max(revenue, key=revenue.get) if revenue else None}
with open(output_path("summary"), "w") as f:
    json.dump(summary, f, indent=2)
print(f"{region}: {sum(units.values())} units in {len(stores)} stores")
