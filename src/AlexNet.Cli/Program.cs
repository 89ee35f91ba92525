// The `alexnet` command: maps arguments to options, calls the library, maps the result to an exit code.
// first, before any native thread pool exists: signals go to one idle thread (#28.1)
AlexNet.Cli.SignalThread.Start();
return AlexNet.Cli.App.Run(args);

/// <summary>
/// The `alexnet` tool's entry point, public as ASP.NET Core's test factory (WebApplicationFactory) wants it: the API
/// tests host `serve`'s server as this program would.
/// </summary>
public partial class Program;
