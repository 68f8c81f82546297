// Command hellod is the tiny daemon of the hello example plan: it serves
// HTTP on a loopback port it picks itself and reports that port, so that a
// later bootlevel can only find it through the attribute its boot program
// exports. It also checks and stops instances of itself, so the example
// needs nothing but Go and a POSIX shell.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hellod serve|check|stop|version ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "check":
		err = check(os.Args[2:])
	case "stop":
		err = stop(os.Args[2:])
	case "version":
		fmt.Println("hellod 1")
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hellod:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	portFile := fs.String("port-file", "", "write the chosen port here")
	pidFile := fs.String("pid-file", "", "write the pid here")
	greeting := fs.String("greeting", "hello", "what /greet answers")
	upstream := fs.String("upstream", "", "URL whose /greet answer is appended to ours")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/greet", func(w http.ResponseWriter, r *http.Request) {
		msg := *greeting
		if *upstream != "" {
			up, err := get(r.Context(), *upstream+"/greet")
			if err != nil {
				http.Error(w, "upstream: "+err.Error(), http.StatusBadGateway)
				return
			}
			msg += " + " + strings.TrimSpace(up)
		}
		io.WriteString(w, msg+"\n")
	})
	port := ln.Addr().(*net.TCPAddr).Port
	// Write the pid before the port: the boot script waits for the port file,
	// so once it exists the terminate program can always find the pid.
	if *pidFile != "" {
		if err := writeAtomic(*pidFile, strconv.Itoa(os.Getpid())); err != nil {
			return err
		}
	}
	if *portFile != "" {
		if err := writeAtomic(*portFile, strconv.Itoa(port)); err != nil {
			return err
		}
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	go func() {
		<-ctx.Done()
		shut, done := context.WithTimeout(context.Background(), 2*time.Second)
		defer done()
		srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func check(args []string) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	expect := fs.String("expect", "", "substring the body must contain")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("check needs one URL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	body, err := get(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	if !strings.Contains(body, *expect) {
		return fmt.Errorf("%s answered %q, want it to contain %q", fs.Arg(0), strings.TrimSpace(body), *expect)
	}
	fmt.Printf("%s: %s", fs.Arg(0), body)
	return nil
}

func stop(args []string) error {
	fs := flag.NewFlagSet("stop", flag.ContinueOnError)
	pidFile := fs.String("pid-file", "", "pid file written by serve")
	if err := fs.Parse(args); err != nil {
		return err
	}
	data, err := os.ReadFile(*pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil // never started, or already stopped: terminate is idempotent
	}
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("pid file %s holds %q", *pidFile, data)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %d: %w", pid, err)
	}
	for i := 0; i < 50; i++ {
		if syscall.Kill(pid, 0) != nil {
			return os.Remove(*pidFile)
		}
		time.Sleep(100 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	return os.Remove(*pidFile)
}

func get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: HTTP %d: %s", url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

func writeAtomic(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
