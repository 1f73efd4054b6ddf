print("airlockctl: not built yet")
