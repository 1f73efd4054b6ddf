print("airlock-worker: not built yet")
