"""Models run forward without training: frozen-encoder states for the cache (states), fold models
over new audio (engine) and the prediction tables every fold writes (tables, the fold contract)."""
