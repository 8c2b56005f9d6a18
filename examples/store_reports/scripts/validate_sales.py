"""Keep the sales rows that are complete and plausible; count the others."""
import csv

from jobio import input_path, output_path, read_value, write_value

min_units = int(read_value("min_units"))
with open(input_path("sales"), newline="") as f:
    rows = list(csv.DictReader(f))


def valid(row):
    try:
        return int(row["units"]) >= min_units and float(row["unit_price"]) > 0 and row["region"] and row["product"]
    except ValueError:
        return False


clean = [r for r in rows if valid(r)]
with open(output_path("clean"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(clean)
write_value("rejected", len(rows) - len(clean))
print(f"{len(clean)} valid rows, {len(rows) - len(clean)} rejected")
