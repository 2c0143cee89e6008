"""Thin HTTP routers: parse, call one use case, return a response model."""
