package testpeer

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Chromium starts Debian's headless Chromium for chromedp and returns a
// browser context (one tab) that lives until the test ends, with timeout
// on everything done in it. As root in a container Chromium needs
// --no-sandbox; the portal's self-signed certificate is accepted (what is
// tested is the page, not who serves it).
func Chromium(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := lookChromium(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		path = Require(t, "chromium") // skips, or fails under CI=true
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.IgnoreCertErrors,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(func(string, ...any) {}))
	// The first run starts the browser, on a context without a timeout
	// (a timeout there would stop the browser); the rest get one.
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		cancelBrowser()
		cancelAlloc()
		t.Fatalf("starting chromium (%s): %v", path, err)
	}
	tctx, cancelTimeout := context.WithTimeout(bctx, timeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancelBrowser()
		cancelAlloc()
	})
	return tctx
}

func lookChromium(name string) (string, error) {
	for _, dir := range filepath.SplitList(os.Getenv("PATH") + ":/usr/bin:/usr/lib/chromium") {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

// ScreenshotDir is where tests write screenshots: $SEALGATE_SCREENSHOT_DIR
// when set (kept for people to look at), else a temp dir of the test.
func ScreenshotDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("SEALGATE_SCREENSHOT_DIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// Screenshots captures the current page, whole, at a desktop (1280 px)
// and a phone (390 px) width into dir as name-1280.png and name-390.png,
// and returns the files. The viewport is left at the desktop width.
func Screenshots(t testing.TB, ctx context.Context, dir, name string) []string {
	t.Helper()
	var files []string
	for _, w := range []int64{390, 1280} {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(w, 800, chromedp.EmulateScale(1))); err != nil {
			t.Fatalf("viewport %d px: %v", w, err)
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s at %d px: %v", name, w, err)
		}
		f := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+"-"+strconv.FormatInt(w, 10)+".png")
		if err := os.WriteFile(f, png, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}
