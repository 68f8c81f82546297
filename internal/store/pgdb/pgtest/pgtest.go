// Package pgtest owns what tests need to use the shared PostgreSQL server
// politely: which server (NIGHTSHIFT_PG_URL or the local default), skipping
// when it does not answer (failing instead under NIGHTSHIFT_TEST_STRICT=1,
// as CI runs), and a schema no other test uses, dropped when the test ends.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"nightshift/internal/nsenv"
	"nightshift/internal/redact"
	"nightshift/internal/testsupport/amqptest"
)

// DefaultURL is the server on the development machine and in CI (trust
// authentication on loopback).
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// URL is the server tests use: NIGHTSHIFT_PG_URL, or DefaultURL.
func URL() string {
	if u := os.Getenv(nsenv.PGURL); u != "" {
		return u
	}
	return DefaultURL
}

// Need skips (or, when strict, fails) unless the server answers, and
// returns its URL.
func Need(t testing.TB) string {
	t.Helper()
	u := URL()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		amqptest.SkipOrFail(t, fmt.Sprintf("PostgreSQL not reachable at %s (%s); run scripts/test-deps or set %s",
			redact.URL(u), redact.String(err.Error()), nsenv.PGURL))
		return ""
	}
	_ = c.Close(ctx)
	return u
}

// Schema returns a schema name unique to this test (prefix, the test's
// name and a random part) and drops it, with everything in it, when the
// test ends. The schema itself is left to the store to create.
func Schema(t testing.TB, prefix string) string {
	t.Helper()
	u := Need(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.ToLower(prefix + "_" + hex.EncodeToString(b[:]))
	t.Cleanup(func() { Drop(t, u, name) })
	return name
}

// Drop removes a schema and everything in it.
func Drop(t testing.TB, url, schema string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Errorf("drop schema %s: %v", schema, err)
		return
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
		t.Errorf("drop schema %s: %v", schema, err)
	}
}
