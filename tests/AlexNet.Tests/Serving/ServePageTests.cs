using System;
using System.IO;
using System.Linq;
using System.Net.Http;
using System.Text.Json;
using System.Threading.Tasks;
using AlexNet.Serving;
using Microsoft.Playwright;
using Xunit;

namespace AlexNet.Tests.Serving;

/// <summary>
/// The page in a real browser: Debian's chromium, headless, driven by Playwright (no browser is downloaded).
/// </summary>
public class ServePageTests
{
    private static string? Chromium() =>
        new[] { "/usr/lib/chromium/chromium", "/usr/bin/chromium" }.FirstOrDefault(File.Exists);

    /// <summary>
    /// Where the screenshot goes: artifacts/test/ of the repository (ignored by git), or the test's folder.
    /// </summary>
    private static string Artefact(string name)
    {
        DirectoryInfo? d = new(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "AlexNet.slnx")))
        {
            d = d.Parent;
        }
        string dir = Path.Combine(d?.FullName ?? AppContext.BaseDirectory, "artifacts", "test");
        Directory.CreateDirectory(dir);
        return Path.Combine(dir, name);
    }

    [SkippableFact]
    public async Task ThePageShowsTheApisTopFiveAndTheNeighboursLoad()
    {
        string? chromium = Chromium();
        Skip.If(chromium is null, "Debian's chromium is not installed (.ci/run installs it)");
        const string photo = "/usr/share/darknet/data/dog.jpg";
        Skip.IfNot(File.Exists(photo), "darknet's photos are not installed (./setup.sh installs them)");
        using var dir = new TestData.TempDir();
        string ckpt = ServeUnderLoadTests.SmallCheckpoint(dir);
        await using Server server = Server.Create(new ServeOptions(ckpt,
            Store: dir["store"], Urls: "http://127.0.0.1:0"));
        string url = (await server.StartAsync())[0];

        using var http = new HttpClient { BaseAddress = new Uri(url) };
        var form = new MultipartFormDataContent
        {
            { new ByteArrayContent(File.ReadAllBytes(photo)), "image", "dog.jpg" },
        };
        using JsonDocument api = JsonDocument.Parse(await (await http.PostAsync("/api/predict?top=5&views=ten",
            form)).Content.ReadAsStringAsync());
        string[] expected = api.RootElement.GetProperty("top").EnumerateArray()
            .Select(t => $"{t.GetProperty("name").GetString()} {100 * t.GetProperty("probability").GetDouble():F2}%")
            .ToArray();

        using IPlaywright playwright = await Playwright.CreateAsync();
        await using IBrowser browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = chromium,
            Headless = true,
            Args = new[] { "--no-sandbox" },   // CI runs as root
        });
        IPage page = await browser.NewPageAsync(new BrowserNewPageOptions
        {
            ViewportSize = new ViewportSize { Width = 390, Height = 1400 },
        });   // a phone's width
        await page.GotoAsync(url);
        await page.WaitForFunctionAsync("() => document.getElementById('model').textContent.includes('small')");
        await page.SetInputFilesAsync("#file", photo);
        await page.WaitForFunctionAsync("() => document.querySelectorAll('#bars li').length === 5");
        string[] shown = (await page.EvalOnSelectorAllAsync<string[]>("#bars li",
            "items => items.map(li => li.querySelector('.name').textContent + ' ' + " +
            "li.querySelector('.probability').textContent)"));
        Assert.Equal(expected, shown);

        await page.WaitForFunctionAsync(
            "() => document.querySelectorAll('#neighbours img').length === 8 && " +
            "[...document.querySelectorAll('#neighbours img')].every(i => i.complete)");
        int[] widths = await page.EvalOnSelectorAllAsync<int[]>("#neighbours img",
            "imgs => imgs.map(i => i.naturalWidth)");
        Assert.All(widths, w => Assert.Equal(28 * 4, w));
        Assert.True(await page.EvalOnSelectorAsync<bool>("#kernels", "i => i.complete && i.naturalWidth > 0"));
        Assert.True(await page.EvalOnSelectorAsync<bool>("#error", "e => e.hidden"));
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Artefact("serve-page.png"), FullPage = true });

        // An error is shown in the page, not swallowed: a text file as the image.
        await page.SetInputFilesAsync("#file", new FilePayload
        {
            Name = "notes.txt",
            MimeType = "text/plain",
            Buffer = "not an image"u8.ToArray(),
        });
        await page.WaitForFunctionAsync("() => !document.getElementById('error').hidden");
        Assert.Contains("cannot be used", await page.TextContentAsync("#error"));
    }

    /// <summary>
    /// The README's picture, made on request (ALEXNET_README_SHOT=RUN, a quick start's run folder; its data under
    /// data/fashion-mnist): the trained net serving a Fashion-MNIST test image, with the run's curves.
    /// </summary>
    [SkippableFact]
    public async Task TheReadmeScreenshot()
    {
        string? run = Environment.GetEnvironmentVariable("ALEXNET_README_SHOT");
        Skip.If(run is null || Chromium() is null, "made on request: ALEXNET_README_SHOT=RUN_FOLDER (and chromium)");
        string data = Environment.GetEnvironmentVariable("ALEXNET_README_DATA") ?? "data/fashion-mnist";
        using var dir = new TestData.TempDir();
        using (var val = AlexNet.Data.ImageStore.Open(Path.Combine(data, "val")))
        {
            File.WriteAllBytes(dir["boot.png"],
                AlexNet.Analysis.Figures.RecordPng(val.Record(0).ToArray(), val.Height, val.Channels, 8));
        }
        await using Server server = Server.Create(new ServeOptions(Path.Combine(run!, "last.ckpt"),
            Store: Path.Combine(data, "train"), Run: run, Urls: "http://127.0.0.1:0"));
        string url = (await server.StartAsync())[0];
        using IPlaywright playwright = await Playwright.CreateAsync();
        await using IBrowser browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = Chromium(),
            Headless = true,
            Args = new[] { "--no-sandbox" },
        });
        IPage page = await browser.NewPageAsync(new BrowserNewPageOptions
        {
            ViewportSize = new ViewportSize { Width = 900, Height = 1200 },
        });
        await page.GotoAsync(url);
        await page.WaitForFunctionAsync("() => document.getElementById('model').textContent.length > 0");
        await page.SetInputFilesAsync("#file", dir["boot.png"]);
        await page.WaitForFunctionAsync(
            "() => document.querySelectorAll('#neighbours img').length === 8 && " +
            "[...document.querySelectorAll('#neighbours img')].every(i => i.complete)");
        await Task.Delay(1500);   // the run's curves
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Artefact("serve-readme.png"), FullPage = true });
    }
}
