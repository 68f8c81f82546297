// Package dashboard owns the read-only web page of one run that `mgmt
// dashboard` serves: the run's levels and services, each pool's workers with
// their health and heartbeat ages, the decisions with their reasons, and per
// pool a plot over time of desired size, running workers and queue depth with
// each decision marked. One poll loop reads a Source (the same status `mgmt
// status --json` prints) and keeps a snapshot; browsers poll that snapshot as
// JSON, so any number of them cost the run nothing more. The page and its
// chart code (uPlot, vendored from npm, see scripts/refresh-dashboard-assets)
// are embedded; nothing is fetched from elsewhere at run time.
//
// It binds loopback unless told otherwise. Bound elsewhere, every data
// request needs the bearer token; on loopback, requests must name a
// loopback host, so a web page elsewhere cannot read it by DNS rebinding.
package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"nightshift/controller"
	"nightshift/mgmt"
)

// Source is what the page shows, read on every poll. The caller redacts
// what it returns: the run's secrets must never reach a browser.
type Source interface {
	// Status is the run as `mgmt status --json` reports it.
	Status(ctx context.Context) (*mgmt.RunStatus, error)
	// Decisions returns a pool's last decisions, newest first.
	Decisions(ctx context.Context, job string, limit int) ([]controller.DecisionRecord, error)
}

// HistorySource is a Source that can also read a pool's stored history
// (the controller samples every pool and keeps its series): the plot then
// reaches back before the dashboard started. Without it, or while it has
// nothing, the plot shows what the dashboard sampled itself.
type HistorySource interface {
	History(ctx context.Context, job string, since time.Time) ([]Point, error)
}

// Options configure a Server; zero values take the defaults.
type Options struct {
	// Addr is host:port to bind; default 127.0.0.1:0 (a free port).
	Addr string
	// Token is the bearer token data requests must carry. When empty it is
	// generated if Addr is not loopback; on loopback none is required.
	Token  string
	Source Source
	// Interval is how often Source is read; default 1s.
	Interval time.Duration
	// Keep is how many samples of each pool the plots hold; default 3600.
	Keep int
	// Decisions is how many decisions of each pool are shown; default 50.
	Decisions int
	// Window is how far back a HistorySource is read; default 1h.
	Window time.Duration
	Now    func() time.Time
	Log    *slog.Logger
}

// Server serves one run's dashboard.
type Server struct {
	opts     Options
	ln       net.Listener
	loopback bool
	token    string
	hist     *History

	mu    sync.Mutex
	state []byte // the last snapshot, as served
}

//go:embed web/index.html web/app.js web/app.css web/vendor
var webFS embed.FS

// Listen binds the dashboard's address. Serve then serves it.
func Listen(opts Options) (*Server, error) {
	if opts.Source == nil {
		return nil, errors.New("dashboard: no source")
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Keep <= 0 {
		opts.Keep = 3600
	}
	if opts.Decisions <= 0 {
		opts.Decisions = 50
	}
	if opts.Window <= 0 {
		opts.Window = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("dashboard: listen on %s: %w", opts.Addr, err)
	}
	s := &Server{opts: opts, ln: ln, token: opts.Token, hist: NewHistory(opts.Keep)}
	s.loopback = isLoopback(ln.Addr())
	if !s.loopback && s.token == "" {
		if s.token, err = NewToken(); err != nil {
			ln.Close()
			return nil, err
		}
	}
	return s, nil
}

// NewToken returns a fresh random bearer token.
func NewToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("dashboard: token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Loopback reports whether the dashboard is bound to a loopback address.
func (s *Server) Loopback() bool { return s.loopback }

// Token is the bearer token data requests need, or "" when none is.
func (s *Server) Token() string { return s.token }

// URL is the address to open. With a token, it carries it in the fragment,
// which browsers never send: the page reads it and sends it as the bearer.
func (s *Server) URL() string {
	ta := s.ln.Addr().(*net.TCPAddr)
	host := ta.IP.String()
	if ta.IP.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(host, strconv.Itoa(ta.Port)), Path: "/"}
	if s.token != "" {
		u.Fragment = "token=" + s.token
	}
	return u.String()
}

// Serve polls the source and serves the page until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.poll(ctx)
	}()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	var err error
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		err = srv.Shutdown(sctx)
		cancel()
	case err = <-errc:
	}
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Snapshot is what the page polls: the status, and per pool its plot and
// decisions. Error says why the status could not be read just now (the
// last good one is kept).
type Snapshot struct {
	Time   time.Time       `json:"time"`
	Status *mgmt.RunStatus `json:"status,omitempty"`
	Error  string          `json:"error,omitempty"`
	Pools  []PoolView      `json:"pools"`
}

// PoolView is one pool's plot and decisions.
type PoolView struct {
	Job       string         `json:"job"`
	Series    Series         `json:"series"`
	Decisions []DecisionView `json:"decisions"`
	Error     string         `json:"error,omitempty"`
}

// DecisionView is one decision as the page shows it: T in Unix seconds,
// on the plot's time axis.
type DecisionView struct {
	T       float64               `json:"t"`
	Time    time.Time             `json:"time"`
	Reason  string                `json:"reason"`
	Error   string                `json:"error,omitempty"`
	Actions []mgmt.DecisionAction `json:"actions,omitempty"`
}

func (s *Server) poll(ctx context.Context) {
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	var last *mgmt.RunStatus
	decisions := map[string][]DecisionView{}
	for {
		last = s.refresh(ctx, last, decisions)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refresh reads the source once and publishes a new snapshot. A failed
// read keeps the last status and decisions, and says why.
func (s *Server) refresh(ctx context.Context, last *mgmt.RunStatus, decisions map[string][]DecisionView) *mgmt.RunStatus {
	now := s.opts.Now()
	snap := Snapshot{Time: now, Pools: []PoolView{}}
	st, err := s.opts.Source.Status(ctx)
	if err != nil {
		snap.Error = err.Error()
		st = last
	} else {
		s.hist.Add(now, st.Jobs)
	}
	snap.Status = st
	if st != nil {
		for _, j := range st.Jobs {
			pv := PoolView{Job: j.Name, Series: s.series(ctx, now, j.Name)}
			if err == nil {
				ds, derr := s.opts.Source.Decisions(ctx, j.Name, s.opts.Decisions)
				if derr != nil {
					pv.Error = "decisions: " + derr.Error()
				} else {
					decisions[j.Name] = decisionViews(ds)
				}
			}
			pv.Decisions = decisions[j.Name]
			if pv.Decisions == nil {
				pv.Decisions = []DecisionView{}
			}
			snap.Pools = append(snap.Pools, pv)
		}
	}
	b, merr := json.Marshal(snap)
	if merr != nil {
		s.opts.Log.Error("dashboard: snapshot", "err", merr)
		return st
	}
	s.mu.Lock()
	s.state = b
	s.mu.Unlock()
	return st
}

// series is a pool's plot: its stored history when the source has one,
// else what the dashboard sampled.
func (s *Server) series(ctx context.Context, now time.Time, job string) Series {
	if hs, ok := s.opts.Source.(HistorySource); ok {
		pts, err := hs.History(ctx, job, now.Add(-s.opts.Window))
		if err != nil {
			s.opts.Log.Debug("dashboard: stored history unavailable", "job", job, "err", err)
		} else if len(pts) > 0 {
			return seriesOf(pts)
		}
	}
	return s.hist.Series(job)
}

func decisionViews(ds []controller.DecisionRecord) []DecisionView {
	out := make([]DecisionView, 0, len(ds))
	for _, d := range ds {
		v := DecisionView{T: float64(d.Time.UnixMilli()) / 1000, Time: d.Time, Reason: d.Reason, Error: d.Error}
		if len(d.Actions) > 0 {
			// Unreadable actions still leave the decision and its reason.
			_ = json.Unmarshal(d.Actions, &v.Actions)
		}
		out = append(out, v)
	}
	return out
}

// Handler serves the page, its assets and /api/state. Everything is
// read-only: any method but GET and HEAD is refused.
func (s *Server) Handler() http.Handler {
	web, err := fs.Sub(webFS, "web")
	if err != nil {
		// The embedded tree is fixed at build time.
		panic(err)
	}
	files := http.FileServerFS(web)
	mux := http.NewServeMux()
	mux.HandleFunc("/api/state", s.serveState)
	mux.Handle("/app.js", files)
	mux.Handle("/app.css", files)
	mux.Handle("/vendor/", files)
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, web, "index.html")
	})
	return s.guard(mux)
}

// guard applies what every response needs: read-only methods, the host
// check on loopback, and headers that keep the page to its own origin.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "the dashboard is read-only", http.StatusMethodNotAllowed)
			return
		}
		if s.loopback && !loopbackHost(r.Host) {
			http.Error(w, "this dashboard answers only to a loopback host name", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a request's Host names this machine's
// loopback (an IP literal or localhost), whatever the port.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

func (s *Server) serveState(w http.ResponseWriter, r *http.Request) {
	if s.token != "" && !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="nightshift dashboard"`)
		http.Error(w, "a bearer token is required", http.StatusUnauthorized)
		return
	}
	s.mu.Lock()
	b := s.state
	s.mu.Unlock()
	if b == nil {
		http.Error(w, "no status read yet", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func (s *Server) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(s.token)) == 1
}
