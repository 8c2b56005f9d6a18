"""The weekly report (Markdown) and the totals table (CSV) from the region summaries."""
import csv
import json
import os

from jobio import INPUTS, input_path, output_path, read_value

currency = read_value("currency")
summaries = []
for name in sorted(os.listdir(INPUTS)):
    if name != "currency":
        with open(input_path(name)) as f:
            summaries.append(json.load(f))

lines = ["# Weekly store report", "", f"| region | stores | units | revenue ({currency}) | best seller |",
         "|---|---|---|---|---|"]
with open(output_path("totals"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["region", "units", "revenue"])
    for s in summaries:
        total_units, total_revenue = sum(s["units"].values()), round(sum(s["revenue"].values()), 2)
        writer.writerow([s["region"], total_units, f"{total_revenue:.2f}"])
        lines.append(f"| {s['region']} | {s['stores']} | {total_units} | {total_revenue:,.2f} | {s['best_seller']} |")
with open(output_path("report"), "w") as f:
    f.write("\n".join(lines) + "\n")
print(f"combined {len(summaries)} regions")
