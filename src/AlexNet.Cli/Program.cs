// The `alexnet` command: maps arguments to options, calls the library, maps the result to an exit code.
return AlexNet.Cli.App.Run(args);
