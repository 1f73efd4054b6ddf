import AirlockWorker

WorkerMain.run()
