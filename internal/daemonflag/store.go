package daemonflag

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

// Store is the flags that choose a daemon's store (docs/store.md): none
// means its SQLite file, as always; --store (or --store-file, which keeps
// the password off the command line) with a postgres:// URL means a schema
// of its own in that database; --lease makes the daemon a replica that
// stands by until it holds the role's lease and exits when it loses it.
type Store struct {
	URL, File string
	Lease     bool
	LeaseTTL  time.Duration
	// LeaseFile is where a replica records its role and epoch
	// (leader.WriteState) for status on its host; empty: nowhere.
	LeaseFile string
}

// DefaultLeaseTTL is --lease-ttl's default, Kubernetes' lease duration.
const DefaultLeaseTTL = 15 * time.Second

// Register adds --store, --store-file, --lease and --lease-ttl to fs.
func (s *Store) Register(fs *flag.FlagSet) {
	fs.StringVar(&s.URL, "store", "", "PostgreSQL store postgres://user:pass@host:port/db (default: the SQLite file); prefer --store-file, which keeps the password off the command line")
	fs.StringVar(&s.File, "store-file", "", "file (mode 0600) holding the --store URL")
	fs.BoolVar(&s.Lease, "lease", false, "run as a replica: stand by until this daemon holds the role's lease in the PostgreSQL store, then serve; exit non-zero when the lease is lost")
	fs.DurationVar(&s.LeaseTTL, "lease-ttl", DefaultLeaseTTL, "how long the lease lasts unrenewed (renewed every third of it)")
	fs.StringVar(&s.LeaseFile, "lease-file", "", "with --lease: file where this replica records its role (active or standby) and epoch, for status")
}

// Resolve reads --store-file and checks the combination. Its errors never
// hold the URL's password.
func (s *Store) Resolve() error {
	if s.URL != "" && s.File != "" {
		return errors.New("give --store or --store-file, not both")
	}
	if s.File != "" {
		b, err := os.ReadFile(s.File)
		if err != nil {
			return fmt.Errorf("--store-file: %w", err)
		}
		s.URL = strings.TrimSpace(string(b))
		if s.URL == "" {
			return fmt.Errorf("--store-file %s: empty", s.File)
		}
	}
	if s.URL != "" && !strings.HasPrefix(s.URL, "postgres://") && !strings.HasPrefix(s.URL, "postgresql://") {
		// Not echoed: a mistyped URL may still hold a password that
		// redaction, which looks for URLs, would miss.
		return errors.New("--store: want a postgres:// URL (the SQLite store needs no flag)")
	}
	if s.Lease && s.URL == "" {
		return errors.New("--lease needs a PostgreSQL --store: the lease lives in the shared database")
	}
	if s.LeaseFile != "" && !s.Lease {
		return errors.New("--lease-file needs --lease")
	}
	if s.LeaseTTL < 3*time.Second/10 {
		return fmt.Errorf("--lease-ttl %v: want at least 300ms", s.LeaseTTL)
	}
	return nil
}

// PG reports whether the store is PostgreSQL.
func (s *Store) PG() bool { return s.URL != "" }
