package amqpbus

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"nightshift/internal/pki"
	"nightshift/internal/testsupport/amqptest"
)

// tlsFront terminates TLS with a certificate of ca and relays each
// connection to the shared test broker, so the bus's TLS side is tested
// against a real AMQP server without a broker node of its own.
func tlsFront(t *testing.T, ca *pki.CA, hosts []string) string {
	t.Helper()
	certPEM, keyPEM, err := ca.IssueServer(hosts, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	uri, err := amqp.ParseURI(amqptest.URL())
	if err != nil {
		t.Fatal(err)
	}
	backend := net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port))
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, err := net.Dial("tcp", backend)
				if err != nil {
					return
				}
				defer b.Close()
				go io.Copy(b, c)
				io.Copy(c, b)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestTLSDialVerifiesTheRunsCA(t *testing.T) {
	f := newFixture(t, "tlsprobe")
	uri, err := amqp.ParseURI(amqptest.URL())
	if err != nil {
		t.Fatal(err)
	}
	caDir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(caDir, f.run, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsFront(t, ca, []string{"localhost", "127.0.0.1"})
	uri.Scheme, uri.Host, uri.Port = "amqps", "localhost", mustPort(t, addr)
	url := uri.String()

	// The run's CA: connected, and a command goes round.
	cfg := f.config("tls-client")
	cfg.URL, cfg.CAFile = url, filepath.Join(caDir, pki.CACertFile)
	b := f.dial(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.SendCommand(ctx, "tlsprobe", f.envelope("launch", launch{Count: 1})); err != nil {
		t.Fatalf("send over TLS: %v", err)
	}
	noPassword(t, f.logs.String())

	// Another run's CA, the system's roots, and a name the certificate
	// does not carry: refused at once, not retried until the deadline.
	otherDir := t.TempDir()
	if _, err := pki.LoadOrCreateCA(otherDir, "other", time.Now()); err != nil {
		t.Fatal(err)
	}
	wrongName := uri
	wrongName.Host, wrongName.ServerName = "127.0.0.1", "broker.elsewhere"
	for name, c := range map[string]Config{
		"another run's CA": {URL: url, CAFile: filepath.Join(otherDir, pki.CACertFile)},
		"system roots":     {URL: url},
		"wrong name":       {URL: wrongName.String(), RootCAs: ca.Pool()},
	} {
		c.Run, c.Log = f.run, f.log
		dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Second)
		start := time.Now()
		b, err := Dial(dctx, c)
		dcancel()
		if err == nil {
			b.Close()
			t.Errorf("%s: connected", name)
			continue
		}
		if !strings.Contains(err.Error(), "certificate refused") {
			t.Errorf("%s: %v, want a certificate refusal", name, err)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("%s: refusal took %s: a bad certificate was retried", name, took)
		}
		if uri.Password != "" && strings.Contains(err.Error(), ":"+uri.Password+"@") {
			t.Errorf("%s: error leaks the password: %v", name, err)
		}
	}
}

func TestTLSConfigRefusesCAWithPlainURL(t *testing.T) {
	dir := t.TempDir()
	if _, err := pki.LoadOrCreateCA(dir, "r", time.Now()); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, pki.CACertFile)
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{URL: "amqp://u:p@h/", Run: "r", CAFile: ca}, "not amqps://"},
		{Config{URL: "amqps://u:p@h/", Run: "r", CAFile: filepath.Join(dir, "missing.pem")}, "CA file"},
	}
	for _, c := range cases {
		_, err := Dial(context.Background(), c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.cfg, err, c.want)
		}
	}
	tc, err := TLSConfig("amqps://u:p@broker.example:5671/", nil)
	if err != nil || tc == nil || tc.ServerName != "broker.example" || tc.InsecureSkipVerify {
		t.Errorf("TLSConfig: %+v %v", tc, err)
	}
	if tc, err := TLSConfig("amqp://u:p@h/", nil); tc != nil || err != nil {
		t.Errorf("plain URL got TLS config %+v %v", tc, err)
	}
	if _, err := TLSConfig("http://x", nil); err == nil {
		t.Error("bad URL accepted")
	}
}

func mustPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
