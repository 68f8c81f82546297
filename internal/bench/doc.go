// Package bench owns the pure core of the nsbench harness: parsing `go test
// -bench` output and /proc files, summarising samples, judging whether a
// cost grows linearly, running scenarios into a Report, and writing that
// Report into docs/BENCHMARKS.md and its JSON sibling, replacing only the
// blocks of the scenarios that ran (merge.go). It starts no processes
// and reads no files itself, so every rule it applies is unit-tested; the
// scenarios that touch real processes live in cmd/nsbench.
package bench
