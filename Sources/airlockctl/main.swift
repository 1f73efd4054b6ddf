import AirlockControl

await Airlockctl.runFromCommandLine()
