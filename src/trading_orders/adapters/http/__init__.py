"""The FastAPI ingress: the HTTP contract of the SPEC."""
