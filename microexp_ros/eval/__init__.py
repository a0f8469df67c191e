"""Evaluation: metrics under the written protocol (metrics-protocol.md), result tables and figures."""
