package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"nightshift/internal/nsenv"
	"nightshift/internal/testsupport"
	"nightshift/mgmt"
)

// pageView is what the dashboard page shows, read from its DOM.
type pageView struct {
	NoReload bool `json:"noReload"`
	Polls    int  `json:"polls"`
	Pools    map[string]struct {
		Workers []struct {
			ID     string `json:"id"`
			State  string `json:"state"`
			Health string `json:"health"`
		} `json:"workers"`
		Points int      `json:"points"` // samples uPlot was given
		Drawn  int      `json:"drawn"`  // points on the time axis of the drawn plot
		Ink    int      `json:"ink"`    // painted pixels of the plot's canvas
		Marks  []string `json:"marks"`  // reasons of the decisions marked on it
		// Desired is the plot's desired-size series, as drawn.
		Desired []float64 `json:"desired"`
	} `json:"pools"`
}

const readPage = `(() => {
  const out = { noReload: window.__noReload === 1, polls: window.nightshift ? window.nightshift.polls : 0, pools: {} };
  for (const s of document.querySelectorAll("section.pool")) {
    const box = s.querySelector(".plot");
    const c = box.querySelector("canvas");
    let ink = 0;
    if (c && c.width > 0 && c.height > 0) {
      const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      for (let i = 3; i < px.length; i += 4) if (px[i] > 0) ink++;
    }
    const p = window.nightshift.pools.get(s.dataset.job);
    out.pools[s.dataset.job] = {
      workers: [...s.querySelectorAll("tr[data-worker]")].map((r) => ({ id: r.dataset.worker, state: r.dataset.state, health: r.dataset.health })),
      points: Number(box.dataset.points || 0),
      drawn: p && p.plot ? p.plot.data[0].length : 0,
      ink,
      marks: [...box.querySelectorAll(".dmark")].map((m) => m.dataset.reason),
      desired: p && p.plot ? p.plot.data[1].filter((v) => v != null) : [],
    };
  }
  return out;
})()`

// TestDashboardEndToEnd is issue 16's browser test: a real run of
// plans/local.toml, `mgmt dashboard` on it, and Debian's chromium loading
// the page headless. Every pool and its workers are listed, the plots
// are drawn from data points, and a sleeper worker killed with SIGKILL
// shows as replaced, with the decision marked, without a reload.
func TestDashboardEndToEnd(t *testing.T) {
	requireRuns(t)
	chromium := os.Getenv(nsenv.Chromium)
	if chromium == "" {
		chromium, _ = exec.LookPath("chromium")
	}
	if chromium == "" {
		if os.Getenv(nsenv.TestStrict) == "1" {
			t.Fatal("chromium not found and NIGHTSHIFT_TEST_STRICT=1 (scripts/test-deps installs it)")
		}
		t.Skip("chromium not found (scripts/test-deps installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	r := env.NewRun(t, "plans/local.toml", "dash")
	r.Launch(ctx)
	if _, err := r.WaitFor(ctx, "sleeper 3 healthy, work 1 running", 60*time.Second, func(st *mgmt.RunStatus) (bool, string) {
		s, w := Healthy(Job(st, "sleeper")), Running(Job(st, "work"))
		return len(s) == 3 && len(w) >= 1, fmt.Sprintf("sleeper healthy %v, work running %v", s, w)
	}); err != nil {
		t.Fatal(err)
	}

	url := startDashboard(ctx, t, r)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1100),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	if err := chromedp.Do(bctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("load %s: %v", url, err)
	}
	read := func() (pageView, error) { return chromedp.Run(bctx, chromedp.Evaluate[pageView](readPage)) }

	// The quick start's producer step: 200 messages for the queue pool,
	// which grows to its maximum of 6 and shrinks back to 1 (checked on
	// its plot at the end).
	if err := r.Publish(ctx, 200); err != nil {
		t.Fatal(err)
	}

	// Every pool and its running workers, as mgmt status --json has them.
	var page pageView
	testsupport.Eventually(t, 30*time.Second, func() error {
		st, err := r.Status(ctx)
		if err != nil {
			return err
		}
		if page, err = read(); err != nil {
			return err
		}
		for _, j := range st.Jobs {
			p, ok := page.Pools[j.Name]
			if !ok {
				return fmt.Errorf("pool %s not on the page (pools: %v)", j.Name, keys(page.Pools))
			}
			var listed []string
			for _, w := range p.Workers {
				listed = append(listed, w.ID)
			}
			for _, id := range Running(&j) {
				if !slices.Contains(listed, id) {
					return fmt.Errorf("pool %s: running worker %s not listed (page lists %v)", j.Name, id, listed)
				}
			}
		}
		if len(page.Pools) != len(st.Jobs) {
			return fmt.Errorf("page shows %d pools, status has %d", len(page.Pools), len(st.Jobs))
		}
		return nil
	})

	// Each plot is drawn from several samples.
	testsupport.Eventually(t, 20*time.Second, func() error {
		var err error
		if page, err = read(); err != nil {
			return err
		}
		for name, p := range page.Pools {
			if p.Points < 3 || p.Drawn != p.Points || p.Ink == 0 {
				return fmt.Errorf("pool %s: %d samples, %d drawn, %d pixels painted", name, p.Points, p.Drawn, p.Ink)
			}
		}
		return nil
	})

	// Kill one sleeper's sitter: the page shows its replacement live.
	if err := chromedp.Do(bctx, chromedp.Evaluate[chromedp.Void](`window.__noReload = 1`)); err != nil {
		t.Fatal(err)
	}
	before := map[string]bool{}
	for _, w := range page.Pools["sleeper"].Workers {
		before[w.ID] = true
	}
	sitters, err := r.Sitters()
	if err != nil {
		t.Fatal(err)
	}
	var victim string
	var pid int
	for id, p := range SitterPIDsOf(sitters, "sleeper") {
		if before[id] {
			victim, pid = id, p
			break
		}
	}
	if victim == "" {
		t.Fatalf("no live sitter of a listed sleeper worker (listed %v, sitters %v)", before, sitters)
	}
	if err := r.Kill9("sitter of "+victim, pid); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, 45*time.Second, func() error {
		var err error
		if page, err = read(); err != nil {
			return err
		}
		if !page.NoReload {
			return errors.New("the page was reloaded")
		}
		p := page.Pools["sleeper"]
		var fresh []string
		for _, w := range p.Workers {
			if w.ID == victim && w.State == "running" && w.Health == "ok" {
				return fmt.Errorf("killed %s still shown running and healthy", victim)
			}
			if !before[w.ID] && w.State == "running" {
				fresh = append(fresh, w.ID)
			}
		}
		if len(fresh) == 0 {
			return fmt.Errorf("no replacement of %s shown yet (workers %+v)", victim, p.Workers)
		}
		if len(p.Marks) == 0 || slices.Contains(p.Marks, "") {
			return fmt.Errorf("replacement shown (%v) but its decision is not marked on the plot with a reason (marks %q)", fresh, p.Marks)
		}
		return nil
	})
	if !page.NoReload {
		t.Fatal("the page was reloaded")
	}
	t.Logf("page shows %s replaced; sleeper plot marks: %q", victim, page.Pools["sleeper"].Marks)

	// Hovering a decision's marker with the mouse shows its reason.
	type markAt struct {
		X, Y   float64
		Reason string
	}
	mark, err := chromedp.Run(bctx, chromedp.Evaluate[markAt](`(() => {
  const ms = document.querySelectorAll('section.pool[data-job="sleeper"] .dmark');
  const m = ms[ms.length - 1], r = m.getBoundingClientRect();
  return { X: r.left + r.width / 2, Y: r.top + r.height / 2, Reason: m.dataset.reason };
})()`))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(bctx, chromedp.MouseEvent(chromedp.MouseMoved, mark.X, mark.Y)); err != nil {
		t.Fatal(err)
	}
	tip, err := chromedp.Run(bctx, chromedp.Evaluate[string](`(() => { const t = document.getElementById("tip"); return t.hidden ? "" : t.textContent; })()`))
	if err != nil {
		t.Fatal(err)
	}
	if tip == "" || !strings.Contains(tip, mark.Reason) {
		t.Errorf("hovering the marker at (%.0f, %.0f) shows %q, want its reason %q", mark.X, mark.Y, tip, mark.Reason)
	}

	// The work pool's plot: up to 6 for the 200 messages, back to 1, and
	// the decisions that did it marked with their reasons.
	testsupport.Eventually(t, 150*time.Second, func() error {
		var err error
		if page, err = read(); err != nil {
			return err
		}
		p := page.Pools["work"]
		if len(p.Desired) == 0 {
			return errors.New("work plot has no desired series")
		}
		if top := slices.Max(p.Desired); top != 6 {
			return fmt.Errorf("work plot's desired peaked at %v, want 6", top)
		}
		if last := p.Desired[len(p.Desired)-1]; last != 1 {
			return fmt.Errorf("work plot's desired is %v, want back to 1", last)
		}
		if len(p.Marks) < 2 || slices.Contains(p.Marks, "") {
			return fmt.Errorf("work plot marks %q: want the grow and shrink decisions, each with its reason", p.Marks)
		}
		return nil
	})
	t.Logf("work plot: desired peaked at 6 and is back to 1; %d decisions marked", len(page.Pools["work"].Marks))

	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	saveScreenshot(t, r.Env.Root, shot)
}

// startDashboard runs `mgmt dashboard` on the run and returns the URL it
// prints; the process is stopped when the test ends.
func startDashboard(ctx context.Context, t *testing.T, r *Run) string {
	t.Helper()
	dctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(dctx, filepath.Join(r.Env.BinDir, "mgmt"), "--home", r.Home, "dashboard", "--interval", "500ms", r.Name)
	cmd.Env = append(cleanEnv(), nsenv.Home+"="+r.Home)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mgmt dashboard: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("mgmt dashboard stderr:\n%s", stderr.String())
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case line, ok := <-lines:
		_, url, found := strings.Cut(line, ": http")
		if !ok || !found {
			t.Fatalf("mgmt dashboard printed %q, not its URL; stderr: %s", line, stderr.String())
		}
		t.Logf("mgmt dashboard: %s", line)
		return "http" + url
	case <-time.After(30 * time.Second):
		t.Fatalf("mgmt dashboard printed no URL within 30s; stderr: %s", stderr.String())
	}
	return ""
}

// saveScreenshot keeps the page as a test artifact: in $NIGHTSHIFT_ARTIFACTS
// when set (CI uploads it), else in the test's temp dir; and, when
// NIGHTSHIFT_UPDATE_DOCS=1, as docs/dashboard.png for the README.
func saveScreenshot(t *testing.T, root string, png []byte) {
	t.Helper()
	dir := os.Getenv(nsenv.Artifacts)
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "dashboard.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
	if os.Getenv(nsenv.UpdateDocs) == "1" {
		doc := filepath.Join(root, "docs", "dashboard.png")
		if err := os.WriteFile(doc, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot copied to %s", doc)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
