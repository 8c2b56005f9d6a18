"""The shared vocabulary every layer may use: errors, secret masking, digests, canonical JSON, type strings.

It imports nothing of reconcile, providers or state.
"""
