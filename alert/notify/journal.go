package notify

import "nightshift/alert/journal"

// The journal's types, under the names the dispatcher has always used.
type (
	Record   = journal.Record
	Delivery = journal.Delivery
	Journal  = journal.Journal
)

// Delivery results.
const (
	Delivered = journal.Delivered
	Failed    = journal.Failed
	Dropped   = journal.Dropped
)

// NewJournal returns the journal at path (journal.NewJournal).
func NewJournal(path string) *Journal { return journal.NewJournal(path) }
