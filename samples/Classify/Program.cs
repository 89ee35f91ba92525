// Classify images with an AlexNet checkpoint (a run's, or one `alexnet import` made from PyTorch weights):
//   dotnet run --project samples/Classify -- CHECKPOINT IMAGE...
using AlexNet;
using AlexNet.Evaluation;
using AlexNet.Training;

if (args.Length < 2)
{
    Console.Error.WriteLine("usage: Classify CHECKPOINT IMAGE...");
    return 2;
}
Compute.ConfigureNativeMemory();
(var model, var state) = Checkpoint.LoadModel(args[0]);
using (model)
{
    Console.WriteLine($"{state.Architecture.Variant}: {model.ParameterCount:N0} parameters, {state.Architecture.Classes} classes");
    foreach (Prediction p in Predictor.PredictFiles(model, state, args[1..], top: 3))
    {
        Console.WriteLine(p.Source);
        foreach (ClassScore c in p.Top)
        {
            Console.WriteLine($"  {c.Probability,7:P2}  {c.Name}");
        }
    }
}
return 0;
