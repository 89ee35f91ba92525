// Classify images with an AlexNet checkpoint (a run's, or one `alexnet import` made from PyTorch weights):
//   dotnet run --project samples/Classify -- CHECKPOINT IMAGE...
using AlexNet;
using AlexNet.Evaluation;
using AlexNet.Inference;

if (args.Length < 2)
{
    Console.Error.WriteLine("usage: Classify CHECKPOINT IMAGE...");
    return 2;
}
Compute.ConfigureNativeMemory();
using Classifier net = Classifier.Load(args[0]);   // the weights and the model card: all inference needs
Console.WriteLine($"{net.Card.Architecture.Variant}: {net.Model.ParameterCount:N0} parameters, {net.Card.Classes} classes");
string[] files = args[1..];
foreach (Prediction p in net.Predict(files.Select(net.Read).ToArray(), files, top: 3))
{
    Console.WriteLine(p.Source);
    foreach (ClassScore c in p.Top)
    {
        Console.WriteLine($"  {c.Probability,7:P2}  {c.Name}");
    }
}
return 0;
