// Package metrics owns Nightshift's Prometheus metrics: their names, labels
// and buckets (docs/metrics.md lists them), what each daemon observes
// (Controller, Provisioner, Keeper, fed from the daemons' edges, never from
// their pure cores), and the loopback HTTP endpoint that serves them
// (Serve). Every process has its own registry: nothing is registered in
// client_golang's global default one.
package metrics

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every Nightshift metric.
const Namespace = "nightshift"

// DefaultAddr is where a daemon serves /metrics unless told otherwise: an
// ephemeral loopback port, exported as the service attribute metrics_url.
const DefaultAddr = "127.0.0.1:0"

// NewRegistry returns a process's own registry, with the Go runtime and
// process collectors every daemon exports.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Server is a running /metrics endpoint.
type Server struct {
	// URL is the endpoint, http://HOST:PORT/metrics.
	URL string
	srv *http.Server
	ln  net.Listener
}

// Listen binds addr (host:port; port 0 picks a free one) and returns the
// server that Serve runs. Binding first lets a caller publish the URL
// before serving.
func Listen(addr string, reg *prometheus.Registry, log *slog.Logger) (*Server, error) {
	if addr == "" {
		addr = DefaultAddr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry: reg, ErrorLog: slogPrinter{log}, Timeout: 10 * time.Second,
	}))
	return &Server{
		URL: "http://" + ln.Addr().String() + "/metrics",
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		ln:  ln,
	}, nil
}

// Serve serves until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("metrics: %w", err)
		}
		return nil
	}
}

// WriteURLFile records the endpoint's URL in file (0600, replaced
// atomically), where the service type that booted the daemon, or a
// person, reads it.
func (s *Server) WriteURLFile(file string) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), ".metrics-url-*")
	if err != nil {
		return fmt.Errorf("metrics: write url file: %w", err)
	}
	_, werr := tmp.WriteString(s.URL + "\n")
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("metrics: write url file: %w", err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("metrics: write url file: %w", err)
	}
	return nil
}

// ReadURLFile reads a URL WriteURLFile wrote.
func ReadURLFile(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Warn("metrics", "err", fmt.Sprint(v...)) }

// Flags are the metrics flags every daemon takes.
type Flags struct {
	// Addr is where to serve (host:port, port 0 for a free one); "off"
	// serves nothing.
	Addr string
	// URLFile, when set, receives the endpoint's URL once it listens.
	URLFile string
}

// Register adds --metrics-addr and --metrics-url-file to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Addr, "metrics-addr", DefaultAddr, "serve Prometheus metrics at http://ADDR/metrics (port 0: a free one; \"off\": none)")
	fs.StringVar(&f.URLFile, "metrics-url-file", "", "write the metrics endpoint's URL to this file (0600) once it listens")
}

// Start listens as f says and records the URL; it returns nil (and no
// error) when f.Addr is "off". The caller runs Serve.
func (f Flags) Start(reg *prometheus.Registry, log *slog.Logger) (*Server, error) {
	if f.Addr == "off" {
		return nil, nil
	}
	srv, err := Listen(f.Addr, reg, log)
	if err != nil {
		return nil, err
	}
	if f.URLFile != "" {
		if err := srv.WriteURLFile(f.URLFile); err != nil {
			srv.ln.Close()
			return nil, err
		}
	}
	return srv, nil
}

// Start serves s (nil: none) from now until the context given to the
// function it returns ends, which returns what Serve returned. A daemon
// binds and publishes its URL first (Flags.Start), then serves beside its
// work and stops serving only on its way out.
func Start(ctx context.Context, s *Server) func(context.Context) error {
	if s == nil {
		return func(context.Context) error { return nil }
	}
	mctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Serve(mctx) }()
	return func(ctx context.Context) error {
		select {
		case err := <-done:
			stop()
			return err
		case <-ctx.Done():
			stop()
			return <-done
		}
	}
}
