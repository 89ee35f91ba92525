// The `alexnet` command: maps arguments to options, calls the library, maps the result to an exit code.
AlexNet.Cli.SignalThread.Start();   // first, before any native thread pool exists: signals go to one idle thread (#28.1)
return AlexNet.Cli.App.Run(args);
