// Package journal owns a run's alert journal: the append-only file of
// every alert event and of what became of its delivery to each sink, and
// reading it back. It does no delivery itself (alert/notify does), so
// mgmt can read the journal without a network stack.
package journal

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	"nightshift/alert"
	"nightshift/internal/redact"
)

// Record is one line of a run's alert journal: an event, or what became of
// its delivery to one sink.
type Record struct {
	Time     time.Time    `json:"time"`
	Event    *alert.Event `json:"event,omitempty"`
	Delivery *Delivery    `json:"delivery,omitempty"`
}

// Delivery is the outcome of one event at one sink.
type Delivery struct {
	Sink   string       `json:"sink"`
	Key    string       `json:"dedupe_key"`
	Status alert.Status `json:"status"`
	// Result is delivered, failed (every attempt failed) or dropped (the
	// sink's queue was full, or its rate limit spent).
	Result   string `json:"result"`
	Attempts int    `json:"attempts,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Delivery results.
const (
	Delivered = "delivered"
	Failed    = "failed"
	Dropped   = "dropped"
)

// Journal appends records to a run's alert journal
// (runlayout.Run.Alerts). Each record is one write of one line to a file
// opened for appending, so processes sharing the journal do not interleave
// within a line.
type Journal struct {
	path string
	mu   sync.Mutex
}

// NewJournal returns the journal at path; the file is created on first use.
func NewJournal(path string) *Journal { return &Journal{path: path} }

// Append writes recs.
func (j *Journal) Append(recs ...Record) error {
	if j == nil || len(recs) == 0 {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	f, err := redact.OpenPrivate(j.path)
	if err != nil {
		return fmt.Errorf("alert journal: %w", err)
	}
	defer f.Close()
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("alert journal: %w", err)
		}
		if _, err := f.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("alert journal: %w", err)
		}
	}
	return nil
}

// MaxLine bounds one journal line; a longer one is skipped on reading.
const MaxLine = 1 << 20

// ReadJournal reads every record at path; a missing journal has none. A
// line that is not a record (torn by a crash mid-write) is skipped;
// reading stops at a line longer than MaxLine.
func ReadJournal(path string) ([]Record, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("alert journal: %w", err)
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), MaxLine)
	for sc.Scan() {
		var r Record
		if json.Unmarshal(sc.Bytes(), &r) == nil && (r.Event != nil || r.Delivery != nil) {
			out = append(out, r)
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, bufio.ErrTooLong) {
		return out, fmt.Errorf("alert journal: %w", err)
	}
	return out, nil
}

// Firing folds records into the alerts whose latest event is firing, in
// journal order: what a restarted process hands alert.Evaluator.Restore.
func Firing(recs []Record) []alert.Event {
	latest := map[string]alert.Event{}
	var order []string
	for _, r := range recs {
		if r.Event == nil {
			continue
		}
		if _, ok := latest[r.Event.Key]; !ok {
			order = append(order, r.Event.Key)
		}
		latest[r.Event.Key] = *r.Event
	}
	var out []alert.Event
	for _, k := range order {
		if ev := latest[k]; ev.Status == alert.Firing && ev.Kind != alert.TeardownLeftovers {
			out = append(out, ev)
		}
	}
	return out
}
