"""The SQL order stores: SQLite and PostgreSQL over one schema, one batch writer and one read side.

From the top: ``sqlite`` and ``postgres`` (each database's connections,
locks and schema versions) stand on ``store`` (the transaction an order
sees, start-up and the reads), on ``writer`` (an order's turn at its
process's open batch), on ``batches`` (the orders of a process sharing one
database transaction, and how it ends), on ``schema`` (the tables). An
import-linter contract keeps every import pointing down.
"""
