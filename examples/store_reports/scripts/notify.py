"""Stands in for telling the team the report is ready (a real flow might post to chat); needs no data."""
print("weekly report is ready")
