"""Runflow: the adapter, its error table, its wire payloads and its callback signatures."""
