"""Logistic regression on standardised features, standard library only (shared by train and evaluate)."""
import math

FEATURES = ["tenure_months", "monthly_spend", "tickets", "late_payments", "upgrades"]


def matrix(rows):
    return [[float(r[c]) for c in FEATURES] for r in rows], [int(r["churned"]) for r in rows]


def predict(model, x):
    z = model["bias"] + sum(w * (v - m) / s for w, v, m, s in zip(model["weights"], x, model["mean"], model["sd"]))
    return 1 / (1 + math.exp(-z))


def accuracy(model, xs, ys):
    return sum((predict(model, x) >= 0.5) == bool(y) for x, y in zip(xs, ys)) / len(ys)
