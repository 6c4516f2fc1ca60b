"""Findings -> what people read: the report (JSON, table, markdown), exports, evidence bundles."""
