"""One row per customer: account columns, event counts, and the label (a `cancel` event means churned)."""
import csv
from collections import Counter

from jobio import input_path, output_path

with open(input_path("events"), newline="") as f:
    counts = Counter((r["customer_id"], r["event"]) for r in csv.DictReader(f))
with open(input_path("customers"), newline="") as f:
    customers = list(csv.DictReader(f))

fields = ["customer_id", "tenure_months", "monthly_spend", "tickets", "late_payments", "upgrades", "churned"]
with open(output_path("joined"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    for c in customers:
        cid = c["customer_id"]
        writer.writerow({"customer_id": cid, "tenure_months": c["tenure_months"], "monthly_spend": c["monthly_spend"],
                         "tickets": counts[(cid, "support_ticket")], "late_payments": counts[(cid, "late_payment")],
                         "upgrades": counts[(cid, "upgrade")], "churned": int(counts[(cid, "cancel")] > 0)})
print(f"joined {len(customers)} customers")
