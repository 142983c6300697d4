"""Provider adapters: one per hosted FLUX.1 Kontext provider, behind one small interface."""
