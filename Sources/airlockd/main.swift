print("airlockd: not built yet")
