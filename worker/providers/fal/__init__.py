"""fal.ai: the adapter, its error table, its wire payloads and its webhook signatures."""
